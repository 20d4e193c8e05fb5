"""Session fan-out latency: a command sent on one device's channel, seen as `state` on another.

Several websocket clients of one account on loopback: SENDERS sender devices and one
listener. Commands (`volume`, alternating values, unique command ids) go out one at a
time, round-robin over the senders; each send is timed until the listener receives the
`state` carrying the next version and the new volume, and the next command leaves only
after that. The server allows each connection 50 commands/s (burst 100), so sends are
paced to PER_CONNECTION_RATE on every sender; the rate actually run is printed. The
senders' own messages (results, states) are read as they come, and any result other
than `ok` is counted. SQLite always; PostgreSQL too when TUNEHAND_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections import Counter
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    PASSWORD,
    USER,
    Result,
    check,
    ms,
    percentile,
    postgres_configured,
    running_server,
)

COMMANDS = 1000
WARMUP_COMMANDS = 20
SENDERS = 4
PER_CONNECTION_RATE = 40.0
"""Commands/s on each sender: under the server's 50/s, so no command is rate-limited."""
STATE_TIMEOUT_S = 5.0
LISTENER = "bench-listener"
SENDER_IDS = tuple(f"bench-sender-{i}" for i in range(SENDERS))
TARGET_MEDIAN_MS = 5.0
TARGET_P99_MS = 20.0


@dataclass(frozen=True, slots=True)
class _Run:
    latencies_ms: list[float]
    rate_per_s: float
    results: Counter[str]


async def _open(stack: AsyncExitStack, url: str, token: str, device: str) -> tuple[Any, Any]:
    """Connect and authenticate as `device`; the connection and the `hello` message."""
    ws: ClientConnection = await stack.enter_async_context(connect(url, open_timeout=10))
    device_hello = {"id": device, "name": device, "capabilities": []}
    auth = {"type": "auth", "token": token, "device": device_hello}
    await ws.send(json.dumps(auth))
    async with asyncio.timeout(STATE_TIMEOUT_S):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "hello":
                return ws, msg
            if msg.get("type") == "error":
                raise RuntimeError(f"channel refused {device}: {msg}")


async def _drain(ws: ClientConnection, results: Counter[str]) -> None:
    """Read a sender's messages so its socket never backs up; count command results."""
    with suppress(ConnectionClosed):
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("type") == "result":
                results[msg["code"]] += 1


async def _state_seen(listener: ClientConnection, version: int, volume: int) -> float:
    """perf_counter() when the listener receives the `state` at `version`."""
    while True:
        raw = await listener.recv()
        seen = time.perf_counter()
        msg = json.loads(raw)
        if msg.get("type") != "state" or msg["version"] < version:
            continue
        if msg["version"] != version or msg["state"]["volume"] != volume:
            raise RuntimeError(f"expected version {version} volume {volume}, got {raw!r:.200}")
        return seen


async def _measure(url: str, tokens: dict[str, str]) -> _Run:
    """`tokens`: device id -> its access token (a channel is bound to its token's device)."""
    ws_url = url.replace("http://", "ws://", 1) + "/v1/channel"
    results: Counter[str] = Counter()
    async with AsyncExitStack() as stack:
        listener, hello = await _open(stack, ws_url, tokens[LISTENER], LISTENER)
        senders = [(await _open(stack, ws_url, tokens[dev], dev))[0] for dev in SENDER_IDS]
        drains = [asyncio.create_task(_drain(ws, results)) for ws in senders]
        try:
            version: int = hello["version"]
            volume: int = hello["state"]["state"]["volume"]
            interval = 1.0 / (PER_CONNECTION_RATE * SENDERS)
            latencies: list[float] = []
            sent_at: list[float] = []
            next_send = time.perf_counter()
            for i, ws in zip(range(WARMUP_COMMANDS + COMMANDS), itertools.cycle(senders)):
                delay = next_send - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing under the rate limit
                volume = 40 if volume != 40 else 41
                version += 1
                message = json.dumps(
                    {
                        "type": "command",
                        "command": {"op": "volume", "command_id": f"bench-{i}", "value": volume},
                    }
                )
                t0 = time.perf_counter()
                next_send = t0 + interval
                await ws.send(message)
                try:
                    async with asyncio.timeout(STATE_TIMEOUT_S):
                        seen = await _state_seen(listener, version, volume)
                except TimeoutError:
                    raise RuntimeError(
                        f"command {i}: no state v{version} within {STATE_TIMEOUT_S:g} s "
                        f"(results so far: {dict(results)})"
                    ) from None
                if i >= WARMUP_COMMANDS:
                    latencies.append(ms(seen - t0))
                    sent_at.append(t0)
            rate = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0])
            await asyncio.sleep(0.2)  # let the last results arrive before counting them
        finally:
            for task in drains:
                task.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
    return _Run(latencies, rate, results)


def _backend(backend: str) -> list[Result]:
    with running_server(backend) as srv:
        tokens = {
            dev: srv.login(USER, PASSWORD, device_id=dev)["access_token"]
            for dev in (LISTENER, *SENDER_IDS)
        }
        print(f"  {backend}: server {srv.url}; {SENDERS} senders + 1 listener, {COMMANDS} commands")
        run = asyncio.run(_measure(srv.url, tokens))
    lat = run.latencies_ms
    median, p99, worst = statistics.median(lat), percentile(lat, 99), max(lat)
    refused = sum(n for code, n in run.results.items() if code != "ok")
    print(
        f"  {backend}: median {median:.2f} ms, p90 {percentile(lat, 90):.2f} ms, "
        f"p99 {p99:.2f} ms, max {worst:.2f} ms; min {min(lat):.2f} ms"
    )
    print(
        f"  {backend}: ran at {run.rate_per_s:.1f} commands/s overall, "
        f"{run.rate_per_s / SENDERS:.1f}/s per sender connection (limit 50/s); "
        f"results {dict(run.results)}"
    )
    return [
        check(f"fanout {backend} median", median, "ms", TARGET_MEDIAN_MS),
        check(f"fanout {backend} p99", p99, "ms", TARGET_P99_MS),
        check(f"fanout {backend} max", worst, "ms"),
        check(f"fanout {backend} command rate", run.rate_per_s, "cmd/s"),
        check(f"fanout {backend} non-ok results", float(refused), "", 0.0),
    ]


def run() -> list[Result]:
    results = _backend("sqlite")
    if postgres_configured():
        results += _backend("postgres")
    else:
        print("  postgres: skipped (TUNEHAND_TEST_POSTGRES_URL is not set)")
    return results
