"""Many devices on one server instance, and on two sharing PostgreSQL and Redis.

Simulated devices are websocket clients that behave like `tunehand receiver`: they
authenticate with capabilities ["play"], ping like the real client (websocket pings
every 3 s, permessage-deflate as negotiated by default), obey directives (`prepare`
is answered `ready`; `start` makes the device active, `stop` idle) and, while active,
report their position every 5 s. Devices come in accounts of DEVICES_PER_ACCOUNT; an
account is created in the database in-process (the server's own queries) with one
access token that its devices share, each with its own device id (a login over HTTP
costs an argon2 verification, ~50 ms of CPU, which would dominate the setup). In
ACTIVE_SHARE of the accounts one device plays (a `play` command aimed at it), so those
report every 5 s; the others are idle.

Load generators: GENERATORS worker processes (`python -m bench.load --worker`), each
holding its share of the accounts (all devices of an account in one process, so one
clock times a fan-out) on one asyncio loop with the websockets asyncio client.

Per configuration (one instance on PostgreSQL with its in-process bus; two instances
on PostgreSQL + Redis, the devices of each account spread over both):

1. connections: every device connects and waits for its `hello` (at most
   CONNECT_CONCURRENCY handshakes in flight per generator, a deadline for all); then
   the active accounts start playing; then everything is held for HOLD_S and the
   devices still open are counted. The server's memory per connection is its VmRSS
   (from /proc/PID/status, summed over the instances) after the hold minus before the
   first connection, divided by the connections held.
2. fan-out: commands (`volume`, a new value each time) go out on the channel of one
   device of an account (accounts round-robin, the sending device rotating) at each
   rate of RATES for RATE_S, open loop (on schedule whatever the answers). The latency
   of one delivery is from just before the send to when another device of the account
   receives the `state` naming the command (`command_id`), both read with the same
   monotonic clock. After a drain, every device must have seen every version of its
   account exactly once (lost: a version or a command's state never arrived at a
   device; duplicated: one arrived twice).

Also printed: the generators' own loop lag (it adds to the latencies), CPU use of the
servers, the generators and PostgreSQL/Redis during each phase, and the file
descriptor limit, which bounds the connections one process can hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Result, check, percentile, postgres_configured

TARGET_CONNECTIONS = 20_000
TARGET_KIB_PER_CONNECTION = 20.0
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
DEVICES_PER_ACCOUNT = 3
ACTIVE_SHARE = 0.1
"""Share of the accounts with a playing device (reporting every 5 s)."""
GENERATORS = 2
CONNECT_CONCURRENCY = 64
"""Handshakes in flight per generator (the server's listen backlog is 2048)."""
CONNECT_DEADLINE_S = 420.0
HOLD_S = 20.0
RATES = (100.0, 250.0, 500.0, 1000.0)
RATE_S = 15.0
DRAIN_S = 10.0
PING_INTERVAL_S = 3.0
PING_TIMEOUT_S = 4.0
"""As `tunehand.client.channel`: websocket pings both ways."""
REPORT_EVERY_S = 5.0
FD_RESERVE = 96
"""File descriptors a server needs besides its devices (database pool, Redis, logs)."""
STEP_TIMEOUT_S = 120.0
"""Deadline for a generator's answer to any step but the connection ramp."""
REDIS_ENV = "TUNEHAND_TEST_REDIS_URL"

Json = dict[str, Any]


# --- the generator (a worker process) ----------------------------------------------


@dataclass(eq=False)
class _Device:
    account: int
    index: int
    id: str
    url: str
    ws: Any = None
    version: int = 0
    seen: set[int] = field(default_factory=set)
    dups: int = 0
    active: bool = False
    term: int = 0
    entry: str | None = None
    anchor: tuple[int, int] = (0, 0)
    next_report: float = 0.0
    closed: bool = False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self.tokens = {acct["n"]: acct["token"] for acct in spec["accounts"]}
        self.tracks = {acct["n"]: acct["track"] for acct in spec["accounts"] if acct["track"]}
        """The radio stream an active account plays (None: the account stays idle)."""
        self.devices = [d for devs in self.accounts for d in devs]
        self.sent: dict[str, tuple[float, int, int]] = {}
        """command_id -> (send time, account, sender index), during a rate phase."""
        self.delivered: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.results: Counter[str] = Counter()
        self.refused: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.reports = 0
        self.started = 0
        self.lags: list[float] = []
        self.measuring = False

    # the devices

    async def connect_all(self) -> Json:
        from websockets.asyncio.client import connect

        sem = asyncio.Semaphore(self.spec["concurrency"])
        t0 = time.monotonic()

        async def one(d: _Device) -> None:
            async with sem:
                try:
                    ws = await connect(
                        d.url,
                        ping_interval=PING_INTERVAL_S,
                        ping_timeout=PING_TIMEOUT_S,
                        open_timeout=60,
                        close_timeout=1,
                        max_queue=64,
                    )
                    hello = {"id": d.id, "name": d.id, "capabilities": ["play"]}
                    auth = {"type": "auth", "token": self.tokens[d.account], "device": hello}
                    await ws.send(json.dumps(auth))
                    async with asyncio.timeout(60):
                        while True:
                            msg = self.decode(await ws.recv())
                            if msg.get("type") == "hello":
                                break
                            if msg.get("type") == "error":
                                raise RuntimeError(msg.get("code"))
                except Exception as exc:
                    self.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    return
                d.ws = ws
                d.version = msg["version"]
                asyncio.get_running_loop().create_task(self.read(d))

        await asyncio.gather(*(one(d) for d in self.devices))
        connected = sum(1 for d in self.devices if d.ws is not None)
        return {
            "connected": connected,
            "seconds": time.monotonic() - t0,
            "errors": dict(self.errors),
        }

    async def read(self, d: _Device) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = d.ws
        try:
            async for raw in ws:
                now = time.perf_counter()
                msg = self.decode(raw)
                kind = msg.get("type")
                if kind == "state":
                    self.on_state(d, msg, now)
                elif kind == "directive":
                    await self.on_directive(d, msg)
                elif kind == "result":
                    self.results[msg["code"]] += 1
                    if msg["code"] != "ok":
                        self.refused.add(msg["command_id"])
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.errors["reader " + type(exc).__name__] += 1
        d.closed = True

    def on_state(self, d: _Device, msg: Json, now: float) -> None:
        version = msg["version"]
        if self.measuring:
            if version in d.seen:
                d.dups += 1
            d.seen.add(version)
            cid = msg.get("command_id")
            sent = self.sent.get(cid) if isinstance(cid, str) else None
            if sent is not None and isinstance(cid, str) and d.index != sent[2]:
                self.delivered[cid] += 1
                self.latencies.append((now - sent[0]) * 1000.0)
        if version <= d.version:
            return
        d.version = version
        st = msg["state"]
        pos = st["position"]
        d.active = st.get("active_device") == d.id
        d.term = st.get("term", 0)
        d.entry = st.get("current")
        d.anchor = (pos["position_ms"], pos["at_ms"])

    async def on_directive(self, d: _Device, msg: Json) -> None:
        action = msg["action"]
        if action == "prepare":
            await d.ws.send(json.dumps({"type": "ready", "transfer_id": msg["transfer_id"]}))
        elif action == "start":
            d.active, d.term, d.entry = True, msg["term"], msg["entry_id"]
            d.anchor = (msg["position_ms"], msg["at_ms"])
            self.started += 1
            d.next_report = 0.0  # at once, like a player that just got audible
        elif action == "stop":
            d.active = False

    async def report_loop(self) -> None:
        """One task for every active device: each reports every REPORT_EVERY_S."""
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for d in self.devices:
                if not d.active or d.closed or d.ws is None or d.next_report > now:
                    continue
                d.next_report = now + REPORT_EVERY_S
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
                with contextlib.suppress(Exception):
                    await d.ws.send(json.dumps({"type": "report", "report": report}))
                    self.reports += 1

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
            with contextlib.suppress(Exception):
                await d.ws.send(json.dumps({"type": "command", "command": cmd}))
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
        self.lags = []
        self.refused.clear()
        results = Counter(self.results)
        live = [devs for devs in self.accounts if all(d.ws is not None for d in devs)]
        for d in self.devices:
            d.seen = set()
            d.dups = 0
        start_versions = {id(d): d.version for d in self.devices}
        self.measuring = True
        n = int(rate * seconds)
        t0 = time.perf_counter()
        behind = 0.0
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            devices = live[i % len(live)]
            sender = devices[(i // len(live)) % DEVICES_PER_ACCOUNT]
            cid = f"l{i}-{secrets.token_hex(4)}"
            cmd = {"op": "volume", "command_id": cid, "value": i % 101}
            self.sent[cid] = (time.perf_counter(), sender.account, sender.index)
            try:
                await sender.ws.send(json.dumps({"type": "command", "command": cmd}))
            except Exception:
                self.errors["send"] += 1
        sent_s = time.perf_counter() - t0
        want = DEVICES_PER_ACCOUNT - 1

        def missing() -> int:
            ok = [c for c in self.sent if c not in self.refused]
            return sum(max(0, want - self.delivered[c]) for c in ok)

        deadline = time.monotonic() + DRAIN_S
        while missing() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.measuring = False
        lost_versions = 0
        dups = 0
        for devices in live:
            top = max(d.version for d in devices)
            for d in devices:
                if d.closed:
                    continue
                expected = set(range(start_versions[id(d)] + 1, top + 1))
                lost_versions += len(expected - d.seen)
                dups += d.dups
        dup_deliveries = sum(max(0, c - want) for c in self.delivered.values())
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
            "results": dict(self.results - results),
            "lags": self.lags,
            "open": sum(1 for d in self.devices if d.ws is not None and not d.closed),
            "errors": dict(self.errors),
        }


async def _worker_main() -> None:
    """Steps come as JSON lines on stdin; each answer is one JSON line on stdout."""
    _raise_fd_limit()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gen = _Generator(json.loads(await reader.readline()))
    background = [
        asyncio.create_task(gen.report_loop()),
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


def _make_accounts(url: str, n: int, active: set[int]) -> list[tuple[str, str | None]]:
    """`n` accounts, each with one access token (and for those in `active`, an internet
    radio stream to play: no duration, so it never ends): the server's own queries,
    in-process."""
    import asyncio as aio

    from tunehand.server import auth
    from tunehand.server.db import accounts as qa
    from tunehand.server.db import userdata as qu
    from tunehand.server.db.engine import open_engine

    async def make() -> list[tuple[str, str | None]]:
        engine = open_engine(url)
        out: list[tuple[str, str | None]] = []
        now = _now_ms()
        prefix = "ld" + secrets.token_hex(3)
        try:
            async with engine.begin() as conn:
                pw_hash = "not-a-hash"  # nobody logs in with a password here
                for i in range(n):
                    account = await qa.create_account(conn, f"{prefix}-{i}", pw_hash, now)
                    token = "tha_" + secrets.token_urlsafe(32)
                    row = qa.TokenRow(
                        auth.token_hash(token),
                        "access",
                        account,
                        f"{prefix}-{i}-0",
                        secrets.token_hex(8),
                        now + 3 * 3600 * 1000,
                        None,
                        False,
                    )
                    await qa.insert_token(conn, row)
                    radio = None
                    if i in active:
                        radio = await qu.add_remote(
                            conn, account, f"http://radio.invalid/{prefix}/{i}", "radio"
                        )
                    out.append((token, radio))
        finally:
            await engine.dispose()
        return out

    return aio.run(make())


@contextlib.contextmanager
def _servers(instances: int, tmp: Path) -> Iterator[list[Any]]:
    from tests.fixtures_server import fresh_postgres_database, launch

    redis = os.environ.get(REDIS_ENV)
    url, drop = fresh_postgres_database()
    started: list[Any] = []
    try:
        extra: tuple[str, ...] = ("--redis", redis) if instances > 1 and redis else ()
        a = launch(tmp / "a", database=url, extra_args=extra)
        started.append(a)
        for i in range(1, instances):
            started.append(
                launch(
                    tmp / f"i{i}",
                    music=a.music,
                    database=url,
                    extra_args=(*extra, "--no-scan"),
                    wait_scan=False,
                )
            )
        yield started
    finally:
        for s in reversed(started):
            s.stop()
        drop()


def _ms(values: Sequence[float]) -> str:
    return (
        f"median {percentile(values, 50):.1f} ms, p90 {percentile(values, 90):.1f} ms, "
        f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms"
        if values
        else "no samples"
    )


def _configuration(instances: int, tmp: Path) -> list[Result]:
    label = "1 instance" if instances == 1 else f"{instances} instances"
    out: list[Result] = []
    fd_limit = _raise_fd_limit()
    with ExitStack() as stack:
        servers = stack.enter_context(_servers(instances, tmp))
        pids = [s.proc.pid for s in servers]
        limits = [_fd_limit(p) for p in pids]
        base_fds = [_fds(p) for p in pids]
        per_instance = [lim - fds - FD_RESERVE for lim, fds in zip(limits, base_fds, strict=True)]
        devices = min(TARGET_CONNECTIONS, sum(per_instance))
        accounts = math.ceil(devices / DEVICES_PER_ACCOUNT)
        if accounts * DEVICES_PER_ACCOUNT > sum(per_instance):
            accounts -= 1
        devices = accounts * DEVICES_PER_ACCOUNT
        print(
            f"  {label}: servers {', '.join(s.url for s in servers)} (pids {pids}); "
            f"RLIMIT_NOFILE {limits} (this process {fd_limit}), {base_fds} open at start; "
            f"{accounts} accounts x {DEVICES_PER_ACCOUNT} = {devices} devices"
        )
        if devices < TARGET_CONNECTIONS:
            print(
                f"  {label}: the target {TARGET_CONNECTIONS} does not fit: a process may "
                f"hold {limits[0]} file descriptors (the hard RLIMIT_NOFILE; raising it needs "
                f"CAP_SYS_RESOURCE), and the server needs ~{FD_RESERVE} besides its devices"
            )
        t = time.monotonic()
        active = set(range(0, accounts, max(1, round(1 / ACTIVE_SHARE))))
        made = _make_accounts(servers[0].database, accounts, active)
        print(f"  {label}: accounts and tokens made in {time.monotonic() - t:.1f} s")
        ws_urls = [s.url.replace("http://", "ws://", 1) + "/v1/channel" for s in servers]
        specs: list[Json] = [
            {
                "urls": ws_urls,
                "concurrency": CONNECT_CONCURRENCY,
                "accounts": [],
            }
            for _ in range(GENERATORS)
        ]
        for n, (token, radio) in enumerate(made):
            specs[n % GENERATORS]["accounts"].append(
                {
                    "n": n,
                    "token": token,
                    "track": radio,
                    "devices": [f"ld{n}-{i}" for i in range(DEVICES_PER_ACCOUNT)],
                    "instances": [(n + i) % instances for i in range(DEVICES_PER_ACCOUNT)],
                }
            )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        workers: list[_Worker] = []

        def stop_workers() -> None:
            for w in workers:
                w.stop()

        stack.callback(stop_workers)
        workers += [_Worker(spec, env) for spec in specs]
        gen_pids = [w.proc.pid for w in workers]
        cpu = _Cpu(
            {
                "servers": pids,
                "generators": gen_pids,
                "postgres": "postgres",
                "redis": "redis-server",
            }
        )

        rss0 = [_status_kb(p, "VmRSS") for p in pids]
        gen_rss0 = sum(_status_kb(p, "VmRSS") for p in gen_pids)
        cpu.start()
        answers = _steps(workers, {"step": "connect"}, CONNECT_DEADLINE_S)
        connected = sum(a["connected"] for a in answers)
        ramp_s = max(a["seconds"] for a in answers)
        errors: Counter[str] = Counter()
        for a in answers:
            errors.update(a["errors"])
        print(
            f"  {label}: {connected}/{devices} connected in {ramp_s:.1f} s "
            f"({connected / ramp_s:.0f}/s); {cpu.stop()}"
            + (f"; failures {dict(errors)}" if errors else "")
        )
        act = _steps(workers, {"step": "activate"}, STEP_TIMEOUT_S)
        print(f"  {label}: {sum(a['active'] for a in act)}/{len(active)} accounts playing")
        cpu.start()
        held = _steps(workers, {"step": "hold", "seconds": HOLD_S}, HOLD_S + STEP_TIMEOUT_S)
        open_ = sum(a["open"] for a in held)
        reports = sum(a["reports"] for a in held)
        rss1 = [_status_kb(p, "VmRSS") for p in pids]
        fds1 = [_fds(p) for p in pids]
        gen_rss1 = sum(_status_kb(p, "VmRSS") for p in gen_pids)
        per_conn = (sum(rss1) - sum(rss0)) / max(1, open_)
        print(
            f"  {label}: {open_} connections held after {HOLD_S:g} s ({reports} reports); "
            f"server fds {fds1}; {cpu.stop()}"
        )
        print(
            f"  {label}: server VmRSS {[round(r / 1024, 1) for r in rss0]} MiB -> "
            f"{[round(r / 1024, 1) for r in rss1]} MiB: {per_conn:.1f} KiB per connection; "
            f"generators {(gen_rss1 - gen_rss0) / max(1, open_):.1f} KiB per connection"
        )
        out += [
            check(f"load {label}: connections held", float(open_), ""),
            Result(
                f"load {label}: held of {TARGET_CONNECTIONS}",
                float(open_),
                "",
                None,
                open_ >= TARGET_CONNECTIONS,
                f"attempted {devices}; failures {sum(errors.values())}",
            ),
            check(
                f"load {label}: server memory per connection",
                per_conn,
                "KiB",
                TARGET_KIB_PER_CONNECTION,
            ),
        ]

        for rate in RATES:
            cpu.start()
            step = {"step": "rate", "rate": rate / GENERATORS, "seconds": RATE_S}
            runs = _steps(workers, step, RATE_S + DRAIN_S + STEP_TIMEOUT_S)
            usage = cpu.stop()
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
            p99 = percentile(lat, 99)
            print(
                f"  {label} @ {rate:g}/s: sent {sent} in {send_s:.1f} s "
                f"({sent / send_s:.0f}/s, at most {max(r['behind_ms'] for r in runs):.0f} ms "
                f"behind schedule); results {dict(results)}; {len(lat)} deliveries: {_ms(lat)}"
            )
            print(
                f"  {label} @ {rate:g}/s: lost {lost} deliveries, {lost_v} versions; "
                f"duplicated {dups}; open {sum(r['open'] for r in runs)}; "
                f"generator loop lag {_ms(lags)}; {usage}"
            )
            name = f"load {label} fan-out @ {rate:g}/s"
            out.append(
                check(f"{name} p99", p99, "ms", TARGET_P99_MS if rate >= TARGET_RATE else None)
            )
            out.append(check(f"{name} median", percentile(lat, 50), "ms"))
            out.append(check(f"{name} lost or duplicated", float(lost + lost_v + dups), "", 0.0))
    return out


def run() -> list[Result]:
    if not postgres_configured():
        print("  skipped: TUNEHAND_TEST_POSTGRES_URL is not set")
        return [Result("load", math.nan, "", None, None, "needs PostgreSQL")]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tunehand-load-") as tmp:
        root = Path(tmp)
        (root / "one").mkdir()
        results += _configuration(1, root / "one")
        if os.environ.get(REDIS_ENV):
            (root / "two").mkdir()
            results += _configuration(2, root / "two")
        else:
            print(f"  2 instances: skipped ({REDIS_ENV} is not set)")
    return results


if __name__ == "__main__":
    if "--worker" in sys.argv:
        asyncio.run(_worker_main())
    else:
        from bench.__main__ import main

        sys.exit(main(["load"]))
