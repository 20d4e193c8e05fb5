"""Queries on jams: a host's session opened to other accounts (`tunehand.server.jam`).

A jam row belongs to its host; a member row to its guest. Every query names the
account it acts for.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import accounts, jam_kicked, jam_members, jams


@dataclass(frozen=True, slots=True)
class Jam:
    host_id: int
    host: str
    code: str
    guests_can_control: bool
    guests: tuple[tuple[int, str], ...]
    """(account id, user name) of every guest, in the order they joined."""

    @property
    def members(self) -> tuple[int, ...]:
        return (self.host_id, *(a for a, _ in self.guests))


async def host_of(conn: AsyncConnection, account_id: int) -> int | None:
    """The host whose jam the account is a guest of, or the account itself when it hosts
    one; None when it is in no jam."""
    guest = (
        await conn.execute(
            sa.select(jam_members.c.host_id).where(jam_members.c.account_id == account_id)
        )
    ).scalar()
    if guest is not None:
        return int(guest)
    hosts = (
        await conn.execute(sa.select(jams.c.host_id).where(jams.c.host_id == account_id))
    ).scalar()
    return None if hosts is None else int(hosts)


async def by_host(conn: AsyncConnection, host_id: int) -> Jam | None:
    row = (
        await conn.execute(
            sa.select(jams.c.code, jams.c.guests_can_control, accounts.c.name)
            .join(accounts, accounts.c.id == jams.c.host_id)
            .where(jams.c.host_id == host_id)
        )
    ).first()
    if row is None:
        return None
    guests = await conn.execute(
        sa.select(jam_members.c.account_id, accounts.c.name)
        .join(accounts, accounts.c.id == jam_members.c.account_id)
        .where(jam_members.c.host_id == host_id)
        .order_by(jam_members.c.joined_ms, jam_members.c.account_id)
    )
    return Jam(
        host_id,
        str(row.name),
        str(row.code),
        bool(row.guests_can_control),
        tuple((int(g.account_id), str(g.name)) for g in guests),
    )


async def by_code(conn: AsyncConnection, code: str) -> int | None:
    """The host of the jam with this code (8 letters, no dash)."""
    found = (await conn.execute(sa.select(jams.c.host_id).where(jams.c.code == code))).scalar()
    return None if found is None else int(found)


async def create(
    conn: AsyncConnection, host_id: int, code: str, guests_can_control: bool, now_ms: int
) -> bool:
    """False when the code is taken (pick another)."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                sa.insert(jams).values(
                    host_id=host_id,
                    code=code,
                    guests_can_control=guests_can_control,
                    created_ms=now_ms,
                )
            )
    except IntegrityError:
        return False
    return True


async def set_control(conn: AsyncConnection, host_id: int, on: bool) -> None:
    await conn.execute(
        sa.update(jams).where(jams.c.host_id == host_id).values(guests_can_control=on)
    )


async def count_guests(conn: AsyncConnection, host_id: int) -> int:
    n = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(jam_members)
            .where(jam_members.c.host_id == host_id)
        )
    ).scalar()
    return int(n or 0)


async def add_guest(conn: AsyncConnection, host_id: int, account_id: int, now_ms: int) -> bool:
    """False when the account is in a jam already (a race with another join)."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                sa.insert(jam_members).values(
                    account_id=account_id, host_id=host_id, joined_ms=now_ms
                )
            )
    except IntegrityError:
        return False
    return True


async def remove_guest(conn: AsyncConnection, host_id: int, account_id: int) -> bool:
    res = await conn.execute(
        sa.delete(jam_members).where(
            jam_members.c.host_id == host_id, jam_members.c.account_id == account_id
        )
    )
    return bool(res.rowcount)


async def kick(conn: AsyncConnection, host_id: int, account_id: int) -> None:
    await remove_guest(conn, host_id, account_id)
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(jam_kicked).values(host_id=host_id, account_id=account_id))
    except IntegrityError:
        pass  # kicked before


async def kicked(conn: AsyncConnection, host_id: int, account_id: int) -> bool:
    found = (
        await conn.execute(
            sa.select(jam_kicked.c.account_id).where(
                jam_kicked.c.host_id == host_id, jam_kicked.c.account_id == account_id
            )
        )
    ).first()
    return found is not None


async def end(conn: AsyncConnection, host_id: int) -> tuple[int, ...]:
    """Remove the jam; the guests it had."""
    guests = await conn.execute(
        sa.select(jam_members.c.account_id).where(jam_members.c.host_id == host_id)
    )
    out = tuple(int(g.account_id) for g in guests)
    await conn.execute(sa.delete(jam_members).where(jam_members.c.host_id == host_id))
    await conn.execute(sa.delete(jam_kicked).where(jam_kicked.c.host_id == host_id))
    await conn.execute(sa.delete(jams).where(jams.c.host_id == host_id))
    return out
