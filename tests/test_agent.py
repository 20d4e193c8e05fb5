"""The device agent against an in-memory server, with every delivery made by the test.

`Server` is the server's side without I/O: the pure core applies commands and reports,
and each change goes to the device the way `tunehand serve` writes it (a command's
directives, then its state, then its result). The channel is a fake that records what
the agent sends; the player is a `FakePlayer` whose events wait until the test lets
them out, as mpv's do while it loads. Nothing moves by itself, so the test chooses
exactly where a player event falls among the messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tunehand.cli.resume import _pull
from tunehand.client.agent import Agent
from tunehand.core import session
from tunehand.core.commands import Command, Report, Result
from tunehand.core.model import Entry, Position, SessionState
from tunehand.core.protocol import (
    CommandMsg,
    DeviceHello,
    DirectiveMsg,
    Hello,
    Ready,
    ReportMsg,
    ResultMsg,
    ServerMessage,
    StateMsg,
    TrackView,
)
from tunehand.player.base import PlayerEvent
from tunehand.player.fake import FakePlayer

HERE, OTHER = "r2", "r1"
TRACK = TrackView("t1", "Long Tone One", duration_ms=40_000, url="/v1/stream/t1")
PAUSED_AT = 1_548


class HeldPlayer(FakePlayer):
    """A `FakePlayer` whose events wait in `held` until `release()`, as mpv's come only
    once it has loaded or seeked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[PlayerEvent] = []

    def _emit(self, event: PlayerEvent) -> None:
        self.held.append(event)

    def release(self) -> int:
        events, self.held = self.held, []
        for event in events:
            self._sink(event)
        return len(events)


class FakeChannel:
    """Records what the agent sends; every send succeeds at once."""

    server = "http://tunehand.test"
    connected = True

    def __init__(self) -> None:
        self.sent: list[object] = []
        self._more = asyncio.Event()

    def send(self, msg: object) -> asyncio.Future[bool]:
        self.sent.append(msg)
        self._more.set()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done

    async def next_sent(self) -> object:
        """The oldest message not taken yet, waiting for one if there is none."""
        while not self.sent:
            self._more.clear()
            await self._more.wait()
        return self.sent.pop(0)

    async def close(self) -> None:
        return None


class Server:
    """One account's session on the server, without I/O (see the module docstring)."""

    def __init__(self, state: SessionState, clock: Callable[[], int]) -> None:
        self.state = state
        self.clock = clock
        self.to_device: list[ServerMessage] = []
        """What the server wrote to the agent's device and the agent has not read yet."""
        self.history: list[SessionState] = [state]

    def _ctx(self, sender: str) -> session.Context:
        return session.Context(self.clock(), {"t1": TRACK.duration_ms}, (OTHER, HERE), 0, sender)

    def hello(self) -> Hello:
        return Hello(HERE, self.clock(), self.state.version, self._state_msg(None))

    def command(self, cmd: Command, sender: str = HERE) -> Result:
        out = session.apply(self.state, cmd, self._ctx(sender))
        if out.result.ok:
            self._publish(out.state, out.directives, cmd.command_id)
        res = out.result
        if sender == HERE:
            self.to_device.append(ResultMsg(res.command_id, res.code, res.message, res.version))
        return res

    def report(self, rep: Report) -> str:
        new, code = session.apply_report(self.state, HERE, rep, self._ctx(HERE))
        if new.version != self.state.version:
            self._publish(new, (), None)
        return code

    def take(self, msg: object) -> None:
        """A message from the agent reaches the server."""
        if isinstance(msg, CommandMsg):
            self.command(msg.command)
        elif isinstance(msg, ReportMsg):
            self.report(msg.report)

    def _state_msg(self, command_id: str | None) -> StateMsg:
        return StateMsg(self.state.version, self.state, TRACK, None, command_id)

    def _publish(
        self, new: SessionState, directives: tuple[session.Directive, ...], cid: str | None
    ) -> None:
        self.state = new
        self.history.append(new)
        for d in directives:
            if d.device_id == HERE:
                self.to_device.append(
                    DirectiveMsg(
                        d.action, d.term, d.entry_id, d.position_ms, d.at_ms, d.playing, TRACK
                    )
                )
        self.to_device.append(self._state_msg(cid))

    def deliver(self, agent: Agent) -> int:
        """Hand the agent everything written to it, in order."""
        n = 0
        while self.to_device:
            agent._on_message(self.to_device.pop(0))
            n += 1
        return n


