"""Accounts removed behind the server's back (`tunehand admin remove-user`, another
process) close their channels here within WATCH_S; stream and art links of a revoked
device stop working within CHECK_S (`DeviceCheck`).

Every WATCH_S one small query reads the accounts' count and id sum; ids are never
reused, so any removal changes it. Only then are this instance's accounts with
channels looked up, and each one gone is revoked through the hub (which closes its
channels on every instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.db import accounts as qa
from tunehand.server.db.tables import accounts
from tunehand.server.hub import REMOVED_ACCOUNT, Hub
from tunehand.server.streams import Signer

log = logging.getLogger("tunehand.revocation")

WATCH_S = 0.5
CHUNK = 500
CHECK_S = 4.0
"""How long a device's standing (not revoked) is taken as known for its links. A
revocation heard through the bus ends it at once; an account removed, by then."""
CHECKS = 10_000


async def link_allowed(
    signer: Signer, check: DeviceCheck | None, sig: str, query: Mapping[str, str]
) -> bool:
    """Whether a signed link (signature `sig`, already checked) is bound (`d`, `k`) to a
    device that is not revoked."""
    device_id, mac = query.get("d", ""), query.get("k", "")
    if not signer.verify_device(sig, device_id, mac):
        return False
    return check is None or await check.allowed(device_id)


class DeviceCheck:
    """Whether a device's stream and art links still work: it exists, is not revoked."""

    def __init__(self, engine: AsyncEngine, hub: Hub) -> None:
        self.engine, self.hub = engine, hub
        self._known: dict[str, tuple[bool, float]] = {}

    async def allowed(self, device_id: str) -> bool:
        if self.hub.revoked_lately(device_id):
            return False
        now = time.monotonic()
        hit = self._known.get(device_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        async with self.engine.connect() as conn:
            row = await qa.device(conn, device_id)
        ok = row is not None and not row.revoked
        if len(self._known) >= CHECKS:
            self._known.clear()
        self._known[device_id] = (ok, now + CHECK_S)
        return ok


class AccountWatch:
    def __init__(self, engine: AsyncEngine, hub: Hub) -> None:
        self.engine, self.hub = engine, hub
        self._seen: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down a moment: next time
                log.debug("account watch: %r", exc)

    async def check(self) -> None:
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(accounts.c.id), 0))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one()
            seen = (int(row[0]), int(row[1]))
            if seen == self._seen:
                return
            first = self._seen is None
            self._seen = seen
            if first:
                return
            local = self.hub.local_accounts()
            alive: set[int] = set()
            for i in range(0, len(local), CHUNK):
                ids = local[i : i + CHUNK]
                got = await conn.execute(sa.select(accounts.c.id).where(accounts.c.id.in_(ids)))
                alive.update(int(r[0]) for r in got)
        for account_id in local:
            if account_id not in alive:
                await self.hub.revoke(REMOVED_ACCOUNT, account_id)
