"""Accounts removed behind the server's back (`tunehand admin remove-user`, another
process) close their channels here within WATCH_S.

Every WATCH_S one small query reads the accounts' count and id sum; ids are never
reused, so any removal changes it. Only then are this instance's accounts with
channels looked up, and each one gone is revoked through the hub (which closes its
channels on every instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.db.tables import accounts
from tunehand.server.hub import REMOVED_ACCOUNT, Hub

log = logging.getLogger("tunehand.revocation")

WATCH_S = 0.5
CHUNK = 500


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
