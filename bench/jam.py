"""A jam's fan-out: MEMBERS accounts in one jam (a host and its guests), each with one
simulated device (a websocket client that plays nothing), adding entries at RATE/s.

Each command is a `queue_add` of one library track, sent round-robin by every member's
device and paced to RATE commands/s overall; it is timed from the send until the LAST
member's device has received the `state` carrying its version (every member sees every
change: that is the jam's promise). After the run each device's last state is checked:
the whole queue, every entry's `added_by` the account that sent it. The sweep: jam size
(10, 25, 50 accounts) and rate (20/s, and 40/s for the largest); the queue is cleared
before each case, so every case starts from an empty queue and grows to COMMANDS
entries (the whole queue travels in every state message). SQLite always; PostgreSQL
too when TUNEHAND_TEST_POSTGRES_URL is set, with the bus and presence on Redis when
TUNEHAND_TEST_REDIS_URL is set too (every state then goes through Redis, as it does
between instances).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections import Counter
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    Result,
    check,
    ms,
    percentile,
    postgres_configured,
    redis_configured,
    running_server,
)

CASES = ((10, 20.0), (25, 20.0), (50, 20.0), (50, 40.0))
"""(accounts in the jam, commands/s overall)."""
COMMANDS = 100
WARMUP = 10
TARGET_P99_MS = 50.0
STATE_TIMEOUT_S = 10.0
PASSWORD = "bench-password"
_VERSION = re.compile(rb'^\{"version":(\d+),')


@dataclass
class Member:
    user: str
    ws: ClientConnection
    seen: dict[int, float] = field(default_factory=dict)
    """version -> perf_counter() when this device received that state."""
    last: bytes = b""
    results: dict[str, int] = field(default_factory=dict)


async def _open(url: str, stack: AsyncExitStack, token: str, device: str) -> ClientConnection:
    ws: ClientConnection = await stack.enter_async_context(
        # No keepalive pings: 50 clients in one process may be busy a moment; the
        # server pings them anyway.
        connect(url, open_timeout=30, max_size=None, ping_interval=None)
    )
    hello = {"id": device, "name": device, "capabilities": []}
    await ws.send(json.dumps({"type": "auth", "token": token, "device": hello}))
    async with asyncio.timeout(STATE_TIMEOUT_S):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "hello":
                return ws
            if msg.get("type") == "error":
                raise RuntimeError(f"channel refused {device}: {msg}")


async def _read(m: Member, arrived: asyncio.Event) -> None:
    """Note when each state arrives (the version is read from the message's start:
    msgspec writes `version` first; the rest is decoded once, after the run)."""
    with suppress(ConnectionClosed):
        async for raw in m.ws:
            data = raw if isinstance(raw, bytes) else raw.encode()
            found = _VERSION.match(data)
            if found is not None:
                m.seen[int(found.group(1))] = time.perf_counter()
                m.last = data
                arrived.set()
            elif b'"type":"result"' in data:
                code = json.loads(data)["code"]
                m.results[code] = m.results.get(code, 0) + 1


@dataclass(frozen=True, slots=True)
class _Run:
    latencies_ms: list[float]
    rate_per_s: float
    refused: int
    wrong: int


def _prepare(url: str, http: httpx.Client, host_token: str) -> tuple[str, int]:
    """Clear the jam's queue; a library track to add, and the session's version."""
    headers = {"Authorization": f"Bearer {host_token}"}
    album = http.get(url + "/v1/albums", headers=headers).json()["albums"][0]["id"]
    tracks = http.get(url + f"/v1/albums/{album}/tracks", headers=headers).json()["tracks"]
    clear = {"op": "queue_clear", "command_id": f"clear-{time.time_ns()}"}
    http.post(url + "/v1/session/commands", json=clear, headers=headers).raise_for_status()
    version = int(http.get(url + "/v1/session", headers=headers).json()["state"]["version"])
    return str(tracks[0]["id"]), version


async def _case(
    url: str, people: list[tuple[str, str]], rate: float, track: str, version: int
) -> _Run:
    """`people`: (user, access token) of every member, the host first; `version`: the
    session's before the run (joining devices do not change it)."""
    ws_url = url.replace("http://", "ws://", 1) + "/v1/channel"
    async with AsyncExitStack() as stack:
        arrived = asyncio.Event()
        members: list[Member] = []
        readers: list[asyncio.Task[None]] = []
        try:
            for user, token in people:
                # Each device reads from the moment it is on, as a real one does: one that
                # did not would stop answering the server's pings once the devices
                # messages of the members joining after it filled its queue.
                m = Member(user, await _open(ws_url, stack, token, f"{user}-dev"))
                members.append(m)
                readers.append(asyncio.create_task(_read(m, arrived)))
            sent: list[tuple[int, float, str]] = []
            interval = 1.0 / rate
            next_send = time.perf_counter()
            for i in range(WARMUP + COMMANDS):
                delay = next_send - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                m = members[i % len(members)]
                cmd = {"op": "queue_add", "command_id": f"jam-{i}-{time.time_ns()}"}
                cmd["track_ids"] = [track]  # type: ignore[assignment]
                t0 = time.perf_counter()
                next_send = t0 + interval
                await m.ws.send(json.dumps({"type": "command", "command": cmd}))
                version += 1
                sent.append((version, t0, m.user))
            deadline = time.perf_counter() + STATE_TIMEOUT_S
            while not all(version in m.seen for m in members):
                arrived.clear()
                left = deadline - time.perf_counter()
                if left <= 0:
                    behind = [m.user for m in members if version not in m.seen]
                    raise RuntimeError(f"v{version} never reached {behind[:5]}")
                with suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), left)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    latencies = []
    for v, t0, _user in sent[WARMUP:]:
        times = [m.seen.get(v) for m in members]
        if any(t is None for t in times):
            # Two changes can coalesce into one state only if a device missed one: count
            # it as the last version at or after it that the device saw.
            times = [m.seen.get(v) or min(t for w, t in m.seen.items() if w >= v) for m in members]
        latencies.append(ms(max(times) - t0))  # type: ignore[type-var, operator]
    # Every device ends with the whole queue, each entry credited to its sender.
    # (Members' commands travel on their own connections: their order may interleave.)
    want = Counter(user for _, _, user in sent)
    wrong = 0
    for m in members:
        queue = json.loads(m.last)["state"]["queue"]
        if Counter(e["added_by"] for e in queue) != want:
            wrong += 1
    refused = sum(n for m in members for code, n in m.results.items() if code != "ok")
    rate_run = (len(sent) - 1) / (sent[-1][1] - sent[0][1])
    return _Run(latencies, rate_run, refused, wrong)


