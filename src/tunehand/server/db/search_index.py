"""The library's text index: what makes search fast on a large library, on SQLite and
PostgreSQL alike, with the ranking of `tunehand.core.search`.

Each searchable item keeps its normalized words with their ranking points
(`search.index_words`) in `search_words`, a table whose primary key starts with
`(kind, word)`. A query word `w` is a prefix range of that key (`word >= w AND
word < prefix_end(w)`, compared by code point on both backends), so the database reads
only the rows of words that start with `w` and sums the best points per item and
query word; the sum equals `search.score`, and both backends order equal scores by the
same code-point sort key, then by id. Items are tracks (`t`, matched on title, artist
and album), artists (`r`, on the album artist) and albums (`l`, on album and album
artist); the capital kinds hold whole fields for the exact-match bonus.

Tracks are indexed as a scan stores them (`index_tracks`, `unindex`); artists and albums
are rebuilt from the `albums` table after every scan (`reindex_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.core import search
from tunehand.server.db.tables import albums, search_sort, search_words

TRACK, ARTIST, ALBUM = "t", "r", "l"
EXACT = {TRACK: "T", ARTIST: "R", ALBUM: "L"}
BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Rows:
    words: list[dict[str, object]]
    sorts: list[dict[str, object]]

    def add(self, kind: str, owner: str, sort_key: str, fields: tuple[str, ...]) -> None:
        words, exact = search.index_words(*fields)
        self.words.extend(
            {"kind": kind, "word": w, "owner": owner, "points": p} for w, p in words.items()
        )
        self.words.extend(
            {"kind": EXACT[kind], "word": w, "owner": owner, "points": p} for w, p in exact.items()
        )
        self.sorts.append({"kind": kind, "owner": owner, "sort_key": sort_key})


def track_rows(tracks: Iterable[tuple[str, str, str, str]]) -> Rows:
    """Index rows of tracks given as (id, title, artist, album)."""
    out = Rows([], [])
    for tid, title, artist, album in tracks:
        out.add(TRACK, tid, title.casefold(), (title, artist, album, ""))
    return out


def group_rows(album_rows: Iterable[tuple[str, str, str, str]]) -> Rows:
    """Index rows of albums and their artists, given as (album id, name, album artist,
    artist key)."""
    out = Rows([], [])
    artists: dict[str, str] = {}
    for aid, name, artist, key in album_rows:
        out.add(ALBUM, aid, search.normalize(name), ("", artist, name, ""))
        artists.setdefault(key, artist)
    for key, artist in artists.items():
        out.add(ARTIST, key, key, ("", artist, "", ""))
    return out


async def _insert(conn: AsyncConnection, rows: Rows) -> None:
    for i in range(0, len(rows.words), BATCH):
        await conn.execute(sa.insert(search_words), rows.words[i : i + BATCH])
    for i in range(0, len(rows.sorts), BATCH):
        await conn.execute(sa.insert(search_sort), rows.sorts[i : i + BATCH])


async def unindex(conn: AsyncConnection, track_ids: Sequence[str]) -> None:
    kinds = (TRACK, EXACT[TRACK])
    for i in range(0, len(track_ids), 500):
        ids = list(track_ids[i : i + 500])
        await conn.execute(
            sa.delete(search_words).where(
                search_words.c.owner.in_(ids), search_words.c.kind.in_(kinds)
            )
        )
        await conn.execute(
            sa.delete(search_sort).where(search_sort.c.owner.in_(ids), search_sort.c.kind == TRACK)
        )


async def index_tracks(conn: AsyncConnection, tracks: Iterable[tuple[str, str, str, str]]) -> None:
    await _insert(conn, track_rows(tracks))


async def reindex_groups(conn: AsyncConnection) -> None:
    """Rebuild the artists' and albums' rows from the `albums` table."""
    kinds = (ARTIST, ALBUM, EXACT[ARTIST], EXACT[ALBUM])
    await conn.execute(sa.delete(search_words).where(search_words.c.kind.in_(kinds)))
    await conn.execute(sa.delete(search_sort).where(search_sort.c.kind.in_((ARTIST, ALBUM))))
    rows = await conn.execute(
        sa.select(albums.c.id, albums.c.name, albums.c.artist, albums.c.artist_key)
    )
    await _insert(conn, group_rows((r.id, r.name, r.artist, r.artist_key) for r in rows))


def ranked_query(
    kind: str, words: Sequence[str], limit: int, offset: int = 0
) -> sa.Select[tuple[str, int]]:
    """The owners of `kind` matching every query word, best first: one scan of the
    words' prefix ranges (and of the whole query's exact row), grouped by owner."""
    w = search_words.c
    branches = []
    per_word = []
    for word in words:
        in_range = w.word >= word
        end = search.prefix_end(word)
        if end is not None:
            in_range = sa.and_(in_range, w.word < end)
        hit = sa.and_(w.kind == kind, in_range)
        branches.append(hit)
        bonus = sa.case((w.word == word, search.WHOLE_WORD_BONUS), else_=0)
        per_word.append(sa.func.max(sa.case((hit, w.points + bonus))))
    exact_hit = sa.and_(w.kind == EXACT[kind], w.word == " ".join(words))
    branches.append(exact_hit)
    exact = sa.func.coalesce(sa.func.max(sa.case((exact_hit, w.points))), 0)
    total = sa.func.coalesce(sum(per_word[1:], per_word[0]), 0) + exact
    grouped = (
        sa.select(w.owner, total.label("score"))
        .where(sa.or_(*branches))
        .group_by(w.owner)
        .having(sa.and_(*(p.is_not(None) for p in per_word)))
        .subquery()
    )
    s = search_sort.c
    return (
        sa.select(grouped.c.owner, grouped.c.score)
        .join_from(grouped, search_sort, sa.and_(s.kind == kind, s.owner == grouped.c.owner))
        .order_by(grouped.c.score.desc(), s.sort_key, grouped.c.owner)
        .offset(offset)
        .limit(limit)
    )


async def ranked(
    conn: AsyncConnection, kind: str, query: str, limit: int, offset: int = 0
) -> list[str]:
    """The ids (keys for artists) of the best `limit` items of `kind` for `query`."""
    words = search.query_words(query)
    if not words or limit <= 0:
        return []
    rows = await conn.execute(ranked_query(kind, words, limit, offset))
    return [r.owner for r in rows]
