"""A client's copy of the session: server state in `version` order, plus optimistic predictions.

`Mirror` takes what the server sends (`hello`, `state`, `result`) and what the user
does (`predict`), and says what to show (`shown`): the last server state with the
commands still in flight replayed on top by the same pure core. Older states are
dropped; a refused command simply stops being replayed, so the rollback is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunehand.core import session as core
from tunehand.core.commands import Command, Result
from tunehand.core.model import DeviceInfo, SessionState
from tunehand.core.protocol import DevicesMsg, Hello, StateMsg, TrackView


@dataclass
class Mirror:
    state: SessionState = field(default_factory=SessionState)
    track: TrackView | None = None
    next_track: TrackView | None = None
    devices: tuple[DeviceInfo, ...] = ()
    pending: list[Command] = field(default_factory=list)
    refused: list[Result] = field(default_factory=list)
    """Refusals not yet told to the user; the caller drains it."""
    confirmed: dict[str, int] = field(default_factory=dict)
    """Pending commands the server applied (command_id -> version) whose state is not here
    yet: they are replayed until it is, so the prediction does not flicker off and on."""

    @property
    def version(self) -> int:
        return self.state.version

    def on_hello(self, msg: Hello) -> None:
        self.devices = msg.devices
        if msg.state is not None:
            self.on_state(msg.state, force=True)

    def on_state(self, msg: StateMsg, *, force: bool = False) -> bool:
        """Take a state; False (and nothing changes) when it is not newer than ours."""
        if not force and msg.version <= self.state.version:
            return False
        self.state = msg.state
        self.track = msg.track
        self.next_track = msg.next_track
        done = {cid for cid, v in self.confirmed.items() if v <= self.state.version}
        if msg.command_id is not None:
            done.add(msg.command_id)
        if done:
            self.pending = [c for c in self.pending if c.command_id not in done]
            self.confirmed = {cid: v for cid, v in self.confirmed.items() if cid not in done}
        return True

    def on_devices(self, msg: DevicesMsg) -> None:
        if not msg.patch:
            self.devices = msg.devices
            return
        changed = {d.id: d for d in msg.devices}
        gone = set(msg.removed)
        kept = [changed.pop(d.id, d) for d in self.devices if d.id not in gone]
        self.devices = (*kept, *(d for d in changed.values() if d.id not in gone))

    def on_result(self, res: Result) -> None:
        if res.ok and res.version > self.state.version and self._is_pending(res.command_id):
            self.confirmed[res.command_id] = res.version
        else:
            self.pending = [c for c in self.pending if c.command_id != res.command_id]
        if not res.ok:
            self.refused.append(res)

    def _is_pending(self, command_id: str) -> bool:
        return any(c.command_id == command_id for c in self.pending)

    def predict(self, cmd: Command, ctx: core.Context) -> core.Outcome:
        """Record a command sent to the server and return its predicted outcome."""
        base = self.shown(ctx)
        self.pending.append(cmd)
        return core.apply(base, cmd, ctx)

    def shown(self, ctx: core.Context) -> SessionState:
        """What to show now: the server's state with pending commands replayed on it."""
        state = self.state
        for cmd in self.pending:
            out = core.apply(state, cmd, ctx)
            if out.result.ok:
                state = out.state
        return state
