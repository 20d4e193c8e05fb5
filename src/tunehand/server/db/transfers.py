"""An account's past transfers, the warm next device's history (`core/predict.py`).

Every query is scoped to its account; each account keeps its last `HISTORY_MAX`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.core.predict import HISTORY_MAX, PastTransfer
from tunehand.server.db.tables import transfers

HOUR_MS = 3_600_000


async def record(
    conn: AsyncConnection, account_id: int, source: str, target: str, at_ms: int
) -> None:
    """Add a completed transfer (UTC hour of `at_ms`) and drop the account's oldest."""
    hour = (at_ms // HOUR_MS) % 24
    await conn.execute(
        sa.insert(transfers).values(
            account_id=account_id, source=source, target=target, hour=hour, at_ms=at_ms
        )
    )
    oldest_kept = await conn.scalar(
        sa.select(transfers.c.id)
        .where(transfers.c.account_id == account_id)
        .order_by(transfers.c.id.desc())
        .offset(HISTORY_MAX - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        await conn.execute(
            sa.delete(transfers).where(
                transfers.c.account_id == account_id, transfers.c.id < oldest_kept
            )
        )


async def past(conn: AsyncConnection, account_id: int) -> list[PastTransfer]:
    rows = await conn.execute(
        sa.select(transfers.c.source, transfers.c.target, transfers.c.hour, transfers.c.at_ms)
        .where(transfers.c.account_id == account_id)
        .order_by(transfers.c.id.desc())
        .limit(HISTORY_MAX)
    )
    return [PastTransfer(r.source, r.target, r.hour, r.at_ms) for r in rows]
