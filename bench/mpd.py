"""`tunehand mpd` against a real mpd: `mpc status` wall time, and how soon `idle` wakes.

Setup: one generated library (bench.handoff's long tracks) served twice. A real `mpd`
(Debian package `mpd`, run in the foreground with a generated config in a temp dir: the
library as music_directory, a free loopback port, a null audio output) scans it (waited
for over the protocol), queues every track with repeat on and plays. A real tunehand
server scans the same files; a receiver (`tunehand receiver`, mpv with `ao=null`) plays
the same queue, and `tunehand mpd` (its own logged-in config dir, a free port) serves
that session. The system's own mpd service plays no part: nothing here uses port 6600.

- `mpc -h 127.0.0.1 -p PORT status`, timed with perf_counter around subprocess.run,
  RUNS times after WARMUPS warm-ups against each, interleaved (and the order swapped
  every round) so drift hits both alike. Target: tunehand's median within TARGET_RATIO
  of mpd's.
- Idle wake: a raw connection to `tunehand mpd` sends `idle player`; once it has been
  quiet for QUIET_S (a change left over from the round before is read and the idle
  sent again), `pause` or `play` goes out over an already open session channel (a
  websocket device without capabilities), and the time from just before that send to
  the idle connection reading `changed: player` is one sample. A wake whose `status`
  does not show the new state was caused by something else: it is counted and dropped.
  For reference, the time until the sending channel itself receives the `state` (the
  server's part, as in bench.fanout), and the difference of the two (the frontend's).
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import Result, check, login_cli, ms, percentile, tunehand_bin
from bench.handoff import (
    TRACKS,
    Api,
    MpvWatch,
    Poller,
    Remote,
    bench_env,
    bench_server,
    dump_logs_on_error,
    start_playing,
    start_receiver,
    stop_processes,
)

WARMUPS = 3
RUNS = 30
WARMUP_WAKES = 3
WAKES = 30
QUIET_S = 0.15
"""An idle connection must hear nothing this long before a change is sent."""
TARGET_RATIO = 2.0
TARGET_WAKE_MEDIAN_MS = 10.0
TIMEOUT_S = 15.0
STARTUP_S = 30.0

_MPD_CONF = """\
music_directory "{music}"
playlist_directory "{root}/playlists"
db_file "{root}/database"
state_file "{root}/state"
pid_file "{root}/pid"
log_file "{root}/log"
bind_to_address "127.0.0.1"
port "{port}"
auto_update "no"
zeroconf_enabled "no"
audio_output {{
    type "null"
    name "null"
}}
"""


# --- a raw MPD connection -------------------------------------------------------------


class MpdConn:
    """One MPD protocol connection over a plain socket, with its own line buffer (so
    `quiet()` can ask the socket whether anything is waiting)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self._buf = b""
        self.greeting = self.line()
        if not self.greeting.startswith("OK MPD "):
            raise RuntimeError(f"port {port} did not greet as MPD: {self.greeting!r}")

    def line(self) -> str:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the MPD connection closed")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return raw.decode()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def reply(self) -> list[str]:
        """Lines up to the final OK; an ACK raises."""
        out: list[str] = []
        while (line := self.line()) != "OK":
            if line.startswith("ACK "):
                raise RuntimeError(f"MPD refused: {line}")
            out.append(line)
        return out

    def fields(self, command: str) -> dict[str, str]:
        self.send(command)
        return dict(x.split(": ", 1) for x in self.reply())

    def quiet(self, seconds: float) -> bool:
        """True when nothing arrives within `seconds`."""
        if self._buf:
            return False
        ready, _, _ = select.select([self.sock], [], [], seconds)
        return not ready

    def close(self) -> None:
        self.sock.close()


def wait_state(conn: MpdConn, state: str) -> None:
    """Block (on `idle player`, never a sleep) until `status` says `state`."""
    deadline = time.monotonic() + STARTUP_S
    while conn.fields("status").get("state") != state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the player never reached state {state}")
        conn.send("idle player")
        if conn.quiet(1.0):
            conn.send("noidle")
        conn.reply()


