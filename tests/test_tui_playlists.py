"""Playlists in the TUI: Enter asks before replacing a hand-built queue; rename, delete
(asked first) and edit (remove a track, move one up or down) a playlist in place."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.test_tui_support import commands, main_screen, notices, running, seeded, settle
from tunehand.errors import ServerUnreachable
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.screens.choice import ChoiceScreen
from tunehand.tui.screens.prompt import PromptScreen


def with_playlists(fake: FakeBackend | None = None) -> FakeBackend:
    fake = fake or FakeBackend()
    tracks = list(fake.library.tracks.values())
    fake.playlists_ = {
        "Late night": [t.id for t in tracks[10:15]],
        "Road trip": [t.id for t in tracks[60:63]],
    }
    return fake


async def open_playlist(pilot: Pilot[Any], down: int = 0) -> None:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press(*["down"] * down, "enter")
    await settle(pilot)


def plays(fake: FakeBackend) -> list[dict[str, Any]]:
    return [f for op, f in commands(fake) if op == "play"]


async def test_enter_in_a_playlist_asks_before_replacing_a_hand_built_queue() -> None:
    fake = with_playlists(seeded())
    extra = list(fake.library.tracks.values())[-1]
    fake.apply("queue_add", track_ids=(extra.id,))  # the album plus a track: hand-built
    late = fake.playlists_["Late night"]
    async with running(fake) as (app, pilot, _fake):
        before = fake.state.queue
        await open_playlist(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceScreen)
        assert "The queue holds 7 tracks you put together" in app.screen.question
        await pilot.press("escape")  # cancel: nothing happens
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert fake.state.queue == before and plays(fake) == []
        await pilot.press("enter", "n")  # just this track, next
        await settle(pilot)
        assert commands(fake) == [("queue_next", {"track_ids": (late[1],)})]
        assert f"{fake.library.tracks[late[1]].title} plays next" in notices(app)
        assert len(fake.state.queue) == len(before) + 1
        await pilot.press("enter", "r")  # replace it
        await settle(pilot)
        assert plays(fake) == [{"track_ids": tuple(late), "replace": True, "index": 1}]
        assert [e.track_id for e in fake.state.queue] == late
        # The queue is this playlist now: Enter plays from another track at once.
        await pilot.press("down", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert plays(fake)[-1] == {"track_ids": tuple(late), "replace": True, "index": 2}


async def test_a_queue_that_is_a_list_played_whole_or_empty_is_replaced_without_asking() -> None:
    fake = with_playlists()
    road = fake.playlists_["Road trip"]
    async with running(fake) as (app, pilot, _fake):
        await open_playlist(pilot, down=1)  # empty queue: no question
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert [e.track_id for e in fake.state.queue] == road
        await pilot.press("1", "enter")  # an album played whole replaces it unasked
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        album = fake.library.album_tracks["al00001"]
        assert [e.track_id for e in fake.state.queue] == [t.id for t in album]
        await open_playlist(pilot, down=1)  # the album's queue is no hand-built one
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert [e.track_id for e in fake.state.queue] == road


async def test_rename_a_playlist() -> None:
    fake = with_playlists()
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "R")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        field = app.screen.query_one(Input)
        assert field.value == "Road trip"
        field.value = "Late night"  # taken: refused, nothing overwritten
        await pilot.press("enter")
        await settle(pilot)
        pane = main_screen(app).playlists
        assert "exists already" in pane.status.text
        assert sorted(fake.playlists_) == ["Late night", "Road trip"]
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = "Summer ☀ drive"
        await pilot.press("enter")
        await settle(pilot)
        assert sorted(fake.playlists_) == ["Late night", "Summer ☀ drive"]
        assert [p.name for p in pane.table.rows] == ["Late night", "Summer ☀ drive"]
        assert pane.table.current is not None and pane.table.current.name == "Summer ☀ drive"
        assert "Renamed the playlist “Road trip” to “Summer ☀ drive”" in notices(app)
        # Inside a playlist, R renames that one and the title follows.
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        app.screen.query_one(Input).value = "Drive"
        await pilot.press("enter")
        await settle(pilot)
        assert "Drive" in fake.playlists_ and "Playlists › Drive" in str(pane.title.render())


async def test_delete_a_playlist_asks_first() -> None:
    fake = with_playlists()
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("2")
        await settle(pilot)
        pane = main_screen(app).playlists
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ChoiceScreen)
        assert "Delete the playlist “Late night” (5 tracks)?" in app.screen.question
        await pilot.press("escape")  # kept
        await settle(pilot)
        assert sorted(fake.playlists_) == ["Late night", "Road trip"]
        await pilot.press("x", "enter")  # Enter is on "Keep it"
        await settle(pilot)
        assert not isinstance(app.screen, ChoiceScreen)
        assert sorted(fake.playlists_) == ["Late night", "Road trip"]
        await pilot.press("delete", "y")
        await settle(pilot)
        assert sorted(fake.playlists_) == ["Road trip"]
        assert [p.name for p in pane.table.rows] == ["Road trip"]
        assert "Deleted the playlist “Late night”" in notices(app)


async def test_edit_a_playlist_remove_and_move_tracks() -> None:
    fake = with_playlists()
    ids = list(fake.playlists_["Late night"])
    async with running(fake) as (app, pilot, _fake):
        await open_playlist(pilot)
        pane = main_screen(app).playlists
        table = pane.tables[1]
        assert [t.id for t in table.rows] == ids
        assert table.columns[0].label == "#"  # the position in the playlist
        await pilot.press("down", "x")  # remove the second track
        await settle(pilot)
        assert fake.playlists_["Late night"] == [ids[0], *ids[2:]]
        assert [t.id for t in table.rows] == fake.playlists_["Late night"]
        assert table.cursor_row == 1
        await pilot.press("J", "J")  # move ids[2] down twice
        await settle(pilot)
        assert fake.playlists_["Late night"] == [ids[0], ids[3], ids[4], ids[2]]
        assert table.current is not None and table.current.id == ids[2]
        await pilot.press("shift+up")
        await settle(pilot)
        assert fake.playlists_["Late night"] == [ids[0], ids[3], ids[2], ids[4]]
        await pilot.press("home", "K")  # the first cannot move up: nothing sent
        await settle(pilot)
        saves = [f for m, f in fake.calls if m == "save_playlist"]
        assert len(saves) == 4
        await pilot.press("escape")
        assert [(p.name, p.tracks) for p in pane.table.rows] == [
            ("Late night", 4),
            ("Road trip", 3),
        ]
        # A failed save shows why and what the server really has.
        await pilot.press("enter")
        await settle(pilot)
        fake.fail_next("save_playlist", ServerUnreachable("the server is unreachable"))
        await pilot.press("x")
        await settle(pilot)
        assert "could not save the playlist: the server is unreachable" in pane.status.text
        assert [t.id for t in table.rows] == fake.playlists_["Late night"]
        assert len(fake.playlists_["Late night"]) == 4
