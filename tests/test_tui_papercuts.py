"""Papercuts a newcomer hit: toasts, feedback, quitting, mute, the # column, paused devices."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.test_tui_support import (
    commands,
    main_screen,
    notices,
    now_lines,
    running,
    screen_lines,
    seeded,
    settle,
    wait_until,
)
from tunehand.tui import keys
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.screenshots import demo_cover
from tunehand.tui.widgets.cover import HalfBlocks
from tunehand.tui.widgets.search import hit_cells as search_cells


@pytest.mark.parametrize("with_cover", [False, True])
async def test_toasts_stay_above_the_now_playing_bar_and_leave_it_intact(with_cover: bool) -> None:
    fake = FakeBackend()
    fake.give_art("al00001", demo_cover())
    cover = HalfBlocks if with_cover else None
    async with running(seeded(fake), toasts=True, cover=cover) as (app, pilot, _fake):
        now = main_screen(app).query_one("#now-row")
        assert now.region.height == (4 if with_cover else 2)
        before = screen_lines(app)[now.region.y : now.region.bottom]
        assert any("Hafið" in line for line in before)
        for n in range(3):
            app.notify(f"a toast with a long line of text number {n} " * 2, timeout=30)
        await wait_until(pilot, lambda: len(app.screen.query("Toast")) == 3)
        await settle(pilot)
        toasts = list(app.screen.query("Toast"))
        for toast in toasts:
            assert toast.region.bottom <= now.region.y, (toast.region, now.region)
        lines = screen_lines(app)
        assert lines[now.region.y : now.region.bottom] == before
        top = now_lines(app)[0]
        bar = main_screen(app).now.region.y
        assert top.rstrip()[-10:] in lines[bar]  # the right end is visible
        assert "repeat off" in lines[bar + 1]
        app.clear_notifications()
        await wait_until(pilot, lambda: not app.screen.query("Toast"))
        await settle(pilot)
        assert screen_lines(app)[now.region.y : now.region.bottom] == before


async def test_a_tells_what_it_added_to_the_queue() -> None:
    async with running() as (app, pilot, fake):
        await pilot.press("enter")  # Aurélie Vasquez's albums
        await settle(pilot)
        await pilot.press("a")  # a whole album
        await settle(pilot)
        album = fake.library.album_tracks["al00001"]
        assert f"Added {len(album)} tracks of Lumière d'hiver to the queue" in notices(app)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("down", "a")  # one track
        await settle(pilot)
        assert f"Added {album[1].title} to the queue" in notices(app)
        await pilot.press("A")
        await settle(pilot)
        assert f"{album[1].title} plays next" in notices(app)
        await pilot.press("escape", "escape", "a")  # an artist: every album
        await settle(pilot)
        total = sum(
            len(fake.library.album_tracks[a.id]) for a in fake.library.albums["aurélie vasquez"]
        )
        assert f"Added {total} tracks by Aurélie Vasquez to the queue" in notices(app)
        assert [op for op, _ in commands(fake)] == [
            "queue_add",
            "queue_add",
            "queue_next",
            "queue_add",
        ]


async def test_a_refused_add_tells_the_refusal_and_not_that_it_was_added() -> None:
    fake = seeded()
    async with running(fake) as (app, pilot, _fake):
        fake.fail_next("command", __import__("tunehand.errors").errors.ServerUnreachable("offline"))
        await pilot.press("enter", "enter")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert "offline" in notices(app)
        assert not any(n.startswith("Added") for n in notices(app))


async def test_q_quits_but_not_while_typing_and_ctrl_q_still_quits() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await pilot.press("slash", "q")
        await settle(pilot)
        assert app.is_running and main_screen(app).search.input.value == "q"
        assert isinstance(app.focused, Input)
        await pilot.press("backspace", "tab")  # leave the search box: q is a key again
        await settle(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running)
        assert fake.closed
    async with running(seeded()) as (app, pilot, fake):
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running)
        assert fake.closed
    async with running(seeded(), keys_config={"quit": "Q"}) as (app, pilot, fake):
        await pilot.press("q")
        await settle(pilot)
        assert app.is_running and not fake.closed
    assert keys.key_label(keys.BY_NAME["quit"].key) == "q / ctrl+q"


async def test_m_mutes_and_unmutes_to_the_volume_before() -> None:
    fake = seeded()
    fake.apply("volume", value=70)
    async with running(fake) as (app, pilot, _fake):
        assert "vol  70" in now_lines(app)[1]
        await pilot.press("m")
        await settle(pilot)
        assert fake.state.volume == 0
        assert "muted" in now_lines(app)[1] and "vol" not in now_lines(app)[1]
        await pilot.press("m")
        await settle(pilot)
        assert fake.state.volume == 70 and "vol  70" in now_lines(app)[1]
        fake.apply("volume", value=0)  # muted elsewhere: m brings a sensible level back
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        assert fake.state.volume == 50
        assert commands(fake) == [
            ("volume", {"value": 0}),
            ("volume", {"value": 70}),
            ("volume", {"value": 50}),
        ]


async def test_the_devices_header_says_paused_while_paused() -> None:
    async with running(seeded()) as (app, pilot, _fake):
        devices = main_screen(app).devices
        await pilot.press("d")
        await settle(pilot)
        assert str(devices.title.render()) == "Devices · playing on this terminal"
        await pilot.press("space")
        await settle(pilot)
        assert str(devices.title.render()) == "Devices · paused on this terminal"
        await pilot.press("space")
        await settle(pilot)
        assert str(devices.title.render()) == "Devices · playing on this terminal"


async def test_o_jumps_to_the_playing_entry_in_the_queue() -> None:
    fake = seeded(index=3)
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("5")
        await settle(pilot)
        queue = main_screen(app).queue
        await pilot.press("end")
        assert queue.table.cursor_row == 5
        await pilot.press("o")
        assert queue.table.cursor_row == 3
        assert queue.table.current is not None
        assert queue.table.current.entry_id == fake.state.current


async def test_search_history_and_likes_show_no_album_track_number() -> None:
    fake = seeded()
    album = fake.library.album_tracks["al00001"]
    fake.likes_ids = [album[3].id]
    async with running(fake) as (app, pilot, _fake):
        screen = main_screen(app)
        for pane in (screen.history, screen.likes):
            assert [c.label for c in pane.tables[-1].columns] == [
                "Title",
                "Artist",
                "Album",
                "Time",
            ]
        # Search: the first column names the section (Artists, Albums, ..., Tracks).
        assert [c.label for c in screen.search.table.columns] == [
            "",
            "Title",
            "Artist",
            "Album",
            "Time",
        ]
        await pilot.press("3")
        await settle(pilot)
        row = screen_lines(app)[screen.likes.table.region.y + 1]
        assert row.split()[0] == album[3].title.split()[0]  # the title first: no "4"
        album_table = screen.library.tables[2]
        assert album_table.columns[0].label == "#"  # an album still shows its numbers
        await pilot.press("slash", *"hafi")
        await settle(pilot)
        hit = screen.search.table.rows[0]
        assert hit.kind == "track" and hit.item.track_no
        assert search_cells(hit)[0].plain == "Tracks"  # not its album track number
