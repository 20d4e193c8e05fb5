"""Insert-or-update and insert-or-ignore as one statement, on SQLite and PostgreSQL.

Looking for a row and inserting it when missing races with a concurrent request doing
the same: PostgreSQL refuses the second insert (a unique violation, so a 500). An
`INSERT ... ON CONFLICT` lets the database settle it. Both dialects spell it the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(
    conn: AsyncConnection,
    table: sa.Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Mapping[str, Any] | None = None,
    where: sa.ColumnElement[bool] | None = None,
) -> None:
    """Insert `values`; when a row with the same `keys` exists, set `update` on it
    (only if `where` holds for that row), or leave it alone when `update` is None."""
    index = [table.c[k] for k in keys]
    stmt: Any
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(table).values(**values)
    else:
        stmt = sqlite.insert(table).values(**values)
    if update is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=index)
    else:
        stmt = stmt.on_conflict_do_update(index_elements=index, set_=dict(update), where=where)
    await conn.execute(stmt)
