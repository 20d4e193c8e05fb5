"""Revocation to closed channel: a device revoked over REST, until its open channel is
closed by the server (4003), when the process that answers the request is not always the
one holding the channel.

Cases (each a fresh PostgreSQL database and its own Redis prefix on the test Redis):
`tunehand serve --workers 2` (the REST request lands on either worker; half the time not
the channel's), and two instances A and B of one deployment (every channel on A, every
revocation through B). DEVICES devices log in (a login each: a channel is bound to its
token's device) and open their channels; then, one at a time, each is revoked with
`DELETE /v1/devices/{id}` from another device's login; the time is from just before the
request to when the device's websocket sees the close, on one monotonic clock. Skipped
without TUNEHAND_TEST_POSTGRES_URL and TUNEHAND_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path

import httpx
from tests.fixtures_server import ServerProc, Store, fresh_postgres_database, launch
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import PASSWORD, USER, Result, check, ms, percentile

DEVICES = 60
TARGET_P99_MS = 1000.0
CLOSE_TIMEOUT_S = 10.0
REDIS_ENV = "TUNEHAND_TEST_REDIS_URL"
POSTGRES_ENV = "TUNEHAND_TEST_POSTGRES_URL"


def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1) + "/v1/channel"


async def _open(url: str, token: str, device: str) -> ClientConnection:
    ws = await connect(_ws(url), open_timeout=10)
    hello = {"id": device, "name": device, "capabilities": ["play"]}
    await ws.send(json.dumps({"type": "auth", "token": token, "device": hello}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("type") == "hello":
            return ws
        if msg.get("type") == "error":
            raise RuntimeError(f"device {device} refused: {msg}")


async def _closed(ws: ClientConnection) -> float:
    """When the server closed `ws` (monotonic), reading whatever comes before."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return time.monotonic()


async def _measure(holders: list[ServerProc], revoker: ServerProc) -> tuple[list[float], int]:
    """Latencies (ms) of DEVICES revocations, and how many channels were not closed 4003."""
    devices = [f"rv{i}-{secrets.token_hex(3)}" for i in range(DEVICES)]
    logins = [
        holders[i % len(holders)].login(USER, PASSWORD, device_id=dev)
        for i, dev in enumerate(devices)
    ]
    admin = revoker.login(USER, PASSWORD)["access_token"]
    latencies: list[float] = []
    wrong = 0
    async with (
        AsyncExitStack() as stack,
        httpx.AsyncClient(
            base_url=revoker.url, headers={"Authorization": f"Bearer {admin}"}, timeout=10
        ) as http,
    ):
        chans = []
        for i, (dev, tok) in enumerate(zip(devices, logins, strict=True)):
            ws = await _open(holders[i % len(holders)].url, tok["access_token"], dev)
            stack.push_async_callback(ws.close)
            chans.append(ws)
        for dev, ws in zip(devices, chans, strict=True):
            waiter = asyncio.create_task(_closed(ws))
            t0 = time.monotonic()
            r = await http.delete(f"/v1/devices/{dev}")
            r.raise_for_status()
            t1 = await asyncio.wait_for(waiter, CLOSE_TIMEOUT_S)
            latencies.append(ms(t1 - t0))
            if ws.close_code != 4003:
                wrong += 1
    return latencies, wrong


@contextmanager
def _deployment(workers: int, instances: int) -> Iterator[list[ServerProc]]:
    database, drop = fresh_postgres_database()
    store = Store(database, os.environ[REDIS_ENV], "bench-rv-" + secrets.token_hex(4) + ":")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tunehand-bench-") as tmp:
        stack.callback(drop)
        servers: list[ServerProc] = []
        for i in range(instances):
            extra = ("--workers", str(workers)) if workers > 1 else ()
            if i:
                extra += ("--no-scan",)
            srv = launch(Path(tmp) / f"i{i}", store=store, extra_args=extra, wait_scan=False)
            stack.callback(srv.stop)
            servers.append(srv)
        servers[0].add_user(USER, PASSWORD)
        yield servers


def _row(name: str, lat: list[float], wrong: int) -> Result:
    p99 = percentile(lat, 99)
    note = f"n={len(lat)} median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms" + (
        f", {wrong} closed with another code" if wrong else ""
    )
    res = check(name, p99, "ms", TARGET_P99_MS, note)
    return res if not wrong else Result(res.name, res.value, res.unit, res.target, False, note)


def run() -> list[Result]:
    if not (os.environ.get(POSTGRES_ENV) and os.environ.get(REDIS_ENV)):
        why = f"needs {POSTGRES_ENV} and {REDIS_ENV}"
        return [
            Result("revoke → closed, --workers 2 p99", math.nan, "ms", TARGET_P99_MS, None, why),
            Result("revoke → closed, 2 instances p99", math.nan, "ms", TARGET_P99_MS, None, why),
        ]
    out = []
    with _deployment(workers=2, instances=1) as (srv,):
        lat, wrong = asyncio.run(_measure([srv], srv))
    print(f"  --workers 2: p99 {percentile(lat, 99):.1f} ms over {len(lat)} revocations")
    out.append(_row("revoke → closed, --workers 2 p99", lat, wrong))
    with _deployment(workers=1, instances=2) as (a, b):
        lat, wrong = asyncio.run(_measure([a], b))
    print(f"  two instances: p99 {percentile(lat, 99):.1f} ms over {len(lat)} revocations")
    out.append(_row("revoke → closed, 2 instances p99", lat, wrong))
    return out
