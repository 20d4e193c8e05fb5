"""Subsonic methods that read the library: folders, indexes, artists, albums, songs,
album lists, random songs and search. The library is the server's; stars are the
account's."""

from __future__ import annotations

import asyncio
import logging
import time

from tunehand.errors import StoreError
from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.db import subsonic_state as qst
from tunehand.server.library.service import Library
from tunehand.server.subsonic import views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import GENERIC, MISSING, NOT_FOUND, Payload, SubsonicError

log = logging.getLogger("tunehand.subsonic")


async def ping(call: Call) -> Payload:
    return {}


async def get_license(call: Call) -> Payload:
    return {"license": {"valid": True}}


async def get_extensions(call: Call) -> Payload:
    return {
        "openSubsonicExtensions": [
            {"name": "apiKeyAuthentication", "versions": [1]},
            {"name": "formPost", "versions": [1]},
            {"name": "transcodeOffset", "versions": [1]},
            {"name": "songLyrics", "versions": [1]},
        ]
    }


async def get_music_folders(call: Call) -> Payload:
    return {"musicFolders": {"musicFolder": [{"id": views.FOLDER_ID, "name": "Music"}]}}


async def _artists(call: Call) -> tuple[list[ql.ArtistRow], dict[str, int]]:
    async with call.services.engine.connect() as conn:
        rows = await ql.artists(conn)
        stars = await qs.starred_among(
            conn, call.principal.account_id, [views.artist_id(a.key) for a in rows]
        )
    return rows, stars


