"""Instances started together on one fresh PostgreSQL database migrate it once, one
after another (the advisory lock of `tunehand.server.db.migrate`), and all come up.

The test holds the migration lock itself while the instances start, and releases it
only once every one of them waits on it: so they all reach the migration at the same
moment whatever the machine's speed, and an instance that did not take the lock would
show up as not waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from tests.audiogen import make_library
from tests.fixtures_server import Backend, ServerProc, ready, spawn
from tests.test_api import assert_log_clean
from tunehand.server.db.migrate import ADVISORY_LOCK_ID, alembic_config

INSTANCES = 3
WAIT_S = 60.0


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def waiting_on_the_lock(conn: asyncpg.Connection, database: str) -> int:
    n = await conn.fetchval(
        """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
           WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = $1
           AND d.datname = $2""",
        ADVISORY_LOCK_ID,
        database,
    )
    return int(n)


@pytest.fixture
def instances() -> Iterator[list[ServerProc]]:
    started: list[ServerProc] = []
    yield started
    for srv in started:
        srv.stop()


async def test_instances_starting_together_migrate_once_and_all_come_up(
    tmp_path: Path, postgres_backend: Backend, instances: list[ServerProc]
) -> None:
    store = postgres_backend.store()
    assert store.database is not None
    database = store.database.rsplit("/", 1)[1]
    music = make_library(tmp_path / "music", n_tracks=2)
    holder = await asyncpg.connect(dsn(store.database))
    try:
        await holder.execute(f"SELECT pg_advisory_lock({ADVISORY_LOCK_ID})")
        for i in range(INSTANCES):
            extra = () if i == 0 else ("--no-scan",)
            instances.append(spawn(tmp_path / f"i{i}", music=music, store=store, extra_args=extra))
        deadline = time.monotonic() + WAIT_S
        while (n := await waiting_on_the_lock(holder, database)) < INSTANCES:
            exited = [s.proc.returncode for s in instances if s.proc.poll() is not None]
            assert not exited, f"an instance exited while waiting: {exited}"
            assert time.monotonic() < deadline, f"only {n} instances wait on the migration lock"
            await asyncio.sleep(0.05)
        assert (await holder.fetchval("SELECT to_regclass('alembic_version')")) is None
        await holder.execute(f"SELECT pg_advisory_unlock({ADVISORY_LOCK_ID})")
        for srv in instances:
            await asyncio.to_thread(ready, srv, wait_scan=srv is instances[0])
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        rows = await holder.fetch("SELECT version_num FROM alembic_version")
        assert [r["version_num"] for r in rows] == [head]
    finally:
        await holder.close()
    async with httpx.AsyncClient() as http:
        for srv in instances:
            r = await http.get(srv.url + "/v1/health")
            assert r.status_code == 200, r.text
    for srv in instances:
        assert_log_clean(srv)
