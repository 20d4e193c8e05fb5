"""An in-memory server room and clients for testing the pure core, h11 `ConnectionPair` style.

`Room` holds one `SessionState` and does what the server does with it, minus the I/O:
it applies commands with `session.apply` (once per `command_id`: a retry gets the
original `Result`), takes device reports, and fans every new state out as a `StateMsg`
to each connected `Client`. A client is a `Mirror` plus two in-memory links:

    client.outbox   commands waiting to reach the room     (client -> room)
    client.inbox    messages waiting to reach the client   (room -> client)

Nothing moves by itself. Tests move messages explicitly (`transmit`, `receive`,
`Pair.flush`) and may reorder, drop or duplicate them in the deques first. Every
message is encoded and decoded by `tunehand.wire` on its way, as on a real channel.

A `transfer` of playing audio goes as the server's `_transfer` does it, with the pure
`tunehand.core.transfer`: the room sends the target a `prepare` and waits; the target's
`ready` (`Client.answer`) switches both devices at one instant with a new term, its
`failed` or 3 s of room time without an answer (`Room.advance`) aborts it with
`transfer_failed` and leaves the session as it was. A reply for no waiting transfer
(late, repeated, from another device) is ignored, as the server ignores it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tunehand import wire
from tunehand.core import session, transfer
from tunehand.core.commands import Command, Report, Result
from tunehand.core.mirror import Mirror
from tunehand.core.model import SessionState
from tunehand.core.protocol import (
    CommandMsg,
    DirectiveMsg,
    Failed,
    Hello,
    Ready,
    ResultMsg,
    ServerMessage,
    StateMsg,
)

START_MS = 1_000_000
DURATIONS: Mapping[str, int] = {f"t{i}": 180_000 + 1_000 * i for i in range(20)}


@dataclass
class Client:
    """One device: its mirror of the session and both ends of its link to the room."""

    device_id: str
    room: Room
    mirror: Mirror = field(default_factory=Mirror)
    outbox: deque[CommandMsg] = field(default_factory=deque)
    inbox: deque[ServerMessage] = field(default_factory=deque)
    directives: list[DirectiveMsg] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    _ids: int = 0

    def new_id(self) -> str:
        self._ids += 1
        return f"{self.device_id}-c{self._ids}"

    def send(self, op: str, **fields: object) -> Command:
        """Make a command (fresh `command_id`), predict it locally and queue it for the room."""
        cmd = Command(op, fields.pop("command_id", None) or self.new_id(), **fields)  # type: ignore[arg-type]
        self.send_command(cmd)
        return cmd

    def send_command(self, cmd: Command) -> session.Outcome:
        out = self.mirror.predict(cmd, self.room.context(self.device_id))
        self.outbox.append(CommandMsg(cmd))
        return out

    def transmit(self, count: int | None = None) -> int:
        """Deliver up to `count` (default all) queued commands to the room, in order."""
        n = 0
        while self.outbox and (count is None or n < count):
            msg = _over_the_wire_client(self.outbox.popleft())
            self.room.receive(self.device_id, msg.command)
            n += 1
        return n

    def receive(self, count: int | None = None) -> int:
        """Hand up to `count` (default all) waiting server messages to the mirror, in order."""
        n = 0
        while self.inbox and (count is None or n < count):
            self.deliver(self.inbox.popleft())
            n += 1
        return n

    def deliver(self, msg: ServerMessage) -> None:
        msg = wire.decode_server(wire.encode(msg))
        if isinstance(msg, Hello):
            self.mirror.on_hello(msg)
        elif isinstance(msg, StateMsg):
            self.mirror.on_state(msg)
        elif isinstance(msg, ResultMsg):
            res = Result(msg.command_id, msg.code, msg.message, msg.version)
            self.results.append(res)
            self.mirror.on_result(res)
        elif isinstance(msg, DirectiveMsg):
            self.directives.append(msg)
        else:  # pragma: no cover - the room sends nothing else
            raise AssertionError(f"unexpected message {msg!r}")

    def prepares(self) -> list[DirectiveMsg]:
        return [d for d in self.directives if d.action == "prepare"]

    def answer(
        self,
        ok: bool = True,
        message: str = "",
        transfer_id: str | None = None,
        start_ms: int = 0,
    ) -> None:
        """Answer the last `prepare` (or `transfer_id`): `ready` (with the device's own
        start delay), or `failed` with `message`."""
        tid = transfer_id if transfer_id is not None else self.prepares()[-1].transfer_id
        reply: Ready | Failed = Ready(tid, start_ms) if ok else Failed(tid, message)
        decoded = wire.decode_client(wire.encode(reply))
        assert isinstance(decoded, Ready | Failed)
        self.room.transfer_reply(self.device_id, decoded)

    def states_waiting(self) -> list[StateMsg]:
        return [m for m in self.inbox if isinstance(m, StateMsg)]

    def shown(self) -> SessionState:
        return self.mirror.shown(self.room.context(self.device_id))


@dataclass(frozen=True)
class Handoff:
    """A transfer waiting for its target's answer (the server's `_transfers` entry)."""

    transfer_id: str
    sender: str
    command: Command
    prepare: transfer.Prepare
    started_ms: int


@dataclass
class Room:
    """The server side of one account, without I/O: state, dedup table, fan-out."""

    state: SessionState = field(default_factory=SessionState)
    now_ms: int = START_MS
    durations: Mapping[str, int] = field(default_factory=lambda: dict(DURATIONS))
    clients: dict[str, Client] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    applied: list[Command] = field(default_factory=list)
    """Commands that changed the state, in the order they were applied."""
    history: dict[int, SessionState] = field(default_factory=dict)
    """Every state the room has held, by version."""
    seed: int = 0
    transfers: dict[str, Handoff] = field(default_factory=dict)
    """Transfers whose target was asked to prepare and has not answered, by transfer id."""
    _transfer_ids: int = 0

    def __post_init__(self) -> None:
        self.history[self.state.version] = self.state

    def context(self, sender: str | None = None) -> session.Context:
        return session.Context(self.now_ms, self.durations, tuple(self.clients), self.seed, sender)

    def advance(self, ms: int) -> None:
        """Move room time on; a transfer unanswered for `READY_TIMEOUT_MS` is aborted."""
        self.now_ms += ms
        for h in list(self.transfers.values()):
            if self.now_ms - h.started_ms >= transfer.READY_TIMEOUT_MS:
                del self.transfers[h.transfer_id]
                self._abort(h, "the device was not ready within 3 s")

    def connect(self, device_id: str) -> Client:
        """A device comes online and gets `hello` with the full state (not yet delivered)."""
        client = Client(device_id, self)
        self.clients[device_id] = client
        client.inbox.append(Hello(device_id, self.now_ms, self.state.version, self._state_msg()))
        return client

    def resync(self, device_id: str) -> None:
        """The client saw a gap and asked for the whole state again."""
        self.clients[device_id].inbox.append(self._state_msg())

    def disconnect(self, device_id: str) -> None:
        """The device's channel is gone: it is offline, and if it was playing, paused."""
        del self.clients[device_id]
        new = session.device_lost(self.state, device_id, self.now_ms)
        if new is not None:
            self._publish(new, ())

    def receive(self, device_id: str, cmd: Command) -> Result | None:
        """Apply `cmd` and answer its sender; None while a transfer waits for its target."""
        if (
            cmd.command_id not in self.results
            and cmd.op == "transfer"
            and self._prepare(device_id, cmd)
        ):
            return None
        return self._execute(device_id, cmd)

    def _execute(self, device_id: str, cmd: Command) -> Result:
        """Apply `cmd` plainly with the core, once per `command_id`, and answer its sender."""
        prior = self.results.get(cmd.command_id)
        if prior is not None:
            res = prior
        else:
            self.seed += 1
            out = session.apply(self.state, cmd, self.context(device_id))
            res = self.results[cmd.command_id] = out.result
            if out.result.ok:
                self.applied.append(cmd)
                self._publish(out.state, out.directives, cmd.command_id)
        self._answer(device_id, res)
        return res

    def transfer_reply(self, device_id: str, reply: Ready | Failed) -> None:
        """The target answered: switch (`ready`) or abort (`failed`)."""
        h = self.transfers.get(reply.transfer_id)
        if h is None or h.prepare.target != device_id:
            return
        del self.transfers[reply.transfer_id]
        if isinstance(reply, Failed):
            self._abort(h, reply.message or "cannot play it")
            return
        at = transfer.switch_time(h.prepare, self.now_ms, reply.start_ms)
        done = transfer.switch(self.state, h.prepare, at)
        if done is None:
            # The session changed while the target prepared: apply the command plainly.
            self._execute(h.sender, h.command)
            return
        new, directives = done
        res = self.results[h.command.command_id] = Result(
            h.command.command_id, "ok", "", new.version
        )
        self.applied.append(h.command)
        self._publish(new, directives, h.command.command_id)
        self._answer(h.sender, res)

    def _prepare(self, device_id: str, cmd: Command) -> bool:
        """Send the target a `prepare` when the transfer needs one (as `plan` says)."""
        target = cmd.device_id
        if target is None or target not in self.clients:
            return False
        source_online = self.state.active_device in self.clients
        prep = transfer.plan(self.state, target, source_online, self.now_ms, paused=cmd.paused)
        if prep is None:
            return False
        self._transfer_ids += 1
        tid = f"x{self._transfer_ids}"
        self.transfers[tid] = Handoff(tid, device_id, cmd, prep, self.now_ms)
        self.clients[target].inbox.append(
            DirectiveMsg(
                "prepare",
                self.state.term,
                prep.entry_id,
                prep.position_ms,
                prep.switch_at_ms,
                True,
                None,
                tid,
            )
        )
        return True

    def _abort(self, h: Handoff, message: str) -> None:
        cid = h.command.command_id
        res = self.results[cid] = Result(
            cid, "transfer_failed", f"transfer aborted ({message}); playback stays where it was"
        )
        self._answer(h.sender, res)

    def _answer(self, device_id: str, res: Result) -> None:
        client = self.clients.get(device_id)
        if client is not None:
            client.inbox.append(ResultMsg(res.command_id, res.code, res.message, res.version))

    def report(self, device_id: str, rep: Report) -> str:
        new, code = session.apply_report(self.state, device_id, rep, self.context(device_id))
        if new.version != self.state.version:
            self._publish(new, ())
        return code

    def _state_msg(self, command_id: str | None = None) -> StateMsg:
        return StateMsg(self.state.version, self.state, command_id=command_id)

    def _publish(
        self,
        new: SessionState,
        directives: Iterable[session.Directive],
        command_id: str | None = None,
    ) -> None:
        assert new.version == self.state.version + 1
        self.state = new
        self.history[new.version] = new
        for d in directives:
            target = self.clients.get(d.device_id)
            if target is not None:
                target.inbox.append(
                    DirectiveMsg(d.action, d.term, d.entry_id, d.position_ms, d.at_ms, d.playing)
                )
        msg = self._state_msg(command_id)
        for client in self.clients.values():
            client.inbox.append(msg)


@dataclass
class Pair:
    """A room and its clients, with `flush` to move every message until all links are empty."""

    room: Room
    clients: list[Client]

    @property
    def a(self) -> Client:
        return self.clients[0]

    @property
    def b(self) -> Client:
        return self.clients[1]

    @property
    def c(self) -> Client:
        return self.clients[2]

    def flush(self) -> None:
        while any(c.outbox or c.inbox for c in self.clients):
            for c in self.clients:
                c.transmit()
            for c in self.clients:
                c.receive()

    def converged(self) -> bool:
        return all(c.mirror.state == self.room.state for c in self.clients)


def connect(*device_ids: str, state: SessionState | None = None) -> Pair:
    """A room with these devices connected and their `hello` delivered."""
    room = Room(state if state is not None else SessionState())
    pair = Pair(room, [room.connect(d) for d in device_ids])
    pair.flush()
    return pair


def _over_the_wire_client(msg: CommandMsg) -> CommandMsg:
    decoded = wire.decode_client(wire.encode(msg))
    assert isinstance(decoded, CommandMsg)
    return decoded
