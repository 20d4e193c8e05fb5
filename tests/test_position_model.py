"""The position model (core/position.py) and the agent's drift check over it.

A fake player publishes its position in steps, as mpv does (`time-pos` on its playloop
ticks), while its audio runs slower than the server's clock (an output that underruns),
faster (a crystal that runs fast, exaggerated), or stalls. Time is a fake clock the
test moves: the agent's drift check runs every DRIFT_CHECK_S of it, its reports reach
the in-memory server at once and the server's states come back at once. The server's
position for the device must stay within 10 ms of what is audible at every tick
(DESIGN.md: re-anchored before the error passes 10 ms), and a stall is reported at
rate 0 (nobody runs the clock ahead of the speaker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.test_agent import HERE, TRACK, FakeChannel, Server
from tunehand.client import agent as agent_mod
from tunehand.client.agent import DRIFT_CHECK_S, Agent
from tunehand.core.model import Entry, Position, SessionState
from tunehand.core.position import DRIFT_MS, STALL_MS, PositionModel
from tunehand.core.protocol import DeviceHello, ReportMsg
from tunehand.player.fake import FakePlayer

START_MS = 10_000
"""Where playback is when the test starts."""
BOUND_MS = 10


class FakeTime:
    """Stands in for the `time` module in the agent: a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


class SteppedPlayer(FakePlayer):
    """Plays `audible(t)` (ms at fake time t, s) and publishes it in steps every
    `step_ms`, like mpv's `time-pos`; a step is exact at the instant it is published."""

    def __init__(
        self, clock: FakeTime, audible: Callable[[float], float], step_ms: float, **kw: Any
    ) -> None:
        super().__init__(lambda _e: None, asyncio.get_running_loop(), **kw)
        self.clock = clock
        self.audible = audible
        self.step_ms = step_ms
        self._tag = "e1.0"
        self._paused = False
        self.stalled: tuple[float, float] | None = None
        self.says_waiting = True

    def _last_step_time(self) -> float:
        t = self.clock.now
        return t - (t * 1000 % self.step_ms) / 1000

    def position_sample(self) -> tuple[int, float] | None:
        t = self._last_step_time()
        if self.stalled is not None and self.stalled[0] <= t < self.stalled[1]:
            t = self.stalled[0] - (self.stalled[0] * 1000 % self.step_ms) / 1000
        return round(self.audible(t)), t

    def waiting(self) -> bool:
        stalled = self.stalled is not None and self.stalled[0] <= self.clock.now < self.stalled[1]
        return stalled and self.says_waiting

    def position_ms(self) -> int | None:
        sample = self.position_sample()
        return None if sample is None else sample[0]


def playing_here(at_ms: int) -> SessionState:
    return SessionState(
        version=5,
        queue=(Entry("e1.0", "t1", TRACK.duration_ms),),
        current="e1.0",
        position=Position(START_MS, at_ms, True, 1.0),
        active_device=HERE,
        term=2,
        anchored=5,
    )


async def drive(
    monkeypatch: pytest.MonkeyPatch,
    audible_rate: float,
    step_ms: float,
    seconds: float,
    stall: tuple[float, float] | None = None,
    says_waiting: bool = True,
) -> tuple[list[float], list[Position]]:
    """Play for `seconds` of fake time; the server's error against the audible position
    at every check (ms), and every anchor the server took."""
    clock = FakeTime()
    monkeypatch.setattr(agent_mod, "time", clock)
    t0 = clock.now

    async def token() -> str:
        return "token"

    ag = Agent(
        server=FakeChannel.server,
        token=token,
        device=DeviceHello(HERE, HERE, ("play",)),
        player_factory=None,
    )
    channel = FakeChannel()
    ag.channel = channel  # type: ignore[assignment]
    server = Server(playing_here(round(t0 * 1000)), lambda: round(clock.now * 1000))
    ag.sync.add(agent_mod.Sample(0.0, 0.0))  # server time = this fake clock, in ms

    def audible(t: float) -> float:
        return START_MS + (t - t0) * 1000 * audible_rate

    player = SteppedPlayer(clock, audible, step_ms)
    player.says_waiting = says_waiting
    if stall is not None:
        player.stalled = (t0 + stall[0], t0 + stall[1])

        def audible_with_stall(t: float) -> float:
            lost = (
                min(max(0.0, t - player.stalled[0]), stall[1] - stall[0]) if player.stalled else 0
            )
            return START_MS + (t - t0 - lost) * 1000 * audible_rate

        player.audible = audible_with_stall
    ag.player = player
    ag._on_message(server.hello())
    errors: list[float] = []
    steps = round(seconds / DRIFT_CHECK_S)
    for _ in range(steps):
        clock.now += DRIFT_CHECK_S
        ag._check_drift()
        while channel.sent:
            msg = channel.sent.pop(0)
            if isinstance(msg, ReportMsg):
                server.report(msg.report)
        server.deliver(ag)
        truth = player.audible(clock.now)
        if player.stalled is not None and player.stalled[0] <= clock.now < player.stalled[1]:
            truth = player.audible(player.stalled[0])
        errors.append(server.state.position.at(round(clock.now * 1000)) - truth)
    anchors = [s.position for s in server.history[1:]]
    return errors, anchors


