"""The device lists an account's devices see: read, and sent to them when one changes.

An account sees its own devices; in a jam, every member's device list goes to the jam's
session, with only the names and what they can do of the other members' online devices.
Functions of the `SessionService` (whose public `devices`, `devices_view`,
`publish_devices` and `publish_device` call them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tunehand import wire
from tunehand.core.model import DeviceInfo
from tunehand.core.protocol import DevicesMsg
from tunehand.server.db import accounts as qa
from tunehand.server.hub import DEVICES
from tunehand.server.seats import Seat

if TYPE_CHECKING:
    from tunehand.server.service import SessionService


async def devices(service: SessionService, account_id: int) -> tuple[DeviceInfo, ...]:
    online = await service.hub.presence.devices(account_id)
    warm = service.warm.warm_device(account_id)
    async with service.engine.connect() as conn:
        rows = await qa.list_devices(conn, account_id)
    return _device_infos(rows, online, warm)


async def devices_view(service: SessionService, account_id: int) -> tuple[DeviceInfo, ...]:
    """The devices an account sees: its own, and in a jam the other members' online
    ones too, of which only the name and what it can do (never addresses or times)."""
    seat = await service.seat(account_id)
    if not seat.in_jam:
        return await devices(service, account_id)
    return await _jam_devices(service, seat, account_id)


async def _jam_devices(
    service: SessionService, seat: Seat, viewer: int | None
) -> tuple[DeviceInfo, ...]:
    """Every member's devices: one query for all of them (a device joining a jam of
    N accounts is not N queries), and their presence asked at once."""
    members = seat.members
    found = await asyncio.gather(*(service.hub.presence.devices(m) for m in members))
    async with service.engine.connect() as conn:
        rows = await qa.list_devices_of(conn, members)
    warm = service.warm.warm_device(seat.session)
    out: list[DeviceInfo] = []
    for member, online in zip(members, found, strict=True):
        mine = _device_infos(rows[member], online, warm)
        if member != viewer:
            # Another account's devices: those on the session now (online), by name.
            mine = tuple(replace(d, address="", last_seen_ms=0) for d in mine if d.online)
        out.extend(mine)
    return tuple(out)


async def publish_devices(service: SessionService, account_id: int) -> None:
    seat = await service.seat(account_id)
    if seat.in_jam:
        listed = await _jam_devices(service, seat, None)
    else:
        listed = await devices(service, account_id)
    await service.hub.send(seat.session, wire.encode(DevicesMsg(listed)), version=DEVICES)


async def publish_device(service: SessionService, account_id: int, device_id: str) -> None:
    """Tell the account's devices that one of them came, went or was revoked: a
    patch of that one device (see `DevicesMsg`). In a jam, every member's device
    list goes to the jam's session instead."""
    if (await service.seat(account_id)).in_jam:
        await publish_devices(service, account_id)
        return
    async with service.engine.connect() as conn:
        row = await qa.device(conn, device_id)
    if row is None or row.account_id != account_id or row.revoked:
        msg = DevicesMsg((), patch=True, removed=(device_id,))
    else:
        online = await service.hub.presence.devices(account_id)
        info = DeviceInfo(
            row.id,
            row.name,
            row.id in online,
            row.last_seen_ms,
            row.address,
            online.get(row.id, ()),
            row.kind,
        )
        msg = DevicesMsg((info,), patch=True)
    await service.hub.send(account_id, wire.encode(msg), version=DEVICES)


def _device_infos(
    rows: Sequence[qa.DeviceRow], online: dict[str, tuple[str, ...]], warm: str | None
) -> tuple[DeviceInfo, ...]:
    return tuple(
        DeviceInfo(
            r.id,
            r.name,
            r.id in online,
            r.last_seen_ms,
            r.address,
            online.get(r.id, ()),
            r.kind,
            r.id == warm,
        )
        for r in rows
    )
