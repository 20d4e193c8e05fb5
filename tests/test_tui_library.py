"""Library, playlists, liked tracks, history and search: browse, play, enqueue; errors in place."""

from __future__ import annotations

import asyncio

from textual.widgets import Input

from tests.test_tui_support import commands, main_screen, running, settle
from tunehand.errors import ServerUnreachable
from tunehand.tui.backend import InProgress, Played
from tunehand.tui.backend_fake import FakeBackend


async def test_artists_albums_tracks_then_play_the_album_from_a_track() -> None:
    async with running() as (app, pilot, fake):
        lib = main_screen(app).library
        assert [a.name for a in lib.table.rows][:2] == ["Aurélie Vasquez", "Ciudad Nocturna"]
        await pilot.press("enter")
        await settle(pilot)
        assert lib.level == 1 and [a.title for a in lib.table.rows] == [
            "Lumière d'hiver",
            "Café des Brumes",
        ]
        await pilot.press("enter")
        await settle(pilot)
        album = fake.library.album_tracks["al00001"]
        assert lib.level == 2 and list(lib.table.rows) == album
        assert "Artists › Aurélie Vasquez › Lumière d'hiver" in str(lib.title.render())
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        ids = tuple(t.id for t in album)
        # No device is active yet: a cold start plays here.
        assert commands(fake) == [
            ("play", {"track_ids": ids, "replace": True, "index": 2, "device_id": fake.device_id})
        ]
        assert fake.state.current_entry is not None
        assert fake.state.current_entry.track_id == album[2].id
        await pilot.press("backspace")
        assert lib.level == 1
        await pilot.press("escape")
        assert lib.level == 0


async def test_add_to_queue_and_play_next_from_tracks_and_albums() -> None:
    async with running() as (_app, pilot, fake):
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("a")  # on an album: the whole album
        await settle(pilot)
        album = tuple(t.id for t in fake.library.album_tracks["al00001"])
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("down", "a", "A")
        await settle(pilot)
        assert commands(fake) == [
            ("queue_add", {"track_ids": album}),
            ("queue_add", {"track_ids": (album[1],)}),
            ("queue_next", {"track_ids": (album[1],)}),
        ]
        # Nothing plays yet, so "next" goes first.
        assert [e.track_id for e in fake.state.queue] == [album[1], *album, album[1]]


async def test_a_load_error_shows_in_the_pane_and_a_revisit_retries() -> None:
    fake = FakeBackend()
    fake.fail_next("artists", ServerUnreachable("cannot reach the server at http://x: refused"))
    async with running(fake) as (app, pilot, _fake):
        lib = main_screen(app).library
        assert "cannot reach the server" in lib.status.text
        assert lib.table.rows == ()
        await pilot.press("1")
        await settle(pilot)
        assert lib.status.text == "" and len(lib.table.rows) == 12


async def test_playlists_likes_and_history() -> None:
    fake = FakeBackend()
    tracks = list(fake.library.tracks.values())
    fake.playlists_ = {"Morning": [tracks[3].id, tracks[7].id]}
    fake.likes_ids = [tracks[5].id]
    fake.history_ = [Played(tracks[9].id, tracks[9], 1_000, "dthis")]
    async with running(fake) as (app, pilot, _fake):
        screen = main_screen(app)
        await pilot.press("2")
        await settle(pilot)
        assert [p.name for p in screen.playlists.table.rows] == ["Morning"]
        await pilot.press("enter")
        await settle(pilot)
        assert list(screen.playlists.table.rows) == [tracks[3], tracks[7]]
        await pilot.press("down", "enter")
        await pilot.press("3")
        await settle(pilot)
        assert list(screen.likes.table.rows) == [tracks[5]]
        await pilot.press("4")
        await settle(pilot)
        # What was just heard first (as the server records it), then the older entry.
        assert list(screen.history.table.rows) == [tracks[7], tracks[9]]
        await pilot.press("down", "enter")  # history plays just that track
        await settle(pilot)
        ops = commands(fake)
        assert ops[0] == (
            "play",
            {
                "track_ids": (tracks[3].id, tracks[7].id),
                "replace": True,
                "index": 1,
                "device_id": fake.device_id,
            },
        )
        assert ops[1] == ("play", {"track_ids": (tracks[9].id,)})


async def test_search_as_you_type_is_debounced_and_plays_a_result() -> None:
    async with running() as (app, pilot, fake):
        await pilot.press("slash")
        search = main_screen(app).search
        search.debounce_s = 60.0
        assert app.focused is search.input
        await pilot.press(*"lante")
        assert not [c for c in fake.calls if c[0] == "search"]  # still waiting for a pause
        await pilot.press("enter")  # Enter does not wait
        await settle(pilot)
        searched = [f["query"] for m, f in fake.calls if m == "search"]
        assert searched == ["lante"]  # one request for the whole burst
        rows = search.tracks
        assert rows and all("Lanterns" in f"{t.title} {t.album}" for t in rows)
        assert search.status.text == f"1 album and {len(rows)} tracks match “lante”"
        await pilot.press("down")
        assert app.focused is search.table
        await pilot.press("down", "enter")  # past the album: the first track
        await settle(pilot)
        assert commands(fake)[0][1]["track_ids"] == (rows[0].id,)


async def test_a_slow_search_does_not_freeze_the_ui_and_a_newer_one_wins() -> None:
    fake = FakeBackend()
    fake.search_gate = asyncio.Event()
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("slash", *"mi")
        for _ in range(3):
            await pilot.pause()
        search = main_screen(app).search
        # The search is stuck on the server; the UI still takes keys and switches panes.
        await pilot.press("n")
        assert search.input.value == "min"
        fake.search_gate.set()
        await settle(pilot)
        assert search.tracks
        for t in search.tracks:
            words = f"{t.title} {t.artist} {t.album}".casefold().split()
            assert any(w.startswith("min") for w in words), t


async def test_search_errors_are_shown_in_place() -> None:
    fake = FakeBackend()
    fake.fail_next("search", ServerUnreachable("cannot reach the server at http://x: timed out"))
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("slash", "x")
        await settle(pilot)
        search = main_screen(app).search
        assert "timed out" in search.status.text
        assert search.status.has_class("error")
        assert app.screen.query_one("#search-input", Input).value == "x"


async def test_continue_lists_what_is_in_progress_and_plays_it() -> None:
    fake = FakeBackend()
    tracks = list(fake.library.tracks.values())
    fake.in_progress_ = [
        InProgress(tracks[2].id, tracks[2].title, "audiobook", 754_000, 2_700_000, 2_000),
        InProgress("e0123456789abcdef0123", "Episode 12", "episode", 61_000, 0, 1_000),
    ]
    async with running(fake) as (app, pilot, _fake):
        screen = main_screen(app)
        await pilot.press("6")
        await settle(pilot)
        rows = list(screen.resumable.table.rows)
        assert [(r.id, r.title, r.artist, r.album) for r in rows] == [
            (tracks[2].id, tracks[2].title, "Audiobook", "at 12:34 of 45:00"),
            ("e0123456789abcdef0123", "Episode 12", "Episode", "at 1:01"),
        ]
        await pilot.press("down", "enter")  # plays the episode: the server resumes it
        await settle(pilot)
        op, fields = commands(fake)[-1]
        assert op == "play" and fields["track_ids"] == ("e0123456789abcdef0123",)
        fake.in_progress_ = []
        await pilot.press("1", "6")  # a revisit reads it again
        await settle(pilot)
        assert list(screen.resumable.table.rows) == []