async def marks(call: Call, ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    async with call.services.engine.connect() as conn:
        return await qst.marks(conn, call.principal.account_id, ids)


async def get_indexes(call: Call) -> Payload:
    rows, stars = await _artists(call)
    return {
        "indexes": {
            "ignoredArticles": views.IGNORED_ARTICLES,
            "lastModified": int(time.time() * 1000),
            "index": views.indexes(rows, stars),
        }
    }


async def get_artists(call: Call) -> Payload:
    rows, stars = await _artists(call)
    return {
        "artists": {
            "ignoredArticles": views.IGNORED_ARTICLES,
            "index": views.indexes(rows, stars),
        }
    }


def _not_found(what: str, sid: str) -> SubsonicError:
    return SubsonicError(NOT_FOUND, f"{what} not found: {sid[:80]}")


async def get_artist(call: Call) -> Payload:
    sid = call.required("id")
    key = views.artist_key(sid)
    if key is None:
        raise _not_found("Artist", sid)
    async with call.services.engine.connect() as conn:
        found = await ql.artists(conn, [key])
        albums = await qs.artist_albums(conn, key)
        stars, rated = await qst.marks(
            conn, call.principal.account_id, [sid, *(a.id for a in albums)]
        )
    if not found:
        raise _not_found("Artist", sid)
    out = views.artist(found[0], stars, rated)
    out["album"] = [views.album(a, stars, rated) for a in albums]
    return {"artist": out}


async def get_album(call: Call) -> Payload:
    sid = call.required("id")
    async with call.services.engine.connect() as conn:
        found = await qs.albums_by_id(conn, [sid])
        songs = await ql.album_tracks(conn, sid) if found else []
        stars, rated = await qst.marks(
            conn, call.principal.account_id, [sid, *(t.view.id for t in songs)]
        )
    if not found:
        raise _not_found("Album", sid)
    out = views.album(found[0], stars, rated)
    out["song"] = [views.song(t, stars, rated) for t in songs]
    return {"album": out}


async def get_song(call: Call) -> Payload:
    sid = call.required("id")
    async with call.services.engine.connect() as conn:
        found = await ql.get(conn, sid)
        stars, rated = await qst.marks(conn, call.principal.account_id, [sid])
    if found is None:
        raise _not_found("Song", sid)
    return {"song": views.song(found, stars, rated)}


async def album_list(call: Call) -> tuple[list[qs.AlbumAgg], dict[str, int], dict[str, int]]:
    """The albums of `getAlbumList2` and `getAlbumList`, with the account's marks."""
    kind = call.required("type")
    if kind not in qs.LIST_TYPES:
        raise SubsonicError(GENERIC, f"type: one of {', '.join(qs.LIST_TYPES)}")
    size = call.int_("size", 10, 0, 500)
    offset = call.int_("offset", 0, 0, 10_000_000)
    from_year = to_year = 0
    if kind == "byYear":
        from_year = (
            call.int_("fromYear", 0, 0, 9999) if call.one("fromYear") else _missing("fromYear")
        )
        to_year = call.int_("toYear", 0, 0, 9999) if call.one("toYear") else _missing("toYear")
    genre = call.required("genre") if kind == "byGenre" else ""
    account = call.principal.account_id
    async with call.services.engine.connect() as conn:
        if kind == "highest":
            albums = await qs.albums_by_id(
                conn, await qst.rated_albums(conn, account, offset, size)
            )
        else:
            albums = await qs.album_list(
                conn, account, kind, offset, size, from_year, to_year, genre
            )
        stars, rated = await qst.marks(conn, account, [a.id for a in albums])
    return albums, stars, rated


async def get_album_list2(call: Call) -> Payload:
    albums, stars, rated = await album_list(call)
    return {"albumList2": {"album": [views.album(a, stars, rated) for a in albums]}}


def _missing(name: str) -> int:
    raise SubsonicError(MISSING, f"Required parameter is missing: {name}")


async def get_random_songs(call: Call) -> Payload:
    size = call.int_("size", 10, 0, 500)
    async with call.services.engine.connect() as conn:
        songs = await qs.random_songs(
            conn,
            size,
            call.one("genre"),
            call.int_("fromYear", 0, 0, 9999),
            call.int_("toYear", 0, 0, 9999),
        )
        stars = await qs.starred_among(conn, call.principal.account_id, [t.view.id for t in songs])
    return {"randomSongs": {"song": [views.song(t, stars) for t in songs]}}


def _query(raw: str) -> str:
    """A search3 query as apps send it: some quote it, some end it with `*`; `""` (or
    nothing) asks for everything (apps sync the library that way)."""
    return raw.replace('"', " ").replace("*", " ").strip()


Found = tuple[
    list[ql.ArtistRow], list[qs.AlbumAgg], list[ql.StoredTrack], dict[str, int], dict[str, int]
]


async def search(call: Call) -> Found:
    """What `search3` and `search2` find: artists, albums, songs and their marks."""
    q = _query(call.one("query"))
    counts = {k: call.int_(f"{k}Count", 20, 0, 500) for k in ("artist", "album", "song")}
    offsets = {k: call.int_(f"{k}Offset", 0, 0, 10_000_000) for k in ("artist", "album", "song")}
    account = call.principal.account_id
    engine = call.services.engine
    if q:
        # The three rankings are independent: each on a connection of its own, at once
        # (SQLite and PostgreSQL both run them side by side), so a search costs its
        # slowest ranking, not their sum.
        async def find_artists() -> list[ql.ArtistRow]:
            async with engine.connect() as conn:
                return await ql.find_artists(conn, q, counts["artist"], offsets["artist"])

        async def find_albums() -> list[qs.AlbumAgg]:
            async with engine.connect() as conn:
                wanted = await ql.find_album_ids(conn, q, counts["album"], offsets["album"])
                return await qs.albums_by_id(conn, wanted)

        async def find_songs() -> list[ql.StoredTrack]:
            async with engine.connect() as conn:
                return await ql.find(conn, q, counts["song"], offsets["song"])

        artists, albums, songs = await asyncio.gather(find_artists(), find_albums(), find_songs())
    async with engine.connect() as conn:
        if not q:
            artists = (await ql.artists(conn))[offsets["artist"] :][: counts["artist"]]
            albums = await qs.all_albums(conn, offsets["album"], counts["album"])
            songs = await qs.all_songs(conn, offsets["song"], counts["song"])
        ids = [views.artist_id(a.key) for a in artists]
        ids += [a.id for a in albums] + [t.view.id for t in songs]
        stars, rated = await qst.marks(conn, account, ids)
    return artists, albums, songs, stars, rated


async def search3(call: Call) -> Payload:
    artists, albums, songs, stars, rated = await search(call)
    return {
        "searchResult3": {
            "artist": [views.artist(a, stars, rated) for a in artists],
            "album": [views.album(a, stars, rated) for a in albums],
            "song": [views.song(t, stars, rated) for t in songs],
        }
    }


async def _status(call: Call) -> Payload:
    async with call.services.engine.connect() as conn:
        count = await ql.count(conn)
    return {"scanStatus": {"scanning": call.services.library.scanning, "count": count}}


async def get_scan_status(call: Call) -> Payload:
    return await _status(call)


async def start_scan(call: Call) -> Payload:
    """Start a rescan and answer at once (as `POST /v1/library/rescan`, any account may:
    tunehand has no admin accounts); `getScanStatus` says when it is done."""
    s = call.services
    if not s.library.folders:
        raise SubsonicError(GENERIC, "the server has no music folders: start it with --music")
    if not s.library.scanning:
        task = asyncio.create_task(_rescan(s.library))
        s.scans.add(task)
        task.add_done_callback(s.scans.discard)
        await asyncio.sleep(0)  # let it take the library's lock: scanning is true now
    return await _status(call)


async def _rescan(library: Library) -> None:
    try:
        await library.rescan()
    except StoreError as exc:
        log.error("library scan failed: %s", exc)
