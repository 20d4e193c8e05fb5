"""Session rows (one per account, compared and set on `version`) and command results.

A session is stored in two columns: `queue` (the queue and shuffle order, most of its
size) and `state` (the rest). A change that leaves the queue alone (play, pause, seek,
volume, a report) writes `state` only.

The hot path of a command is two statements outside any transaction (see
`load_for_command` and `commit_command`): the compare-and-set on `version` is what
makes it safe, and on PostgreSQL the result is stored by the same statement.
The statements are built once, with bind parameters, so each call is a cache hit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand import wire
from tunehand.core.commands import Result
from tunehand.core.model import Entry, SessionState
from tunehand.server.db.tables import command_results, sessions

RESULTS_KEPT_MS = 24 * 3600 * 1000

_A = sa.bindparam("a", type_=sa.Integer)
_ONE = sa.select(sa.literal_column("1").label("one")).subquery("one")
_LOAD_FOR_COMMAND = sa.select(
    sessions.c.state,
    sessions.c.queue,
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
_LOAD = sa.select(sessions.c.state, sessions.c.queue).where(sessions.c.account_id == _A)
_WHERE_OLD = sa.and_(sessions.c.account_id == _A, sessions.c.version == sa.bindparam("old"))
_CAS = (
    sa.update(sessions)
    .where(_WHERE_OLD)
    .values(version=sa.bindparam("new"), state=sa.bindparam("blob"))
)
"""The queue unchanged: the small part only."""
_CAS_QUEUE = (
    sa.update(sessions)
    .where(_WHERE_OLD)
    .values(version=sa.bindparam("new"), state=sa.bindparam("blob"), queue=sa.bindparam("q"))
)


def _cas_and_result(cas: sa.Update) -> sa.Insert:
    returning = cas.returning(sessions.c.account_id).cte("cas")
    return (
        sa.insert(command_results)
        .from_select(
            ["account_id", "command_id", "code", "message", "version", "created_ms"],
            sa.select(
                returning.c.account_id,
                sa.bindparam("c", type_=sa.String),
                sa.bindparam("code", type_=sa.String),
                sa.bindparam("message", type_=sa.Text),
                sa.bindparam("rversion", type_=sa.BigInteger),
                sa.bindparam("now", type_=sa.BigInteger),
            ),
        )
        .add_cte(returning)
    )


_CAS_AND_RESULT = _cas_and_result(_CAS)
_CAS_QUEUE_AND_RESULT = _cas_and_result(_CAS_QUEUE)


@dataclass(frozen=True, slots=True)
class StoredQueue:
    """What the `queue` column holds: the session's queue and shuffle order, its large
    part, written only when one of them changed."""

    queue: tuple[Entry, ...] = ()
    order: tuple[str, ...] = ()


def _state_blob(state: SessionState) -> str:
    return wire.encode(replace(state, queue=(), order=())).decode()


def _queue_blob(state: SessionState) -> str:
    return wire.encode(StoredQueue(state.queue, state.order)).decode()


def _queue_changed(before: SessionState | None, new: SessionState) -> bool:
    if before is None:
        return True
    same = (before.queue is new.queue or before.queue == new.queue) and (
        before.order is new.order or before.order == new.order
    )
    return not same


def _decode(state: str, queue: str | None) -> SessionState:
    """A stored session. (A row written before the queue had a column of its own has
    `queue` NULL and the queue inside `state`; migration 0004 moves it.)"""
    loaded = wire.decode(state, SessionState)
    if queue is None:
        return loaded
    q = wire.decode(queue, StoredQueue)
    return replace(loaded, queue=q.queue, order=q.order)


async def load(conn: AsyncConnection, account_id: int) -> SessionState:
    row = (await conn.execute(_LOAD, {"a": account_id})).first()
    if row is None:
        return SessionState()
    return _decode(row.state, row.queue)


async def compare_and_set(
    conn: AsyncConnection,
    account_id: int,
    old: int,
    new: SessionState,
    before: SessionState | None = None,
) -> bool:
    """Write `new` only if the stored version is still `old`. False when someone else won.

    `before`: the session stored at `old`, if the caller has it; when `new` has the same
    queue and order, only the small rest is written (a play, pause or seek on a queue of
    10,000 entries writes a few hundred bytes, not the queue's ~800 KB)."""
    blob = _state_blob(new)
    if old == 0:
        exists = (
            await conn.execute(
                sa.select(sessions.c.version).where(sessions.c.account_id == account_id)
            )
        ).first()
        if exists is None:
            await conn.execute(
                sa.insert(sessions).values(
                    account_id=account_id, version=new.version, state=blob, queue=_queue_blob(new)
                )
            )
            return True
    params = {"a": account_id, "old": old, "new": new.version, "blob": blob}
    if _queue_changed(before, new):
        res = await conn.execute(_CAS_QUEUE, {**params, "q": _queue_blob(new)})
    else:
        res = await conn.execute(_CAS, params)
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
    state = SessionState() if row.state is None else _decode(row.state, row.queue)
    return prior, state


async def commit_command(
    conn: AsyncConnection,
    account_id: int,
    old: int,
    new: SessionState,
    res: Result,
    now_ms: int,
    before: SessionState | None = None,
) -> bool:
    """Compare and set the session from version `old` (`before`, if known: see
    `compare_and_set`) to `new` and store the command's result, atomically. False when
    someone else won (nothing is written then).

    On PostgreSQL one statement (an UPDATE in a CTE feeding the INSERT), so `conn` may be
    in autocommit; elsewhere two, and the caller holds a transaction."""
    if old == 0 or conn.dialect.name != "postgresql":
        if not await compare_and_set(conn, account_id, old, new, before):
            return False
        await save_result(conn, account_id, res, now_ms)
        return True
    params = {
        "a": account_id,
        "old": old,
        "new": new.version,
        "blob": _state_blob(new),
        "c": res.command_id,
        "code": res.code,
        "message": res.message,
        "rversion": res.version,
        "now": now_ms,
    }
    if _queue_changed(before, new):
        stmt, params = _CAS_QUEUE_AND_RESULT, {**params, "q": _queue_blob(new)}
    else:
        stmt = _CAS_AND_RESULT
    return (await conn.execute(stmt, params)).rowcount == 1


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
