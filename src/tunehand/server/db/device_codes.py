"""Queries on device codes (pending device-code logins). A row names its account only
once a logged-in device or a password approved it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import device_codes


@dataclass(frozen=True, slots=True)
class DeviceCode:
    code_hash: str
    user_code: str
    device_id: str
    device_name: str
    expires_ms: int
    interval_s: int
    last_poll_ms: int | None
    status: str
    account_id: int | None
    created_ms: int = 0
    address: str = ""
    name_default: bool = False
    """`device_name` is a default the client made up: made unique at approval."""


def _row(r: sa.Row[tuple[object, ...]] | None) -> DeviceCode | None:
    if r is None:
        return None
    m = r._mapping
    return DeviceCode(
        str(m["code_hash"]),
        str(m["user_code"]),
        str(m["device_id"]),
        str(m["device_name"]),
        int(m["expires_ms"]),
        int(m["interval_s"]),
        None if m["last_poll_ms"] is None else int(m["last_poll_ms"]),
        str(m["status"]),
        None if m["account_id"] is None else int(m["account_id"]),
        int(m["created_ms"]),
        str(m["address"]),
        bool(m["name_default"]),
    )


async def insert(
    conn: AsyncConnection,
    code_hash: str,
    user_code: str,
    device_id: str,
    device_name: str,
    now_ms: int,
    expires_ms: int,
    interval_s: int,
    address: str = "",
    name_default: bool = False,
) -> bool:
    """Insert a pending code; False when the user code is taken (pick another)."""
    taken = (
        await conn.execute(
            sa.select(device_codes.c.code_hash).where(device_codes.c.user_code == user_code)
        )
    ).first()
    if taken is not None:
        return False
    await conn.execute(
        sa.insert(device_codes).values(
            code_hash=code_hash,
            user_code=user_code,
            device_id=device_id,
            device_name=device_name,
            created_ms=now_ms,
            expires_ms=expires_ms,
            interval_s=interval_s,
            last_poll_ms=None,
            status="pending",
            account_id=None,
            address=address,
            name_default=name_default,
        )
    )
    return True


async def count_pending(conn: AsyncConnection, now_ms: int) -> int:
    """Codes still waiting for an answer (not expired, not decided)."""
    n = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(device_codes)
        .where(device_codes.c.status == "pending", device_codes.c.expires_ms > now_ms)
    )
    return int(n or 0)


async def by_hash(conn: AsyncConnection, code_hash: str) -> DeviceCode | None:
    q = sa.select(device_codes).where(device_codes.c.code_hash == code_hash)
    return _row((await conn.execute(q)).first())


async def by_user_code(conn: AsyncConnection, user_code: str) -> DeviceCode | None:
    q = sa.select(device_codes).where(device_codes.c.user_code == user_code)
    return _row((await conn.execute(q)).first())


async def polled(conn: AsyncConnection, code_hash: str, now_ms: int, interval_s: int) -> None:
    await conn.execute(
        sa.update(device_codes)
        .where(device_codes.c.code_hash == code_hash)
        .values(last_poll_ms=now_ms, interval_s=interval_s)
    )


async def decide(
    conn: AsyncConnection, code_hash: str, status: str, account_id: int | None
) -> bool:
    """Approve or deny a pending code; False when it was no longer pending."""
    res = await conn.execute(
        sa.update(device_codes)
        .where(device_codes.c.code_hash == code_hash, device_codes.c.status == "pending")
        .values(status=status, account_id=account_id)
    )
    return res.rowcount == 1


async def consume(conn: AsyncConnection, code_hash: str) -> bool:
    """Mark an approved code used; False when another poll used it first."""
    res = await conn.execute(
        sa.update(device_codes)
        .where(device_codes.c.code_hash == code_hash, device_codes.c.status == "approved")
        .values(status="used")
    )
    return res.rowcount == 1


async def purge_expired(conn: AsyncConnection, before_ms: int) -> int:
    res = await conn.execute(sa.delete(device_codes).where(device_codes.c.expires_ms < before_ms))
    return int(res.rowcount or 0)