# --- the processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_real_mpd(stack: ExitStack, root: Path, music: Path) -> int:
    """Run `mpd --no-daemon` on a free port over `music`; its port once the scan is done."""
    root.mkdir()
    (root / "playlists").mkdir()
    port = free_port()
    conf = root / "mpd.conf"
    conf.write_text(_MPD_CONF.format(music=music, root=root, port=port))
    with (root / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            ["mpd", "--no-daemon", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    stack.callback(stop_processes, [proc])
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            conn = MpdConn(port)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (root / "stderr").read_text(errors="replace")[-1000:]
                raise RuntimeError(f"mpd did not start ({proc.poll()}):\n{log}") from None
            time.sleep(0.05)  # mpd is not listening yet: nothing to wait on but the port
    try:
        conn.fields("update")
        while True:
            st = conn.fields("status")
            songs = int(conn.fields("stats").get("songs", 0))
            if "updating_db" not in st and songs >= TRACKS:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mpd's scan never finished ({songs} songs)")
            conn.send("idle update database")
            if conn.quiet(1.0):  # the scan may have ended between status and idle
                conn.send("noidle")
            conn.reply()
        for command in ("clear", 'add ""', "repeat 1", "play 0"):
            conn.fields(command)
        wait_state(conn, "play")
    finally:
        conn.close()
    return port


def start_tunehand_mpd(stack: ExitStack, env: dict[str, str], log_path: Path) -> int:
    """Run `tunehand mpd --port 0`; its port once it prints that it listens."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(tunehand_bin()), "mpd", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    stack.callback(stop_processes, [proc])
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("mpd frontend listening on "):
        tail = log_path.read_text(errors="replace")[-1000:]
        raise RuntimeError(f"tunehand mpd did not start: {line!r}\n{tail}")
    return int(line.rsplit(":", 1)[1])


# --- the measurements -----------------------------------------------------------------


def _mpc_status(port: int) -> float:
    """One `mpc status`; its wall time in ms. It must show a song playing."""
    argv = ["mpc", "-h", "127.0.0.1", "-p", str(port), "status"]
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    elapsed = ms(time.perf_counter() - t0)
    if r.returncode != 0 or "[playing]" not in r.stdout:
        raise RuntimeError(f"mpc status -p {port}: {r.returncode} {r.stdout!r} {r.stderr!r}")
    return elapsed


def measure_status(real: int, ours: int) -> tuple[list[float], list[float]]:
    """(real mpd ms, tunehand mpd ms), interleaved, the order swapped every round."""
    times: dict[int, list[float]] = {real: [], ours: []}
    for i in range(WARMUPS + RUNS):
        for port in (real, ours) if i % 2 else (ours, real):
            elapsed = _mpc_status(port)
            if i >= WARMUPS:
                times[port].append(elapsed)
    return times[real], times[ours]


def _state_seen(remote: Remote, after: float, playing: bool) -> float:
    """When the open channel received the first `state` after `after` with `playing`."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        for s in list(remote.states):
            if s.t > after and s.playing == playing:
                return s.t
        if time.monotonic() > deadline:
            raise RuntimeError("the open channel never saw the change")
        time.sleep(0.001)


def measure_wakes(port: int, remote: Remote) -> tuple[list[float], list[float], int]:
    """Idle wake latencies (ms) for alternating pause/play; the same command to its
    `state` on the sending channel (ms); and how many wakes had another cause (dropped)."""
    idle = MpdConn(port)
    check_conn = MpdConn(port)
    wakes: list[float] = []
    channel: list[float] = []
    other = 0
    try:
        ops = itertools.cycle((("pause", "pause"), ("play", "play")))
        n = 0
        while n < WARMUP_WAKES + WAKES:
            while True:  # idle, and hear nothing for QUIET_S
                idle.send("idle player")
                if idle.quiet(QUIET_S):
                    break
                idle.reply()
            op, state = next(ops)
            _, t0 = remote.command(op)
            got = idle.reply()
            t1 = time.monotonic()
            if got != ["changed: player"]:
                raise RuntimeError(f"idle player answered {got}")
            if check_conn.fields("status").get("state") != state:
                other += 1  # the command's own wake is still to come: let it pass
                wait_state(check_conn, state)
                continue
            if n >= WARMUP_WAKES:
                wakes.append(ms(t1 - t0))
                channel.append(ms(_state_seen(remote, t0, op == "play") - t0))
            n += 1
    finally:
        idle.close()
        check_conn.close()
    return wakes, channel, other


def _summary(label: str, values: list[float]) -> str:
    return (
        f"  {label}: median {statistics.median(values):.2f} ms, "
        f"p90 {percentile(values, 90):.2f} ms, min {min(values):.2f} ms, "
        f"max {max(values):.2f} ms (n={len(values)})"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def run() -> list[Result]:
    missing = [name for name in ("mpd", "mpc") if shutil.which(name) is None]
    if missing:
        raise RuntimeError(f"needs {' and '.join(missing)} (Debian packages; `make deps`)")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-mpd-")))
        srv = stack.enter_context(bench_server(tmp))
        real = start_real_mpd(stack, tmp / "real-mpd", srv.music)

        receivers = {"r1": start_receiver(stack, srv, tmp, "r1")}
        stack.push(dump_logs_on_error(receivers))
        api = Api(srv)
        stack.callback(api.close)
        api.wait_online(list(receivers.values()))
        ctl_dir = tmp / "ctl"
        login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
        with ExitStack() as watching:
            watch = MpvWatch("r1", receivers["r1"].socket_path, receivers["r1"].proc)
            watching.callback(watch.close)
            watching.callback(Poller([watch]).stop)
            start_playing(bench_env(tmp, ctl_dir), api, "r1", watch)

        mpd_dir = tmp / "mpd-device"
        login_cli(srv, mpd_dir, bench_env(tmp), file_store=True)
        ours = start_tunehand_mpd(stack, bench_env(tmp, mpd_dir), tmp / "tunehand-mpd.log")
        conn = MpdConn(ours)
        wait_state(conn, "play")
        conn.close()
        print(
            f"  real mpd ({real}) and tunehand mpd ({ours}) over the same {TRACKS} tracks, "
            f"both playing (null outputs; tunehand's on receiver r1); load average {_load()}"
        )

        print(f"  mpc status: {WARMUPS} warm-ups then {RUNS} runs against each, interleaved")
        real_ms, ours_ms = measure_status(real, ours)
        print(_summary("mpc status, real mpd", real_ms))
        print(_summary("mpc status, tunehand mpd", ours_ms))
        ratio = statistics.median(ours_ms) / statistics.median(real_ms)
        print(f"  ratio of the medians (tunehand / mpd): {ratio:.2f}")

        remote = Remote(srv.url, api.token)
        stack.callback(remote.close)
        print(
            f"  idle wake: {WARMUP_WAKES} warm-ups then {WAKES} pause/play over an open "
            f"channel, each after {QUIET_S * 1000:g} ms of quiet"
        )
        wakes, channel, other = measure_wakes(ours, remote)
        print("    " + " ".join(f"{x:.1f}" for x in wakes))
        print(_summary("change sent → idle client reads changed: player", wakes))
        print(_summary("for reference, change sent → its state on the open channel", channel))
        added = [w - c for w, c in zip(wakes, channel, strict=True)]
        print(_summary("the frontend's share (the two, paired)", added))
        if other:
            print(f"  {other} wake(s) had another cause and were dropped")
        print(f"  load average {_load()}")
    return [
        check("mpc status, real mpd median", statistics.median(real_ms), "ms"),
        check("mpc status, tunehand mpd median", statistics.median(ours_ms), "ms"),
        check("mpc status, tunehand mpd p90", percentile(ours_ms, 90), "ms"),
        check("mpc status tunehand / mpd (medians)", ratio, "x", TARGET_RATIO),
        check("mpd idle wake median", statistics.median(wakes), "ms", TARGET_WAKE_MEDIAN_MS),
        check("mpd idle wake p90", percentile(wakes, 90), "ms"),
        check("mpd idle: state on the sending channel", statistics.median(channel), "ms"),
        check("mpd idle: the frontend's share median", statistics.median(added), "ms"),
        check("mpd idle wakes with another cause", float(other), ""),
    ]
