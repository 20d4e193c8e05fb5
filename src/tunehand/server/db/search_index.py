"""The library's text index: what makes search fast on a large library, on SQLite and
PostgreSQL alike, with the ranking of `tunehand.core.search`.

Each searchable item keeps its normalized words with their ranking points
(`search.index_words`) in `search_words`, whose primary key starts with `(kind, word)`;
every row also carries the item's sort key and all its words with their points
(`item_words`, " blue:300 night:299 "). Items are tracks (`t`, matched on title, artist and
album), artists (`r`, on the album artist) and albums (`l`, on album and album artist);
the capital kinds hold whole fields with their exact-match bonus. Text is compared by
code point on both backends, so a query word `w` is the range `word >= w AND
word < prefix_end(w)` of that key, and ties sort the same everywhere.

A query's results are, in order (the exact bonus outweighs any sum of word points):

1. the items with a field equal to the whole query (`word = query` in the capital
   kind: an index lookup), ranked by their full score;
2. the others by score: for one word, the word's range read in score order with the
   item's sort key beside each word (the database's top-k sort, no grouping); for
   several, the rows of the longest word's range whose `item_words` also hold the
   other words as prefixes (`LIKE '% w%'`), ranked here from those stored points.

Every score is `search.score`'s (tests compare with it), and equal scores order by the
sort key (a track's casefolded title, an album's normalized name, an artist's key), then
by id. Tracks are indexed as a scan stores them (`index_tracks`, `unindex`); artists and
albums are rebuilt from the `albums` table after every scan (`reindex_groups`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tunehand.core import search
from tunehand.server.db.tables import albums, search_words, tracks

TRACK, ARTIST, ALBUM = "t", "r", "l"
EXACT = {TRACK: "T", ARTIST: "R", ALBUM: "L"}
BATCH = 2_000


@dataclass(frozen=True, slots=True)
class Rows:
    words: list[dict[str, object]]

    def add(self, kind: str, owner: str, sort_key: str, fields: tuple[str, ...]) -> None:
        words, exact = search.index_words(*fields)
        item_words = " " + " ".join(f"{w}:{p}" for w, p in words.items()) + " "
        for kind_, found in ((kind, words), (EXACT[kind], exact)):
            self.words.extend(
                {
                    "kind": kind_,
                    "word": word,
                    "owner": owner,
                    "points": points,
                    "sort_key": sort_key,
                    "item_words": item_words,
                }
                for word, points in found.items()
            )


def track_rows(tracks: Iterable[tuple[str, str, str, str]]) -> Rows:
    """Index rows of tracks given as (id, title, artist, album)."""
    out = Rows([])
    for tid, title, artist, album in tracks:
        out.add(TRACK, tid, title.casefold(), (title, artist, album, ""))
    return out


def group_rows(album_rows: Iterable[tuple[str, str, str, str]]) -> Rows:
    """Index rows of albums and their artists, given as (album id, name, album artist,
    artist key)."""
    out = Rows([])
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


async def unindex(conn: AsyncConnection, track_ids: Sequence[str]) -> None:
    kinds = (TRACK, EXACT[TRACK])
    for i in range(0, len(track_ids), 500):
        ids = list(track_ids[i : i + 500])
        w = search_words.c
        await conn.execute(sa.delete(search_words).where(w.owner.in_(ids), w.kind.in_(kinds)))


async def index_tracks(conn: AsyncConnection, tracks: Iterable[tuple[str, str, str, str]]) -> None:
    await _insert(conn, track_rows(tracks))


async def reindex_groups(conn: AsyncConnection) -> None:
    """Rebuild the artists' and albums' rows from the `albums` table."""
    kinds = (ARTIST, ALBUM, EXACT[ARTIST], EXACT[ALBUM])
    await conn.execute(sa.delete(search_words).where(search_words.c.kind.in_(kinds)))
    rows = await conn.execute(
        sa.select(albums.c.id, albums.c.name, albums.c.artist, albums.c.artist_key)
    )
    await _insert(conn, group_rows((r.id, r.name, r.artist, r.artist_key) for r in rows))


SETTLED = (search_words, albums, tracks)


async def settle(engine: AsyncEngine) -> None:
    """After a scan that changed the library, on PostgreSQL: `VACUUM (ANALYZE)` the tables a
    scan rewrites. Until then (autovacuum comes later) a one-word search reads every
    matching row from the table instead of the index alone (fresh rows are not yet marked
    visible), and the planner has no statistics: on 50,000 tracks a word's ranking took
    25 ms instead of 5. SQLite needs nothing. VACUUM cannot run in a transaction: this
    takes a connection of its own in autocommit."""
    if engine.dialect.name != "postgresql":
        return
    names = ", ".join(t.name for t in SETTLED)
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text(f"VACUUM (ANALYZE) {names}"))


def _in_range(word: str) -> sa.ColumnElement[bool]:
    w = search_words.c
    end = search.prefix_end(word)
    return w.word >= word if end is None else sa.and_(w.word >= word, w.word < end)


def _word_points(word: str, item_words: str) -> int | None:
    """The best points of a query word among an item's `item_words` (" w:p w:p "): the
    words it starts, plus the bonus for a whole word; None when it starts none."""
    best: int | None = None
    at = item_words.find(" " + word)
    while at >= 0:
        colon = item_words.index(":", at)
        end = item_words.index(" ", colon)
        points = int(item_words[colon + 1 : end])
        if colon == at + 1 + len(word):
            points += search.WHOLE_WORD_BONUS
        if best is None or points > best:
            best = points
        at = item_words.find(" " + word, end)
    return best


def _score(words: Sequence[str], item_words: str) -> int | None:
    """The word points of `search.score` for an item, from its `item_words`."""
    total = 0
    for w in words:
        best = _word_points(w, item_words)
        if best is None:
            return None
        total += best
    return total


Ranked = list[tuple[int, str, str]]  # (-score, sort key, owner): sorted is best first


async def _exact(conn: AsyncConnection, kind: str, words: Sequence[str]) -> Ranked:
    """The items with a field equal to the whole query, best first."""
    w = search_words.c
    rows = await conn.execute(
        sa.select(w.owner, w.points, w.sort_key, w.item_words).where(
            w.kind == EXACT[kind], w.word == " ".join(words)
        )
    )
    out = [(-(r.points + (_score(words, r.item_words) or 0)), r.sort_key, r.owner) for r in rows]
    return sorted(out)


async def _one_word(conn: AsyncConnection, kind: str, word: str, n: int) -> Ranked:
    """The best `n` items for one query word: its exact matches (first), then the word's
    range in score order; one query for both."""
    w = search_words.c
    score = (w.points + sa.case((w.word == word, search.WHOLE_WORD_BONUS), else_=0)).label("s")
    exact = sa.select(
        w.owner, w.sort_key, w.item_words, w.points.label("s"), sa.literal(1).label("x")
    ).where(w.kind == EXACT[kind], w.word == word)
    fetch = 2 * n + 16
    while True:
        in_range = (
            sa.select(w.owner, w.sort_key, sa.literal("").label("item_words"), score)
            .add_columns(sa.literal(0).label("x"))
            .where(w.kind == kind, _in_range(word))
            .order_by(score.desc(), w.sort_key, w.owner)
            .limit(fetch)
            .subquery()
        )
        rows = list(await conn.execute(sa.union_all(exact, sa.select(*in_range.c))))
        firsts = sorted(
            (-(r.s + (_score([word], r.item_words) or 0)), r.sort_key, r.owner) for r in rows if r.x
        )
        skip = {owner for _, _, owner in firsts}
        ranged = sorted((-int(r.s), r.sort_key, r.owner) for r in rows if not r.x)
        out: Ranked = []
        for row in ranged:  # an item's first row is its best (several words may match)
            if row[2] not in skip:
                skip.add(row[2])
                out.append(row)
        if len(firsts) + len(out) >= n or len(ranged) < fetch:
            return (firsts + out)[:n]
        fetch *= 4


def _points_of(word: str) -> Callable[[str], int | None]:
    """`_word_points` for one query word, as a function of `item_words` (the pattern made
    once for all of a query's rows)."""
    pattern = re.compile(" " + re.escape(word) + r"(\S*?):(\d+)")
    bonus = search.WHOLE_WORD_BONUS

    def points(item_words: str) -> int | None:
        best: int | None = None
        for rest, found in pattern.findall(item_words):
            value = int(found) if rest else int(found) + bonus
            if best is None or value > best:
                best = value
        return best

    return points


def candidates(kind: str, words: Sequence[str], dialect: str) -> tuple[sa.Select[Any], list[str]]:
    """The query for the items matching several words (owner, score of the longest word,
    sort key, item_words: the rows of that word's range whose `item_words` hold the
    others as prefixes), and those other words."""
    w = search_words.c
    driver = max(words, key=len)
    others = list(words)
    others.remove(driver)
    score = w.points + sa.case((w.word == driver, search.WHOLE_WORD_BONUS), else_=0)
    stmt = sa.select(w.owner, score, w.sort_key, w.item_words).where(
        w.kind == kind, _in_range(driver)
    )
    for word in set(others):
        # Normalized words hold no % or _. SQLite's instr is a plain byte search, where
        # its LIKE folds case on every row (about a third slower on 9,000 rows).
        stmt = stmt.where(
            sa.func.instr(w.item_words, " " + word) > 0
            if dialect == "sqlite"
            else w.item_words.like(f"% {word}%")
        )
    return stmt, others


async def _many_words(
    conn: AsyncConnection, kind: str, words: Sequence[str], skip: set[str]
) -> Ranked:
    """Every item (not in `skip`) matching all of several query words, best first."""
    stmt, others = candidates(kind, words, conn.dialect.name)
    scorers = [_points_of(word) for word in others]
    best: dict[str, tuple[int, str]] = {}
    for owner, total, sort_key, item_words in (await conn.execute(stmt)).all():
        if owner in skip:
            continue
        for scorer in scorers:
            points = scorer(item_words)
            if points is None:
                break
            total += points
        else:
            known = best.get(owner)
            if known is None or total > known[0]:
                best[owner] = (total, sort_key)
    return sorted((-total, key, owner) for owner, (total, key) in best.items())


async def ranked(
    conn: AsyncConnection, kind: str, query: str, limit: int, offset: int = 0
) -> list[str]:
    """The ids (keys for artists) of the best `limit` items of `kind` for `query`, from
    the `offset`th on."""
    words = search.query_words(query)
    if not words or limit <= 0:
        return []
    if len(words) == 1:
        return [o for _, _, o in await _one_word(conn, kind, words[0], offset + limit)][offset:]
    exact = await _exact(conn, kind, words)
    skip = {owner for _, _, owner in exact}
    rest_needed = max(0, offset + limit - len(exact))
    rest: Ranked = []
    if rest_needed:
        rest = await _many_words(conn, kind, words, skip)
    return [owner for _, _, owner in (exact + rest)[offset : offset + limit]]
