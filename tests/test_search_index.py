"""The library's text index (`tunehand.server.db.search_index`) on SQLite and PostgreSQL:
`find` and `find_groups` rank exactly as `tunehand.core.search.score` does (checked
against a brute-force ranking in Python over a library with accents, repeated words,
exact titles and many ties), both backends give the same answers, a rescan keeps the
index current, and the migration indexes a library stored before it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audiogen import make_library
from tests.fixtures_server import Backend, fresh_postgres_database
from tunehand.core import search
from tunehand.server.db import library as ql
from tunehand.server.db import search_index
from tunehand.server.db.engine import default_url, open_engine
from tunehand.server.db.migrate import alembic_config, upgrade
from tunehand.server.db.tables import tracks as tracks_table
from tunehand.server.library.scan import ScannedTrack
from tunehand.server.library.service import Library

pytestmark = pytest.mark.every_backend

VOCAB = ["la", "land", "blue", "bluebird", "Rós", "ros", "rose", "Sigur", "night", "ni", "Äpfel"]
VOCAB += ["apfel", "坂本", "Кино", "AC/DC", "the", "a"]


def track(
    i: int, title: str, artist: str, album: str, album_artist: str = "", mtime_ns: int = 0
) -> ScannedTrack:
    return ScannedTrack(
        id=f"t{i:06d}",
        path=f"/m/{i}.flac",
        title=title,
        artist=artist,
        album=album,
        album_artist=album_artist,
        track_no=1,
        disc_no=1,
        year=2000,
        genre="Rock",
        duration_ms=1000,
        replaygain_track_gain=None,
        replaygain_album_gain=None,
        mime="audio/flac",
        size=1,
        mtime_ns=mtime_ns or i,
    )


def library(n: int = 400, seed: int = 3) -> list[ScannedTrack]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(k))

    out = [
        track(0, "La La Land", "Justin", "La La Land"),
        track(1, "Land", "La La Land", "Other"),
        track(2, "blue", "blue", "blue", "Blue"),
    ]
    for i in range(3, n):
        artist = words(rng.randint(1, 2))
        out.append(
            track(
                i,
                words(rng.randint(1, 4)),
                artist,
                words(rng.randint(1, 3)),
                rng.choice(["", artist, words(1)]),
            )
        )
    return out


QUERIES = ["la", "la la land", "land", "blue", "blu", "ros", "Rós", "rose", "sig ros", "ni"]
QUERIES += ["night ni", "apfel", "äpf", "坂本", "кино", "ac dc", "the a", "zzz", "bluebird la", "b"]


def brute_tracks(tracks: list[ScannedTrack], q: str) -> list[str]:
    words = search.query_words(q)
    scored = []
    for t in tracks:
        s = search.score(words, t.title, t.artist or ql.UNKNOWN_ARTIST, t.album or ql.UNKNOWN_ALBUM)
        if s is not None:
            scored.append((-s, t.title.casefold(), t.id))
    return [i for _, _, i in sorted(scored)]


def brute_groups(tracks: list[ScannedTrack], q: str) -> tuple[list[str], list[str]]:
    words = search.query_words(q)
    artist_rank: dict[str, tuple[int, str]] = {}
    album_rank: dict[str, tuple[int, str]] = {}
    for t in tracks:
        artist = t.artist or ql.UNKNOWN_ARTIST
        aa = t.album_artist or artist
        album = t.album or ql.UNKNOWN_ALBUM
        key = search.normalize(aa) or "unknown"
        if (a := search.score(words, "", aa, "")) is not None:
            artist_rank[key] = (-a, key)
        if (b := search.score(words, "", aa, album)) is not None:
            album_rank[ql.album_id(aa, album)] = (-b, search.normalize(album))
    keys = sorted(artist_rank, key=lambda k: (*artist_rank[k], k))
    ids = sorted(album_rank, key=lambda k: (*album_rank[k], k))
    return keys, ids


@pytest.fixture
def db_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    if backend.name == "sqlite":
        yield default_url(tmp_path)
        return
    url, drop = fresh_postgres_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    e = open_engine(db_url)
    await upgrade(e)
    try:
        yield e
    finally:
        await e.dispose()


async def store(engine: AsyncEngine, tracks: list[ScannedTrack]) -> None:
    async with engine.begin() as conn:
        await ql.store_scan(conn, tracks)


async def found(engine: AsyncEngine, q: str, limit: int = 1000) -> list[str]:
    async with engine.connect() as conn:
        return [t.view.id for t in await ql.find(conn, q, limit)]


async def found_groups(engine: AsyncEngine, q: str) -> tuple[list[str], list[str]]:
    async with engine.connect() as conn:
        artists, albums = await ql.find_groups(conn, q, 1000)
    return [a.key for a in artists], [a.id for a in albums]


async def test_find_ranks_as_score_does(engine: AsyncEngine) -> None:
    tracks = library()
    await store(engine, tracks)
    hits = 0
    for q in QUERIES:
        want = brute_tracks(tracks, q)
        assert await found(engine, q) == want, q
        hits += len(want)
        if len(want) > 7:
            async with engine.connect() as conn:
                page = [t.view.id for t in await ql.find(conn, q, 5, 3)]
            assert page == want[3:8], q
    assert hits > 200  # the queries do find things: the comparison is not of empty lists
    assert await found(engine, "la la land", 2) == ["t000000", "t000001"]
    assert await found(engine, "zzz") == [] and await found(engine, "  !! ") == []


async def test_find_groups_ranks_as_score_does(engine: AsyncEngine) -> None:
    tracks = library()
    await store(engine, tracks)
    nonempty = 0
    for q in QUERIES:
        want_artists, want_albums = brute_groups(tracks, q)
        got_artists, got_albums = await found_groups(engine, q)
        assert got_artists == want_artists, q
        assert got_albums == want_albums, q
        nonempty += bool(want_artists) + bool(want_albums)
    assert nonempty > 10


async def test_a_rescan_keeps_the_index_current(engine: AsyncEngine) -> None:
    tracks = library(60)
    await store(engine, tracks)
    assert "t000002" in await found(engine, "blue")
    changed = [t for t in tracks if t.id != "t000002"]
    changed[0] = track(0, "Zebra Crossing", "Justin", "La La Land", mtime_ns=99)
    await store(engine, changed)
    assert "t000002" not in await found(engine, "blue")
    assert await found(engine, "zebra cross") == ["t000000"]
    assert await found(engine, "la la land") == brute_tracks(changed, "la la land")
    assert (await found_groups(engine, "justin"))[1] == brute_groups(changed, "justin")[1]


async def test_the_migration_indexes_a_library_stored_before_it(db_url: str) -> None:
    """A library stored under migration 0009 is searchable once the index's migration ran."""
    from alembic import command

    e = open_engine(db_url)
    try:
        async with e.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0009"))
        tracks = library(80)

        async with e.begin() as conn:
            await conn.execute(sa.insert(tracks_table), [ql._row_values(t) for t in tracks])
            await ql.derive_albums(conn)
        await upgrade(e)
        for q in ("la", "blue", "ros"):
            assert await found(e, q) == brute_tracks(tracks, q)
    finally:
        await e.dispose()