@pytest.mark.parametrize(
    ("rate", "step_ms"),
    [(0.91, 6.0), (0.91, 50.0), (1.05, 6.0), (1.0003, 50.0)],
    ids=["lags, small buffer", "lags, mpv's default", "leads", "a crystal's drift"],
)
async def test_the_servers_position_follows_a_player_whose_clock_is_not_the_servers(
    monkeypatch: pytest.MonkeyPatch, rate: float, step_ms: float
) -> None:
    errors, anchors = await drive(monkeypatch, rate, step_ms, seconds=6.0)
    worst = max(abs(e) for e in errors)
    # a step's worth of the rate difference on top of the drift bound
    assert worst <= BOUND_MS, (worst, anchors)
    if abs(rate - 1) > 0.01:
        assert anchors, "never re-anchored"
        # the rate was learned: after it, re-anchoring becomes rare
        assert abs(anchors[-1].rate - rate) <= 0.01, anchors[-1]
        late = [a for a in anchors if a.at_ms > anchors[0].at_ms + 3_000]
        assert len(late) <= 3, late


async def test_a_stall_is_reported_at_rate_0_and_playing_on_re_anchors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors, anchors = await drive(monkeypatch, 1.0, 6.0, seconds=3.0, stall=(1.0, 1.6))
    assert any(a.rate == 0 and a.playing for a in anchors), anchors
    assert anchors[-1].rate == 1.0, anchors[-1]
    # Seen STALL_MS after the last step (the player says it waits), then held.
    assert max(abs(e) for e in errors) <= STALL_MS + 2 * DRIFT_CHECK_S * 1000, errors
    assert max(abs(e) for e in errors[-50:]) <= DRIFT_MS + 1


def test_steps_are_reported_as_they_are_never_moved_on() -> None:
    """The anchor is the step itself (its position at its own time), whatever the rate."""
    m = PositionModel()
    for i in range(40):
        m.observe(1_000 + round(i * 50 * 0.9), 5_000 + i * 50)
    fix = m.check(Position(1_000, 5_000, True, 1.0), 5_000 + 39 * 50 + 20)
    assert fix == Position(1_000 + round(39 * 50 * 0.9), 5_000 + 39 * 50, True, 0.9)


def test_a_seek_starts_the_rate_over() -> None:
    m = PositionModel()
    for i in range(20):
        m.observe(1_000 + round(i * 50 * 0.8), i * 50)
    assert m.rate() == 0.8
    m.observe(60_000, 20 * 50)  # far off the line: a seek
    assert m.steps == 1 and m.rate() == 1.0


def test_the_same_step_again_is_not_a_step() -> None:
    m = PositionModel()
    assert m.observe(1_000, 0)
    assert not m.observe(1_000, 0)
    assert not m.observe(1_000, 30)  # held: mpv published nothing new
    assert m.steps == 1


async def test_steps_missing_while_the_player_plays_on_are_not_a_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No step for 0.3 s, and the player does not say it waits (mpv starved of CPU while
    its output plays on from its buffer): no rate-0 anchor; if the audio did stop, the
    first step after it re-anchors at once."""
    errors, anchors = await drive(
        monkeypatch, 1.0, 6.0, seconds=2.0, stall=(1.0, 1.3), says_waiting=False
    )
    assert not any(a.rate == 0 for a in anchors), anchors
    resumed = round(1.3 / DRIFT_CHECK_S) + 2
    assert max(abs(e) for e in errors[resumed:]) <= BOUND_MS, errors[resumed:]
