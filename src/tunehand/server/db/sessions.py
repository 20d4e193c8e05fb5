"""Session rows (one per account, compared and set on `version`) and command results."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand import wire
from tunehand.core.commands import Result
from tunehand.core.model import SessionState
from tunehand.server.db.tables import command_results, sessions

RESULTS_KEPT_MS = 24 * 3600 * 1000


async def load(conn: AsyncConnection, account_id: int) -> SessionState:
    row = (
        await conn.execute(sa.select(sessions.c.state).where(sessions.c.account_id == account_id))
    ).first()
    if row is None:
        return SessionState()
    return wire.decode(row.state, SessionState)


async def compare_and_set(
    conn: AsyncConnection, account_id: int, old: int, new: SessionState
) -> bool:
    """Write `new` only if the stored version is still `old`. False when someone else won."""
    blob = wire.encode(new).decode()
    if old == 0:
        exists = (
            await conn.execute(
                sa.select(sessions.c.version).where(sessions.c.account_id == account_id)
            )
        ).first()
        if exists is None:
            await conn.execute(
                sa.insert(sessions).values(account_id=account_id, version=new.version, state=blob)
            )
            return True
    res = await conn.execute(
        sa.update(sessions)
        .where(sessions.c.account_id == account_id, sessions.c.version == old)
        .values(version=new.version, state=blob)
    )
    return res.rowcount == 1


async def result(conn: AsyncConnection, account_id: int, command_id: str) -> Result | None:
    row = (
        await conn.execute(
            sa.select(command_results).where(
                command_results.c.account_id == account_id,
                command_results.c.command_id == command_id,
            )
        )
    ).first()
    if row is None:
        return None
    return Result(command_id, row.code, row.message, row.version)


async def save_result(conn: AsyncConnection, account_id: int, res: Result, now_ms: int) -> None:
    await conn.execute(
        sa.insert(command_results).values(
            account_id=account_id,
            command_id=res.command_id,
            code=res.code,
            message=res.message,
            version=res.version,
            created_ms=now_ms,
        )
    )


async def purge_results(conn: AsyncConnection, now_ms: int) -> None:
    await conn.execute(
        sa.delete(command_results).where(command_results.c.created_ms < now_ms - RESULTS_KEPT_MS)
    )
