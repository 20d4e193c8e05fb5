"""Library and account queries shaped for the Subsonic API: albums with their totals,
album lists of every kind, random songs, stars by id and playlists by id.

Albums come from the `albums` table (their totals, derived at each scan). Album and
artist stars live in the `likes` table beside liked tracks, under the ids the
Subsonic API gives them (an album's `a…`, an artist's `ar…`), so one quota covers them.
Every query on an account's things filters by its `account_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.library import StoredTrack, _stored
from tunehand.server.db.tables import albums, history, likes, playlists, tracks
from tunehand.server.db.userdata import Playlist, _playlist


@dataclass(frozen=True, slots=True)
class AlbumAgg:
    id: str
    name: str
    artist: str
    artist_key: str
    year: int | None
    genre: str
    songs: int
    duration_ms: int
    art_id: str | None
    mtime_ns: int


_ALBUMS = sa.select(albums)


def _agg(r: sa.Row[tuple[object, ...]]) -> AlbumAgg:
    m = r._mapping
    return AlbumAgg(
        m["id"],
        m["name"],
        m["artist"],
        m["artist_key"],
        m["year"],
        m["genre"] or "",
        int(m["songs"]),
        int(m["duration_ms"] or 0),
        m["art_id"],
        int(m["mtime_ns"] or 0),
    )


async def albums_by_id(conn: AsyncConnection, ids: Sequence[str]) -> list[AlbumAgg]:
    """The albums of `ids`, in that order (unknown ones left out)."""
    if not ids:
        return []
    rows = await conn.execute(_ALBUMS.where(albums.c.id.in_(list(ids)[:1000])))
    found = {a.id: a for a in map(_agg, rows)}
    return [found[i] for i in ids if i in found]


async def artist_albums(conn: AsyncConnection, artist_key: str) -> list[AlbumAgg]:
    rows = await conn.execute(
        _ALBUMS.where(albums.c.artist_key == artist_key).order_by(albums.c.year, albums.c.name)
    )
    return [_agg(r) for r in rows]


async def all_albums(conn: AsyncConnection, offset: int, size: int) -> list[AlbumAgg]:
    rows = await conn.execute(
        _ALBUMS.order_by(albums.c.name, albums.c.id).offset(offset).limit(size)
    )
    return [_agg(r) for r in rows]


LIST_TYPES = (
    "random",
    "newest",
    "highest",
    "frequent",
    "recent",
    "alphabeticalByName",
    "alphabeticalByArtist",
    "starred",
    "byYear",
    "byGenre",
)


async def album_list(
    conn: AsyncConnection,
    account_id: int,
    kind: str,
    offset: int,
    size: int,
    from_year: int = 0,
    to_year: int = 0,
    genre: str = "",
) -> list[AlbumAgg]:
    """`getAlbumList2` of type `kind` (one of `LIST_TYPES`). `highest` (the account's
    ratings) is `subsonic_state.rated_albums`; here it is `frequent`."""
    if kind in ("frequent", "highest", "recent", "starred"):
        return await albums_by_id(
            conn, await _ranked_album_ids(conn, account_id, kind, offset, size)
        )
    stmt = _ALBUMS
    if kind == "newest":
        stmt = stmt.order_by(albums.c.mtime_ns.desc(), albums.c.id)
    elif kind == "alphabeticalByName":
        stmt = stmt.order_by(albums.c.name, albums.c.id)
    elif kind == "alphabeticalByArtist":
        stmt = stmt.order_by(albums.c.artist, albums.c.name, albums.c.id)
    elif kind == "byYear":
        lo, hi = sorted((from_year, to_year))
        stmt = stmt.where(albums.c.year.between(lo, hi))
        year = albums.c.year.desc() if from_year > to_year else albums.c.year
        stmt = stmt.order_by(year, albums.c.id)
    elif kind == "byGenre":
        stmt = stmt.where(albums.c.genre == genre).order_by(albums.c.name, albums.c.id)
    else:  # random
        stmt = stmt.order_by(sa.func.random())
    rows = await conn.execute(stmt.offset(offset).limit(size))
    return [_agg(r) for r in rows]


async def _ranked_album_ids(
    conn: AsyncConnection, account_id: int, kind: str, offset: int, size: int
) -> list[str]:
    if kind == "starred":
        stmt = (
            sa.select(likes.c.track_id.label("album_id"))
            .where(likes.c.account_id == account_id, likes.c.track_id.like("a%"))
            .where(~likes.c.track_id.like("ar%"))
            .order_by(likes.c.created_ms.desc(), likes.c.track_id)
        )
    else:
        rank = sa.func.max(history.c.played_ms) if kind == "recent" else sa.func.count(history.c.id)
        stmt = (
            sa.select(tracks.c.album_id)
            .select_from(history.join(tracks, tracks.c.id == history.c.track_id))
            .where(history.c.account_id == account_id)
            .group_by(tracks.c.album_id)
            .order_by(rank.desc(), tracks.c.album_id)
        )
    rows = await conn.execute(stmt.offset(offset).limit(size))
    return [r.album_id for r in rows]


async def random_songs(
    conn: AsyncConnection, size: int, genre: str = "", from_year: int = 0, to_year: int = 0
) -> list[StoredTrack]:
    stmt = sa.select(tracks)
    if genre:
        stmt = stmt.where(tracks.c.genre == genre)
    if from_year:
        stmt = stmt.where(tracks.c.year >= from_year)
    if to_year:
        stmt = stmt.where(tracks.c.year <= to_year)
    rows = await conn.execute(stmt.order_by(sa.func.random()).limit(size))
    return [_stored(r) for r in rows]


async def all_songs(conn: AsyncConnection, offset: int, size: int) -> list[StoredTrack]:
    rows = await conn.execute(sa.select(tracks).order_by(tracks.c.id).offset(offset).limit(size))
    return [_stored(r) for r in rows]


async def starred_among(
    conn: AsyncConnection, account_id: int, ids: Sequence[str]
) -> dict[str, int]:
    """Which of `ids` the account starred (liked), and when (ms)."""
    wanted = list(dict.fromkeys(ids))
    out: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        rows = await conn.execute(
            sa.select(likes.c.track_id, likes.c.created_ms).where(
                likes.c.account_id == account_id, likes.c.track_id.in_(wanted[i : i + 500])
            )
        )
        out.update({r.track_id: r.created_ms for r in rows})
    return out


async def starred(conn: AsyncConnection, account_id: int) -> list[tuple[str, int]]:
    rows = await conn.execute(
        sa.select(likes.c.track_id, likes.c.created_ms)
        .where(likes.c.account_id == account_id)
        .order_by(likes.c.created_ms.desc())
    )
    return [(r.track_id, r.created_ms) for r in rows]


async def playlist_by_id(conn: AsyncConnection, account_id: int, pid: int) -> Playlist | None:
    row = (
        await conn.execute(
            sa.select(playlists).where(playlists.c.account_id == account_id, playlists.c.id == pid)
        )
    ).first()
    return _playlist(row) if row else None


async def set_playlist_tracks(
    conn: AsyncConnection, account_id: int, pid: int, track_ids: Sequence[str], now_ms: int
) -> None:
    import json

    await conn.execute(
        sa.update(playlists)
        .where(playlists.c.account_id == account_id, playlists.c.id == pid)
        .values(track_ids=json.dumps(list(track_ids)), updated_ms=now_ms)
    )
