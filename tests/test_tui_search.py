"""Search finds artists, albums and playlists as well as tracks, in sections; Enter on
an artist or album goes to it in the library, on a playlist to the playlist."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.test_tui_support import commands, main_screen, notices, running, screen_lines, settle
from tunehand.tui.backend import Album, Artist, PlaylistInfo
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.widgets.search import Hit


def with_playlist(name: str) -> FakeBackend:
    fake = FakeBackend()
    tracks = list(fake.library.tracks.values())
    fake.playlists_ = {name: [t.id for t in tracks[3:7]]}
    return fake


async def search_for(pilot: Pilot[Any], text: str) -> None:
    """Type a search, wait for its results, and go down to them (the cursor on the first)."""
    await pilot.press("slash", *text)
    await settle(pilot)
    await pilot.press("down")
    assert pilot.app.focused is main_screen(pilot.app).search.table


def kinds(rows: Any) -> list[str]:
    return [h.kind for h in rows]


async def test_results_come_in_sections_artists_albums_playlists_tracks() -> None:
    fake = with_playlist("Quiet evenings")
    async with running(fake) as (app, pilot, _fake):
        await search_for(pilot, "quiet")
        search = main_screen(app).search
        rows: list[Hit] = list(search.table.rows)
        zoe = next(a for a in fake.library.artists if a.name == "Zoë & the Quiet Hours")
        assert rows[0] == Hit("artist", zoe, True)
        albums = [h.item for h in rows if h.kind == "album"]
        assert albums == fake.library.albums[zoe.key]  # their artist matches
        assert [h.item for h in rows if h.kind == "playlist"] == [PlaylistInfo("Quiet evenings", 4)]
        tracks = search.tracks
        assert tracks and {t.artist for t in tracks} >= {"Zoë & the Quiet Hours"}
        order = kinds(rows)
        assert order == sorted(order, key=["artist", "album", "playlist", "track"].index)
        assert [h.first for h in rows].count(True) == 4  # each section names itself once
        status = search.status.text
        assert status.startswith("1 artist, 2 albums, 1 playlist and ")
        assert status.endswith(f"{len(tracks)} tracks match “quiet”")
        lines = screen_lines(app)
        top = search.table.region.y + 1
        assert lines[top].split()[:2] == ["Artists", "Zoë"]
        assert lines[top + 1].split()[:2] == ["Albums", albums[0].title.split()[0]]
        assert "Tracks" in lines[top + len(rows) - len(tracks)]


async def test_enter_on_an_artist_goes_to_its_albums_in_the_library() -> None:
    async with running() as (app, pilot, fake):
        await search_for(pilot, "nordlys")
        search = main_screen(app).search
        assert search.table.current is not None and search.table.current.kind == "artist"
        await pilot.press("enter")
        await settle(pilot)
        screen = main_screen(app)
        lib = screen.library
        assert screen.pane == "library" and lib.level == 1
        key = "nordlys ensemble"
        assert list(lib.table.rows) == fake.library.albums[key]
        assert "Artists › Nordlys Ensemble" in str(lib.title.render())
        assert app.focused is lib.table
        await pilot.press("backspace")  # back up to every artist, the cursor on it
        current = lib.table.current
        assert lib.level == 0 and isinstance(current, Artist) and current.key == key
        assert commands(fake) == []


async def test_enter_on_an_album_goes_to_its_tracks_and_a_queues_it() -> None:
    async with running() as (app, pilot, fake):
        await search_for(pilot, "glasshouse")
        search = main_screen(app).search
        hit = search.table.current
        assert hit is not None and hit.kind == "album"
        album: Album = hit.item
        await pilot.press("a")  # the whole album
        await settle(pilot)
        tracks = fake.library.album_tracks[album.id]
        assert commands(fake) == [("queue_add", {"track_ids": tuple(t.id for t in tracks)})]
        assert f"Added {len(tracks)} tracks of Glasshouse to the queue" in notices(app)
        await pilot.press("enter")
        await settle(pilot)
        lib = main_screen(app).library
        assert main_screen(app).pane == "library" and lib.level == 2
        assert list(lib.table.rows) == tracks
        assert "Artists › Zoë & the Quiet Hours › Glasshouse" in str(lib.title.render())
        await pilot.press("backspace")
        assert lib.level == 1 and lib.table.current == album
        await pilot.press("enter")  # into the album again, then play it from a track
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        ids = tuple(t.id for t in tracks)
        play = {"track_ids": ids, "replace": True, "index": 1, "device_id": fake.device_id}
        assert commands(fake)[-1] == ("play", play)


async def test_enter_on_a_playlist_opens_it() -> None:
    fake = with_playlist("Glass and steel")
    async with running(fake) as (app, pilot, _fake):
        await search_for(pilot, "steel")
        await pilot.press("enter")
        await settle(pilot)
        pane = main_screen(app).playlists
        assert main_screen(app).pane == "playlists" and pane.level == 1
        assert [t.id for t in pane.table.rows] == fake.playlists_["Glass and steel"]
        assert "Playlists › Glass and steel" in str(pane.title.render())


async def test_a_result_gone_from_the_library_is_told_in_place() -> None:
    async with running() as (app, pilot, fake):
        await search_for(pilot, "nordlys")
        fake.library.artists = [a for a in fake.library.artists if a.key != "nordlys ensemble"]
        await pilot.press("enter")
        await settle(pilot)
        lib = main_screen(app).library
        assert "Nordlys Ensemble is not in the library any more" in lib.status.text
        assert lib.level == 0


async def test_b_and_shift_b_go_to_a_tracks_album_and_artist() -> None:
    async with running() as (app, pilot, fake):
        await search_for(pilot, "tidewater")  # an album and its title track's namesakes
        search = main_screen(app).search
        track = search.tracks[0]
        while search.table.current is None or search.table.current.kind != "track":
            await pilot.press("down")
        assert search.table.current.item == track
        await pilot.press("b")
        await settle(pilot)
        lib = main_screen(app).library
        assert main_screen(app).pane == "library" and lib.level == 2
        assert list(lib.table.rows) == fake.library.album_tracks[track.album_id]
        assert app.focused is lib.table
        await pilot.press("down", "B")  # from the album's list: its artist
        await settle(pilot)
        assert lib.level == 1
        assert [a.title for a in lib.table.rows] == ["Tidewater", "Low Country Hymns"]
        assert "Artists › The Salt Marsh Choir" in str(lib.title.render())
        await pilot.press("3", "b")  # no track here: told so
        await settle(pilot)
        assert "Choose a track of an album first" in notices(app)
