"""The past transfers the warm next device is predicted from (`server/db/transfers.py`),
on a real database (SQLite, and PostgreSQL when it is set): each account keeps its last
`HISTORY_MAX`, and reads only its own."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.core.predict import HISTORY_MAX, PastTransfer, next_device
from tunehand.server.db import accounts as qa
from tunehand.server.db import transfers as qt

HOUR_MS = 3_600_000


@pytest.fixture
def url(empty_database: str) -> str:
    return empty_database


@pytest.fixture
def engine(migrated_engine: AsyncEngine) -> AsyncEngine:
    return migrated_engine


async def _account(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        return await qa.create_account(conn, "u" + secrets.token_hex(4), "not-a-hash", 0)


async def test_each_account_keeps_its_last_transfers_and_reads_only_its_own(
    engine: AsyncEngine,
) -> None:
    a, b = await _account(engine), await _account(engine)
    async with engine.begin() as conn:
        await qt.record(conn, b, "b1", "b2", 7 * HOUR_MS)
        for i in range(HISTORY_MAX + 5):
            await qt.record(conn, a, "r1", "r2" if i % 2 else "r3", 20 * HOUR_MS + i)
    async with engine.connect() as conn:
        mine, theirs = await qt.past(conn, a), await qt.past(conn, b)
    assert len(mine) == HISTORY_MAX
    assert mine[0] == PastTransfer("r1", "r3", 20, 20 * HOUR_MS + HISTORY_MAX + 4)  # newest
    assert min(t.at_ms for t in mine) == 20 * HOUR_MS + 5  # the 5 oldest went
    assert theirs == [PastTransfer("b1", "b2", 7, 7 * HOUR_MS)]
    assert next_device(mine, "r1", 20) == "r3"  # 100 each: the most recent wins
    assert next_device(mine, "b1", 7) is None


async def test_an_accounts_transfers_go_with_it(engine: AsyncEngine) -> None:
    a, b = await _account(engine), await _account(engine)
    async with engine.begin() as conn:
        await qt.record(conn, a, "r1", "r2", 0)
        await qt.record(conn, b, "r1", "r2", 0)
        await qa.delete_account(conn, a)
    async with engine.connect() as conn:
        assert await qt.past(conn, a) == []
        assert await qt.past(conn, b) == [PastTransfer("r1", "r2", 0, 0)]
