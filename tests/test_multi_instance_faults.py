"""Two real instances on one PostgreSQL and one Redis, through faults.

- An instance dies (SIGKILL) behind a load balancer (`tests.tcp_proxy`): its device
  reconnects through the balancer to the other instance and resyncs; nothing is lost.
- Redis restarts: the instances resubscribe, their devices are resynced with what
  changed meanwhile, commands fan out across instances again and presence comes back.
- PostgreSQL restarts: while it is down a command gets a clear retryable error (503
  `unavailable` over HTTP, a `result` with code `unavailable` on the channel), nothing
  is half-applied, and afterwards everything works again.

The outages stop and start this module's own throwaway PostgreSQL and Redis
(`tests.services`), never the machine's services nor the ones the other tests share.
Each test gets its own pair of instances on a fresh database; a service stopped by a
test is started again whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.audiogen import make_library
from tests.fixtures_server import Backend, ServerProc, two_instances
from tests.services import Postgres, Redis, ServiceMissing
from tests.tcp_proxy import TcpProxy
from tests.test_api import (
    Api,
    Chan,
    acmd,
    add_users,
    all_tracks,
    channel,
    expect_closed,
    unique,
    ws_url,
)
from tunehand.client.agent import Agent
from tunehand.core.protocol import DeviceHello

RECONNECT_TIMEOUT_S = 20.0
"""Deadline for instances and devices to recover (the bus backs off up to 5 s, the
client's reconnect up to 15 s, presence beats every 5 s)."""
OUTAGE_S = 2.0
"""How long Redis stays down (the fault's length, not a wait for anything)."""

Json = dict[str, Any]
Pair = tuple[ServerProc, ServerProc]


# --- the module's own services -----------------------------------------------------


@dataclass(frozen=True)
class Services:
    redis: Redis
    postgres: Postgres


@contextlib.asynccontextmanager
async def outage(stop: Callable[[], None], start: Callable[[], object]) -> Any:
    """Stop a service for the block; it is started again whatever happens (the blocking
    calls run in a thread, so the test's websockets keep answering the server's pings)."""
    try:
        await asyncio.to_thread(stop)
        yield
    finally:
        await asyncio.to_thread(start)


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """A Redis and a PostgreSQL for this module alone: the ones its faults stop."""
    with contextlib.ExitStack() as stack:
        try:
            redis = stack.enter_context(Redis())
            postgres = stack.enter_context(Postgres())
        except ServiceMissing as e:
            pytest.skip(f"no throwaway server for the fault tests: {e}")
        yield Services(redis, postgres)


@pytest.fixture(scope="module")
def own_backend(services: Services) -> Iterator[Backend]:
    """Deployments on the module's own services (a fresh database and prefix each)."""
    b = Backend("postgres", postgres_url=services.postgres.url, redis_url=services.redis.url)
    yield b
    b.close()


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("faults-music"))


@pytest.fixture
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    music: Path,
    services: Services,
    own_backend: Backend,
) -> Iterator[Pair]:
    """Instances A (scans) and B (--no-scan) on a fresh deployment; A may get killed."""
    try:
        with two_instances(tmp_path_factory, own_backend.store(), music) as both:
            yield both
    finally:
        # A failed test may have left a service down (outage() restarts it too); the
        # backend drops the database and the Redis keys at the end of the module.
        services.redis.start()
        services.postgres.start()


def api_on(srv: ServerProc, name: str) -> Api:
    return Api(srv, name, srv.login(name))


def assert_log_clean(*servers: ServerProc) -> None:
    for srv in servers:
        text = "\n".join(srv.log)
        assert "Traceback" not in text, text
        assert "unexpected error" not in text, text


# --- an instance dies ------------------------------------------------------------


