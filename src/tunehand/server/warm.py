"""The warm next device: the device the user usually moves to next, kept loaded.

From the account's past transfers (`db/transfers.py`) and the hour of day,
`core.predict.next_device` names the device the user most likely moves playback to
from the active one. While the session plays, that device (online, able to play, and
not opted out: it says `warm` among its capabilities) is sent a `warm` directive: load
the current entry paused at the position it is predicted to be at. It is refreshed
every `REFRESH_S` (a short seek while paused: at the switch it is at most that far
behind, a seek within what mpv has read ahead), and sent `unwarm` when the prediction, the
active device or the session changes so that it no longer applies. A transfer to a
device warm with the current entry skips the prepare phase (`Handoff.run`, `handoff.py`).

What is warm is kept by this server instance (a transfer handled by another instance
prepares as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from tunehand import wire
from tunehand.core.model import SessionState
from tunehand.core.predict import PastTransfer, next_device
from tunehand.core.protocol import DirectiveMsg
from tunehand.server.db import transfers as qt

if TYPE_CHECKING:
    from tunehand.server.service import SessionService

log = logging.getLogger("tunehand.server.warm")

REFRESH_S = 1.0
"""How often a warm device is told the position again while the session plays."""
AHEAD_MS = 500
"""A warm load is asked for the position this far ahead (its own load takes a while)."""
CAPABILITY = "warm"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Warmth:
    def __init__(self, service: SessionService) -> None:
        self.service = service
        self._warm: dict[int, tuple[str, str]] = {}
        """account -> (the warm device, the entry it holds)."""
        self._seen: dict[int, tuple[str | None, str | None, bool]] = {}
        self._past: dict[int, list[PastTransfer]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        """One update at a time per account, so an older one cannot undo a newer."""

    def is_warm(self, account_id: int, device_id: str, entry_id: str) -> bool:
        return self._warm.get(account_id) == (device_id, entry_id)

    def warm_device(self, account_id: int) -> str | None:
        held = self._warm.get(account_id)
        return held[0] if held is not None else None

    def record_later(self, account_id: int, source: str, target: str, at_ms: int) -> None:
        """Record a completed transfer (in the background), then predict again."""
        task = asyncio.ensure_future(self._record(account_id, source, target, at_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, account_id: int, source: str, target: str, at_ms: int) -> None:
        try:
            async with self.service.engine.begin() as conn:
                await qt.record(conn, account_id, source, target, at_ms)
        except Exception as exc:  # a database that is down: one line, one transfer lost
            log.warning("warm device: could not record a transfer (%s)", type(exc).__name__)
            return
        self._past.pop(account_id, None)
        seen = self._seen.pop(account_id, None)
        state = self.service.kept(account_id)
        if seen is not None and state is not None:
            self.observe(account_id, state)  # the prediction from the new history

    def observe(self, account_id: int, state: SessionState) -> None:
        """A committed change: warm, move or drop the warm device when what it depends
        on (the active device, the current entry, playing or not) changed."""
        key = (state.active_device, state.current, state.position.playing)
        if self._seen.get(account_id) == key:
            return
        self._seen[account_id] = key
        task = asyncio.ensure_future(self._update_logged(account_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update_logged(self, account_id: int, state: SessionState) -> None:
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        try:
            async with lock:
                kept = self.service.kept(account_id)
                newest = kept if kept is not None and kept.version > state.version else state
                await self._update(account_id, newest)
        except Exception as exc:  # a database that is down: one line, tried again later
            log.warning("warm device: could not follow a change (%s)", type(exc).__name__)
            self._seen.pop(account_id, None)

    async def _predict(self, account_id: int, state: SessionState) -> str | None:
        active, cur = state.active_device, state.current_entry
        if active is None or cur is None or not state.position.playing:
            return None
        if account_id not in self._past:
            async with self.service.engine.connect() as conn:
                self._past[account_id] = await qt.past(conn, account_id)
        now = _now_ms()
        guess = next_device(self._past[account_id], active, (now // 3_600_000) % 24)
        if guess is None:
            return None
        online = await self.service.hub.online(account_id, CAPABILITY)
        return guess if guess in online and guess != active else None

    async def _update(self, account_id: int, state: SessionState) -> None:
        device = await self._predict(account_id, state)
        held = self._warm.get(account_id)
        cur = state.current
        if held is not None and (device is None or held != (device, cur)):
            self._warm.pop(account_id, None)
            if held[0] != state.active_device:  # the active one keeps what it plays
                await self._send(account_id, DirectiveMsg("unwarm", state.term), held[0])
        if device is None or cur is None:
            return
        self._warm[account_id] = (device, cur)
        await self._send_warm(account_id, device, state)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_loop())

    async def _send_warm(self, account_id: int, device: str, state: SessionState) -> None:
        cur = state.current_entry
        assert cur is not None
        at = _now_ms() + AHEAD_MS
        track = (await self.service.tracks(account_id, [cur.track_id])).get(cur.track_id)
        msg = DirectiveMsg(
            "warm", state.term, cur.entry_id, state.position_at(at), at, False, track
        )
        await self._send(account_id, msg, device)

    async def _send(self, account_id: int, msg: DirectiveMsg, device: str) -> None:
        await self.service.hub.send(account_id, wire.encode(msg), to=device)

    async def _refresh_loop(self) -> None:
        while self._warm:
            await asyncio.sleep(REFRESH_S)
            for account_id, (device, entry) in list(self._warm.items()):
                with contextlib.suppress(Exception):
                    state = self.service.kept(account_id) or await self.service.state(account_id)
                    if self._warm.get(account_id) != (device, entry):
                        continue
                    if state.current != entry or not state.position.playing:
                        self.observe(account_id, state)
                    elif device not in await self.service.hub.online(account_id, CAPABILITY):
                        self._warm.pop(account_id, None)  # gone: nothing to release
                        self._seen.pop(account_id, None)
                    else:
                        await self._send_warm(account_id, device, state)

    def taken(self, account_id: int, target: str) -> None:
        """A transfer switched: if to the warm device, it plays now, warm no more (the
        next change moves or drops any other warm load)."""
        if self.warm_device(account_id) == target:
            self._warm.pop(account_id, None)

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._refresher] if self._refresher else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
