"""The handoff: moving what plays from one device to another at one server instant.

`run` sends the target a `prepare` directive and waits (at most 3 s) for its
`ready`, which may come through another instance (`Hub.on_transfer_reply`), then commits
the switch and sends both devices their directives. A warm target skips the prepare
(`warm.py`). It is a part of the `SessionService` (whose `execute` hands it transfers),
and works on the service's per-account lock and kept sessions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tunehand import wire
from tunehand.core import session as core
from tunehand.core import transfer
from tunehand.core.commands import Command, Result
from tunehand.core.model import SessionState
from tunehand.core.protocol import DirectiveMsg
from tunehand.server.clock import now_ms
from tunehand.server.db import sessions as qs
from tunehand.server.seats import Seat

if TYPE_CHECKING:
    from tunehand.server.service import SessionService

log = logging.getLogger("tunehand.service")


class Handoff:
    def __init__(self, service: SessionService) -> None:
        self.service = service
        self._transfers: dict[
            str, tuple[tuple[int, ...], str, asyncio.Future[tuple[bool, str, int]]]
        ] = {}

    async def run(self, seat: Seat, cmd: Command, sender: str | None) -> Result:
        """Prepare the target, then switch both devices at one server instant.

        If the target is not ready within 3 s the transfer is aborted and the source
        keeps playing. Anything that is not a handoff of playing audio (nothing plays,
        `paused`, the source is gone) is a plain activation through the core.
        """
        assert cmd.device_id is not None
        account_id = seat.session
        async with self.service.engine.connect() as conn:
            if (prior := await qs.result(conn, account_id, cmd.command_id)) is not None:
                return prior
            state = await qs.load(conn, account_id)
        online = await self.service._online(seat)
        source_online = state.active_device in online
        prep = None
        if cmd.device_id in online:
            prep = transfer.plan(state, cmd.device_id, source_online, now_ms(), paused=cmd.paused)
        if prep is None:
            return await self.service._execute(seat, cmd, sender)
        if self.service.warm.is_warm(account_id, prep.target, prep.entry_id):
            # Loaded paused near the position already: no prepare, no wait for `ready`.
            at = now_ms() + transfer.WARM_LEAD_MS
            prep = replace(prep, position_ms=state.position_at(at), switch_at_ms=at)
            log.info("transfer to a warm device: no prepare")
            return await self._switch(seat, cmd, sender, prep, 0, transfer.WARM_LEAD_MS)
        cur = state.current_entry
        assert cur is not None
        track = (await self.service.tracks(account_id, [cur.track_id])).get(cur.track_id)
        transfer_id = secrets.token_hex(8)
        ready: asyncio.Future[tuple[bool, str, int]] = asyncio.get_running_loop().create_future()
        self._transfers[transfer_id] = (seat.members, prep.target, ready)
        try:
            await self.service.hub.send(
                account_id,
                wire.encode(
                    DirectiveMsg(
                        "prepare",
                        state.term,
                        prep.entry_id,
                        prep.position_ms,
                        prep.switch_at_ms,
                        True,
                        track,
                        transfer_id,
                    )
                ),
                to=prep.target,
            )
            ok, message, start_ms = await asyncio.wait_for(ready, transfer.READY_TIMEOUT_MS / 1000)
        except TimeoutError:
            ok, message, start_ms = False, "the device was not ready within 3 s", 0
        finally:
            self._transfers.pop(transfer_id, None)
        if not ok:
            res = Result(
                cmd.command_id,
                "transfer_failed",
                f"transfer aborted ({message}); playback stays where it was",
                0,
            )
            async with self.service.engine.begin() as conn:
                await qs.save_result(conn, account_id, res, now_ms())
            return res
        return await self._switch(seat, cmd, sender, prep, start_ms)

    async def _switch(
        self,
        seat: Seat,
        cmd: Command,
        sender: str | None,
        prep: transfer.Prepare,
        start_ms: int,
        lead_ms: int = transfer.LATE_LEAD_MS,
    ) -> Result:
        account_id = seat.session
        async with self.service._lock(account_id):
            self.service._forget(account_id)
            switched = await self._switch_once(account_id, cmd, prep, start_ms, lead_ms)
            if switched is not None:
                self.service._remember(account_id, switched[0])
        if switched is None:
            # The session changed while the target prepared: apply it plainly.
            return await self.service._execute(seat, cmd, sender)
        new, directives, res = switched
        await self.service._publish(account_id, new, directives, cmd.command_id)
        if prep.source is not None:  # after the switch went out: not on its path
            self.service.warm.record_later(account_id, prep.source, prep.target, new.position.at_ms)
        return res

    async def _switch_once(
        self, account_id: int, cmd: Command, prep: transfer.Prepare, start_ms: int, lead_ms: int
    ) -> tuple[SessionState, Sequence[core.Directive], Result] | None:
        async with self.service.engine.begin() as conn:
            state = await qs.load(conn, account_id)
            at_ms = transfer.switch_time(prep, now_ms(), start_ms, lead_ms)
            done = transfer.switch(state, prep, at_ms)
            if done is None:
                switched = None
            else:
                new, directives = done
                if not await qs.compare_and_set(conn, account_id, state.version, new, state):
                    switched = None
                else:
                    res = Result(cmd.command_id, "ok", "", new.version)
                    await qs.save_result(conn, account_id, res, now_ms())
                    switched = (new, directives, res)
        if switched is not None:
            self.service.warm.taken(account_id, prep.target)
        return switched

    def on_transfer_reply(self, reply: dict[str, Any]) -> None:
        """A target answered `ready` or `failed` (on this instance or another one)."""
        pending = self._transfers.get(str(reply.get("t")))
        if pending is None:
            return
        acct, target, fut = pending
        if reply.get("a") in acct and target == reply.get("d") and not fut.done():
            start = reply.get("s")
            fut.set_result(
                (
                    bool(reply.get("ok")),
                    str(reply.get("m") or "cannot play it"),
                    start if isinstance(start, int) and not isinstance(start, bool) else 0,
                )
            )
