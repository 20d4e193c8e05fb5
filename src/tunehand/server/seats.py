"""Seats: which session an account is on (its own, or a jam host's), and its role.

An account's seat is read from the database and kept `SEAT_CACHE_S`; a jam change
anywhere clears the kept seats (`Hub.jam_changed`) and moves the devices connected here
of the accounts it names to the session they are on now (`rehome`). A part of the
`SessionService` (`service.seats`; its `seat`, `forget_seats` and `rehome` call it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand import __version__, wire
from tunehand.core import roles
from tunehand.core.protocol import ErrorMsg, Hello
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.db import jams as qj

if TYPE_CHECKING:
    from tunehand.server.service import SessionService

log = logging.getLogger("tunehand.service")

SEAT_CACHE_S = 5.0
"""How long an account's seat (which session it is on, its role) is kept; every jam
change clears the kept seats on every instance at once (`Hub.jam_changed`)."""


@dataclass(frozen=True, slots=True)
class Seat:
    """Where an account's commands and devices go: its own session, or a jam host's."""

    account_id: int
    user: str
    session: int
    """The account whose session it is (the jam's host, or the account itself)."""
    role: roles.Role = "owner"
    guests_can_control: bool = False
    members: tuple[int, ...] = ()
    """Every account of the jam, the host first; just the account when in none."""

    @property
    def in_jam(self) -> bool:
        return self.role != "owner"


class Seats:
    def __init__(self, service: SessionService) -> None:
        self.service = service
        self._seats: dict[int, tuple[float, Seat]] = {}
        self._rehoming: set[asyncio.Future[None]] = set()

    async def seat(self, account_id: int) -> Seat:
        """The account's seat, kept SEAT_CACHE_S (until a jam change anywhere clears it)."""
        now = time.monotonic()
        hit = self._seats.get(account_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.service.engine.connect() as conn:
            seat = await self._read_seat(conn, account_id)
        if len(self._seats) > 50_000:
            self._seats.clear()
        self._seats[account_id] = (now + SEAT_CACHE_S, seat)
        return seat

    async def _read_seat(self, conn: AsyncConnection, account_id: int) -> Seat:
        account = await qa.account_by_id(conn, account_id)
        user = account.name if account is not None else ""
        host = await qj.host_of(conn, account_id)
        jam = await qj.by_host(conn, host) if host is not None else None
        if jam is None:
            return Seat(account_id, user, account_id, "owner", False, (account_id,))
        role: roles.Role = "host" if jam.host_id == account_id else "guest"
        return Seat(account_id, user, jam.host_id, role, jam.guests_can_control, jam.members)

    def forget_seats(self) -> None:
        self._seats.clear()

    def on_jam(self, accounts: list[int], notice: str) -> None:
        """A jam changed (here or on another instance): move the devices here of the
        accounts it names to the session they are on now."""
        self.forget_seats()
        task = asyncio.ensure_future(self.rehome(accounts, notice))
        self._rehoming.add(task)
        task.add_done_callback(self._rehomed)

    def _rehomed(self, task: asyncio.Future[None]) -> None:
        self._rehoming.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not move devices to their session: %r", task.exception())

    async def rehome(self, accounts: Sequence[int], notice: str) -> None:
        """Put the devices here of `accounts` on the session each is on now, and send each
        device that session as a new `hello` (its state replaces what the device had,
        whatever the versions), after the one-line `notice`."""
        for account_id in accounts:
            if not self.service.hub.local_conns(account_id):
                continue
            seat = await self.seat(account_id)
            await self.service.hub.set_home(
                account_id, seat.session if seat.role == "guest" else None
            )
            state = await self.service.state(seat.session)
            msg = await self.service.state_message(seat.session, state)
            devices = await self.service.devices_view(account_id)
            for conn in self.service.hub.local_conns(account_id):
                if notice:
                    conn.push(wire.encode(ErrorMsg("jam", notice)))
                hello = Hello(conn.device_id, now_ms(), state.version, msg, devices, __version__)
                conn.push(wire.encode(hello))