def make_agent() -> tuple[Agent, FakeChannel, HeldPlayer]:
    async def token() -> str:
        return "token"

    agent = Agent(
        server=FakeChannel.server,
        token=token,
        device=DeviceHello(HERE, HERE, ("play",)),
        player_factory=None,
    )
    channel = FakeChannel()
    agent.channel = channel  # type: ignore[assignment]
    player = HeldPlayer(agent._on_player_event, asyncio.get_running_loop())
    agent.player = player
    return agent, channel, player


def paused_elsewhere(now_ms: int) -> SessionState:
    """One entry, paused at PAUSED_AT on the other device (a `ctl pause` there)."""
    return SessionState(
        version=3,
        queue=(Entry("e1.0", "t1", TRACK.duration_ms),),
        current="e1.0",
        position=Position(PAUSED_AT, now_ms, False, 0.0),
        active_device=OTHER,
        term=1,
    )


def kind(msg: object) -> Any:
    if isinstance(msg, CommandMsg):
        return ("command", msg.command.op)
    if isinstance(msg, ReportMsg):
        return ("report", msg.report.playing)
    return type(msg).__name__


def run_until_quiet(agent: Agent, channel: FakeChannel, player: HeldPlayer, server: Server) -> None:
    """Every message and player event goes through, in order, until nothing moves."""
    while server.to_device or channel.sent or player.held:
        server.deliver(agent)
        player.release()
        while channel.sent:
            server.take(channel.sent.pop(0))


async def test_resume_plays_when_its_player_gets_ready_before_the_play_state_arrives() -> None:
    """`tunehand resume` on a paused session: it pulls (the server writes the start
    directive and the state before the result), then asks to play. mpv finishes loading
    after the server applied that play but before its state reached the device, so the
    device reports "paused" from the state it still has; that report reaches the server
    after the play. The play must stand, and the player here must end up playing."""
    agent, channel, player = make_agent()
    server = Server(paused_elsewhere(agent.server_now()), agent.server_now)
    agent._on_message(server.hello())
    pulling = asyncio.create_task(_pull(agent, {}))

    transfer = await channel.next_sent()
    assert kind(transfer) == ("command", "transfer")
    server.take(transfer)
    assert [type(m) for m in server.to_device] == [DirectiveMsg, StateMsg, ResultMsg]
    server.deliver(agent)  # the player starts loading, paused at the session's position
    assert player.calls == [f"load e1.0 {PAUSED_AT} paused"]
    assert agent.mirror.state.active_device == HERE and not agent.mirror.state.position.playing

    play = await channel.next_sent()  # the pull's result is here: resume asks to play
    assert kind(play) == ("command", "play")
    server.take(play)  # applied; its state and result are on their way to the device
    assert server.state.position.playing

    assert player.release() == 1  # loaded: Ready, while the device still has it paused
    late = await channel.next_sent()
    assert kind(late) == ("report", False)
    server.take(late)  # the report reaches the server after the play

    run_until_quiet(agent, channel, player, server)
    assert (await pulling) is None

    st = server.state
    assert st.active_device == HERE and st.position.playing, st.position
    assert st.position.rate == 1.0, st.position  # the device said the audio is heard
    assert agent.mirror.state == st
    assert player.playing_tag() == "e1.0" and not player.paused(), player.calls


async def test_a_pause_from_elsewhere_stands_against_the_report_that_the_audio_started() -> None:
    """The device resumed for a `play` and reports the audio audible; meanwhile another
    device pauses. The report reaches the server after the pause: the pause stands."""
    agent, channel, player = make_agent()
    server = Server(paused_elsewhere(agent.server_now()), agent.server_now)
    agent._on_message(server.hello())
    server.command(Command("transfer", "c-pull", device_id=HERE))
    server.deliver(agent)
    player.release()  # loaded, paused
    run_until_quiet(agent, channel, player, server)
    server.command(Command("play", "c-play"), sender=OTHER)
    server.deliver(agent)  # resumes here, and says the audio is heard
    heard = await channel.next_sent()
    assert kind(heard) == ("report", True) and not player.paused()
    server.command(Command("pause", "c-pause"), sender=OTHER)
    paused_at, calls_before = len(server.history), len(player.calls)
    server.take(heard)  # after the pause

    run_until_quiet(agent, channel, player, server)
    st = server.state
    assert st.active_device == HERE and not st.position.playing, st.position
    assert agent.mirror.state == st
    assert player.playing_tag() == "e1.0" and player.paused(), player.calls
    # It never played again: not for a moment on the server, nor here.
    assert not any(s.position.playing for s in server.history[paused_at - 1 :])
    assert "resume" not in player.calls[calls_before:], player.calls


