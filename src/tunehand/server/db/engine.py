"""Opening the database named by URL: SQLite (WAL) by default, PostgreSQL for several instances."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tunehand.errors import UsageError


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'tunehand.db'}"


def normalize_url(url: str) -> str:
    """Accept the short forms people type (`sqlite:///x`, `postgresql://...`)."""
    if url.startswith("sqlite://") and "+" not in url.split("://")[0]:
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise UsageError(
        f"--database: unsupported URL scheme in {url.split('://')[0]!r}; "
        "use sqlite:///PATH or postgresql://HOST/DB"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


PING_IDLE_S = 1.0
"""A pooled connection idle longer than this is pinged before use (see `_pre_ping`)."""


def _checked_in(_dbapi_conn: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _pre_ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's `pool_pre_ping`, but only for a connection that sat idle: a ping is
    three round trips on asyncpg (BEGIN, `;`, ROLLBACK), more than a whole command costs,
    and a connection that was in use a moment ago is known to be alive. A dead one is
    replaced (after a database restart, the pool is recycled at the first error)."""
    if time.monotonic() - record.info.get("checked_in", 0.0) <= PING_IDLE_S:
        return
    try:
        dbapi_conn.ping()
    except Exception as exc:
        raise sa.exc.DisconnectionError(str(exc)) from exc


def _create_private(url: str) -> None:
    """Create a new SQLite database file 0600 before SQLite does (it would take the umask's
    0644 even in a 0700 data dir; its -wal and -shm files copy the database's mode)."""
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or os.path.exists(path):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        _create_private(url)
        engine = create_async_engine(url, pool_size=8, max_overflow=8)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # Connections beyond pool_size ("overflow") are closed when returned, and opening one
    # costs more than a command: under bursts they churned. So no overflow: the pool
    # opens up to 32 as the busy moments need them and keeps them.
    engine = create_async_engine(url, pool_size=32, max_overflow=0)
    sa.event.listen(engine.sync_engine, "connect", _checked_in)  # new: alive
    sa.event.listen(engine.sync_engine, "checkin", _checked_in)
    sa.event.listen(engine.sync_engine, "checkout", _pre_ping)
    return engine


WARM_CONNECTIONS = 8
"""Enough for a thousand commands a second; the rest of the pool opens when needed
(every connection counts against PostgreSQL's `max_connections`)."""


async def warm_pool(engine: AsyncEngine) -> None:
    """Open the pool's connections now (PostgreSQL), so the first busy second after a
    start does not pay for opening them one by one while commands wait."""
    if engine.dialect.name != "postgresql":
        return
    size = min(WARM_CONNECTIONS, getattr(engine.pool, "size", lambda: 0)())
    async with contextlib.AsyncExitStack() as stack:
        # A connection that fails now is opened on demand later, as without this.
        await asyncio.gather(
            *(stack.enter_async_context(engine.connect()) for _ in range(size)),
            return_exceptions=True,
        )


def unavailable_types() -> tuple[type[Exception], ...]:
    """What a database that is down or restarting raises (a restart also cuts pooled
    connections). The asyncpg driver lets some through unwrapped: a refused connect is
    a bare ConnectionRefusedError, "the database system is starting up" an asyncpg error."""
    import asyncpg.exceptions as pg  # type: ignore[import-untyped]
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (
        OperationalError,
        PoolTimeout,  # every pooled connection busy for 30 s: overloaded, try again
        InterfaceError,
        ConnectionError,
        pg.PostgresConnectionError,
        pg.OperatorInterventionError,
        pg.InterfaceError,
    )


def unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached right now: retryable, so
    answered with 503 `unavailable` (a `result` code on the channel), never a 500."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, unavailable_types())
