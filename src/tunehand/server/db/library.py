"""Library queries: storing a scan, looking tracks up, browsing and searching.

The library is the server's, shared by its accounts; what an account does with it
(playlists, likes, history) lives in `userdata`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.core import search
from tunehand.core.protocol import TrackView
from tunehand.server.db import search_index
from tunehand.server.db.tables import albums as albums_table
from tunehand.server.db.tables import tracks
from tunehand.server.library.scan import ScannedTrack

UNKNOWN_ARTIST = "Unknown artist"
UNKNOWN_ALBUM = "Unknown album"


@dataclass(frozen=True, slots=True)
class StoredTrack:
    view: TrackView
    path: str
    mime: str
    size: int
    mtime_ns: int
    album_id: str
    art_id: str | None = None
    art_file: str | None = None


@dataclass(frozen=True, slots=True)
class ArtistRow:
    key: str
    name: str
    albums: int
    tracks: int


@dataclass(frozen=True, slots=True)
class AlbumRow:
    id: str
    title: str
    artist: str
    year: int | None
    tracks: int


def album_id(album_artist: str, album: str) -> str:
    key = f"{search.normalize(album_artist)}\x00{search.normalize(album)}"
    return "a" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _row_values(t: ScannedTrack) -> dict[str, object]:
    artist = t.artist or UNKNOWN_ARTIST
    album_artist = t.album_artist or artist
    album = t.album or UNKNOWN_ALBUM
    return {
        "id": t.id,
        "path": t.path,
        "title": t.title,
        "artist": artist,
        "album": album,
        "album_artist": album_artist,
        "album_id": album_id(album_artist, album),
        "track_no": t.track_no,
        "disc_no": t.disc_no,
        "year": t.year,
        "genre": t.genre,
        "duration_ms": t.duration_ms,
        "replaygain_track_gain": t.replaygain_track_gain,
        "replaygain_album_gain": t.replaygain_album_gain,
        "mime": t.mime,
        "size": t.size,
        "mtime_ns": t.mtime_ns,
        "search_key": search.search_key(t.title, artist, album, album_artist),
        "artist_key": search.normalize(album_artist) or "unknown",
        "art_id": t.art_id,
        "art_file": t.art_file,
    }


async def store_scan(
    conn: AsyncConnection,
    scanned: Sequence[ScannedTrack],
    keep_under: Sequence[str] = (),
    scope: Callable[[str], bool] | None = None,
) -> tuple[int, int]:
    """Make the tracks table match a scan. Returns (added or changed, removed).

    Tracks under `keep_under` (folders that could not be read this time, such as an
    unmounted drive) are kept as they are. `scope(path)`, when given, says which stored
    tracks the scan covered (a scan of some folders only): the others are kept.
    """
    existing = {
        r.id: (r.mtime_ns, r.size, r.path, r.art_id, r.art_file)
        for r in await conn.execute(
            sa.select(
                tracks.c.id,
                tracks.c.mtime_ns,
                tracks.c.size,
                tracks.c.path,
                tracks.c.art_id,
                tracks.c.art_file,
            )
        )
    }
    seen: set[str] = set()
    changed: list[dict[str, object]] = []
    added: list[dict[str, object]] = []
    for t in scanned:
        if t.id in seen:
            continue
        seen.add(t.id)
        old = existing.get(t.id)
        if old is None:
            added.append(_row_values(t))
        elif old != (t.mtime_ns, t.size, t.path, t.art_id, t.art_file):  # a new cover.jpg too
            changed.append(_row_values(t))
    gone = [
        tid
        for tid, (_, _, path, _, _) in existing.items()
        if tid not in seen
        and not any(path.startswith(k) for k in keep_under)
        and (scope is None or scope(path))
    ]
    for i in range(0, len(gone), 500):
        await conn.execute(sa.delete(tracks).where(tracks.c.id.in_(gone[i : i + 500])))
    for row in changed:
        await conn.execute(sa.update(tracks).where(tracks.c.id == row["id"]).values(**row))
    for i in range(0, len(added), 1000):
        await conn.execute(sa.insert(tracks), added[i : i + 1000])
    await search_index.unindex(conn, [*gone, *(str(r["id"]) for r in changed)])
    await search_index.index_tracks(
        conn,
        (
            (str(r["id"]), str(r["title"]), str(r["artist"]), str(r["album"]))
            for r in (*changed, *added)
        ),
    )
    await refresh_albums(conn)
    return len(added) + len(changed), len(gone)


async def refresh_albums(conn: AsyncConnection) -> None:
    """Derive the `albums` table, and the index's artists and albums, from the tracks
    again (once per scan)."""
    await derive_albums(conn)
    await search_index.reindex_groups(conn)


async def derive_albums(conn: AsyncConnection) -> None:
    await conn.execute(sa.delete(albums_table))
    totals = sa.select(
        tracks.c.album_id,
        sa.func.min(tracks.c.album),
        sa.func.min(tracks.c.album_artist),
        sa.func.min(tracks.c.artist_key),
        sa.func.max(tracks.c.year),
        sa.func.min(tracks.c.genre),
        sa.func.count(),
        sa.func.sum(tracks.c.duration_ms),
        sa.func.max(tracks.c.art_id),
        sa.func.max(tracks.c.mtime_ns),
    ).group_by(tracks.c.album_id)
    columns = ["id", "name", "artist", "artist_key", "year", "genre", "songs", "duration_ms"]
    await conn.execute(
        sa.insert(albums_table).from_select([*columns, "art_id", "mtime_ns"], totals)
    )


def _stored(r: sa.Row[tuple[object, ...]] | sa.RowMapping) -> StoredTrack:
    m = r._mapping if isinstance(r, sa.Row) else r
    view = TrackView(
        id=m["id"],
        title=m["title"],
        artist=m["artist"],
        album=m["album"],
        album_artist=m["album_artist"],
        duration_ms=m["duration_ms"],
        track_no=m["track_no"],
        disc_no=m["disc_no"],
        year=m["year"],
        genre=m["genre"],
        album_id=m["album_id"],
    )
    return StoredTrack(
        view,
        m["path"],
        m["mime"],
        m["size"],
        m["mtime_ns"],
        m["album_id"],
        m["art_id"],
        m["art_file"],
    )


async def get(conn: AsyncConnection, track_id: str) -> StoredTrack | None:
    row = (await conn.execute(sa.select(tracks).where(tracks.c.id == track_id))).first()
    return _stored(row) if row else None


_GET_MANY = sa.select(tracks).where(tracks.c.id.in_(sa.bindparam("ids", expanding=True)))
"""Built once: every change of a playing session looks up its current and next track."""


async def get_many(conn: AsyncConnection, track_ids: Sequence[str]) -> dict[str, StoredTrack]:
    out: dict[str, StoredTrack] = {}
    ids = list(dict.fromkeys(track_ids))
    for i in range(0, len(ids), 500):
        rows = await conn.execute(_GET_MANY, {"ids": ids[i : i + 500]})
        for r in rows:
            s = _stored(r)
            out[s.view.id] = s
    return out


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(tracks))).scalar_one())


async def art_sources(
    conn: AsyncConnection, art: str, limit: int = 4
) -> list[tuple[str, str | None]]:
    """Where picture `art` can be read: (track path, picture file or None for embedded)."""
    rows = await conn.execute(
        sa.select(tracks.c.path, tracks.c.art_file)
        .where(tracks.c.art_id == art)
        .order_by(tracks.c.art_file.is_(None), tracks.c.id)
        .limit(limit)
    )
    return [(r.path, r.art_file) for r in rows]


async def find(
    conn: AsyncConnection, query: str, limit: int = 50, offset: int = 0
) -> list[StoredTrack]:
    """The tracks whose title, artist and album hold every query word as a word prefix,
    best first by `search.score` (ties by casefolded title, then id), through the text
    index (`search_index`)."""
    ids = await search_index.ranked(conn, search_index.TRACK, query, limit, offset)
    found = await get_many(conn, ids)
    return [found[i] for i in ids if i in found]


async def find_artists(
    conn: AsyncConnection, query: str, limit: int = 20, offset: int = 0
) -> list[ArtistRow]:
    keys = await search_index.ranked(conn, search_index.ARTIST, query, limit, offset)
    found = {a.key: a for a in await artists(conn, keys)} if keys else {}
    return [found[k] for k in keys if k in found]


async def find_album_ids(
    conn: AsyncConnection, query: str, limit: int = 20, offset: int = 0
) -> list[str]:
    return await search_index.ranked(conn, search_index.ALBUM, query, limit, offset)


async def find_groups(
    conn: AsyncConnection, query: str, limit: int = 20, offset: int = 0
) -> tuple[list[ArtistRow], list[AlbumRow]]:
    """The artists whose name, and the albums whose title (with its artist), match the
    query by the same prefix rule as `find`, best first, at most `limit` of each."""
    keys = await search_index.ranked(conn, search_index.ARTIST, query, limit, offset)
    ids = await search_index.ranked(conn, search_index.ALBUM, query, limit, offset)
    found_artists = {a.key: a for a in await artists(conn, keys)} if keys else {}
    found_albums = {a.id: a for a in await albums(conn, album_ids=ids)} if ids else {}
    return (
        [found_artists[k] for k in keys if k in found_artists],
        [found_albums[i] for i in ids if i in found_albums],
    )


async def artists(conn: AsyncConnection, keys: Sequence[str] | None = None) -> list[ArtistRow]:
    """Every artist (album artist), or those of `keys`."""
    stmt = (
        sa.select(
            tracks.c.artist_key,
            sa.func.min(tracks.c.album_artist).label("name"),
            sa.func.count(sa.distinct(tracks.c.album_id)).label("albums"),
            sa.func.count().label("tracks"),
        )
        .group_by(tracks.c.artist_key)
        .order_by(tracks.c.artist_key)
    )
    if keys is not None:
        stmt = stmt.where(tracks.c.artist_key.in_(list(keys)))
    return [ArtistRow(r.artist_key, r.name, r.albums, r.tracks) for r in await conn.execute(stmt)]


async def albums(
    conn: AsyncConnection, artist_key: str | None = None, album_ids: Sequence[str] | None = None
) -> list[AlbumRow]:
    """Every album, an artist's, or those of `album_ids`."""
    stmt = sa.select(
        tracks.c.album_id,
        sa.func.min(tracks.c.album).label("title"),
        sa.func.min(tracks.c.album_artist).label("artist"),
        sa.func.max(tracks.c.year).label("year"),
        sa.func.count().label("tracks"),
    ).group_by(tracks.c.album_id)
    if artist_key is not None:
        stmt = stmt.where(tracks.c.artist_key == artist_key)
    if album_ids is not None:
        stmt = stmt.where(tracks.c.album_id.in_(list(album_ids)))
    rows = await conn.execute(
        stmt.order_by(sa.func.max(tracks.c.year), sa.func.min(tracks.c.album))
    )
    return [AlbumRow(r.album_id, r.title, r.artist, r.year, r.tracks) for r in rows]


async def album_tracks(conn: AsyncConnection, album: str) -> list[StoredTrack]:
    rows = await conn.execute(
        sa.select(tracks)
        .where(tracks.c.album_id == album)
        .order_by(tracks.c.disc_no, tracks.c.track_no, tracks.c.title)
    )
    return [_stored(r) for r in rows]