def held_switches(agent: Agent) -> list[Callable[[], None]]:
    """Make the agent's timed switches (start/stop at a server instant) wait for the test."""
    pending: list[Callable[[], None]] = []
    agent.directives._at = lambda _server_ms, fn: pending.append(fn)  # type: ignore[method-assign]
    return pending


async def test_a_transfer_back_before_the_stop_instant_keeps_its_prepared_track() -> None:
    """Playback moved away (a `stop` at a server instant still ahead) and, before that
    instant, a transfer back asks this device to prepare: the player loads the track
    for it. When the stop's instant comes it must not drop that load (with mpv the load
    is aborted, never gets ready, and the transfer back fails)."""
    agent, channel, player = make_agent()
    server = Server(paused_elsewhere(agent.server_now()), agent.server_now)
    agent._on_message(server.hello())
    switches = held_switches(agent)
    stop = DirectiveMsg("stop", 2, "e1.0", 0, agent.server_now() + 500, False, TRACK)
    agent._on_message(stop)
    prepare = DirectiveMsg("prepare", 3, "e1.0", 2_000, 0, False, TRACK, "x-back")
    agent._on_message(prepare)
    assert player.calls[-1] == "load e1.0 2000 paused"
    assert [fn() for fn in switches] == [None]  # the stop's instant
    assert "stop" not in player.calls, player.calls
    assert player.playing_tag() == "e1.0"
    player.release()  # loaded: ready for the transfer back
    assert [m.transfer_id for m in channel.sent if isinstance(m, Ready)] == ["x-back"]


async def test_nothing_reaches_the_player_after_leave() -> None:
    """A start due after the agent left, and a last snapshot published as the channel
    closes, leave the (closed) player alone."""
    agent, _channel, player = make_agent()
    server = Server(paused_elsewhere(agent.server_now()), agent.server_now)
    agent._on_message(server.hello())
    switches = held_switches(agent)
    start = DirectiveMsg("start", 2, "e1.0", 0, agent.server_now() + 500, True, TRACK)
    agent._on_message(start)
    await agent.leave()
    calls = list(player.calls)
    for fn in switches:
        fn()
    agent._on_message(DirectiveMsg("prepare", 3, "e1.0", 0, 0, False, TRACK, "x-late"))
    agent._publish("connection to the server lost; reconnecting")
    assert player.calls == calls, player.calls


async def test_stopping_at_the_start_moves_the_player_and_not_the_session_back() -> None:
    """`next` at the end of the queue leaves the session stopped at the start of its last
    entry. The device playing it pauses and goes to 0: it must not report where it was
    (which would put the session back there)."""
    agent, channel, player = make_agent()
    server = Server(paused_elsewhere(agent.server_now()), agent.server_now)
    agent._on_message(server.hello())
    server.command(Command("transfer", "c-pull", device_id=HERE))
    run_until_quiet(agent, channel, player, server)
    server.command(Command("play", "c-play"), sender=OTHER)
    server.command(Command("seek", "c-seek", position_ms=20_000), sender=OTHER)
    run_until_quiet(agent, channel, player, server)
    assert server.state.position.playing and not player.paused()
    assert (player.position_ms() or 0) >= 20_000

    server.command(Command("next", "c-next"), sender=OTHER)  # the queue's only entry
    stopped = server.state
    assert (stopped.position.position_ms, stopped.position.playing) == (0, False)
    run_until_quiet(agent, channel, player, server)
    st = server.state
    assert (st.current, st.position.playing) == ("e1.0", False)
    assert st.position.position_ms == 0, (st.position, player.calls)
    assert player.paused() and (player.position_ms() or 0) < 1_000, player.calls
    assert agent.mirror.state == st
