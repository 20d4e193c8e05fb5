"""Session rows (one per account, compared and set on `version`) and command results.

The hot path of a command is two statements outside any transaction (see
`load_for_command` and `commit_command`): the compare-and-set on `version` is what
makes it safe, and on PostgreSQL the result is stored by the same statement.
The statements are built once, with bind parameters, so each call is a cache hit.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand import wire
from tunehand.core.commands import Result
from tunehand.core.model import SessionState
from tunehand.server.db.tables import command_results, sessions

RESULTS_KEPT_MS = 24 * 3600 * 1000

_A = sa.bindparam("a", type_=sa.Integer)
_ONE = sa.select(sa.literal_column("1").label("one")).subquery("one")
_LOAD_FOR_COMMAND = sa.select(
    sessions.c.state,
    command_results.c.code,
    command_results.c.message,
    command_results.c.version,
).select_from(
    _ONE.outerjoin(sessions, sessions.c.account_id == _A).outerjoin(
        command_results,
        sa.and_(
            command_results.c.account_id == _A,
            command_results.c.command_id == sa.bindparam("c", type_=sa.String),
        ),
    )
)
_LOAD = sa.select(sessions.c.state).where(sessions.c.account_id == _A)
_CAS = (
    sa.update(sessions)
    .where(sessions.c.account_id == _A, sessions.c.version == sa.bindparam("old"))
    .values(version=sa.bindparam("new"), state=sa.bindparam("blob"))
)
_CAS_RETURNING = _CAS.returning(sessions.c.account_id).cte("cas")
_CAS_AND_RESULT = (
    sa.insert(command_results)
    .from_select(
        ["account_id", "command_id", "code", "message", "version", "created_ms"],
        sa.select(
            _CAS_RETURNING.c.account_id,
            sa.bindparam("c", type_=sa.String),
            sa.bindparam("code", type_=sa.String),
            sa.bindparam("message", type_=sa.Text),
            sa.bindparam("rversion", type_=sa.BigInteger),
            sa.bindparam("now", type_=sa.BigInteger),
        ),
    )
    .add_cte(_CAS_RETURNING)
)


async def load(conn: AsyncConnection, account_id: int) -> SessionState:
    row = (await conn.execute(_LOAD, {"a": account_id})).first()
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
    res = await conn.execute(_CAS, {"a": account_id, "old": old, "new": new.version, "blob": blob})
    return res.rowcount == 1


async def load_for_command(
    conn: AsyncConnection, account_id: int, command_id: str
) -> tuple[Result | None, SessionState]:
    """The result stored for `command_id` (None if it never ran) and the session, in one
    round trip."""
    row = (await conn.execute(_LOAD_FOR_COMMAND, {"a": account_id, "c": command_id})).one()
    prior = None
    if row.code is not None:
        prior = Result(command_id, row.code, row.message, row.version)
    state = SessionState() if row.state is None else wire.decode(row.state, SessionState)
    return prior, state


async def commit_command(
    conn: AsyncConnection, account_id: int, old: int, new: SessionState, res: Result, now_ms: int
) -> bool:
    """Compare and set the session from version `old` to `new` and store the command's
    result, atomically. False when someone else won (nothing is written then).

    On PostgreSQL one statement (an UPDATE in a CTE feeding the INSERT), so `conn` may be
    in autocommit; elsewhere two, and the caller holds a transaction."""
    if old == 0 or conn.dialect.name != "postgresql":
        if not await compare_and_set(conn, account_id, old, new):
            return False
        await save_result(conn, account_id, res, now_ms)
        return True
    params = {
        "a": account_id,
        "old": old,
        "new": new.version,
        "blob": wire.encode(new).decode(),
        "c": res.command_id,
        "code": res.code,
        "message": res.message,
        "rversion": res.version,
        "now": now_ms,
    }
    return (await conn.execute(_CAS_AND_RESULT, params)).rowcount == 1


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
