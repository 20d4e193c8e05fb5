"""Scrobbling, on the server: one listen per play whatever device played it.

Rules (`Scrobbler.observe`, after every committed session change):
- a *play* is a queue entry becoming current (or the current one starting over after it
  was counted: repeat one, a restart);
- "playing now" goes out once per play, when it is first heard;
- a listen goes out once per play, when the position passes half the track or 4 minutes,
  whichever comes first; a timer wakes the check when that moment comes with no change.
  A handoff keeps the entry and its position: still the same play. The play row
  (`scrobble_plays`) and conditional updates make "once" hold across instances too.

Submissions go to a durable outbox (`scrobble_outbox`), sent by a loop on every instance
(each row claimed by a conditional update); a service that is down is retried with
exponential backoff (from `retry_s`, capped at 6 h), a "playing now" only once (it is
stale after). Tokens and session keys are kept encrypted (AES-256-GCM under a subkey of
the server's secret, the account and service as associated data) and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.core.clock import extrapolate
from tunehand.core.model import SessionState
from tunehand.server import scrobble_clients as sc
from tunehand.server.db import library as ql
from tunehand.server.db.tables import scrobble_outbox, scrobble_plays, scrobble_services
from tunehand.server.streams import Signer

log = logging.getLogger("tunehand.scrobble")

SERVICES = ("listenbrainz", "lastfm")
LISTEN_AFTER_MS = 240_000
HAS_SERVICES_S = 30.0
POLL_S = 5.0
CLAIM_MS = 60_000
BATCH = 20
MAX_BACKOFF_S = 6 * 3600
MAX_ATTEMPTS = 40
MAX_QUEUED = 10_000
"""Per account: past this, new listens are dropped (a service down for months)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def threshold_ms(duration_ms: int) -> int:
    """When a play counts as a listen: half the track or 4 minutes, whichever first."""
    return min(duration_ms // 2, LISTEN_AFTER_MS) if duration_ms > 0 else LISTEN_AFTER_MS


@dataclass(frozen=True, slots=True)
class Sealer:
    key: bytes

    @classmethod
    def of(cls, signer: Signer) -> Sealer:
        return cls(signer.subkey("scrobble-tokens"))

    def seal(self, account_id: int, service: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        ad = f"{account_id}:{service}".encode()
        return base64.b64encode(
            nonce + AESGCM(self.key).encrypt(nonce, secret.encode(), ad)
        ).decode()

    def open(self, account_id: int, service: str, blob: str) -> str | None:
        try:
            raw = base64.b64decode(blob)
            ad = f"{account_id}:{service}".encode()
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], ad).decode()
        except (InvalidTag, ValueError):
            return None


@dataclass(frozen=True)
class LastfmApp:
    key: str
    secret: str
    url: str = sc.LASTFM_URL
    auth_url: str = sc.LASTFM_AUTH_URL


