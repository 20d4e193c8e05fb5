"""Opening the database named by URL: SQLite (WAL) by default, PostgreSQL for several instances."""

from __future__ import annotations

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


def open_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=8, max_overflow=8)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def unavailable_types() -> tuple[type[Exception], ...]:
    """What a database that is down or restarting raises (a restart also cuts pooled
    connections). The asyncpg driver lets some through unwrapped: a refused connect is
    a bare ConnectionRefusedError, "the database system is starting up" an asyncpg error."""
    import asyncpg.exceptions as pg  # type: ignore[import-untyped]
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (
        OperationalError,
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
