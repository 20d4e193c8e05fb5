"""The periodic purge: what the server stores for a while and never needs again.

Every `Settings.purge_interval_s` (an hour by default; first a minute after start) each
instance deletes, on every backend: expired tokens; device codes an hour past their
expiry; revoked device rows, and rows of devices unseen for `STALE_DEVICE_MS` that hold
no live token or app password, and the app passwords of revoked ones; login-throttle
counts untouched for a day; command results past their keeping time. Each is one DELETE,
so instances purging at once only repeat each other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.auth import REFRESH_TTL_MS
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.db import app_passwords as qp
from tunehand.server.db import device_codes as dq
from tunehand.server.db import sessions as qs
from tunehand.server.db.engine import unavailable
from tunehand.server.device_code import FORGET_FAILURES_MS, KEEP_EXPIRED_MS

log = logging.getLogger("tunehand.purge")

STALE_DEVICE_MS = REFRESH_TTL_MS
"""A device unseen this long (and without a live token) is forgotten."""
FIRST_PURGE_S = 60.0


@dataclass(frozen=True, slots=True)
class Purged:
    tokens: int
    device_codes: int
    devices: int
    attempts: int


async def purge_once(engine: AsyncEngine, now_ms: int) -> Purged:
    async with engine.begin() as conn:
        tokens = await qa.purge_expired_tokens(conn, now_ms)
        codes = await dq.purge_expired(conn, now_ms - KEEP_EXPIRED_MS)
        devices = await qa.purge_devices(conn, now_ms - STALE_DEVICE_MS, now_ms)
        await qp.purge_orphans(conn)
        attempts = await qa.purge_attempts(conn, now_ms - FORGET_FAILURES_MS)
        await qs.purge_results(conn, now_ms)
    return Purged(tokens, codes, devices, attempts)


async def run(engine: AsyncEngine, interval_s: float) -> None:
    """Purge every `interval_s` until cancelled; a database that is down is tried again
    at the next round."""
    interval_s = max(1.0, interval_s)
    await asyncio.sleep(min(FIRST_PURGE_S, interval_s))
    while True:
        try:
            done = await purge_once(engine, now_ms())
            if done.tokens or done.devices:
                log.info("purged %r", done)
        except Exception as exc:
            if not unavailable(exc):
                log.exception("purge failed")
            else:
                log.warning("purge: database unavailable: %r", exc)
        await asyncio.sleep(interval_s)
