"""Queries on application passwords (Subsonic apps). Every query names its account,
but `by_lookup`, which finds the account of a password presented alone (`apiKey`)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import accounts, app_passwords, devices


@dataclass(frozen=True, slots=True)
class AppPasswordRow:
    device_id: str
    account_id: int
    account_name: str
    name: str
    secret: str
    created_ms: int
    last_seen_ms: int


_LIVE = (
    sa.select(
        app_passwords,
        accounts.c.name.label("account_name"),
        devices.c.last_seen_ms,
    )
    .join(devices, devices.c.id == app_passwords.c.device_id)
    .join(accounts, accounts.c.id == app_passwords.c.account_id)
    .where(devices.c.revoked.is_(False), devices.c.account_id == app_passwords.c.account_id)
)
"""The app passwords whose device is not revoked (revoking the device revokes them)."""


def _row(r: sa.Row[tuple[object, ...]]) -> AppPasswordRow:
    m = r._mapping
    return AppPasswordRow(
        m["device_id"],
        m["account_id"],
        m["account_name"],
        m["name"],
        m["secret"],
        m["created_ms"],
        m["last_seen_ms"],
    )


async def insert(
    conn: AsyncConnection,
    account_id: int,
    device_id: str,
    name: str,
    secret: str,
    lookup: str,
    now_ms: int,
) -> None:
    await conn.execute(
        sa.insert(app_passwords).values(
            device_id=device_id,
            account_id=account_id,
            name=name,
            secret=secret,
            lookup=lookup,
            created_ms=now_ms,
        )
    )


async def by_account(conn: AsyncConnection, account_id: int) -> list[AppPasswordRow]:
    rows = await conn.execute(
        _LIVE.where(app_passwords.c.account_id == account_id).order_by(app_passwords.c.name)
    )
    return [_row(r) for r in rows]


async def by_account_name(conn: AsyncConnection, account_name: str) -> list[AppPasswordRow]:
    rows = await conn.execute(_LIVE.where(accounts.c.name == account_name).limit(200))
    return [_row(r) for r in rows]


async def by_lookup(conn: AsyncConnection, lookup: str) -> AppPasswordRow | None:
    row = (await conn.execute(_LIVE.where(app_passwords.c.lookup == lookup))).first()
    return _row(row) if row else None


async def named(conn: AsyncConnection, account_id: int, name: str) -> str | None:
    """The device id of the account's app password `name` (revoked or not)."""
    row = (
        await conn.execute(
            sa.select(app_passwords.c.device_id).where(
                app_passwords.c.account_id == account_id, app_passwords.c.name == name
            )
        )
    ).first()
    return str(row.device_id) if row else None


async def count(conn: AsyncConnection, account_id: int) -> int:
    res = await conn.execute(
        sa.select(sa.func.count())
        .select_from(app_passwords)
        .where(app_passwords.c.account_id == account_id)
    )
    return int(res.scalar_one())


async def delete(conn: AsyncConnection, account_id: int, device_id: str) -> None:
    await conn.execute(
        sa.delete(app_passwords).where(
            app_passwords.c.account_id == account_id, app_passwords.c.device_id == device_id
        )
    )


async def purge_orphans(conn: AsyncConnection) -> int:
    """Forget app passwords whose device row is gone or revoked."""
    live = sa.select(devices.c.id).where(
        devices.c.id == app_passwords.c.device_id, devices.c.revoked.is_(False)
    )
    res = await conn.execute(sa.delete(app_passwords).where(~live.exists()))
    return int(res.rowcount or 0)