async def test_a_scan_settles_the_index_on_postgresql(
    backend: Backend, engine: AsyncEngine, tmp_path: Path
) -> None:
    """A scan that changed the library VACUUMs and ANALYZEs what it rewrote (PostgreSQL),
    so searches read the index alone at once, not after autovacuum comes by."""
    if backend.name != "postgres":
        pytest.skip("SQLite needs no VACUUM ANALYZE after a scan")
    logs: list[str] = []
    lib = Library(engine, [make_library(tmp_path / "music", 3)], log=logs.append)
    summary = await lib.rescan()
    assert summary.changed >= 3
    assert not [line for line in logs if "VACUUM" in line]
    async with engine.connect() as conn:
        # Both done on each table (ANALYZE also counts its rows: never analyzed is -1).
        rows = await conn.execute(
            sa.text(
                "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.last_vacuum IS NOT NULL AND s.last_analyze IS NOT NULL"
                " AND c.reltuples > 0"
            )
        )
        settled = {r.relname for r in rows}
    assert settled >= {"search_words", "albums", "tracks"}


async def test_several_words_read_the_index_alone_on_postgresql(
    backend: Backend, engine: AsyncEngine
) -> None:
    """Migration 0015: the rank index carries `item_words`, so the candidates of a query of
    several words come from the index alone (no heap fetch per row, where the heap's
    order scattered them over thousands of pages); the plan is forced to an index scan
    so that a small table's statistics cannot pick another."""
    if backend.name != "postgres":
        pytest.skip("SQLite's WITHOUT ROWID table is the key's b-tree already")
    await store(engine, library(400))
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text("VACUUM (ANALYZE) search_words"))
        stmt, others = search_index.candidates(search_index.TRACK, ["blue", "rose"], "postgresql")
        sql = stmt.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            await auto.execute(sa.text(f"SET {setting} = off"))
        plan = "\n".join(
            r[0] for r in await auto.execute(sa.text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
        )
    assert others == ["rose"]  # the range read is the longest word's (the first of equals)
    assert "Index Only Scan using ix_search_words_rank" in plan, plan
    assert "Heap Fetches: 0" in plan, plan
