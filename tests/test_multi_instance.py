"""Two real server instances on one PostgreSQL and one Redis behave as one server.

A device on instance A sees what a command on instance B changed; presence and
directives cross instances; a handoff whose target is on the other instance completes;
concurrent commands through both instances are each applied exactly once. Deployments
that share the Redis under different `--redis-prefix`es do not hear each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.fixtures_server import Backend, ServerProc, two_instances
from tests.test_api import (
    Api,
    acmd,
    add_users,
    all_tracks,
    async_http,
    channel,
    db_url,
    run_async,
    unique,
)
from tunehand.core.transfer import LATE_LEAD_MS
from tunehand.server.db import accounts as qa
from tunehand.server.db.engine import open_engine


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_backend: Backend
) -> Iterator[tuple[ServerProc, ServerProc]]:
    """Two instances of one deployment (one database, one Redis prefix)."""
    with two_instances(tmp_path_factory, postgres_backend.store()) as both:
        yield both


def login_on(srv: ServerProc, name: str) -> Api:
    return Api(srv, name, srv.login(name))


@pytest.fixture
def user(pair: tuple[ServerProc, ServerProc]) -> Callable[[ServerProc], Api]:
    """A fresh account; `user(srv)` logs a new device of it in on that instance."""
    name = unique("m")
    add_users(pair[0], name)
    return lambda srv: login_on(srv, name)


async def test_state_crosses_instances(
    pair: tuple[ServerProc, ServerProc], user: Callable[[ServerProc], Api]
) -> None:
    a, b = pair
    on_a, on_b = user(a), user(b)
    tid = all_tracks(on_b)[0]["id"]
    async with channel(a, on_a.token) as dev_a:
        async with httpx.AsyncClient(base_url=b.url, headers=on_b.headers) as http:
            out = await acmd(http, "queue_add", track_ids=[tid])
        version = out["state"]["version"]
        msg = await dev_a.wait("state", lambda m: m["version"] == version)
        assert [e["track_id"] for e in msg["state"]["queue"]] == [tid]


async def test_presence_and_directives_cross_instances(
    pair: tuple[ServerProc, ServerProc], user: Callable[[ServerProc], Api]
) -> None:
    a, b = pair
    on_a, on_b = user(a), user(b)
    tid = all_tracks(on_b)[0]["id"]
    async with channel(a, on_a.token, capabilities=("play",)) as player:
        devices = on_b.ok("GET", "/v1/devices")["devices"]
        mine = [d for d in devices if d["id"] == player.device_id]
        assert mine and mine[0]["online"] and "play" in mine[0]["capabilities"]
        async with httpx.AsyncClient(base_url=b.url, headers=on_b.headers) as http:
            out = await acmd(http, "play", track_ids=[tid])
        assert out["state"]["active_device"] == player.device_id
        start = await player.wait("directive", lambda m: m["action"] == "start")
        assert start["track"]["id"] == tid


async def test_handoff_to_a_device_on_the_other_instance(
    pair: tuple[ServerProc, ServerProc], user: Callable[[ServerProc], Api]
) -> None:
    a, b = pair
    on_a, on_b = user(a), user(b)
    tid = all_tracks(on_a)[0]["id"]
    async with (
        channel(a, on_a.token, capabilities=("play",)) as source,
        channel(b, on_b.token, capabilities=("play",)) as target,
    ):
        out = on_a.cmd("play", track_ids=[tid], device_id=source.device_id)
        await source.wait("directive", lambda m: m["action"] == "start")
        entry = out["state"]["current"]
        term = out["state"]["term"]
        await source.send(
            type="report",
            report={
                "term": term,
                "entry_id": entry,
                "position_ms": 500,
                "at_ms": out["state"]["position"]["at_ms"],
                "playing": True,
                "rate": 1.0,
            },
        )

        ready_sent_ms: list[int] = []

        async def answer_ready() -> None:
            prep = await target.wait("directive", lambda m: m["action"] == "prepare")
            assert prep["entry_id"] == entry
            # A target whose output takes 300 ms to sound (its `start_ms`): the switch
            # is planned that much further ahead, also when the ready crosses instances.
            ready_sent_ms.append(time.time_ns() // 1_000_000)
            await target.send(type="ready", transfer_id=prep["transfer_id"], start_ms=300)

        answering = asyncio.create_task(answer_ready())
        async with httpx.AsyncClient(base_url=a.url, headers=on_a.headers, timeout=30) as http:
            moved = await acmd(http, "transfer", device_id=target.device_id)
        await answering
        assert moved["state"]["active_device"] == target.device_id
        assert moved["state"]["term"] == term + 1
        stop = await source.wait("directive", lambda m: m["action"] == "stop")
        start = await target.wait("directive", lambda m: m["action"] == "start")
        assert stop["at_ms"] == start["at_ms"] and start["term"] == term + 1
        assert start["at_ms"] >= ready_sent_ms[0] + LATE_LEAD_MS + 300


async def test_concurrent_commands_on_both_instances_apply_once(
    pair: tuple[ServerProc, ServerProc], user: Callable[[ServerProc], Api]
) -> None:
    a, b = pair
    on_a, on_b = user(a), user(b)
    base = on_a.state()["version"]
    n = 40
    async with (
        httpx.AsyncClient(base_url=a.url, headers=on_a.headers, timeout=60) as ha,
        httpx.AsyncClient(base_url=b.url, headers=on_b.headers, timeout=60) as hb,
        channel(a, on_a.token) as watch_a,
        channel(b, on_b.token) as watch_b,
    ):
        sends = [acmd(ha if i % 2 else hb, "volume", delta=-1) for i in range(n)]
        results = await asyncio.gather(*sends)
        versions = sorted(r["result"]["version"] for r in results)
        assert versions == list(range(base + 1, base + n + 1))
        final = base + n
        for w in (watch_a, watch_b):
            msg = await w.wait("state", lambda m: m["version"] == final)
            assert msg["state"]["volume"] == 100 - n
    assert on_b.state()["version"] == final


async def test_a_retried_command_on_the_other_instance_is_applied_once(
    pair: tuple[ServerProc, ServerProc], user: Callable[[ServerProc], Api]
) -> None:
    a, b = pair
    on_a, on_b = user(a), user(b)
    body = {"op": "volume", "command_id": unique("retry"), "value": 37}
    first = on_a.post("/v1/session/commands", json=body).json()
    again = on_b.post("/v1/session/commands", json=body).json()
    assert first["result"] == again["result"]
    assert on_b.state()["version"] == first["result"]["version"]


# --- several deployments on one Redis ------------------------------------------------


def account_id(srv: ServerProc, name: str) -> int:
    async def run() -> int:
        engine = open_engine(db_url(srv))
        try:
            async with engine.connect() as conn:
                account = await qa.account_by_name(conn, name)
        finally:
            await engine.dispose()
        assert account is not None
        return account.id

    return int(run_async(run))


def online(api: Api, device_id: str) -> bool:
    devices = api.ok("GET", "/v1/devices")["devices"]
    return bool(next(d["online"] for d in devices if d["id"] == device_id))


async def test_deployments_with_other_redis_prefixes_do_not_hear_each_other(
    tmp_path: Path, start_server: Callable[..., ServerProc], postgres_backend: Backend
) -> None:
    """Three one-instance deployments on one Redis, each with its own database, so their
    first accounts have the same id and a device of the same id. `x` and `z` share a
    prefix (what `--redis-prefix` is there to prevent): `z` hears `x`'s presence and
    `x` hears `z`'s fan-out. `y` has a prefix of its own and hears neither."""
    x_store, y_store = postgres_backend.store(), postgres_backend.store()
    z_store = replace(postgres_backend.store(), redis_prefix=x_store.redis_prefix)
    assert x_store.redis_prefix != y_store.redis_prefix
    x, y, z = (
        start_server(store=s, music=tmp_path, extra_args=("--no-scan",), wait_scan=False)
        for s in (x_store, y_store, z_store)
    )
    names = [unique("p") for _ in range(3)]
    for srv, name in zip((x, y, z), names, strict=True):
        add_users(srv, name)
    assert len({account_id(srv, n) for srv, n in zip((x, y, z), names, strict=True)}) == 1
    dev = unique("dev")
    on_x, on_y, on_z = (
        Api(srv, n, srv.login(n, device_id=dev)) for srv, n in zip((x, y, z), names, strict=True)
    )
    async with (
        channel(x, on_x.token, device_id=dev, capabilities=("play",)) as heard_on_x,
        async_http(on_y) as hy,
        async_http(on_z) as hz,
        async_http(on_x) as hx,
    ):
        assert not online(on_y, dev)
        assert online(on_z, dev)
        await acmd(hy, "volume", value=11)
        await acmd(hz, "volume", value=22)
        await acmd(hx, "volume", value=33)
        # One Redis delivers in order: anything `y` or `z` fanned out comes before this.
        await heard_on_x.wait("state", lambda m: m["state"]["volume"] == 33)
    volumes = [m["state"]["volume"] for m in heard_on_x.seen if m["type"] == "state"]
    assert 22 in volumes
    assert 11 not in volumes
    for api in (on_x, on_y, on_z):
        api.close()


def test_each_instance_opens_its_pool_at_start(pair: tuple[ServerProc, ServerProc]) -> None:
    """PostgreSQL connections are opened at start (WARM_CONNECTIONS per instance), so the
    first busy second after a start does not wait for them one by one."""
    from tunehand.server.db.engine import WARM_CONNECTIONS

    async def count() -> int:
        engine = open_engine(db_url(pair[0]))
        try:
            async with engine.connect() as conn:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                return int((await conn.exec_driver_sql(sql)).scalar_one())
        finally:
            await engine.dispose()

    # Two instances, plus this query's own connection.
    assert run_async(count) >= 2 * WARM_CONNECTIONS + 1
