"""Each device corrects its clock by its measured offset to the server (README,
"Handoff"): two in-process device agents whose local clocks are minutes apart, against
a real server, agree with the server's clock and switch a handoff at one server instant.

The server runs on this machine, so its clock is our wall clock: `time.time()` says
when, in server time, each player was really told to stop and to start. The players
are `FakePlayer`s (the boundary: no audio); everything else is the real agent, channel
and server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.fixtures_server import ServerProc, launch
from tests.test_api import Api, add_users, all_tracks
from tunehand.client.agent import COARSE_DELAY_MS, Agent
from tunehand.core.protocol import DeviceHello
from tunehand.player.base import EventSink
from tunehand.player.fake import FakePlayer

SKEWS_MS = {"ahead": 431_000.0, "behind": -257_000.0}
"""How far each device's local clock is off (on top of monotonic vs. wall time)."""
TOLERANCE_MS = 80
"""Loopback round trips are ~1 ms; the rest is a loaded machine's scheduling."""
WAIT_S = 20.0


def wall_ms() -> float:
    return time.time() * 1000


class TimedPlayer(FakePlayer):
    """Notes the server time (our wall clock) of every start of play and every stop."""

    def __init__(self, sink: EventSink, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(sink, loop)
        self.at: list[tuple[str, float]] = []

    def load(
        self, tag: str, url: str, *, position_ms: int, paused: bool, offset: bool = False
    ) -> None:
        if not paused:
            self.at.append(("play", wall_ms()))
        super().load(tag, url, position_ms=position_ms, paused=paused, offset=offset)

    def resume(self) -> None:
        self.at.append(("play", wall_ms()))
        super().resume()

    def stop(self) -> None:
        self.at.append(("stop", wall_ms()))
        super().stop()

    def when(self, call: str) -> float | None:
        return next((t for c, t in reversed(self.at) if c == call), None)


class SkewedAgent(Agent):
    skew_ms = 0.0

    def _local_ms(self) -> float:  # type: ignore[override]
        return time.monotonic() * 1000 + self.skew_ms


async def until(cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := cond()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)
    return value


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = launch(tmp_path_factory.mktemp("clock"))
    add_users(server, "clock")
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def device(srv: ServerProc, name: str) -> AsyncIterator[SkewedAgent]:
    dev_id = f"d{name}{time.monotonic_ns()}"
    token = (await asyncio.to_thread(srv.login, "clock", "secret-pw", dev_id))["access_token"]

    async def get_token() -> str:
        return str(token)

    agent = SkewedAgent(
        server=srv.url,
        token=get_token,
        device=DeviceHello(dev_id, name, ("play",)),
        player_factory=TimedPlayer,
    )
    agent.skew_ms = SKEWS_MS[name]
    runner = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.first_state.wait(), WAIT_S)
        # the first exchange answered (the coarse estimate from `hello` is replaced)
        await until(lambda: agent.sync.rtt_ms < COARSE_DELAY_MS, f"{name}: no time reply")
        yield agent
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await agent.channel.close()


def player(agent: Agent) -> TimedPlayer:
    assert isinstance(agent.player, TimedPlayer)
    return agent.player


async def test_devices_with_skewed_clocks_agree_with_the_server_and_switch_together(
    srv: ServerProc,
) -> None:
    api = Api(srv, "clock", await asyncio.to_thread(srv.login, "clock"))
    track = (await asyncio.to_thread(all_tracks, api))[0]["id"]
    async with device(srv, "ahead") as a, device(srv, "behind") as b:
        for agent in (a, b):
            assert abs(agent._local_ms() - wall_ms()) > 200_000  # really off
            assert abs(agent.server_now() - wall_ms()) <= TOLERANCE_MS, agent.sync
        res = await a.command("play", track_ids=(track,), device_id=a.device.id)
        assert res.ok, res
        await until(lambda: player(a).when("play"), "a never played")
        res = await b.command("transfer", device_id=b.device.id)
        assert res.ok, res
        state = b.mirror.state
        assert state.active_device == b.device.id
        switch_at = state.position.at_ms  # the server instant of the switch
        stopped = await until(lambda: player(a).when("stop"), "a never stopped")
        started = await until(lambda: player(b).when("play"), "b never started")
        assert abs(stopped - switch_at) <= TOLERANCE_MS, (stopped - switch_at, a.sync)
        assert abs(started - switch_at) <= TOLERANCE_MS, (started - switch_at, b.sync)
        assert abs(started - stopped) <= TOLERANCE_MS
    api.close()
