"""Handoff and command latency, read from mpv's own playback position (not tunehand's reports).

Setup: a real server on a library of TRACKS generated tracks of TRACK_S seconds, and two
real receivers (`tunehand receiver`, each logged in with its own config dir, mpv with
`ao=null` and a JSON IPC socket), both opted out of being kept warm (`warm = false`:
this bench measures the prepared handoff; `bench.warm` measures the warm one). The queue
holds every track with repeat on, and plays on r1. A poller thread asks each mpv for
`time-pos` every POLL_S (2 ms); `pause`, `core-idle` and `idle-active` come as
`observe_property` events. Every reply and event is stamped with time.monotonic() when
it arrives (loopback IPC answers in ~0.1 ms).

mpv with `ao=null` refreshes `time-pos` only on its playloop ticks, ~50 ms apart while it
plays; but it sets it exactly on pause and stop, and the values it steps to are exact:
the steps lie on a line `t - pos = c` within a few ms. So for each handoff (`ctl
transfer`, back and forth, HANDOFFS times after WARMUP_HANDOFFS):

- source end: the first sign after the command that the source stopped (time-pos gone,
  or `pause`/`core-idle`/`idle-active` turning true);
- target start: when playback started by mpv's own clock: the target's first time-pos
  step after its unpause, moved back by how far the position advanced from where it
  was held (`t_step - (pos_step - pos_held)`). The step itself comes up to ~50 ms later;
- gap = target start - source end (negative: both played at once). The literal figure
  (target's first time-pos step - the source's last step) is printed too: ao=null's
  steps make it ~one step (~50 ms) too large at each end;
- jump = where the target started - where the source was at that instant, by the
  source's steady line (positive: audio skipped, negative: audio repeated);
- whether the target's position moves off its line again within AFTER_START_S of
  starting (a second seek or a stall), and by how much; and whether mpv started a
  seek on the target then (its `seek` event): a move with no seek is the output's own
  (a small buffer that runs dry stalls; the steady part counts those moves with no
  handoff at all, for comparison);
- ctl transfer latency: from just before the `ctl` process starts to the target start
  (and, printed too, to its first time-pos step).

The remote watcher (a websocket device without capabilities) sees the switch `state`:
its `position.at_ms` is the planned switch instant T, converted to this machine's
monotonic clock with time.time() - time.monotonic() (every process here shares both
clocks), so each handoff also shows when the source stopped and the target started
relative to T. Its `position_ms` is where the server put the source at T, which the
target was loaded at: "model" is that minus where the source really was at T (by the
source's line), and "anchor" the same for the last position anchor before the command.
A jump that equals "model" comes from the server's position, not from the switch.

Then pause latency: `ctl pause` / `ctl play` alternately (PAUSES each), from just before
the process starts to mpv's `pause` event on the active device; and the same commands
sent over the watcher's already open `/v1/channel` connection.

`ctl` runs with a private bytecode cache (as an installed tunehand would), like
bench.ctl_status.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.audiogen import make_track
from tests.fixtures_server import ServerProc, launch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench.common import (
    PASSWORD,
    USER,
    Result,
    check,
    clean_env,
    login_cli,
    ms,
    percentile,
    selected_cases,
    tunehand_bin,
)

TRACKS = 4
TRACK_S = 90
HANDOFFS = 10
WARMUP_HANDOFFS = 2
PAUSES = 15
"""`ctl pause` measurements (and as many `ctl play` in between)."""
WS_PAUSES = 15
POLL_S = 0.002
SETTLE_S = 1.5
"""Steady playback before each handoff or command (the source's line needs ~20 steps)."""
AFTER_START_S = 1.2
"""How long the target is watched after it starts (a second seek comes at T)."""
REWIND_BEFORE_END_S = 12.0
"""A handoff is not measured this close to the track's end: seek back first."""
WAIT_S = 8.0
CTL_TIMEOUT_S = 20.0
STARTUP_S = 30.0
STOP_S = 10.0
DISCONTINUITY_S = 0.020
"""A move of the target off its own line by more than this after it started."""
SOURCE_FIT_S = 0.6
"""The source's line at the switch: its steps of this long before it stopped."""

TARGET_TRANSFER_MS = 250.0
TARGET_CTL_PAUSE_MS = 100.0
TARGET_WS_PAUSE_MS = 10.0

_POLL_ID = 1_000
_PROPS = ("pause", "core-idle", "idle-active")


def _wall_minus_mono() -> float:
    """time.time() - time.monotonic() now (the smallest of a few reads), in seconds."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        a = time.monotonic()
        w = time.time()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) / 2)
    assert best is not None
    return best[1]


# --- mpv's own state over its JSON IPC socket -----------------------------------------


class MpvWatch:
    """One mpv's `time-pos` samples and property events, stamped with time.monotonic()."""

    def __init__(self, name: str, path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.name = name
        deadline = time.monotonic() + STARTUP_S
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}) before mpv's IPC socket"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no mpv IPC socket at {path}") from None
                time.sleep(0.05)
        self._sock = sock
        self._file = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._next_id = _POLL_ID
        self.times: list[float] = []
        self.positions: list[float | None] = []
        self.events: list[tuple[float, str, Any]] = []
        self._reader = threading.Thread(target=self._read, name=f"mpv-ipc-{name}", daemon=True)
        self._reader.start()
        for i, prop in enumerate(_PROPS, 1):
            self._send({"command": ["observe_property", i, prop]})

    def _send(self, obj: object) -> None:
        data = json.dumps(obj).encode() + b"\n"
        with self._send_lock:
            self._sock.sendall(data)

    def poll(self) -> None:
        self._next_id += 1
        self._send({"command": ["get_property", "time-pos"], "request_id": self._next_id})

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self._file:
                t = time.monotonic()
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("event") == "property-change":
                    self.events.append((t, msg.get("name", ""), msg.get("data")))
                elif msg.get("event") == "seek":
                    # mpv's own event for every seek it starts (not a property):
                    # tells a second seek by the device from the output's own moves.
                    self.events.append((t, "seek", True))
                elif msg.get("request_id", 0) >= _POLL_ID:
                    data = msg.get("data") if msg.get("error") == "success" else None
                    pos = float(data) if isinstance(data, int | float) else None
                    self.positions.append(pos)  # positions first: times is the length guard
                    self.times.append(t)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(timeout=2)

    # --- reading the record ---------------------------------------------------------

    def samples(self, t0: float, t1: float = math.inf) -> list[tuple[float, float | None]]:
        n = len(self.times)
        times = self.times[:n]
        lo = bisect.bisect_left(times, t0)
        hi = bisect.bisect_right(times, t1)
        return list(zip(times[lo:hi], self.positions[lo:hi], strict=True))

    def advances(self, t0: float, t1: float = math.inf) -> list[tuple[float, float]]:
        """(t, pos) of every sample in [t0, t1] where time-pos moved forward."""
        out: list[tuple[float, float]] = []
        prev: float | None = None
        for t, p in self.samples(t0, t1):
            if p is not None and prev is not None and p > prev:
                out.append((t, p))
            prev = p
        return out

    def first_event(self, name: str, value: Any, after: float) -> float | None:
        for t, n, v in list(self.events):
            if t > after and n == name and v == value:
                return t
        return None

    def wait_event(self, name: str, value: Any, after: float, timeout_s: float = WAIT_S) -> float:
        deadline = time.monotonic() + timeout_s
        while (t := self.first_event(name, value, after)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: mpv's {name} never became {value}")
            time.sleep(0.001)
        return t

    def wait_advancing(self, after: float, timeout_s: float = WAIT_S) -> tuple[float, float]:
        deadline = time.monotonic() + timeout_s
        while not (adv := self.advances(after)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: mpv's time-pos never moved")
            time.sleep(0.002)
        return adv[0]

    def position(self) -> float | None:
        return self.positions[-1] if self.positions else None

    def playing(self, window_s: float = 0.3) -> bool:
        return len(self.advances(time.monotonic() - window_s)) >= 2


class Poller:
    """Asks every watched mpv for time-pos every POLL_S, on its own thread."""

    def __init__(self, watches: Sequence[MpvWatch]) -> None:
        self._watches = list(watches)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpv-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            for w in self._watches:
                with contextlib.suppress(OSError):
                    w.poll()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --- processes ---------------------------------------------------------------------------


def bench_env(tmp: Path, config_dir: Path | None = None) -> dict[str, str]:
    """A clean environment with a private bytecode cache (nothing written into the tree)."""
    env = clean_env({"PYTHONPYCACHEPREFIX": str(tmp / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if config_dir is not None:
        env["TUNEHAND_CONFIG_DIR"] = str(config_dir)
    return env


def make_music(music: Path, n: int = TRACKS, duration_s: float = TRACK_S) -> None:
    for i in range(1, n + 1):
        make_track(
            music,
            f"{i:02d} bench {i}",
            "flac",
            title=f"Bench {i}",
            artist="Bench",
            album="Bench",
            track_no=i,
            duration_s=duration_s,
            freq=220 * i,
        )


@contextmanager
def bench_server(root: Path, make: Callable[[Path], None] | None = None) -> Iterator[ServerProc]:
    """A real server on a library made by `make` (default: long generated tracks), with
    user USER; always stopped."""
    music = root / "music"
    (make or make_music)(music)
    srv: ServerProc | None = None
    try:
        srv = launch(root, music=music)
        srv.add_user(USER, PASSWORD)
        yield srv
    finally:
        if srv is not None:
            srv.stop()


@dataclass
class Receiver:
    name: str
    config_dir: Path
    socket_path: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    device_id: str = ""

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_receiver(
    stack: ExitStack,
    srv: ServerProc,
    tmp: Path,
    name: str,
    mpv_options: Sequence[str] = ("ao=null",),
    extra_env: dict[str, str] | None = None,
    *,
    warm: bool = True,
) -> Receiver:
    """Log `name` in with its own config dir and start `tunehand receiver` (stopped by `stack`).
    `warm=False` opts it out of being kept warm (`warm = false` in its config.toml)."""
    config_dir = tmp / name
    login_cli(srv, config_dir, bench_env(tmp), file_store=True)
    if not warm:  # a top-level key: before any table of the file
        conf = config_dir / "config.toml"
        conf.write_text("warm = false\n" + conf.read_text())
    sock = tmp / f"{name}.sock"
    log_path = tmp / f"{name}.log"
    argv = [
        str(tunehand_bin()),
        "receiver",
        "--config-dir",
        str(config_dir),
        "--device-name",
        name,
        *(x for opt in mpv_options for x in ("--mpv-option", opt)),
        "--mpv-option",
        f"input-ipc-server={sock}",
    ]
    env = {**bench_env(tmp), **(extra_env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    rec = Receiver(name, config_dir, sock, proc, log_path)
    stack.callback(stop_processes, [proc])
    return rec


def stop_processes(procs: Sequence[subprocess.Popen[Any]]) -> None:
    """SIGTERM each (a receiver then leaves the session paused), wait, SIGKILL stragglers."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Api:
    """Bench-side REST calls with a token of its own."""

    def __init__(self, srv: ServerProc) -> None:
        self.url = srv.url
        # The remote's device: a channel is bound to its token's device.
        self.token: str = srv.login(USER, PASSWORD, device_id="bench-remote")["access_token"]
        self.http = httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def wait_online(self, receivers: Sequence[Receiver]) -> None:
        deadline = time.monotonic() + STARTUP_S
        while True:
            devices = {d["name"]: d for d in self.get("/v1/devices")["devices"]}
            if all(devices.get(r.name, {}).get("online") for r in receivers):
                for r in receivers:
                    r.device_id = devices[r.name]["id"]
                return
            for r in receivers:
                if r.proc.poll() is not None:
                    raise RuntimeError(f"receiver {r.name} exited:\n{r.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("receivers never came online: " + json.dumps(devices)[:500])
            time.sleep(0.1)

    def track_ids(self) -> list[str]:
        found = self.get("/v1/search?q=bench")["tracks"]
        return [t["id"] for t in sorted(found, key=lambda t: t["title"])]

    def close(self) -> None:
        self.http.close()


def ctl(env: dict[str, str], *args: str) -> float:
    """Run `tunehand ctl ARGS`; its wall time in seconds. A failure raises."""
    t0 = time.monotonic()
    r = subprocess.run(
        [str(tunehand_bin()), "ctl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CTL_TIMEOUT_S,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"ctl {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return time.monotonic() - t0


def start_playing(env: dict[str, str], api: Api, device: str, watch: MpvWatch) -> None:
    """Queue every bench track (repeat all) and play it on `device`; wait until mpv plays."""
    ids = api.track_ids()
    if len(ids) < TRACKS:
        raise RuntimeError(f"the library has {len(ids)} bench tracks, expected {TRACKS}")
    ctl(env, "queue", "add", *ids)
    ctl(env, "repeat", "all")
    t = time.monotonic()
    ctl(env, "play", "--device", device)
    watch.wait_advancing(t)


# --- the watcher: a remote client on /v1/channel ----------------------------------------


@dataclass
class _Seen:
    t: float
    version: int
    active: str | None
    playing: bool
    at_ms: int
    position_ms: int
    rate: float
    has_position: bool

    def at(self, t: float, wall: float) -> float:
        """The position (s) this state gives for monotonic time `t`."""
        now_ms = (t + wall) * 1000
        run = self.playing and self.rate > 0 and now_ms > self.at_ms
        return (self.position_ms + ((now_ms - self.at_ms) * self.rate if run else 0)) / 1000


class Remote:
    """A websocket device without capabilities: sends commands, records every `state`."""

    def __init__(self, url: str, token: str) -> None:
        ws_url = url.replace("http://", "ws://", 1) + "/v1/channel"
        self.ws: ClientConnection = connect(ws_url, open_timeout=10, close_timeout=2)
        device = {"id": "bench-remote", "name": "bench", "capabilities": []}
        self.ws.send(json.dumps({"type": "auth", "token": token, "device": device}))
        deadline = time.monotonic() + 10
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("type") == "hello":
                break
            if msg.get("type") == "error":
                raise RuntimeError(f"channel refused the watcher: {msg}")
        self.states: list[_Seen] = []
        self.results: dict[str, tuple[float, str]] = {}
        self.times: list[tuple[float, float, int, int]] = []
        self._n = 0
        self._reader = threading.Thread(target=self._read, name="bench-remote", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            for raw in self.ws:
                t = time.monotonic()
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "state":
                    st = msg["state"]
                    pos = st.get("position", {})
                    self.states.append(
                        _Seen(
                            t,
                            msg["version"],
                            st.get("active_device"),
                            bool(pos.get("playing")),
                            int(pos.get("at_ms", 0)),
                            int(pos.get("position_ms", 0)),
                            float(pos.get("rate", 0.0)),
                            "position" in st,
                        )
                    )
                elif kind == "result":
                    self.results[msg["command_id"]] = (t, msg.get("code", ""))
                elif kind == "time":
                    self.times.append((msg["t0"], t * 1000, msg["t1"], msg["t2"]))

    def command(self, op: str, **fields: Any) -> tuple[str, float]:
        """Send a command; its id and time.monotonic() just before the send."""
        self._n += 1
        cid = f"bench-{os.getpid()}-{self._n}-{time.monotonic_ns()}"
        message = json.dumps(
            {"type": "command", "command": {"op": op, "command_id": cid, **fields}}
        )
        t = time.monotonic()
        self.ws.send(message)
        return cid, t

    def switch_state(self, after: float, device_id: str) -> _Seen | None:
        for s in list(self.states):
            if s.t > after and s.active == device_id:
                return s
        return None

    def clock_offset_error_ms(self, n: int = 8) -> tuple[float, float]:
        """The NTP-style estimate a device would make on loopback (lowest-delay samples,
        as core.timesync does) minus the true wall - monotonic offset; and the min delay."""
        self.times.clear()
        for _ in range(n):
            self.ws.send(json.dumps({"type": "time", "t0": time.monotonic() * 1000}))
            time.sleep(0.02)
        deadline = time.monotonic() + 2
        while len(self.times) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        samples = []
        for t0, t3, t1, t2 in self.times:
            offset = ((t1 - t0) + (t2 - t3)) / 2
            delay = max(0.0, (t3 - t0) - (t2 - t1))
            samples.append((delay, offset))
        if not samples:
            return math.nan, math.nan
        best = sorted(samples)[:4]
        estimate = sorted(o for _, o in best)[len(best) // 2]
        return estimate - _wall_minus_mono() * 1000, best[0][0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self._reader.join(timeout=3)


# --- one handoff -------------------------------------------------------------------------


@dataclass
class Handoff:
    label: str
    ctl_s: float
    latency_ms: float
    first_step_ms: float
    """ctl start to the target's first time-pos step (the literal observation)."""
    gap_ms: float
    gap_literal_ms: float
    jump_ms: float
    marks_vs_t_ms: dict[str, float]
    """Relative to the planned switch instant T: state seen, target loaded, source end,
    target unpaused, target start, its first time-pos step (NaN: no switch state seen)."""
    model_err_ms: float
    """The server's position for the source at T (what the target loaded) - where the
    source really was at T by its own line (NaN: no switch state seen)."""
    anchor_err_ms: float
    """The same for the last position anchor the watcher saw before the command."""
    discontinuity_ms: float
    discontinuity_at_ms: float
    seeks_after_start: int = 0
    """Seeks mpv started on the target after its first step (within AFTER_START_S): a
    second seek by the device. A move with none is the output's own (a stall)."""
    notes: list[str] = field(default_factory=list)


MARKS = ("state", "loaded", "src end", "unpause", "start", "1st step")


@dataclass(frozen=True)
class Line:
    """pos = p0 + rate * (t - t0): a stretch of time-pos steps, fitted by least squares
    (an output that underruns plays slower than the wall clock: the rate is not 1)."""

    t0: float
    p0: float
    rate: float

    def at(self, t: float) -> float:
        return self.p0 + self.rate * (t - self.t0)


def _line(adv: Sequence[tuple[float, float]]) -> Line:
    n = len(adv)
    mt = sum(t for t, _ in adv) / n
    mp = sum(p for _, p in adv) / n
    sxx = sum((t - mt) ** 2 for t, _ in adv)
    sxy = sum((t - mt) * (p - mp) for t, p in adv)
    return Line(mt, mp, sxy / sxx if sxx > 0 else 1.0)


TRUTH_WINDOW_S = 0.25


def true_position(watch: MpvWatch, t: float) -> float | None:
    """Where `watch` was at `t`: the line of its time-pos steps within TRUTH_WINDOW_S
    either side (their median rate, and the median of where each step puts `t`), so
    one answer stamped late by a busy machine does not move it."""
    adv = watch.advances(t - TRUTH_WINDOW_S, t + TRUTH_WINDOW_S)
    if len(adv) < 4 or adv[0][0] > t or adv[-1][0] <= t:
        return None
    rates = [(p1 - p0) / (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(adv) if t1 > t0]
    rate = statistics.median(rates)
    return statistics.median(p + rate * (t - ti) for ti, p in adv)


def _source_end(src: MpvWatch, after: float) -> float | None:
    """The first sign that the source stopped: time-pos gone, paused, idle."""
    marks = [src.first_event(name, True, after) for name in _PROPS]
    gone = next((t for t, p in src.samples(after) if p is None), None)
    found = [t for t in [*marks, gone] if t is not None]
    return min(found) if found else None


def _held_before(tgt: MpvWatch, after: float, t_step: float) -> float:
    """The target's time-pos just before its first step: where it was held, paused."""
    held = [p for _, p in tgt.samples(after, t_step) if p is not None]
    if len(held) < 2:
        raise RuntimeError(f"{tgt.name}: no paused position seen before playback started")
    return held[-2]


MOVE_WINDOW = 5
"""Steps whose residuals are taken by median: one late answer from a busy machine's mpv
poll is not a move, a seek or a stall shifts every step after it."""


def _moves(steps: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(how far, when) the steps' line shifts (s; + means the position fell behind): the
    median residual (against the steps' median rate) of MOVE_WINDOW steps, against that
    of the MOVE_WINDOW steps before them."""
    pairs = list(itertools.pairwise(steps))
    rates = [(p1 - p0) / (t1 - t0) for (t0, p0), (t1, p1) in pairs if t1 > t0]
    if len(steps) < 2 * MOVE_WINDOW or not rates:
        return [(0.0, 0.0)]
    rate = statistics.median(rates)
    t0, p0 = steps[0]
    res = [p - (p0 + rate * (t - t0)) for t, p in steps]
    w = MOVE_WINDOW
    filt = [statistics.median(res[i : i + w]) for i in range(len(res) - w + 1)]
    return [(filt[i] - filt[i + w], steps[i + w][0]) for i in range(len(filt) - w)]


def _moved_after_start(tgt: MpvWatch, t_start: float, p_start: float) -> tuple[float, float]:
    """The largest move of the target off its own line after it started (seconds; a
    seek, a stall or a restart shifts the line of the steps after it: + means the
    position fell behind), and when (0, NaN: no shift beyond DISCONTINUITY_S)."""
    after = [(t_start, p_start), *tgt.advances(t_start + 1e-6, t_start + AFTER_START_S)]
    if len(after) < 4:
        return math.nan, math.nan
    worst, worst_at = max(_moves(after), key=lambda m: abs(m[0]))
    if abs(worst) <= DISCONTINUITY_S:
        return 0.0, math.nan
    return worst, worst_at - t_start


def measure_handoff(
    label: str,
    env: dict[str, str],
    remote: Remote,
    src: MpvWatch,
    tgt: MpvWatch,
    tgt_rec: Receiver,
) -> Handoff:
    wall = _wall_minus_mono()
    t_cmd = time.monotonic()
    ctl_s = ctl(env, "transfer", tgt_rec.name)
    unpaused = tgt.wait_event("pause", False, t_cmd)
    t_step, p_start = tgt.wait_advancing(unpaused)
    p_held = _held_before(tgt, unpaused, t_step)
    # time-pos is refreshed only on mpv's playloop ticks: where it first moved to says
    # when playback started by mpv's own clock (the first step itself comes up to ~50 ms
    # later, reported as "first step").
    t_start = t_step - (p_start - p_held)
    deadline = time.monotonic() + WAIT_S
    while (src_end := _source_end(src, t_cmd)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: the source never stopped")
        time.sleep(0.005)
    time.sleep(max(0.0, t_start + AFTER_START_S - time.monotonic()))

    before = src.advances(t_cmd - SETTLE_S, src_end)
    if len(before) < 5:
        raise RuntimeError(f"{label}: the source was not playing steadily before the transfer")
    src_line = _line([x for x in before if x[0] >= before[-1][0] - SOURCE_FIT_S] or before)
    last_step = before[-1][0]
    jump = p_held - src_line.at(t_start)
    notes: list[str] = []
    shift, shift_at = _moved_after_start(tgt, t_step, p_start)
    seeks = [
        t
        for t, name, _ in list(tgt.events)
        if name == "seek" and t_step < t <= t_step + AFTER_START_S
    ]
    if any(p is None for _, p in tgt.samples(t_start, t_start + AFTER_START_S)):
        notes.append("target's time-pos vanished after start (reloaded)")
    loaded = next((t for t, p in tgt.samples(t_cmd) if p is not None), math.nan)

    seen = remote.switch_state(t_cmd, tgt_rec.device_id)
    model_err = anchor_err = math.nan
    anchors = [st for st in list(remote.states) if st.t < t_cmd and st.has_position]
    if anchors:
        a = anchors[-1]
        anchor_err = a.at(t_cmd, wall) - src_line.at(t_cmd)
    if seen is not None:
        t_planned = seen.at_ms / 1000 - wall
        model_err = seen.position_ms / 1000 - src_line.at(t_planned)
        marks = {
            name: ms(t - t_planned)
            for name, t in zip(
                MARKS, (seen.t, loaded, src_end, unpaused, t_start, t_step), strict=True
            )
        }
    else:
        marks = dict.fromkeys(MARKS, math.nan)
        notes.append("watcher saw no switch state")
    return Handoff(
        label,
        ctl_s,
        ms(t_start - t_cmd),
        ms(t_step - t_cmd),
        ms(t_start - src_end),
        ms(t_step - last_step),
        ms(jump),
        marks,
        ms(model_err),
        ms(anchor_err),
        ms(shift),
        ms(shift_at),
        len(seeks),
        notes,
    )


def _rewind_if_late(remote: Remote, watch: MpvWatch, room_s: float = REWIND_BEFORE_END_S) -> None:
    """Seek back to the start when fewer than `room_s` seconds of the track are left."""
    pos = watch.position()
    if pos is not None and pos > TRACK_S - room_s:
        remote.command("seek", position_ms=1000)
        deadline = time.monotonic() + WAIT_S
        while (p := watch.position()) is None or p > TRACK_S - room_s:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{watch.name}: the rewind seek never happened")
            time.sleep(0.01)
        time.sleep(SETTLE_S)


STEADY_STEPS = 10
"""time-pos steps over the last SETTLE_S that make a source steady (mpv refreshes it
about every 50 ms: ~30 steps in 1.5 s when it plays on)."""


def _wait_steady(watch: MpvWatch) -> None:
    """Wait until the source has played on for SETTLE_S: a fresh output (a sound server's
    first stream) can stall for a while after it started, and a transfer measured across
    that stall has no source line to measure against."""
    deadline = time.monotonic() + WAIT_S
    while not watch.playing():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{watch.name} is not playing")
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    while len(watch.advances(time.monotonic() - SETTLE_S)) < STEADY_STEPS:
        if time.monotonic() > deadline + SETTLE_S:
            raise RuntimeError(f"{watch.name} does not play on steadily")
        time.sleep(0.05)


def run_handoffs(
    env: dict[str, str],
    remote: Remote,
    watches: dict[str, MpvWatch],
    receivers: dict[str, Receiver],
    warmup: int = WARMUP_HANDOFFS,
    before: Callable[[str, str], str] | None = None,
) -> tuple[list[Handoff], str]:
    """Back and forth between r1 and r2; returns the measured handoffs and the last target.
    `warmup` handoffs first are not measured; `before(source, target)`, called just before
    each command, gives a note for its row."""
    order = ["r1", "r2"]
    out: list[Handoff] = []
    src_name = "r1"
    print(
        f"  {'#':>3} {'handoff':<7} {'ctl':>5} {'latency':>7} {'gap':>6} {'literal':>7} "
        f"{'jump':>6} {'model':>6} {'anchor':>6} |"
        + "".join(f" {m:>7}" for m in MARKS)
        + " | after start"
    )
    for i in range(warmup + HANDOFFS):
        tgt_name = order[1 - order.index(src_name)]
        src, tgt = watches[src_name], watches[tgt_name]
        _rewind_if_late(remote, src)
        _wait_steady(src)
        note = before(src_name, tgt_name) if before is not None else ""
        h = measure_handoff(f"{src_name}→{tgt_name}", env, remote, src, tgt, receivers[tgt_name])
        if note:
            h.notes.append(note)
        warm = i < warmup
        after = (
            "steady"
            if h.discontinuity_ms == 0
            else f"moved {h.discontinuity_ms:+.0f} ms at +{h.discontinuity_at_ms:.0f} ms"
            + (" (no seek: the output's own)" if not h.seeks_after_start else "")
        )
        if h.seeks_after_start:
            after += f"; {h.seeks_after_start} seek(s) after start"
        print(
            f"  {'w' if warm else i - warmup + 1:>3} {h.label:<7} "
            f"{h.ctl_s * 1000:>5.0f} {h.latency_ms:>7.1f} {h.gap_ms:>+6.1f} "
            f"{h.gap_literal_ms:>+7.1f} {h.jump_ms:>+6.1f} {h.model_err_ms:>+6.1f} "
            f"{h.anchor_err_ms:>+6.1f} |"
            + "".join(f" {h.marks_vs_t_ms[m]:>+7.1f}" for m in MARKS)
            + f" | {after}"
            + ("; " + "; ".join(h.notes) if h.notes else "")
        )
        if not warm:
            out.append(h)
        src_name = tgt_name
    return out, src_name


# --- pause ---------------------------------------------------------------------------------


@dataclass
class Toggle:
    """One pause or play: ms from the command to mpv's `pause` flipping, and the part
    up to the watcher receiving the `state` (the server's share plus, for ctl, the
    process start; mpv flips on the receiver after the same state arrives there)."""

    total_ms: float
    state_ms: float


def _toggle(remote: Remote, watch: MpvWatch, t: float, paused: bool, active_id: str) -> Toggle:
    flipped = watch.wait_event("pause", paused, t)
    seen = next(
        (s.t for s in list(remote.states) if s.t > t and s.playing != paused),
        math.nan,
    )
    return Toggle(ms(flipped - t), ms(seen - t))


def run_ctl_pauses(
    env: dict[str, str], remote: Remote, watch: MpvWatch, active_id: str
) -> tuple[list[Toggle], list[Toggle]]:
    """`ctl pause` then `ctl play`, PAUSES times."""
    pauses: list[Toggle] = []
    plays: list[Toggle] = []
    for _ in range(PAUSES):
        _rewind_if_late(remote, watch)
        _wait_steady(watch)
        t = time.monotonic()
        ctl(env, "pause")
        pauses.append(_toggle(remote, watch, t, True, active_id))
        time.sleep(0.3)
        t = time.monotonic()
        ctl(env, "play")
        plays.append(_toggle(remote, watch, t, False, active_id))
    return pauses, plays


def run_ws_pauses(
    remote: Remote, watch: MpvWatch, active_id: str
) -> tuple[list[Toggle], list[Toggle], list[float]]:
    """pause/play over the open channel; and ms until the pause's `result` comes back."""
    pauses: list[Toggle] = []
    plays: list[Toggle] = []
    results: list[float] = []
    for _ in range(WS_PAUSES):
        _rewind_if_late(remote, watch)
        _wait_steady(watch)
        cid, t = remote.command("pause")
        pauses.append(_toggle(remote, watch, t, True, active_id))
        deadline = time.monotonic() + WAIT_S
        while cid not in remote.results and time.monotonic() < deadline:
            time.sleep(0.001)
        if cid in remote.results:
            t_res, code = remote.results[cid]
            if code != "ok":
                raise RuntimeError(f"pause over the channel: result {code}")
            results.append(ms(t_res - t))
        time.sleep(0.3)
        _, t = remote.command("play")
        plays.append(_toggle(remote, watch, t, False, active_id))
    return pauses, plays, results


def _print_toggles(label: str, toggles: Sequence[Toggle]) -> None:
    print(summary(f"{label} → mpv flips", [x.total_ms for x in toggles]))
    print(summary(f"{label} → watcher sees the state", [x.state_ms for x in toggles]))
    print(summary(f"{label}: state seen → mpv flips", [x.total_ms - x.state_ms for x in toggles]))


# --- figures ---------------------------------------------------------------------------------


def summary(label: str, values: Sequence[float], unit: str = "ms") -> str:
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return f"  {label}: no data"
    return (
        f"  {label}: median {statistics.median(v):.1f} {unit}, p90 {percentile(v, 90):.1f}, "
        f"max {max(v):.1f}, min {min(v):.1f} (n={len(v)})"
    )


def _med(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def _handoff_results(hs: list[Handoff], case: str) -> list[Result]:
    gaps = [h.gap_ms for h in hs]
    jumps = [h.jump_ms for h in hs]
    lat = [h.latency_ms for h in hs]
    abs_gaps = [abs(g) for g in gaps]
    abs_jumps = [abs(j) for j in jumps]
    moved = [h for h in hs if h.discontinuity_ms != 0]
    print(summary("gap, signed (target start - source end)", gaps))
    print(summary("gap, |.|", abs_gaps))
    print(
        summary(
            "gap, literal (target start - source's last time-pos step)",
            [h.gap_literal_ms for h in hs],
        )
    )
    print(summary("jump, signed (target pos - source pos extrapolated)", jumps))
    print(summary("jump, |.|", abs_jumps))
    print(
        summary(
            "server's position for the source at T - its true position",
            [h.model_err_ms for h in hs],
        )
    )
    print(summary("last anchor before the command - true position", [h.anchor_err_ms for h in hs]))
    print(summary("ctl transfer → target plays", lat))
    print(summary("ctl transfer → target's first time-pos step", [h.first_step_ms for h in hs]))
    print(summary("ctl transfer process wall time", [ms(h.ctl_s) for h in hs]))
    print(
        summary(
            "watcher sees the switch state (after ctl start)",
            [h.latency_ms - h.marks_vs_t_ms["start"] + h.marks_vs_t_ms["state"] for h in hs],
        )
    )
    for mark in MARKS:
        print(summary(f"{mark} - planned switch T", [h.marks_vs_t_ms[mark] for h in hs]))
    print(
        f"  target's position moved off its line within {AFTER_START_S:g} s of starting: "
        f"{len(moved)}/{len(hs)}"
        + (
            f" (by {_med([h.discontinuity_ms for h in moved]):+.0f} ms median, "
            f"{_med([h.discontinuity_at_ms for h in moved]):.0f} ms after start)"
            if moved
            else ""
        )
    )
    print(
        "  of those, with a seek mpv started on the target after its start: "
        f"{sum(1 for h in moved if h.seeks_after_start)}; handoffs with such a seek at all: "
        f"{sum(1 for h in hs if h.seeks_after_start)}/{len(hs)}"
    )
    return [
        check(f"[{case}] handoff gap signed median", _med(gaps), "ms"),
        check(f"[{case}] handoff jump signed median", _med(jumps), "ms"),
        check(f"[{case}] ctl transfer → target plays median", _med(lat), "ms", TARGET_TRANSFER_MS),
        check(f"[{case}] ctl transfer → target plays p90", percentile(lat, 90), "ms"),
    ]


@dataclass(frozen=True)
class Case:
    """One row of the matrix: the receivers' mpv options, and what runs next to them."""

    name: str
    mpv_options: tuple[str, ...]
    busy: bool = False
    pulse: bool = False
    pauses: bool = False
    """The pause figures too (once, on mpv's default null output)."""


CASES = (
    Case("null 0.01", ("ao=null", "ao-null-buffer=0.01")),
    Case("null 0.05", ("ao=null", "ao-null-buffer=0.05")),
    Case("null 0.2", ("ao=null", "ao-null-buffer=0.2"), pauses=True),
    Case("null 0.5", ("ao=null", "ao-null-buffer=0.5")),
    Case("null 0.05 busy", ("ao=null", "ao-null-buffer=0.05"), busy=True),
    Case("pulse", ("ao=pulse",), pulse=True),
)
CASES_ENV = "BENCH_HANDOFF_CASES"
"""Comma-separated case names to run (default: all), e.g. `null 0.01,pulse`."""
STEADY_S = float(os.environ.get("BENCH_HANDOFF_STEADY_S", "60"))
STEADY_EVERY_S = 0.5
BUSY_MAX_S = 900.0
"""The busy loop's own bound: it ends by then even if the bench is killed."""

TARGET_ROW_JUMP_MEDIAN_MS = 10.0
TARGET_ROW_JUMP_P90_MS = 25.0
TARGET_ROW_GAP_MEDIAN_MS = 15.0
TARGET_STEADY_MEDIAN_MS = 10.0
TARGET_STEADY_MAX_MS = 30.0


@dataclass
class Row:
    case: str
    handoffs: list[Handoff]
    steady_ms: list[float]
    load: str
    error: str = ""
    plain_moves: int = -1
    """Plain mpv's own moves on this output in REFERENCE_S (-1: not measured)."""


@contextmanager
def busy_loop(seconds: float = BUSY_MAX_S) -> Iterator[None]:
    """Keep every CPU busy (one bounded spinning process each, at the receivers' own
    priority, which is the default) until the block ends."""
    code = "import time\nend = time.monotonic() + float(__import__('sys').argv[1])\n"
    code += "while time.monotonic() < end:\n    pass\n"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(seconds)], start_new_session=True)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        stop_processes(procs)


@contextmanager
def pulse_server(tmp: Path) -> Iterator[dict[str, str]]:
    """A private PulseAudio daemon with only a null sink (no hardware), on a socket in
    `tmp`; yields the environment its clients need."""
    exe = shutil.which("pulseaudio")
    if exe is None:
        raise RuntimeError("pulseaudio is not installed (apt-get install pulseaudio)")
    runtime = tmp / "pulse"
    runtime.mkdir(mode=0o700)
    sock = runtime / "native"
    env = {
        **clean_env(),
        "HOME": str(tmp),
        "XDG_RUNTIME_DIR": str(runtime),
        "PULSE_RUNTIME_PATH": str(runtime),
        "PULSE_STATE_PATH": str(runtime),
    }
    argv = [
        exe,
        "-n",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--use-pid-file=no",
        "--disallow-exit",
        "--log-target=stderr",
        "--load=module-null-sink sink_name=bench",
        f"--load=module-native-protocol-unix socket={sock} auth-anonymous=1",
        "--load=module-always-sink",
    ]
    log = (tmp / "pulse.log").open("wb")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "pulse.log").read_text(errors="replace").strip().splitlines()
                raise RuntimeError(
                    "pulseaudio did not start: " + (tail[-1] if tail else f"exit {proc.poll()}")
                )
            time.sleep(0.05)
        yield {"PULSE_SERVER": f"unix:{sock}", "PULSE_RUNTIME_PATH": str(runtime)}
    finally:
        stop_processes([proc])
        log.close()


REFERENCE_S = float(os.environ.get("BENCH_HANDOFF_REFERENCE_S", "20"))
"""How long plain mpv plays for the reference count of the output's own moves."""


def plain_mpv_moves(tmp: Path, case: Case, env: dict[str, str], seconds: float) -> int:
    """Plain mpv (no tunehand: its own command line, no config) playing a track of the
    library on this case's output for `seconds`, while whatever loads the machine in
    this case goes on: how often its time-pos line moves by more than DISCONTINUITY_S
    by itself (a small buffer that runs dry stalls). What the output does with nobody
    seeking, to compare the moves after a handoff with."""
    exe = shutil.which("mpv")
    if exe is None:
        print("  plain mpv: not installed (apt-get install mpv); no reference")
        return -1
    track = sorted((tmp / "music").rglob("*.flac"))[0]
    sock = tmp / "plain-mpv.sock"
    argv = [
        exe,
        "--no-config",
        "--no-video",
        "--really-quiet",
        f"--input-ipc-server={sock}",
        *(f"--{opt}" for opt in case.mpv_options),
        str(track),
    ]
    proc = subprocess.Popen(
        argv,
        env={**clean_env(), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        watch = MpvWatch("plain mpv", sock, proc)
        poller = Poller([watch])
        try:
            t0, _ = watch.wait_advancing(time.monotonic() - 1)
            time.sleep(max(0.0, t0 + 1.0 + seconds - time.monotonic()))
            steps = watch.advances(t0 + 1.0, t0 + 1.0 + seconds)
        finally:
            poller.stop()
            watch.close()
    finally:
        stop_processes([proc])
    own = [m for m, _ in _moves(steps) if abs(m) > DISCONTINUITY_S]
    print(
        f"  plain mpv on this output (no tunehand), {seconds:g} s: its own moves > "
        f"{DISCONTINUITY_S * 1000:g} ms: {len(own)}"
        + (f" ({', '.join(f'{m * 1000:+.0f}' for m in own[:10])} ms)" if own else "")
    )
    return len(own)


def measure_steady(remote: Remote, watch: MpvWatch, device_id: str, seconds: float) -> list[float]:
    """Every STEADY_EVERY_S for `seconds`: the position the server's newest state gives
    for the playing device then - where its mpv really was (ms)."""
    wall = _wall_minus_mono()
    t_end = time.monotonic() + seconds
    marks: list[float] = []
    t = time.monotonic() + STEADY_EVERY_S
    while t < t_end:
        time.sleep(max(0.0, t - time.monotonic()))
        marks.append(t)
        t += STEADY_EVERY_S
    time.sleep(0.3)  # the steps after the last mark
    out: list[float] = []
    states = [s for s in list(remote.states) if s.has_position]
    anchors = [s for s in states if marks and marks[0] <= s.t <= marks[-1]]
    minutes = (marks[-1] - marks[0]) / 60 if len(marks) > 1 else math.nan
    print(f"  steady: {len(anchors)} new anchors ({len(anchors) / minutes:.0f} a minute)")
    if marks:
        own = [
            m for m, _ in _moves(watch.advances(marks[0], marks[-1])) if abs(m) > DISCONTINUITY_S
        ]
        print(
            f"  steady: the output's own moves > {DISCONTINUITY_S * 1000:g} ms (no handoff): "
            f"{len(own)} in {marks[-1] - marks[0]:.0f} s"
            + (f" ({', '.join(f'{m * 1000:+.0f}' for m in own[:10])} ms)" if own else "")
        )
    for t in marks:
        seen = [s for s in states if s.t <= t]
        true = true_position(watch, t)
        if not seen or true is None or seen[-1].active != device_id:
            continue
        out.append(ms(seen[-1].at(t, wall) - true))
    return out


def run() -> list[Result]:
    rows: list[Row] = []
    results: list[Result] = []
    for case in selected_cases(CASES, CASES_ENV):
        print(
            f"  === case {case.name}: mpv {' '.join(case.mpv_options)}"
            + (", every CPU kept busy" if case.busy else "")
        )
        row = Row(case.name, [], [], "")
        try:
            results += _run(case, row, {})
        except Exception as exc:  # one case failing must not hide the others
            row.error = f"{type(exc).__name__}: {exc}"
            print(f"  case {case.name} failed: {row.error}")
        rows.append(row)
    print_rows(rows)
    for row in rows:
        results += row_results(row)
    return results


def _jumps(row: Row) -> list[float]:
    return [abs(h.jump_ms) for h in row.handoffs]


def row_results(row: Row) -> list[Result]:
    c = row.case
    moved = [h for h in row.handoffs if h.discontinuity_ms != 0]
    steady = [abs(x) for x in row.steady_ms]
    none = math.nan
    return [
        check(f"[{c}] |jump| median", _med(_jumps(row)), "ms", TARGET_ROW_JUMP_MEDIAN_MS),
        check(
            f"[{c}] |jump| p90",
            percentile(_jumps(row), 90) if row.handoffs else none,
            "ms",
            TARGET_ROW_JUMP_P90_MS,
        ),
        check(
            f"[{c}] gap median",
            _med([abs(h.gap_ms) for h in row.handoffs]),
            "ms",
            TARGET_ROW_GAP_MEDIAN_MS,
        ),
        check(
            f"[{c}] moved > {DISCONTINUITY_S * 1000:g} ms after start",
            float(len(moved)) if row.handoffs else none,
            "",
            0.0,
        ),
        check(
            f"[{c}] second seeks after start",
            float(sum(1 for h in row.handoffs if h.seeks_after_start)) if row.handoffs else none,
            "",
            0.0,
        ),
        check(f"[{c}] steady |error| median", _med(steady), "ms", TARGET_STEADY_MEDIAN_MS),
        check(
            f"[{c}] steady |error| max", max(steady) if steady else none, "ms", TARGET_STEADY_MAX_MS
        ),
    ]


def print_rows(rows: Sequence[Row]) -> None:
    print(
        f"  {'case':<15} {'n':>3} {'|jump| med':>10} {'p90':>6} {'max':>6} {'gap med':>8} "
        f"{'moved':>5} {'seeks':>5} {'plain':>5} {'steady med':>10} {'max':>6} {'n':>4}  load"
    )
    for r in rows:
        if r.error and not r.handoffs:
            print(f"  {r.case:<15} failed: {r.error}")
            continue
        j = _jumps(r)
        st = [abs(x) for x in r.steady_ms]
        moved = sum(1 for h in r.handoffs if h.discontinuity_ms != 0)
        seeks = sum(1 for h in r.handoffs if h.seeks_after_start)
        print(
            f"  {r.case:<15} {len(r.handoffs):>3} {_med(j):>10.1f} "
            f"{percentile(j, 90) if j else math.nan:>6.1f} {max(j) if j else math.nan:>6.1f} "
            f"{_med([abs(h.gap_ms) for h in r.handoffs]):>8.1f} {moved:>5} {seeks:>5} "
            f"{r.plain_moves:>5} "
            f"{_med(st):>10.1f} {max(st) if st else math.nan:>6.1f} {len(st):>4}  {r.load}"
            + (f"  ({r.error})" if r.error else "")
        )


def _run(case: Case, row: Row, receivers: dict[str, Receiver]) -> list[Result]:
    results: list[Result] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-handoff-")))
        stack.push(dump_logs_on_error(receivers))
        extra_env = stack.enter_context(pulse_server(tmp)) if case.pulse else {}
        srv = stack.enter_context(bench_server(tmp))
        for name in ("r1", "r2"):
            # Not kept warm: this bench measures the prepared handoff (back and forth
            # between two devices would make each the other's predicted next one, and
            # `bench.warm` measures that).
            receivers[name] = start_receiver(
                stack, srv, tmp, name, case.mpv_options, extra_env, warm=False
            )
        api = Api(srv)
        stack.callback(api.close)
        api.wait_online(list(receivers.values()))
        watches: dict[str, MpvWatch] = {}
        for name, rec in receivers.items():
            watches[name] = MpvWatch(name, rec.socket_path, rec.proc)
            stack.callback(watches[name].close)
        poller = Poller(list(watches.values()))
        stack.callback(poller.stop)
        ctl_dir = tmp / "ctl"
        login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
        env = bench_env(tmp, ctl_dir)
        print(
            f"  server {srv.url}; receivers r1, r2 ({' '.join(case.mpv_options)}); "
            f"{TRACKS} tracks of {TRACK_S} s; mpv polled every {POLL_S * 1000:g} ms"
        )
        start_playing(env, api, "r1", watches["r1"])
        remote = Remote(srv.url, api.token)
        stack.callback(remote.close)
        err, delay = remote.clock_offset_error_ms()
        print(
            f"  clock offset on loopback (watcher's own NTP exchange): error {err:+.2f} ms, "
            f"min delay {delay:.2f} ms"
        )
        if case.busy:
            stack.enter_context(busy_loop())
        print(f"  load average {_load()}")
        print(
            f"  {WARMUP_HANDOFFS} warm-up handoffs (w) then {HANDOFFS}, back and forth "
            "(ms; the columns after | are relative to the planned switch instant T):"
        )
        handoffs, active = run_handoffs(env, remote, watches, receivers)
        row.handoffs = handoffs
        results += _handoff_results(handoffs, case.name)
        results.append(check(f"[{case.name}] clock offset error (loopback)", err, "ms"))

        watch = watches[active]
        active_id = receivers[active].device_id
        _rewind_if_late(remote, watch, STEADY_S + REWIND_BEFORE_END_S)
        print(
            f"  steady playback on {active}: the server's position - mpv's, every "
            f"{STEADY_EVERY_S:g} s for {STEADY_S:g} s"
        )
        row.steady_ms = measure_steady(remote, watch, active_id, STEADY_S)
        print(summary("steady: server's position - true position", row.steady_ms))
        row.plain_moves = plain_mpv_moves(tmp, case, extra_env, REFERENCE_S)
        row.load = _load()
        if case.pauses:
            results += _pause_results(env, remote, watch, active, active_id)
        print(f"  load average {row.load}")
    return results


def _pause_results(
    env: dict[str, str], remote: Remote, watch: MpvWatch, active: str, active_id: str
) -> list[Result]:
    print(f"  pause on {active}: ctl pause / ctl play, {PAUSES} each")
    pauses, plays = run_ctl_pauses(env, remote, watch, active_id)
    print("    ctl pause: " + " ".join(f"{x.total_ms:.0f}" for x in pauses))
    _print_toggles("ctl pause", pauses)
    _print_toggles("ctl play", plays)
    p = [x.total_ms for x in pauses]
    results = [
        check("ctl pause → mpv paused median", _med(p), "ms", TARGET_CTL_PAUSE_MS),
        check("ctl pause → mpv paused p90", percentile(p, 90), "ms"),
    ]
    print(f"  pause on {active} over an open channel, {WS_PAUSES} each:")
    ws_p, ws_play, ws_res = run_ws_pauses(remote, watch, active_id)
    print("    pause: " + " ".join(f"{x.total_ms:.1f}" for x in ws_p))
    _print_toggles("channel pause", ws_p)
    _print_toggles("channel play", ws_play)
    print(summary("channel pause → its result received", ws_res))
    p = [x.total_ms for x in ws_p]
    results += [
        check("channel pause → mpv paused median", _med(p), "ms", TARGET_WS_PAUSE_MS),
        check("channel pause → mpv paused p90", percentile(p, 90), "ms"),
    ]
    return results


def dump_logs_on_error(receivers: dict[str, Receiver]) -> Any:
    """An ExitStack exit callback: on an error, print the receivers' last log lines."""

    def dump(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is not None:
            for rec in receivers.values():
                print(f"  --- {rec.name}'s log (last lines):\n{rec.log_tail()}")
        return False

    return dump


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"