def _backend(backend: str) -> list[Result]:
    from tests.cli_helpers import add_users

    out: list[Result] = []
    most = max(n for n, _ in CASES)
    with running_server(backend) as srv:
        users = [f"jam{i:02d}" for i in range(most)]
        add_users(srv, users, PASSWORD)
        tokens = [srv.login(u, PASSWORD, device_id=f"{u}-dev")["access_token"] for u in users]
        with httpx.Client(timeout=30) as http:

            def call(i: int, method: str, path: str, body: Any = None) -> Any:
                headers = {"Authorization": f"Bearer {tokens[i]}"}
                r = http.request(method, srv.url + path, json=body, headers=headers)
                r.raise_for_status()
                return r.json()

            code = call(0, "POST", "/v1/jam", {})["code"]
            joined = 1
            for members, rate in CASES:
                while joined < members:
                    call(joined, "POST", "/v1/jam/join", {"code": code})
                    joined += 1
                people = list(zip(users[:members], tokens[:members], strict=True))
                track, version = _prepare(srv.url, http, tokens[0])
                run = asyncio.run(_case(srv.url, people, rate, track, version))
                lat = run.latencies_ms
                p50, p99 = statistics.median(lat), percentile(lat, 99)
                print(
                    f"  {backend}: {members:>2} accounts, {rate:g}/s (ran {run.rate_per_s:.1f}/s),"
                    f" queue 0->{COMMANDS + WARMUP}: command -> every member's state"
                    f" median {p50:.2f} ms, p90 {percentile(lat, 90):.2f} ms, p99 {p99:.2f} ms,"
                    f" max {max(lat):.2f} ms; refused {run.refused}, wrong queues {run.wrong}"
                )
                name = f"jam {backend} {members} accounts {rate:g}/s"
                target = TARGET_P99_MS if (members, rate) == (50, 20.0) else None
                out += [
                    check(f"{name} p99", p99, "ms", target),
                    check(f"{name} median", p50, "ms"),
                    check(f"{name} refused + wrong", float(run.refused + run.wrong), "", 0.0),
                ]
    return out


def run() -> list[Result]:
    results = _backend("sqlite")
    if not postgres_configured():
        print("  postgres: skipped (TUNEHAND_TEST_POSTGRES_URL is not set)")
    elif redis_configured():
        results += _backend("postgres+redis")  # as a deployment of several instances runs
    else:
        print("  postgres+redis: TUNEHAND_TEST_REDIS_URL is not set: PostgreSQL alone")
        results += _backend("postgres")
    return results