class Hellos:
    """Counts the agent's `hello`s (every (re)connection) from its event stream."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.count = 0
        self.lost = 0

    async def wait(self, count: int, timeout: float = RECONNECT_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout):
            while self.count < count:
                event = await self.agent.events.get()
                if event == "connected to the server":
                    self.count += 1
                elif event.startswith("connection to the server lost"):
                    self.lost += 1


async def test_a_device_behind_the_balancer_moves_to_the_surviving_instance(pair: Pair) -> None:
    a, b = pair
    name = unique("kill")
    add_users(a, name)
    on_b = api_on(b, name)
    tracks = [t["id"] for t in all_tracks(on_b)[:3]]
    remote_id = unique("remote")
    agent_tokens = a.login(name, device_id=remote_id)  # a channel is its token's device's

    async def token() -> str:
        return str(agent_tokens["access_token"])

    with TcpProxy.to_url(a.url) as balancer:
        agent = Agent(
            server=balancer.url,
            token=token,
            device=DeviceHello(remote_id, "remote", ()),
            player_factory=None,
        )
        hellos = Hellos(agent)
        running = asyncio.create_task(agent.run())
        try:
            await hellos.wait(1)
            assert agent.connected.is_set()
            async with httpx.AsyncClient(base_url=a.url, headers=on_b.headers) as http_a:
                await acmd(http_a, "queue_add", track_ids=tracks[:2])
                before = (await acmd(http_a, "volume", value=33))["state"]
            assert await agent.wait_for(lambda st: st.version == before["version"], 5.0)

            a.stop(signal.SIGKILL)
            assert a.proc.returncode == -signal.SIGKILL
            # While the device is cut off, the session moves on through B.
            async with httpx.AsyncClient(base_url=b.url, headers=on_b.headers) as http_b:
                missed = (await acmd(http_b, "queue_add", track_ids=tracks[2:3]))["state"]
                assert missed["version"] == before["version"] + 1
                balancer.switch(b.url)  # the balancer's health check took A out
                await hellos.wait(2)
                assert hellos.lost >= 1 and agent.connected.is_set()
                # The new hello resynced it: what was made before the kill and what it missed.
                st = agent.mirror.state
                assert st.version == missed["version"]
                assert [e.track_id for e in st.queue] == tracks
                assert [e["entry_id"] for e in before["queue"]] == [
                    e.entry_id for e in st.queue[:2]
                ]
                assert st.volume == 33
                # A command on B afterwards reaches it live.
                after = (await acmd(http_b, "volume", value=44))["state"]
            assert await agent.wait_for(
                lambda st: st.version == after["version"] and st.volume == 44, 5.0
            )
            # And it works as a remote again, through B.
            res = await asyncio.wait_for(agent.command("volume", value=55), 5.0)
            assert res.ok and res.version == after["version"] + 1
            assert on_b.state()["volume"] == 55
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            on_b.close()
    assert_log_clean(b)


# --- Redis restarts --------------------------------------------------------------


async def test_redis_restart_resubscribes_and_resyncs(pair: Pair, services: Services) -> None:
    a, b = pair
    name = unique("redis")
    add_users(a, name)
    on_a, on_b = api_on(a, name), api_on(b, name)
    async with (
        channel(a, on_a.token, capabilities=("play",)) as dev,
        httpx.AsyncClient(base_url=b.url, headers=on_b.headers, timeout=30) as http,
        contextlib.AsyncExitStack() as late,
    ):
        first = (await acmd(http, "volume", value=10))["state"]
        await dev.wait("state", lambda m: m["version"] == first["version"])

        async with outage(services.redis.stop, services.redis.start):
            # The database holds the session: a command still applies (its fan-out is
            # lost with Redis, and made up for by the resync once Redis is back).
            r = await http.post(
                "/v1/session/commands",
                json={"op": "volume", "command_id": unique("c"), "value": 20},
            )
            assert r.status_code == 200, r.text
            during = r.json()["state"]
            assert during["version"] == first["version"] + 1
            # A device connecting now (B's first for the account: a new bus topic) works.
            joined = await late.enter_async_context(channel(b, on_b.token))
            assert joined.hello["version"] == during["version"]
            # Redis stays down for a while, as a real restart does: the instances' bus
            # retries fail meanwhile and must keep retrying.
            await asyncio.sleep(OUTAGE_S)

        # A resubscribed and resynced its device with what it missed.
        msg = await dev.wait(
            "state", lambda m: m["version"] >= during["version"], RECONNECT_TIMEOUT_S
        )
        assert msg["version"] == during["version"] and msg["state"]["volume"] == 20
        # A command on B reaches the device on A again (the bus backs off up to 5 s),
        # and one on A reaches the device that joined B during the outage.
        after = (await acmd(http, "volume", value=30))["state"]
        await dev.wait("state", lambda m: m["version"] == after["version"], RECONNECT_TIMEOUT_S)
        last = on_a.cmd("volume", value=40)["state"]
        await joined.wait("state", lambda m: m["version"] == last["version"], RECONNECT_TIMEOUT_S)
        # Presence comes back with A's next heartbeat: B sees the device online.
        await presence_online(http, dev.device_id)
    on_a.close()
    on_b.close()
    assert_log_clean(a, b)


async def presence_online(http: httpx.AsyncClient, device_id: str) -> None:
    """Poll B's device list (presence has no event for it) until the device is online."""
    async with asyncio.timeout(RECONNECT_TIMEOUT_S):
        while True:
            devices = (await http.get("/v1/devices")).json()["devices"]
            mine = [d for d in devices if d["id"] == device_id]
            if mine and mine[0]["online"] and "play" in mine[0]["capabilities"]:
                return
            await asyncio.sleep(0.2)


