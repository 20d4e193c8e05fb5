"""The queue pane: see it, play an entry, remove, move, play next, clear; shuffle and repeat."""

from __future__ import annotations

from tests.test_tui_support import commands, main_screen, running, seeded, settle
from tunehand.core.protocol import TrackView


async def open_queue(pilot: object) -> None:
    await pilot.press("5")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]


async def test_the_queue_shows_every_entry_its_position_and_marks_the_current_one() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        queue = main_screen(app).queue
        assert list(queue.table.rows) == list(fake.state.queue)
        numbers = [queue._position(i, e) for i, e in enumerate(queue.table.rows)]
        assert numbers == ["1", "▶ 2", "3", "4", "5", "6"]  # the `#` column: play order
        cells = [queue._cells(e) for e in queue.table.rows]
        album = fake.library.album_tracks["al00001"]
        assert [c[0] for c in cells] == [t.title for t in album]
        assert queue.table.columns[0].label == "#"
        assert "Queue · 6 tracks" in str(queue.title.render())


async def test_play_remove_and_move_entries_by_entry_id() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        queue = main_screen(app).queue
        e = [x.entry_id for x in fake.state.queue]
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert fake.state.current == e[2]
        await pilot.press("x")
        await settle(pilot)
        assert e[2] not in [x.entry_id for x in fake.state.queue]
        await pilot.press("shift+down")
        await settle(pilot)
        moved = queue.table.current
        await pilot.press("K")
        await settle(pilot)
        assert commands(fake)[:3] == [
            ("play", {"entry_id": e[2]}),
            ("queue_remove", {"entry_ids": (e[2],)}),
            ("order_move", {"entry_id": e[3], "index": 3}),
        ]
        assert commands(fake)[3] == ("order_move", {"entry_id": e[3], "index": 2})
        assert moved is not None and moved.entry_id == e[3]
        assert queue.table.current is not None and queue.table.current.entry_id == e[3]


async def test_play_next_moves_the_entry_after_the_current_one() -> None:
    async with running(seeded(index=1)) as (_app, pilot, fake):
        await open_queue(pilot)
        e = [x.entry_id for x in fake.state.queue]
        await pilot.press("end", "A")
        await settle(pilot)
        assert [x.entry_id for x in fake.state.queue] == [e[0], e[1], e[5], e[2], e[3], e[4]]
        assert fake.state.current == e[1]


async def test_clear_needs_a_second_press() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        queue = main_screen(app).queue
        await pilot.press("C")
        await settle(pilot)
        assert fake.state.queue and "again" in queue.status.text
        await pilot.press("C")
        await settle(pilot)
        assert fake.state.queue == ()
        assert commands(fake) == [("queue_clear", {})]


async def test_shuffle_and_repeat_toggle_and_show() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        await pilot.press("s", "r")
        await settle(pilot)
        assert fake.state.shuffle and fake.state.repeat == "all"
        await pilot.press("r", "r", "s")
        await settle(pilot)
        assert [c for c in commands(fake)] == [
            ("shuffle", {"on": True}),
            ("repeat", {"mode": "all"}),
            ("repeat", {"mode": "one"}),
            ("repeat", {"mode": "off"}),
            ("shuffle", {"on": False}),
        ]
        assert "shuffle off · repeat off" in str(main_screen(app).queue.title.render())


async def test_entries_added_elsewhere_get_their_titles_from_the_backend() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        queue = main_screen(app).queue
        extra: TrackView = list(fake.library.tracks.values())[-1]
        queue.tracks.pop(extra.id, None)
        fake.apply("queue_add", sender="dliving00000000000000", track_ids=(extra.id,))
        await settle(pilot)
        last = queue.table.rows[-1]
        assert queue._cells(last)[0] == extra.title
        assert ("queue", {}) in fake.calls


async def test_with_shuffle_on_the_queue_shows_and_moves_in_play_order() -> None:
    async with running(seeded(index=0)) as (app, pilot, fake):
        await open_queue(pilot)
        queue = main_screen(app).queue
        stored = [x.entry_id for x in fake.state.queue]
        await pilot.press("s")
        await settle(pilot)
        order = list(fake.state.order)
        assert fake.state.shuffle and sorted(order) == sorted(stored) and order != stored
        assert [e.entry_id for e in queue.table.rows] == order
        assert order[0] == fake.state.current  # the playing entry leads the permutation
        # Play next: the last entry in play order moves right after the current one.
        await pilot.press("end", "A")
        await settle(pilot)
        assert list(fake.state.order) == [order[0], order[5], *order[1:5]]
        assert [x.entry_id for x in fake.state.queue] == stored  # the queue keeps its order
        assert [e.entry_id for e in queue.table.rows] == list(fake.state.order)
        assert commands(fake)[-1] == ("order_move", {"entry_id": order[5], "index": 1})
        # `n` goes where the view says it will.
        await pilot.press("n")
        await settle(pilot)
        assert fake.state.current == order[5]


async def test_save_the_queue_as_a_playlist_in_play_order() -> None:
    from textual.widgets import Input

    from tunehand.tui.screens.prompt import PromptScreen

    async with running(seeded()) as (app, pilot, fake):
        await open_queue(pilot)
        await pilot.press("S")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        assert "6 tracks" in str(app.screen.query_one("#prompt-question").render())
        await pilot.press("escape")  # cancel: nothing saved
        await settle(pilot)
        assert not isinstance(app.screen, PromptScreen) and fake.playlists_ == {}
        await pilot.press("S")
        await settle(pilot)
        app.screen.query_one(Input).value = "Road trip"
        await pilot.press("enter")
        await settle(pilot)
        queue = main_screen(app).queue
        assert fake.playlists_ == {"Road trip": [e.track_id for e in fake.state.queue]}
        assert "saved 6 tracks as the playlist 'Road trip'" in queue.status.text
        # It shows in the playlists pane at once.
        await pilot.press("2")
        await settle(pilot)
        rows = main_screen(app).playlists.table.rows
        assert [(p.name, p.tracks) for p in rows] == [("Road trip", 6)]


async def test_saving_an_empty_queue_says_so() -> None:
    async with running() as (app, pilot, fake):
        await open_queue(pilot)
        await pilot.press("S")
        await settle(pilot)
        assert "empty" in main_screen(app).queue.status.text
        assert not any(c[0] == "save_playlist" for c in fake.calls)
