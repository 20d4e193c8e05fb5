"""Transfer directives on a device: the agent's side of a handoff.

The server moves playback between devices with directives (`core/transfer.py`): the
target is told to `prepare` (load the current entry paused at a position, then say
`Ready`), then at the planned server time T the target `start`s and the source
`stop`s. A `warm` directive keeps the predicted next device loaded paused near the
position (`server/warm.py`), so a transfer to it needs no prepare; `unwarm` lets that
go. `Directives` carries them out against the agent's player at T on the server
clock; the agent keeps the state they share with its reconciling (`_switching`,
`_directive_term`, `_preparing`, `_holding_for_transfer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tunehand.core.protocol import DirectiveMsg, Failed

if TYPE_CHECKING:
    from tunehand.client.agent import Agent

log = logging.getLogger("tunehand.agent")

START_SEEK_MS = 3
"""A transfer target held this far from the switch position seeks to it before T."""
WARM_SEEK_MS = 50
"""A warm device held this far from the position it is told seeks there (paused)."""


class Directives:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def on_directive(self, d: DirectiveMsg) -> None:
        a = self.agent
        player = a.player
        if a._stopped:
            return  # left: the player is closed
        if player is None:
            if d.action == "prepare":
                a._send(Failed(d.transfer_id, "this device does not play"))
            return
        if d.action == "prepare":
            if d.track is None or d.track.url is None or d.entry_id is None:
                a._send(Failed(d.transfer_id, "nothing to play"))
                return
            a._preparing = (d.transfer_id, d.entry_id)
            log.info("transfer %s: preparing %s", d.transfer_id, d.entry_id)
            a._holding_since = time.monotonic()
            a._load(d.entry_id, a._absolute(d.track.url), d.position_ms, True)
        elif d.action == "warm":
            self._keep_warm(d)
        elif d.action == "unwarm":
            self._unwarm()
        elif d.action == "start":
            self._seek_for_start(d)
            self._switch(d, lambda: self._start(d))
        elif d.action == "stop":
            a._holding_for_transfer = False
            self._switch(d, self._stop_for_transfer)

    def _keep_warm(self, d: DirectiveMsg, *, deferred: bool = False) -> None:
        """The predicted next device: hold the entry loaded, paused at the position
        (a seek while paused when it holds it already). Never while it plays here, nor
        while a transfer prepares or switches."""
        a = self.agent
        player = a.player
        if a._switching and not deferred:
            # This device's own stop (it just gave playback away) is still due: hold
            # the entry once that is done.
            self._at(d.at_ms, lambda: self._keep_warm(d, deferred=True))
            return
        if player is None or a._stopped or a._mine() or a._switching:
            return
        if a._preparing is not None or a._holding_for_transfer or d.entry_id is None:
            return
        if d.track is None or d.track.url is None:
            return
        a._warm = d.entry_id
        if player.playing_tag() != d.entry_id:
            a._load(d.entry_id, a._absolute(d.track.url), d.position_ms, True)
            log.info("warm: holding %s paused at %d ms", d.entry_id, d.position_ms)
            return
        if a._settling == d.entry_id:
            return
        if not player.paused():
            player.pause()  # never audible while warm
        pos = player.position_ms()
        if pos is not None and abs(pos - d.position_ms) > WARM_SEEK_MS:
            a._settling = d.entry_id
            a._seek(d.position_ms)

    def _unwarm(self) -> None:
        """No longer the predicted next device: let the held entry go."""
        a = self.agent
        held, a._warm = a._warm, None
        player = a.player
        if player is None or held is None or a._mine() or a._switching:
            return
        if a._preparing is not None or a._holding_for_transfer:
            return
        if player.playing_tag() == held:
            player.stop()
            a._next_prefetched = None
            log.info("warm: released %s", held)

    def _switch(self, d: DirectiveMsg, fn: Callable[[], None]) -> None:
        """Carry out a start/stop directive at its server time, then catch up with the state."""
        a = self.agent
        a._directive_term = max(a._directive_term, d.term)
        a._switching += 1

        def run() -> None:
            a._switching -= 1
            if a._stopped:
                return  # left meanwhile: the player is closed
            fn()
            a._reconcile()

        self._at(d.at_ms, run)

    def _at(self, server_ms: int, fn: Callable[[], None]) -> None:
        """Run `fn` when the server clock reads `server_ms` (at once if that has passed)."""
        a = self.agent
        loop = asyncio.get_running_loop()
        delay_s = (a.sync.local_ms(server_ms) - a._local_ms()) / 1000
        if delay_s <= 0.0005:
            fn()
        else:
            loop.call_at(loop.time() + delay_s, fn)

    def _seek_for_start(self, d: DirectiveMsg) -> None:
        """A prepared target held off the switch position (the source's line moved since
        the prepare) seeks there now, paused, so at T it only has to unpause."""
        a = self.agent
        player = a.player
        if player is None or d.entry_id is None or player.playing_tag() != d.entry_id:
            return
        if a._settling == d.entry_id or not player.paused():
            return
        pos = player.position_ms()
        if pos is not None and abs(pos - d.position_ms) > START_SEEK_MS:
            a._settling = d.entry_id
            a.model.reset()
            a._seek(d.position_ms)

    def _start(self, d: DirectiveMsg) -> None:
        a = self.agent
        player = a.player
        if player is None or d.entry_id is None:
            return
        a._holding_for_transfer = False
        a._warm = None
        if player.playing_tag() != d.entry_id:
            if d.track is None or d.track.url is None:
                return
            a._load(d.entry_id, a._absolute(d.track.url), d.position_ms, not d.playing)
        else:
            pos = player.position_ms()
            # Past T (the directive came late): where the session is now, not at T.
            want = d.position_ms + (max(0, a.server_now() - d.at_ms) if d.playing else 0)
            held = a._settling != d.entry_id and player.paused()
            if held and pos is not None and abs(pos - want) > START_SEEK_MS:
                a._settling = d.entry_id
                a._seek(want)
            a.model.reset()
            if d.playing:
                player.resume()
        a._last_anchor = a._last_position = None
        a._reported = None
        a._publish("playback moved here")

    def _stop_for_transfer(self) -> None:
        a = self.agent
        if a._preparing is not None:
            # A transfer back here came before this switch's instant, and the player is
            # loading for it already (that load replaced what played): stopping now
            # would drop it, and that transfer would fail as never ready.
            return
        if a.player is not None and a.player.playing_tag() is not None:
            a.player.pause()
            a.player.stop()
            a._next_prefetched = None
            a._publish("playback moved to another device")