# --- PostgreSQL restarts -----------------------------------------------------------


async def test_postgres_restart_gives_retryable_errors_and_loses_nothing(
    pair: Pair, services: Services
) -> None:
    a, b = pair
    name = unique("pg")
    add_users(a, name)
    on_b = api_on(b, name)
    tracks = [t["id"] for t in all_tracks(on_b)[:2]]
    async with (
        channel(a, api_on(a, name).token) as dev,
        httpx.AsyncClient(base_url=b.url, headers=on_b.headers, timeout=30) as http,
        contextlib.AsyncExitStack() as leaving,
    ):
        gone = await leaving.enter_async_context(channel(a, on_b.token))
        await acmd(http, "queue_add", track_ids=tracks)
        base = (await acmd(http, "volume", value=25))["state"]
        await dev.wait("state", lambda m: m["version"] == base["version"])
        retried = {"op": "volume", "command_id": unique("retry"), "value": 70}

        async with outage(services.postgres.stop, services.postgres.start):
            r = await http.post("/v1/session/commands", json=retried)
            assert_unavailable(r)
            r = await http.get("/v1/session")
            assert_unavailable(r)
            res = await dev.command("volume", value=80)
            assert res["code"] == "unavailable", res
            assert res["message"]
            # A device that connects now is told so and asked to come back later (not
            # refused as unauthorized); one that leaves now is not lost with a traceback.
            async with connect(ws_url(a)) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "type": "auth",
                            "token": on_b.token,
                            "device": {"id": unique("late"), "name": "late", "capabilities": []},
                        }
                    )
                )
                err = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
                assert (err["type"], err["code"]) == ("error", "unavailable"), err
                assert await expect_closed(ws) == 1013
            await leaving.aclose()
            await asyncio.to_thread(a.wait_for_line, f"loss of device {gone.device_id}", 10.0)

        # Nothing was half-applied: exactly the state from before the outage.
        now = on_b.state()
        assert now == base
        # The command refused during the outage, retried with its id, applies once.
        r = await http.post("/v1/session/commands", json=retried)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["version"] == base["version"] + 1
        again = await http.post("/v1/session/commands", json=retried)
        assert again.json()["result"] == r.json()["result"]
        await dev.wait("state", lambda m: m["version"] == base["version"] + 1)
        # Both instances and the channel work again.
        res = await dev.command("volume", value=90)
        assert res["code"] == "ok" and res["version"] == base["version"] + 2
        final = on_b.state()
        assert (final["version"], final["volume"]) == (base["version"] + 2, 90)
        assert [e["entry_id"] for e in final["queue"]] == [e["entry_id"] for e in base["queue"]]
        await channel_works(a, on_b, dev)
    on_b.close()
    assert_log_clean(a, b)


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "unavailable" and err["message"], r.text


async def channel_works(a: ServerProc, on_b: Api, dev: Chan) -> None:
    """A new device can connect to A (its auth and device row need the database)."""
    async with channel(a, on_b.token) as other:
        assert other.hello["version"] == on_b.state()["version"]
    await dev.barrier()
