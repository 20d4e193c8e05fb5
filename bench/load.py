"""Many devices on one server instance, and on two sharing PostgreSQL and Redis.

Simulated devices are websocket clients that behave like `tunehand receiver`: they
authenticate with capabilities ["play"], ping like the real client (websocket pings
every 3 s, each device on a phase of its own as independent machines are; offering
permessage-deflate as the real client does, which the server declines), obey
directives (`prepare` is answered `ready`; `start` makes the device active, `stop`
idle) and, while active, report their position every 5 s. They are websocket clients of
the bench's own (`_Client`), as lean as the server's side. Devices come in accounts
of DEVICES_PER_ACCOUNT; an account is created in the database in-process (the
server's own queries) with one access token per device (a channel is bound to its
token's device; a login over HTTP costs an argon2 verification, ~50 ms of CPU, which
would dominate the setup). In ACTIVE_SHARE of the accounts one device plays (a `play`
command aimed at it), so those report every 5 s; the others are idle.

Load generators: GENERATORS worker processes (`python -m bench.load --worker`) at nice
GENERATOR_NICE, each holding its share of the accounts (all devices of an account in
one process, so one clock times a fan-out) on one asyncio loop.

Per configuration (one instance on PostgreSQL with its in-process bus; two instances
on PostgreSQL + a private Redis (see `_private_redis`), the devices of each account
spread over both), two runs on fresh servers and a fresh database. A process may hold
at most RLIMIT_NOFILE sockets (20,000 here, a hard limit), so one instance also runs
as `tunehand serve --workers WORKERS` (a worker per core, on PostgreSQL + a private
Redis), capacity run only:

1. capacity: TARGET_CONNECTIONS devices (fewer if the file descriptor limit says so)
   connect and wait for their `hello`, at most CONNECT_CONCURRENCY handshakes in flight
   per generator and none started after CONNECT_DEADLINE_S; the active accounts start
   playing; everything is held idle for HOLD_S and the devices still open are counted.
   The server's memory per connection is its VmRSS (/proc/PID/status, summed over the
   instances) after the hold minus before the first connection, divided by the
   connections held. Then TARGET_RATE commands/s for FULL_RATE_S over all those accounts.
2. latency: LATENCY_DEVICES devices, so that the server's CPU goes to commands, at each
   rate of RATES for RATE_S.

A rate phase: commands (`volume`, a new value each time) go out on the channel of one
device of an account (accounts round-robin, the sending device rotating) on schedule
whatever the answers (open loop). The latency of one delivery is from just before the
send to when another device of the account receives the `state` naming the command
(`command_id`), both read with the same monotonic clock. Then the backlog drains: until
every command is answered and delivered, or nothing arrived for DRAIN_S. Lost: a command
answered `ok` whose state another connected device of the account never got, or a
version of its account a connected device never saw; duplicated: a version (or a
command's state) a device got twice. A device the server cut off (an overloaded server
misses pings) is counted apart: a real one would reconnect and resync.

Also printed: the generators' own loop lag (it adds to the latencies), CPU use of the
servers, the generators and PostgreSQL/Redis during each phase, and the file
descriptor limit, which bounds the connections one process can hold.

Shorter variants for iterating, from the environment: TUNEHAND_LOAD_PARTS (any of
`capacity1 latency1 capacity1w capacity2 latency2`, comma-separated; default all),
TUNEHAND_LOAD_DEVICES (devices tried in a capacity run; the target stays
TARGET_CONNECTIONS), TUNEHAND_LOAD_CONNECT_DEADLINE_S (on a busy machine),
TUNEHAND_LOAD_LATENCY_DEVICES, TUNEHAND_LOAD_RATES (e.g. `100,400`),
TUNEHAND_LOAD_RATE_S, TUNEHAND_LOAD_HOLD_S, TUNEHAND_LOAD_FULL_RATE and
TUNEHAND_LOAD_FULL_RATE_S (the rate phase of a capacity run; judged against the target
only at TARGET_RATE or more) and TUNEHAND_LOAD_SERVE_ARGS (more `tunehand serve`
options).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import json
import math
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Result, check, percentile, postgres_configured

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

TARGET_CONNECTIONS = 20_000
TARGET_KIB_PER_CONNECTION = 20.0
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
DEVICES_PER_ACCOUNT = 3
ACTIVE_SHARE = 0.1
"""Share of the accounts with a playing device (reporting every 5 s)."""
GENERATORS = 2
GENERATOR_NICE = 10
"""The generators yield the CPU to the servers, PostgreSQL and Redis when both want it:
the devices they stand for run on machines of their own, not on the server's cores.
(A starved generator reads late, which only adds to the latencies it reports.)"""
WORKERS = 2
"""`tunehand serve --workers` for the one-instance capacity run with a worker per core."""
CONNECT_CONCURRENCY = 64
"""Handshakes in flight per generator (the server's listen backlog is 2048)."""
CONNECT_DEADLINE_S = 240.0
"""No new connection is started after this; the ramp's figures say how far it got."""
PROGRESS_S = 15.0
HOLD_S = 20.0
LATENCY_DEVICES = 3000
"""The population of the latency runs: small enough to leave the server CPU for commands."""
RATES = (50.0, 100.0, 200.0, 400.0, 1000.0)
RATE_S = 10.0
FULL_RATE_S = 5.0
"""The target rate with every device held runs this long (a saturated server's backlog
must drain within DRAIN_S)."""
DRAIN_S = 5.0
"""A delivery still missing when nothing arrived for this long is lost."""
DRAIN_MAX_S = 90.0
"""The longest wait for an overloaded server's backlog after a rate phase."""
PING_INTERVAL_S = 3.0
PING_TIMEOUT_S = 4.0
"""As `tunehand.client.channel`: websocket pings both ways."""
KEEPALIVE_TICK_S = 0.02
"""The keepalive wheel's slot: a device's pings keep their phase to this."""
REPORT_EVERY_S = 5.0
FD_RESERVE = 96
"""File descriptors a server needs besides its devices (database pool, Redis, logs)."""
STEP_TIMEOUT_S = 120.0
"""Deadline for a generator's answer to any step but the connection ramp."""
REDIS_ENV = "TUNEHAND_TEST_REDIS_URL"
PARTS = ("capacity1", "latency1", "capacity1w", "capacity2", "latency2")


def _env(name: str, default: str) -> str:
    return os.environ.get("TUNEHAND_LOAD_" + name, "").strip() or default


DEVICES = int(_env("DEVICES", str(TARGET_CONNECTIONS)))
LATENCY_DEVICES = int(_env("LATENCY_DEVICES", str(LATENCY_DEVICES)))
RATES = tuple(float(r) for r in _env("RATES", ",".join(f"{r:g}" for r in RATES)).split(","))
RATE_S = float(_env("RATE_S", str(RATE_S)))
HOLD_S = float(_env("HOLD_S", str(HOLD_S)))
CONNECT_DEADLINE_S = float(_env("CONNECT_DEADLINE_S", str(CONNECT_DEADLINE_S)))
FULL_RATE = float(_env("FULL_RATE", str(TARGET_RATE)))
FULL_RATE_S = float(_env("FULL_RATE_S", str(FULL_RATE_S)))
SERVE_ARGS = tuple(_env("SERVE_ARGS", "").split())

Json = dict[str, Any]
_NEVER = 1e18
"""The latency of a delivery that never came, for percentiles (shown as inf)."""


# --- the generator (a worker process) ----------------------------------------------


@dataclass(eq=False)
class _Device:
    account: int
    index: int
    id: str
    url: str
    ws: _Client | None = None
    """Set once the device has its `hello`."""
    version: int = 0
    seen: set[int] = field(default_factory=set)
    dups: int = 0
    active: bool = False
    term: int = 0
    entry: str | None = None
    anchor: tuple[int, int] = (0, 0)
    next_report: float = 0.0
    first_report: bool = False
    listed: bool = False
    closed: bool = False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Client(asyncio.Protocol):
    """One simulated device's websocket (RFC 6455, client side), as lean as the server's
    own (`tunehand.server.websocket`): frames are parsed in the read callback and every
    message is handled there, with no task, queue or coroutine per message.

    The generators share the machine with the servers. websockets' asyncio client costs
    several times this per message and per ping, and that CPU was taken from the server
    under test; the devices it stands for would each have a machine of their own."""

    def __init__(self, gen: _Generator, d: _Device, request: bytes) -> None:
        self.gen, self.d, self.request = gen, d, request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.hello: asyncio.Future[Json] = loop.create_future()
        self.pinged = 0.0
        self.ponged = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.d.closed = True
        self.transport = None
        for fut in (self.upgraded, self.hello):
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buf + data if self.buf else data
        if not self.upgraded.done():
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = buf
                return
            status = head.split(b"\r\n", 1)[0]
            if not status.startswith(b"HTTP/1.1 101 "):
                self.upgraded.set_exception(ConnectionError(status.decode("latin-1")))
                self.close()
                return
            if b"\r\nsec-websocket-extensions:" in head.lower():
                self.upgraded.set_exception(ConnectionError("the server accepted an extension"))
                self.close()
                return
            self.upgraded.set_result(None)
            buf = rest
        pos, end = 0, len(buf)
        while (length := frame_length(buf, pos)) is not None:
            b0, (n, hdr) = buf[pos], length
            if end - pos < hdr + n:
                break
            payload = buf[pos + hdr : pos + hdr + n]
            pos += hdr + n
            op = b0 & 0x0F
            if op in (1, 2):  # the server sends every message in one frame
                self.gen.on_message(self, payload, now)
            elif op == 9:
                self.write(10, payload)
            elif op == 10:
                self.ponged = now
            elif op == 8:
                self.close()
        self.buf = buf[pos:] if pos < end else b""

    def write(self, op: int, payload: bytes) -> None:
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | op, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | op, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | op, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = random.getrandbits(32).to_bytes(4, "big")
        self.transport.write(head + mask + apply_mask(payload, mask))

    def send(self, obj: Json) -> None:
        self.write(1, json.dumps(obj).encode())

    def ping(self, now: float) -> None:
        self.pinged = now
        self.write(9, random.getrandbits(32).to_bytes(4, "big"))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.transport is not None and not self.closed:
            with contextlib.suppress(ConnectionError):
                self.write(8, code.to_bytes(2, "big") + reason.encode())
            self.closed = self.d.closed = True
            self.transport.close()


def frame_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """The payload length of the (unmasked, server-sent) frame at `pos` in `buf` and the
    length of its header; None while the header is not all there. The load generator's
    own minimal reader, kept lean so that its CPU is not taken from the server."""
    end = len(buf)
    if end - pos < 2:
        return None
    n = buf[pos + 1] & 0x7F
    if n == 126:
        return None if end - pos < 4 else (int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4)
    if n == 127:
        return None if end - pos < 10 else (int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10)
    return n, 2


def _handshake_request(url: str, compression: str | None) -> tuple[str, int, bytes]:
    """Host, port and the upgrade request of a ws:// URL (offering permessage-deflate
    as the real client does when `compression` says so; the server declines it)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    offer = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        if compression == "deflate"
        else ""
    )
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{offer}\r\n"
    )
    return host, port, request.encode()


class _Generator:
    def __init__(self, spec: Json) -> None:
        import msgspec

        self.decode = msgspec.json.Decoder().decode
        self.spec = spec
        self.accounts: list[list[_Device]] = []
        for acct in spec["accounts"]:
            devices = [
                _Device(acct["n"], i, dev, spec["urls"][inst])
                for i, (dev, inst) in enumerate(
                    zip(acct["devices"], acct["instances"], strict=True)
                )
            ]
            self.accounts.append(devices)
        self.tokens = {
            dev: tok
            for acct in spec["accounts"]
            for dev, tok in zip(acct["devices"], acct["tokens"], strict=True)
        }
        self.tracks = {acct["n"]: acct["track"] for acct in spec["accounts"] if acct["track"]}
        """The radio stream an active account plays (None: the account stays idle)."""
        self.devices = [d for devs in self.accounts for d in devs]
        self.playing: list[_Device] = []
        """Devices told to start (reports go out from those still active)."""
        self.by_account = {devs[0].account: devs for devs in self.accounts}
        self.sent: dict[str, tuple[float, int, int]] = {}
        """command_id -> (send time, account, sender index), during a rate phase."""
        self.delivered: dict[str, list[int]] = {}
        """command_id -> the indices of the devices that got its state (not the sender)."""
        self.latencies: list[float] = []
        self.results: Counter[str] = Counter()
        self.refused: set[str] = set()
        self.answered: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.reports = 0
        self.started = 0
        self.lags: list[float] = []
        self.measuring = False
        self.late: Counter[int] = Counter()
        """Deliveries later than TARGET_P99_MS, by the second of the phase they were sent in."""
        self.t_phase = 0.0

    # the devices

    async def connect_all(self) -> Json:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.spec["concurrency"])
        t0 = time.monotonic()
        deadline = t0 + self.spec["connect_deadline"]
        skipped = 0

        async def one(d: _Device) -> None:
            nonlocal skipped
            async with sem:
                if time.monotonic() > deadline:
                    skipped += 1
                    return
                client: _Client | None = None
                try:
                    host, port, request = _handshake_request(d.url, self.spec["compression"])
                    async with asyncio.timeout(60):
                        _, client = await loop.create_connection(
                            lambda: _Client(self, d, request), host, port
                        )
                        await client.upgraded
                        hello = {"id": d.id, "name": d.id, "capabilities": ["play"]}
                        token = self.tokens[d.id]
                        client.send({"type": "auth", "token": token, "device": hello})
                        msg = await client.hello
                except Exception as exc:
                    self.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    if client is not None:
                        client.close()
                    return
                d.ws = client
                d.version = msg["version"]

        async def progress() -> None:
            while True:
                await asyncio.sleep(PROGRESS_S)
                up = sum(1 for d in self.devices if d.ws is not None and not d.closed)
                print(
                    f"    generator {os.getpid()}: {up}/{len(self.devices)} open after "
                    f"{time.monotonic() - t0:.0f} s; failures {sum(self.errors.values())}",
                    file=sys.stderr,
                    flush=True,
                )

        ticker = asyncio.create_task(progress())
        await asyncio.gather(*(one(d) for d in self.devices))
        ticker.cancel()
        connected = sum(1 for d in self.devices if d.ws is not None)
        return {
            "connected": connected,
            "skipped": skipped,
            "seconds": time.monotonic() - t0,
            "errors": dict(self.errors),
        }

    def on_message(self, client: _Client, raw: bytes, now: float) -> None:
        d = client.d
        try:
            msg = self.decode(raw)
            kind = msg.get("type")
            if d.ws is None:  # connecting: waiting for `hello`
                if kind in ("hello", "error") and not client.hello.done():
                    if kind == "hello":
                        client.hello.set_result(msg)
                    else:
                        client.hello.set_exception(RuntimeError(msg.get("code")))
            elif kind == "state":
                self.on_state(d, msg, now)
            elif kind == "directive":
                self.on_directive(d, msg)
            elif kind == "result":
                self.results[msg["code"]] += 1
                if msg["command_id"] in self.sent:
                    self.answered.add(msg["command_id"])
                    if msg["code"] != "ok":
                        self.refused.add(msg["command_id"])
        except Exception as exc:
            self.errors["reader " + type(exc).__name__] += 1
            client.close(1011, "bench reader failed")

    def on_state(self, d: _Device, msg: Json, now: float) -> None:
        version = msg["version"]
        if self.measuring:
            if version in d.seen:
                d.dups += 1
            d.seen.add(version)
            cid = msg.get("command_id")
            sent = self.sent.get(cid) if isinstance(cid, str) else None
            if sent is not None and isinstance(cid, str) and d.index != sent[2]:
                self.delivered.setdefault(cid, []).append(d.index)
                ms = (now - sent[0]) * 1000.0
                self.latencies.append(ms)
                if ms > TARGET_P99_MS:
                    self.late[int(sent[0] - self.t_phase)] += 1
        if version <= d.version:
            return
        d.version = version
        st = msg["state"]
        pos = st["position"]
        d.active = st.get("active_device") == d.id
        d.term = st.get("term", 0)
        d.entry = st.get("current")
        d.anchor = (pos["position_ms"], pos["at_ms"])

    def on_directive(self, d: _Device, msg: Json) -> None:
        action = msg["action"]
        if action == "prepare":
            d.ws.send({"type": "ready", "transfer_id": msg["transfer_id"]})
        elif action == "start":
            d.active, d.term, d.entry = True, msg["term"], msg["entry_id"]
            d.anchor = (msg["position_ms"], msg["at_ms"])
            self.started += 1
            d.next_report = 0.0  # at once, like a player that just got audible
            d.first_report = True
            if not d.listed:
                d.listed = True
                self.playing.append(d)
        elif action == "stop":
            d.active = False

    async def report_loop(self) -> None:
        """One task for every active device: each reports every REPORT_EVERY_S."""
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for d in self.playing:
                if not d.active or d.closed or d.ws is None or d.next_report > now:
                    continue
                # The bench starts its players together; real ones start at different
                # moments, so after the first report each keeps a phase of its own.
                d.next_report = now + REPORT_EVERY_S * (random.random() if d.first_report else 1)
                d.first_report = False
                at = _now_ms()
                position, anchored = d.anchor
                report = {
                    "term": d.term,
                    "entry_id": d.entry,
                    "position_ms": position + max(0, at - anchored),
                    "at_ms": at,
                    "playing": True,
                    "rate": 1.0,
                }
                with contextlib.suppress(ConnectionError):
                    d.ws.send({"type": "report", "report": report})
                    self.reports += 1

    async def keepalive_loop(self) -> None:
        """Every device pings every PING_INTERVAL_S on a phase of its own, and gives up
        (closes with 1011, as the real client does) when a pong is PING_TIMEOUT_S late.

        Real devices are different machines: their phases are independent. websockets'
        own keepalive schedules each next ping from when the last pong was handled, so
        every stall of this one loop gathers the pings due during it into one burst
        that then recurs every 3 s, a rhythm no real population of devices has. Here a
        device's pings stay on its own phase whatever this loop's stalls."""
        slots = max(1, round(PING_INTERVAL_S / KEEPALIVE_TICK_S))
        wheel: list[list[_Device]] = [[] for _ in range(slots)]
        for d in self.devices:
            wheel[random.randrange(slots)].append(d)
        t0 = time.perf_counter()
        done = 0
        while True:
            await asyncio.sleep(KEEPALIVE_TICK_S)
            now = time.perf_counter()
            due = int((now - t0) / KEEPALIVE_TICK_S)
            for tick in range(done, due):
                for d in wheel[tick % slots]:
                    client = d.ws
                    if client is None or client.closed:
                        continue
                    if client.pinged > client.ponged:  # still waiting for the last pong
                        if now - client.pinged >= PING_TIMEOUT_S:
                            self.errors["keepalive ping timeout"] += 1
                            client.close(1011, "keepalive ping timeout")
                        continue
                    with contextlib.suppress(ConnectionError):
                        client.ping(now)
            done = max(done, due)

    async def lag_loop(self) -> None:
        """How late this loop runs a 20 ms timer: what it adds to every latency."""
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.02)
            if self.measuring:
                self.lags.append((time.perf_counter() - t - 0.02) * 1000.0)

    # the steps

    async def activate(self) -> Json:
        """A `play` aimed at device 0 of each account in `active`; wait for the starts."""
        t0 = time.monotonic()
        n = 0
        for devices in self.accounts:
            d = devices[0]
            track = self.tracks.get(d.account)
            if track is None or d.ws is None:
                continue
            n += 1
            cmd = {
                "op": "play",
                "command_id": "act-" + secrets.token_hex(6),
                "track_ids": [track],
                "device_id": d.id,
            }
            with contextlib.suppress(ConnectionError):
                d.ws.send({"type": "command", "command": cmd})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP_TIMEOUT_S / 2):
                while self.started < n:
                    await asyncio.sleep(0.1)
        return {"active": self.started, "seconds": time.monotonic() - t0}

    async def hold(self, seconds: float) -> Json:
        reports = self.reports
        await asyncio.sleep(seconds)
        open_ = sum(1 for d in self.devices if d.ws is not None and not d.closed)
        return {"open": open_, "reports": self.reports - reports}

    async def run_rate(self, rate: float, seconds: float) -> Json:
        self.sent.clear()
        self.delivered.clear()
        self.latencies = []
        self.late: Counter[int] = Counter()
        self.lags = []
        self.refused.clear()
        self.answered.clear()
        results = Counter(self.results)
        # Accounts with a sender and a receiver still connected (an overloaded server
        # cuts devices off; those the sender rotates over).
        live = [
            open_devs
            for devs in self.accounts
            if len(open_devs := [d for d in devs if d.ws is not None and not d.closed]) >= 2
        ]
        open_before = sum(1 for d in self.devices if d.ws is not None and not d.closed)
        for d in self.devices:
            d.seen = set()
            d.dups = 0
        start_versions = {id(d): d.version for d in self.devices}
        self.measuring = True
        n = int(rate * seconds) if live else 0
        t0 = self.t_phase = time.perf_counter()
        behind = 0.0
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            devices = live[i % len(live)]
            sender = devices[(i // len(live)) % len(devices)]
            cid = f"l{i}-{secrets.token_hex(4)}"
            cmd = {"op": "volume", "command_id": cid, "value": i % 101}
            self.sent[cid] = (time.perf_counter(), sender.account, sender.index)
            try:
                sender.ws.send({"type": "command", "command": cmd})
            except ConnectionError:  # the server cut this device off meanwhile
                del self.sent[cid]
                self.errors["send"] += 1
        sent_s = max(1e-3, time.perf_counter() - t0)

        def missing() -> int:
            """Deliveries still due for commands answered `ok`, to the devices still
            connected (one the server cut off would resync on reconnecting)."""
            due = 0
            for c in self.answered - self.refused:
                _, account, sender = self.sent[c]
                got = set(self.delivered.get(c, ()))
                for d in self.by_account[account]:
                    if d.index != sender and not d.closed and d.index not in got:
                        due += 1
            return due

        # Drain, within DRAIN_MAX_S: until every command is answered (an overloaded
        # server may answer none for a long while) and then delivered, or, once all are
        # answered, nothing arrived for DRAIN_S (what is missing then is lost).
        deadline = time.monotonic() + DRAIN_MAX_S
        progress = -1
        stalled_since = time.monotonic()
        while time.monotonic() < deadline:
            if len(self.latencies) != progress:
                progress, stalled_since = len(self.latencies), time.monotonic()
            stalled = time.monotonic() - stalled_since > DRAIN_S
            if len(self.answered) == len(self.sent) and (stalled or not missing()):
                break
            await asyncio.sleep(0.1)
        drain_s = time.monotonic() - (deadline - DRAIN_MAX_S)
        self.measuring = False
        lost_versions = 0
        dups = 0
        examples: list[str] = []
        for devices in live:
            top = max(d.version for d in devices)
            for d in devices:
                if d.closed:
                    continue
                expected = set(range(start_versions[id(d)] + 1, top + 1))
                gone = expected - d.seen
                lost_versions += len(gone)
                dups += d.dups
                if gone and len(examples) < 5:
                    examples.append(
                        f"{d.id}: missed {sorted(gone)[:5]} of {start_versions[id(d)] + 1}"
                        f"..{top}, saw up to {max(d.seen, default=0)}"
                    )
        dup_deliveries = sum(len(got) - len(set(got)) for got in self.delivered.values())
        return {
            "sent": n,
            "send_seconds": sent_s,
            "behind_ms": behind * 1000.0,
            "latencies": self.latencies,
            "lost_deliveries": missing(),
            "dup_deliveries": dup_deliveries,
            "lost_versions": lost_versions,
            "dup_versions": dups,
            "refused": len(self.refused),
            "unanswered": len(self.sent) - len(self.answered),
            "drain_seconds": drain_s,
            "results": dict(self.results - results),
            "lags": self.lags,
            "late": dict(self.late),
            "open": sum(1 for d in self.devices if d.ws is not None and not d.closed),
            "open_before": open_before,
            "missed": examples,
            "errors": dict(self.errors),
        }


async def _worker_main() -> None:
    """Steps come as JSON lines on stdin; each answer is one JSON line on stdout."""
    _raise_fd_limit()
    os.nice(GENERATOR_NICE)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gen = _Generator(json.loads(await reader.readline()))
    background = [
        asyncio.create_task(gen.report_loop()),
        asyncio.create_task(gen.keepalive_loop()),
        asyncio.create_task(gen.lag_loop()),
    ]
    print(json.dumps({"ready": len(gen.devices)}), flush=True)
    while line := await reader.readline():
        step = json.loads(line)
        kind = step["step"]
        if kind == "quit":
            break
        if kind == "connect":
            out = await gen.connect_all()
            # Thousands of connections are long-lived objects: out of the collector's
            # sight, its full collections no longer stall this loop (and every latency).
            gc.collect()
            gc.freeze()
        elif kind == "activate":
            out = await gen.activate()
        elif kind == "hold":
            out = await gen.hold(step["seconds"])
        elif kind == "rate":
            out = await gen.run_rate(step["rate"], step["seconds"])
        else:
            out = {"error": f"unknown step {kind}"}
        print(json.dumps(out), flush=True)
    for t in background:
        t.cancel()
    os._exit(0)  # no orderly close of every connection: the servers are gone already


# --- the orchestration (the bench process) -----------------------------------------


def _raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (raising the hard one needs
    CAP_SYS_RESOURCE); children (servers, generators) inherit it. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    for want in (max(target, 1 << 17), target):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _pids_named(*names: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    out.append(int(entry.name))
    return out


class _Cpu:
    """CPU use of groups of processes between `start()` and `stop()`, in % of one core.
    A group is a list of pids or a process name (PostgreSQL's backends come and go)."""

    def __init__(self, groups: dict[str, list[int] | str]) -> None:
        self.groups = groups

    def _pids(self, group: list[int] | str) -> list[int]:
        return _pids_named(group) if isinstance(group, str) else group

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {k: {p: _cpu_s(p) for p in self._pids(g)} for k, g in self.groups.items()}

    def stop(self) -> str:
        wall = time.monotonic() - self.t0
        parts = []
        for k, g in self.groups.items():
            used = sum(_cpu_s(p) - self.c0[k].get(p, 0.0) for p in self._pids(g))
            parts.append(f"{k} {100 * max(0.0, used) / wall:.0f}%")
        return "CPU " + ", ".join(parts) + f" (100% = one core of {os.cpu_count()})"


class _Worker:
    def __init__(self, spec: Json, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        self.send(spec)
        self.answer(STEP_TIMEOUT_S)

    def send(self, obj: Json) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float) -> Json:
        assert self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"generator {self.proc.pid}: no answer within {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"generator {self.proc.pid} exited ({self.proc.poll()})")
        out: Json = json.loads(line)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send({"step": "quit"})
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _steps(workers: Sequence[_Worker], step: Json, timeout: float) -> list[Json]:
    """Send a step to every generator at once and collect their answers."""
    for w in workers:
        w.send(step)
    deadline = time.monotonic() + timeout
    return [w.answer(max(1.0, deadline - time.monotonic())) for w in workers]


def _make_accounts(url: str, n: int, active: set[int]) -> list[tuple[list[str], str | None]]:
    """`n` accounts, each with an access token per device (`ld<n>-<i>`) and a stored
    session (version 1), and for those in `active`, an internet radio stream to play (no
    duration, so it never ends): the server's own queries, in-process."""
    import asyncio as aio

    from tunehand.core.model import SessionState
    from tunehand.server import auth
    from tunehand.server.db import accounts as qa
    from tunehand.server.db import sessions as qs
    from tunehand.server.db import userdata as qu
    from tunehand.server.db.engine import open_engine

    async def make() -> list[tuple[list[str], str | None]]:
        engine = open_engine(url)
        out: list[tuple[list[str], str | None]] = []
        now = _now_ms()
        prefix = "ld" + secrets.token_hex(3)
        try:
            async with engine.begin() as conn:
                pw_hash = "not-a-hash"  # nobody logs in with a password here
                for i in range(n):
                    account = await qa.create_account(conn, f"{prefix}-{i}", pw_hash, now)
                    tokens = []
                    for k in range(DEVICES_PER_ACCOUNT):
                        token = "tha_" + secrets.token_urlsafe(32)
                        row = qa.TokenRow(
                            auth.token_hash(token),
                            "access",
                            account,
                            f"ld{i}-{k}",
                            secrets.token_hex(8),
                            now + 3 * 3600 * 1000,
                            None,
                            False,
                        )
                        await qa.insert_token(conn, row)
                        tokens.append(token)
                    # A session as a real account has after its first command ever: that
                    # one-time insert is not the steady state the rate phases measure.
                    await qs.compare_and_set(conn, account, 0, SessionState(version=1))
                    radio = None
                    if i in active:
                        radio = await qu.add_remote(
                            conn, account, f"http://radio.invalid/{prefix}/{i}", "radio"
                        )
                    out.append((tokens, radio))
        finally:
            await engine.dispose()
        return out

    return aio.run(make())


@contextlib.contextmanager
def _private_redis() -> Iterator[str]:
    """A Redis of our own on a free port (`tests.services`): pub/sub channels are global
    to a Redis server (not per database number), and the servers' topics are
    `tunehand:acct:<account id>`, so instances of another deployment on the shared Redis
    (a test suite running at the same time, on its own fresh database with the same small
    account ids) would deliver their states to our devices. Falls back to the shared one
    without redis-server."""
    from tests.services import Redis, ServiceMissing

    try:
        server = Redis().start()
    except ServiceMissing as e:
        shared = os.environ.get(REDIS_ENV, "")
        print(f"  ({e}: using the shared {shared}; other users may cross-talk)")
        yield shared
        return
    with server:
        yield server.url


@contextlib.contextmanager
def _servers(instances: int, tmp: Path, workers: int = 1) -> Iterator[list[Any]]:
    """Fresh PostgreSQL database; instance A scans, the others run with --no-scan; with
    several instances (or workers), a private Redis is their bus. All stopped, the
    database dropped."""
    from tests.fixtures_server import Store, fresh_postgres_database, launch

    with ExitStack() as stack:
        url, drop = fresh_postgres_database()
        stack.callback(drop)
        store = Store(url)
        if instances > 1 or workers > 1:
            store = Store(url, stack.enter_context(_private_redis()))
        args = (*SERVE_ARGS, "--workers", str(workers)) if workers > 1 else SERVE_ARGS
        started: list[Any] = []

        def stop_all() -> None:
            for srv in reversed(started):
                srv.stop()

        stack.callback(stop_all)
        a = launch(tmp / "a", store=store, extra_args=args)
        started.append(a)
        for i in range(1, instances):
            started.append(
                launch(
                    tmp / f"i{i}",
                    music=a.music,
                    store=store,
                    extra_args=(*args, "--no-scan"),
                    wait_scan=False,
                )
            )
        yield started


def _ms(values: Sequence[float]) -> str:
    return (
        f"median {percentile(values, 50):.1f} ms, p90 {percentile(values, 90):.1f} ms, "
        f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms"
        if values
        else "no samples"
    )


class _Population:
    """Servers, accounts and connected generators for one run; `close()` ends it all."""

    def __init__(
        self,
        instances: int,
        tmp: Path,
        devices: int,
        label: str,
        compression: str | None,
        workers: int = 1,
    ) -> None:
        self.label = label
        self.n_workers = workers
        self.compression = compression
        self.stack = ExitStack()
        try:
            self._start(instances, tmp, devices)
        except BaseException:
            self.stack.close()
            raise

    def _start(self, instances: int, tmp: Path, devices: int) -> None:
        fd_limit = _raise_fd_limit()
        self.workers: list[_Worker] = []
        self.stack.callback(self._stop_workers)  # after the servers have stopped (LIFO)
        self.servers = self.stack.enter_context(_servers(instances, tmp, self.n_workers))
        # With --workers, the devices are the workers' (children of the server process);
        # memory is summed over every process, the idle parent included.
        from tests.fixtures_server import child_pids

        holders = [child_pids(s.proc.pid) or [s.proc.pid] for s in self.servers]
        self.holders = [p for ps in holders for p in ps]
        self.pids = [s.proc.pid for s in self.servers] + [
            p for p in self.holders if p not in {s.proc.pid for s in self.servers}
        ]
        limits = [_fd_limit(p) for p in self.holders]
        base_fds = [_fds(p) for p in self.holders]
        room = sum(lim - fds - FD_RESERVE for lim, fds in zip(limits, base_fds, strict=True))
        # Whole accounts: the target itself if it fits (20,000 is no multiple of 3).
        accounts = -(-devices // DEVICES_PER_ACCOUNT)
        if accounts * DEVICES_PER_ACCOUNT > room:
            accounts = min(devices, room) // DEVICES_PER_ACCOUNT
        self.devices = accounts * DEVICES_PER_ACCOUNT
        print(
            f"  {self.label}: servers {', '.join(s.url for s in self.servers)} (pids "
            f"{self.pids}); RLIMIT_NOFILE {limits} (here {fd_limit}); {accounts} accounts x "
            f"{DEVICES_PER_ACCOUNT} = {self.devices} devices; load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        if room < devices:
            print(
                f"  {self.label}: {devices} do not fit: a process may hold {limits[0]} file "
                "descriptors (the hard RLIMIT_NOFILE; raising it needs CAP_SYS_RESOURCE), "
                f"and a server needs ~{FD_RESERVE} besides its devices"
            )
        t = time.monotonic()
        active = set(range(0, accounts, max(1, round(1 / ACTIVE_SHARE))))
        made = _make_accounts(self.servers[0].database, accounts, active)
        self.active = len(active)
        print(f"  {self.label}: accounts and tokens made in {time.monotonic() - t:.1f} s")
        ws_urls = [s.url.replace("http://", "ws://", 1) + "/v1/channel" for s in self.servers]
        specs: list[Json] = [
            {
                "urls": ws_urls,
                "concurrency": CONNECT_CONCURRENCY,
                "connect_deadline": CONNECT_DEADLINE_S,
                "compression": self.compression,
                "accounts": [],
            }
            for _ in range(GENERATORS)
        ]
        for n, (tokens, radio) in enumerate(made):
            specs[n % GENERATORS]["accounts"].append(
                {
                    "n": n,
                    "tokens": tokens,
                    "track": radio,
                    "devices": [f"ld{n}-{i}" for i in range(DEVICES_PER_ACCOUNT)],
                    "instances": [(n + i) % instances for i in range(DEVICES_PER_ACCOUNT)],
                }
            )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        for spec in specs:
            self.workers.append(_Worker(spec, env))
        self.cpu = _Cpu(
            {
                "servers": self.pids,
                "generators": [w.proc.pid for w in self.workers],
                "postgres": "postgres",
                "redis": "redis-server",
            }
        )

    def _stop_workers(self) -> None:
        """The servers stopped first (shutting down, they record no device as lost), so
        the generators exit without closing every connection."""
        for w in self.workers:
            w.stop()

    def steps(self, step: Json, timeout: float) -> list[Json]:
        return _steps(self.workers, step, timeout)

    def rss_kb(self) -> list[int]:
        return [_status_kb(p, "VmRSS") for p in self.pids]

    def connect(self) -> tuple[int, Counter[str]]:
        self.cpu.start()
        answers = self.steps({"step": "connect"}, CONNECT_DEADLINE_S + STEP_TIMEOUT_S)
        connected = sum(a["connected"] for a in answers)
        ramp_s = max(a["seconds"] for a in answers)
        skipped = sum(a["skipped"] for a in answers)
        errors: Counter[str] = Counter()
        for a in answers:
            errors.update(a["errors"])
        print(
            f"  {self.label}: {connected}/{self.devices} connected in {ramp_s:.1f} s "
            f"({connected / ramp_s:.0f}/s)"
            + (f", {skipped} not tried by the {CONNECT_DEADLINE_S:g} s deadline" if skipped else "")
            + f"; {self.cpu.stop()}"
            + (f"; failures {dict(errors)}" if errors else "")
        )
        act = self.steps({"step": "activate"}, STEP_TIMEOUT_S)
        print(f"  {self.label}: {sum(a['active'] for a in act)}/{self.active} accounts playing")
        return connected, errors

    def hold(self, seconds: float) -> tuple[int, str]:
        self.cpu.start()
        held = self.steps({"step": "hold", "seconds": seconds}, seconds + STEP_TIMEOUT_S)
        usage = self.cpu.stop()
        open_ = sum(a["open"] for a in held)
        reports = sum(a["reports"] for a in held)
        print(
            f"  {self.label}: {open_} connections open after {seconds:g} s idle "
            f"({reports} reports); server fds {[_fds(p) for p in self.holders]}; {usage}"
        )
        return open_, usage

    def rate(self, rate: float, seconds: float, target: float | None) -> list[Result]:
        self.cpu.start()
        step = {"step": "rate", "rate": rate / GENERATORS, "seconds": seconds}
        runs = self.steps(step, seconds + DRAIN_MAX_S + STEP_TIMEOUT_S)
        usage = self.cpu.stop()
        lat = [x for r in runs for x in r["latencies"]]
        lags = [x for r in runs for x in r["lags"]]
        sent = sum(r["sent"] for r in runs)
        send_s = max(r["send_seconds"] for r in runs)
        lost = sum(r["lost_deliveries"] for r in runs)
        lost_v = sum(r["lost_versions"] for r in runs)
        dups = sum(r["dup_deliveries"] for r in runs) + sum(r["dup_versions"] for r in runs)
        results: Counter[str] = Counter()
        for r in runs:
            results.update(r["results"])
        behind = max(r["behind_ms"] for r in runs)
        print(
            f"  {self.label} @ {rate:g}/s: sent {sent} in {send_s:.1f} s ({sent / send_s:.0f}/s,"
            f" at most {behind:.0f} ms behind schedule); results {dict(results)}; "
            f"{len(lat)} deliveries: {_ms(lat)}"
        )
        unanswered = sum(r["unanswered"] for r in runs)
        drain = max(r["drain_seconds"] for r in runs)
        # Deliveries that never came (lost, or commands still unanswered at the end of the
        # drain) are later than any latency: a p99 they reach is infinite.
        late = lost + unanswered * (DEVICES_PER_ACCOUNT - 1)
        p99 = percentile([*lat, *[_NEVER] * late], 99) if lat or late else math.nan
        p99 = math.inf if p99 >= _NEVER / 2 else p99
        print(
            f"  {self.label} @ {rate:g}/s: backlog drained {drain:.1f} s after the last send; "
            f"lost {lost} deliveries, {lost_v} versions; duplicated {dups}; unanswered "
            f"{unanswered}; open {sum(r['open_before'] for r in runs)} -> "
            f"{sum(r['open'] for r in runs)}; generator loop lag "
            f"{_ms(lags)}; {usage}"
        )
        by_second: Counter[str] = Counter()
        for r in runs:
            by_second.update({f"{int(k):03d}": v for k, v in r["late"].items()})
        if by_second:
            print(
                f"  {self.label} @ {rate:g}/s: deliveries over {TARGET_P99_MS:g} ms by the second "
                f"they were sent in: {dict(sorted(by_second.items()))}"
            )
        for r in runs:
            for line in r["missed"]:
                print(f"  {self.label} @ {rate:g}/s: lost: {line}")
        name = f"load {self.label} @ {rate:g} cmd/s"
        return [
            check(f"{name}: fan-out p99", p99, "ms", target, f"{late} never delivered"),
            check(f"{name}: fan-out median", percentile(lat, 50), "ms"),
            check(f"{name}: lost or duplicated", float(lost + lost_v + dups), "", 0.0),
        ]

    def close(self) -> None:
        try:
            self._print_server_log()
        finally:
            self.stack.close()

    def _print_server_log(self) -> None:
        """What the servers logged (warnings and errors), counted by their first words."""
        seen: Counter[str] = Counter()
        for srv in self.servers:
            in_traceback = False
            for line in srv.log:
                if line.startswith("Traceback"):
                    in_traceback = True
                elif in_traceback and line and not line.startswith(" "):
                    if not line.startswith(("The above exception", "During handling")):
                        seen["Traceback ... " + line[:100]] += 1  # the exception it ends with
                        in_traceback = False
                elif line.startswith("20") and ": " in line:  # "DATE TIME logger: message"
                    text = line.split(" ", 2)[2]
                    seen[" ".join(text.split()[:7])[:110]] += 1
        for text, n in seen.most_common(6):
            print(f"  {self.label}: server log: {n} x {text}")


def _capacity(instances: int, tmp: Path, label: str, workers: int = 1) -> list[Result]:
    """Connect up to TARGET_CONNECTIONS devices, hold them, then the target command rate."""
    pop = _Population(instances, tmp, DEVICES, label, "deflate", workers)
    try:
        rss0 = pop.rss_kb()
        gen_pids = [w.proc.pid for w in pop.workers]
        gen0 = sum(_status_kb(p, "VmRSS") for p in gen_pids)
        _, errors = pop.connect()
        open_, usage = pop.hold(HOLD_S)
        rss1 = pop.rss_kb()
        per_conn = (sum(rss1) - sum(rss0)) / max(1, open_)
        gen1 = sum(_status_kb(p, "VmRSS") for p in gen_pids)
        print(
            f"  {label}: server VmRSS {[round(r / 1024, 1) for r in rss0]} MiB -> "
            f"{[round(r / 1024, 1) for r in rss1]} MiB: {per_conn:.1f} KiB per connection; "
            f"generators {(gen1 - gen0) / max(1, open_):.1f} KiB per connection"
        )
        out = [
            Result(
                f"load {label}: connections held",
                float(open_),
                "",
                None,
                open_ >= TARGET_CONNECTIONS,
                f"of {pop.devices} tried, target {TARGET_CONNECTIONS}; "
                f"failures {sum(errors.values())}; idle: {usage}",
            ),
            check(
                f"load {label}: server memory per connection",
                per_conn,
                "KiB",
                TARGET_KIB_PER_CONNECTION,
            ),
        ]
        out += pop.rate(FULL_RATE, FULL_RATE_S, TARGET_P99_MS if FULL_RATE >= TARGET_RATE else None)
        return out
    finally:
        pop.close()


def _latency(instances: int, tmp: Path, label: str) -> list[Result]:
    """LATENCY_DEVICES devices; fan-out latency and loss at each of RATES."""
    pop = _Population(instances, tmp, LATENCY_DEVICES, label, "deflate")
    try:
        pop.connect()
        pop.hold(2 * PING_INTERVAL_S)
        out: list[Result] = []
        for rate in RATES:
            out += pop.rate(rate, RATE_S, TARGET_P99_MS if rate >= TARGET_RATE else None)
        return out
    finally:
        pop.close()


def run() -> list[Result]:
    if not postgres_configured():
        print("  skipped: TUNEHAND_TEST_POSTGRES_URL is not set")
        return [Result("load", math.nan, "", None, None, "needs PostgreSQL")]
    configs = [(1, "1 instance")]
    if os.environ.get(REDIS_ENV) or shutil.which("redis-server"):
        configs.append((2, "2 instances"))
    else:
        print(f"  2 instances: skipped (no redis-server and {REDIS_ENV} is not set)")
    wanted = set(_env("PARTS", ",".join(PARTS)).split(","))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tunehand-load-") as tmp:
        parts: list[tuple[str, Callable[[Path], list[Result]]]] = []
        for instances, label in configs:
            latency_label = f"{label}, {LATENCY_DEVICES} devices"
            if f"capacity{instances}" in wanted:
                parts.append((label, functools.partial(_capacity, instances, label=label)))
            if f"latency{instances}" in wanted:
                parts.append(
                    (latency_label, functools.partial(_latency, instances, label=latency_label))
                )
            if instances == 1 and len(configs) > 1 and "capacity1w" in wanted:
                # One process may hold at most RLIMIT_NOFILE sockets: one `tunehand serve`
                # with a worker per core holds more.
                w_label = f"1 instance, {WORKERS} workers"
                parts.append(
                    (w_label, functools.partial(_capacity, 1, label=w_label, workers=WORKERS))
                )
        for n, (name, measure) in enumerate(parts):
            root = Path(tmp) / str(n)
            root.mkdir()
            try:
                results += measure(root)
            except Exception as exc:  # one part failing leaves the others' figures
                traceback.print_exc()
                results.append(Result(f"load {name}", math.nan, "", None, False, f"error: {exc}"))
    return results


if __name__ == "__main__":
    if "--worker" in sys.argv:
        gc.set_threshold(10_000, 20, 20)
        from tunehand.cli.serve import loop_factory

        # uvloop, as the server runs on, where installed: the generator shares the CPU.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_worker_main())
    else:
        from bench.__main__ import main

        sys.exit(main(["load"]))