class Scrobbler:
    def __init__(
        self,
        engine: AsyncEngine,
        signer: Signer,
        lastfm: LastfmApp | None = None,
        retry_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.sealer = Sealer.of(signer)
        self.lastfm = lastfm
        self.retry_s = (
            retry_s if retry_s is not None else _env_float("TUNEHAND_SCROBBLE_RETRY_S", 30)
        )
        self._has: dict[int, tuple[float, bool]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self.state_of: Any = None
        """`SessionService.state`: the timer reads the session again (set at start)."""

    # --- the services of an account ------------------------------------------------

    async def has_services(self, account_id: int) -> bool:
        hit = self._has.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.engine.connect() as conn:
            n = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(scrobble_services)
                    .where(scrobble_services.c.account_id == account_id)
                )
            ).scalar_one()
        if len(self._has) > 10_000:
            self._has.clear()
        self._has[account_id] = (time.monotonic() + HAS_SERVICES_S, n > 0)
        return bool(n)

    async def add(self, account_id: int, name: str, url: str, user: str, secret: str) -> None:
        sealed = self.sealer.seal(account_id, name, secret)
        t = scrobble_services
        async with self.engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.account_id == account_id, t.c.name == name))
            await conn.execute(
                t.insert().values(
                    account_id=account_id,
                    name=name,
                    url=url,
                    user_name=user,
                    secret=sealed,
                    created_ms=now_ms(),
                )
            )
        self._has.pop(account_id, None)

    async def remove(self, account_id: int, name: str) -> bool:
        t, o = scrobble_services, scrobble_outbox
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                t.delete().where(t.c.account_id == account_id, t.c.name == name)
            )
            await conn.execute(o.delete().where(o.c.account_id == account_id, o.c.service == name))
        self._has.pop(account_id, None)
        return bool(gone.rowcount)

    async def list(self, account_id: int) -> list[dict[str, Any]]:
        t, o = scrobble_services, scrobble_outbox
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.name, t.c.url, t.c.user_name, t.c.created_ms)
                    .where(t.c.account_id == account_id)
                    .order_by(t.c.name)
                )
            ).all()
            queued: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.select(o.c.service, sa.func.count())
                        .where(o.c.account_id == account_id, o.c.kind == "listen")
                        .group_by(o.c.service)
                    )
                ).all()
            )
        return [
            {
                "name": r.name,
                "url": r.url,
                "user": r.user_name,
                "created_ms": r.created_ms,
                "queued": int(queued.get(r.name, 0)),
            }
            for r in rows
        ]

    # --- the rules -----------------------------------------------------------------

    def observe_later(self, account_id: int, state: SessionState) -> None:
        """`observe` in the background (the caller is fanning a change out)."""
        task = asyncio.ensure_future(self._observe_logged(account_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _observe_logged(self, account_id: int, state: SessionState) -> None:
        try:
            await self.observe(account_id, state)
        except Exception as exc:
            log.warning("scrobbling: could not follow a change (%s)", type(exc).__name__)

    async def observe(self, account_id: int, state: SessionState) -> None:
        if not await self.has_services(account_id):
            return
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            await self._observe(account_id, state)

    async def _observe(self, account_id: int, state: SessionState) -> None:
        cur = state.current_entry
        timer = self._timers.pop(account_id, None)
        if timer is not None:
            timer.cancel()
        if cur is None:
            return
        async with self.engine.connect() as conn:
            track = await ql.get(conn, cur.track_id)
        if track is None or not track.view.artist:
            return  # a stream or an untagged file: nothing a service can count
        v = track.view
        p = state.position
        t = now_ms()
        pos = extrapolate(p.position_ms, p.at_ms, p.playing, p.rate, t, v.duration_ms)
        heard = p.playing and p.rate > 0
        limit = threshold_ms(v.duration_ms)
        plays = scrobble_plays
        mine = plays.c.account_id == account_id
        payload = {
            "artist": v.artist,
            "title": v.title,
            "album": v.album,
            "duration_ms": v.duration_ms,
        }
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(plays).where(mine))).first()
            if row is None or row.play != cur.entry_id or (row.listened and pos < limit):
                if not heard and (row is None or row.play != cur.entry_id):
                    # not started yet: a play begins when it is heard
                    await conn.execute(plays.delete().where(mine))
                    row = None
                else:
                    await conn.execute(plays.delete().where(mine))
                    await conn.execute(
                        plays.insert().values(
                            account_id=account_id,
                            play=cur.entry_id,
                            track_id=cur.track_id,
                            started_ms=t - pos,
                            now_sent=False,
                            listened=False,
                        )
                    )
                    row = (await conn.execute(sa.select(plays).where(mine))).first()
            if row is None:
                return
            kinds = []
            if heard and not row.now_sent:
                done = await conn.execute(
                    plays.update()
                    .where(mine, plays.c.play == row.play, plays.c.now_sent == sa.false())
                    .values(now_sent=True)
                )
                if done.rowcount:
                    kinds.append("now")
            if pos >= limit and not row.listened:
                done = await conn.execute(
                    plays.update()
                    .where(mine, plays.c.play == row.play, plays.c.listened == sa.false())
                    .values(listened=True)
                )
                if done.rowcount:
                    kinds.append("listen")
            if kinds:
                await self._enqueue(
                    conn, account_id, kinds, {**payload, "listened_at_s": row.started_ms // 1000}
                )
        if kinds:
            self._wake.set()
        if heard and pos < limit:
            self._arm(account_id, (limit - pos) / max(p.rate, 0.01) / 1000 + 0.05)

    async def report(
        self,
        account_id: int,
        track: ql.StoredTrack,
        *,
        listen: bool,
        at_ms: int,
        fresh: bool = True,
    ) -> None:
        """A Subsonic app's `scrobble` (`listen`: submission=true; else playing now).

        The app is a device: its scrobble is that device's report of a play. When it plays
        the session's current entry (after `savePlayQueue`, or a handoff to or from it),
        that is the session's play: the same once-flags as `observe`, so a play a
        tunehand device already counted is not counted again (nor one the app counted
        when a device plays on). Otherwise it is a play of the app's own, sent as
        reported (`fresh` false: the app said it again, nothing more is sent)."""
        try:
            if not await self.has_services(account_id):
                return
            await self._report(account_id, track, listen, at_ms, fresh)
        except Exception as exc:
            log.warning("scrobbling: could not follow an app's scrobble (%s)", type(exc).__name__)

    async def _report(
        self, account_id: int, track: ql.StoredTrack, listen: bool, at_ms: int, fresh: bool
    ) -> None:
        v = track.view
        if not v.artist:
            return  # a stream or an untagged file: nothing a service can count
        state = await self.state_of(account_id) if self.state_of is not None else None
        cur = state.current_entry if state is not None else None
        plays = scrobble_plays
        mine = plays.c.account_id == account_id
        kind = "listen" if listen else "now"
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock, self.engine.begin() as conn:
            if cur is not None and cur.track_id == v.id:
                row = (await conn.execute(sa.select(plays).where(mine))).first()
                if row is None or row.play != cur.entry_id:
                    await conn.execute(plays.delete().where(mine))
                    await conn.execute(
                        plays.insert().values(
                            account_id=account_id,
                            play=cur.entry_id,
                            track_id=cur.track_id,
                            started_ms=at_ms,
                            now_sent=False,
                            listened=False,
                        )
                    )
                    row = (await conn.execute(sa.select(plays).where(mine))).first()
                assert row is not None
                flag = plays.c.listened if listen else plays.c.now_sent
                done = await conn.execute(
                    plays.update()
                    .where(mine, plays.c.play == row.play, flag == sa.false())
                    .values({flag.name: True})
                )
                if not done.rowcount:
                    return  # this play was counted already, by whichever device
                started = int(row.started_ms)
            elif fresh:
                started = at_ms
            else:
                return
            payload = {
                "artist": v.artist,
                "title": v.title,
                "album": v.album,
                "duration_ms": v.duration_ms,
                "listened_at_s": started // 1000,
            }
            await self._enqueue(conn, account_id, [kind], payload)
        self._wake.set()

    def _arm(self, account_id: int, delay_s: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(account_id, None)
            task = asyncio.ensure_future(self._recheck(account_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[account_id] = loop.call_later(delay_s, fire)

    async def _recheck(self, account_id: int) -> None:
        if self.state_of is None:
            return
        try:
            state = await self.state_of(account_id)
        except Exception as exc:
            log.warning("scrobbling: could not read the session (%s)", type(exc).__name__)
            return
        await self._observe_logged(account_id, state)

    async def _enqueue(
        self, conn: Any, account_id: int, kinds: Sequence[str], payload: dict[str, Any]
    ) -> None:
        o, t = scrobble_outbox, scrobble_services
        names = (
            (await conn.execute(sa.select(t.c.name).where(t.c.account_id == account_id)))
            .scalars()
            .all()
        )
        queued = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(o).where(o.c.account_id == account_id)
            )
        ).scalar_one()
        if queued >= MAX_QUEUED:
            log.warning(
                "scrobbling: account %s has %s waiting: dropping new ones", account_id, queued
            )
            return
        t_ms = now_ms()
        rows = [
            {
                "account_id": account_id,
                "service": name,
                "kind": kind,
                "payload": json.dumps(payload),
                "attempts": 0,
                "due_ms": t_ms,
                "created_ms": t_ms,
                "last_error": "",
            }
            for kind in kinds
            for name in names
        ]
        if rows:
            await conn.execute(o.insert(), rows)

    # --- the outbox ----------------------------------------------------------------

    async def run(self) -> None:
        """Send what is due, forever (every instance runs one)."""
        while True:
            try:
                sent = await self.deliver_due()
            except Exception as exc:
                log.warning("scrobbling: outbox round failed (%s)", type(exc).__name__)
                sent = 0
            if sent:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def deliver_due(self) -> int:
        o = scrobble_outbox
        t = now_ms()
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(o).where(o.c.due_ms <= t).order_by(o.c.id).limit(BATCH)
                )
            ).all()
        done = 0
        for row in rows:
            async with self.engine.begin() as conn:
                claimed = await conn.execute(
                    o.update()
                    .where(o.c.id == row.id, o.c.due_ms == row.due_ms)
                    .values(due_ms=t + CLAIM_MS)
                )
            if claimed.rowcount:
                await self._deliver(row)
                done += 1
        return done

    async def _deliver(self, row: Any) -> None:
        o, s = scrobble_outbox, scrobble_services
        async with self.engine.connect() as conn:
            svc = (
                await conn.execute(
                    sa.select(s).where(s.c.account_id == row.account_id, s.c.name == row.service)
                )
            ).first()
        problem: str | None = None
        retry = False
        if svc is None:
            problem = "the service was removed"
        else:
            secret = self.sealer.open(row.account_id, row.service, svc.secret)
            try:
                if secret is None:
                    raise sc.Refused("its token cannot be read: add the service again")
                await self._submit(row.service, svc.url, secret, row.kind, json.loads(row.payload))
            except sc.Unavailable as exc:
                problem, retry = str(exc), row.kind == "listen"
            except sc.ScrobbleError as exc:
                problem = str(exc)
        async with self.engine.begin() as conn:
            if problem is None or not retry or row.attempts + 1 >= MAX_ATTEMPTS:
                await conn.execute(o.delete().where(o.c.id == row.id))
            else:
                delay = min(MAX_BACKOFF_S, self.retry_s * 2**row.attempts)
                await conn.execute(
                    o.update()
                    .where(o.c.id == row.id)
                    .values(
                        attempts=row.attempts + 1,
                        due_ms=now_ms() + int(delay * 1000),
                        last_error=problem[:200],
                    )
                )
        if problem is not None and svc is not None:
            what = "will retry" if retry else "dropped"
            log.warning(
                "scrobbling: %s %s for account %s failed: %s (%s)",
                row.service,
                "listen" if row.kind == "listen" else "playing-now",
                row.account_id,
                problem,
                what,
            )

    async def _submit(
        self, service: str, url: str, secret: str, kind: str, p: dict[str, Any]
    ) -> None:
        track = sc.Track(p["artist"], p["title"], p["album"], int(p["duration_ms"]))
        at = int(p["listened_at_s"])
        if service == "listenbrainz":
            await sc.listenbrainz_submit(url, secret, kind, track, at)
        elif service == "lastfm":
            if self.lastfm is None:
                raise sc.Refused("the server has no Last.fm API key any more")
            await sc.lastfm_submit(
                url, self.lastfm.key, self.lastfm.secret, secret, kind, track, at
            )
        else:
            raise sc.Refused(f"unknown service {service}")

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default
