"""Offline: pinning an album over loopback (MB/s), and `resume` to audio with the server down.

One real server on loopback with an album of TRACKS FLAC files (TRACK_S s of pink
noise each: sizes like music's) and one device with its own config dir and cache dir.

Pinning: `tunehand offline add --album NAME` from an empty cache, RUNS times (the
album removed between runs): the album's bytes over the command's wall time (process
start, the REST lookups, the downloads, hashing, the index), and the download rate the
command itself reports; then once more with everything here (each file hashed again,
nothing downloaded), for reference.

Resume to audio: the device plays the album once (`resume`, then stopped: the session
as last known is in its cache), the server is stopped, and `tunehand resume` is
started RUNS times: the time from starting the process to mpv's time-pos moving
(audio), read over mpv's IPC socket. Cases: the server down (connection refused) with
the track cached (target: median ≤ TARGET_MS), and for reference the server up, the
track cached (a pull, played from the file). The floor, for reference: starting the
interpreter, importing what `resume` imports and making an idle libmpv, which every
start pays whatever it then does; and how far the offline start is above it.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import Result, check, login_cli, tunehand_bin
from bench.handoff import bench_env, bench_server

TRACKS = 12
TRACK_S = 20
ALBUM = "Offline Bench"
RUNS = 5
TARGET_MS = 300.0
AUDIO_TIMEOUT_S = 30.0
MB = 1024 * 1024


def _make_music(music: Path) -> None:
    from mutagen.flac import FLAC

    music.mkdir(parents=True, exist_ok=True)
    for i in range(1, TRACKS + 1):
        path = music / f"{i:02d} offline {i}.flac"
        head = ["sox", "-q", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path)]
        subprocess.run([*head, "synth", str(TRACK_S), "pinknoise", "vol", "0.3"], check=True)
        audio = FLAC(path)
        audio["title"], audio["artist"], audio["album"] = f"Offline {i}", "Bench", ALBUM
        audio["tracknumber"] = str(i)
        audio.save()


def _run(env: dict[str, str], *args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run(
        [str(tunehand_bin()), *args], capture_output=True, text=True, env=env, timeout=300
    )
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"tunehand {' '.join(args)} exited {r.returncode}: {r.stderr[-500:]}")
    return took, r.stdout + r.stderr


def _time_to_audio(env: dict[str, str], sock: Path) -> float:
    """Start `tunehand resume`; seconds until mpv's time-pos moves. It is stopped after."""
    sock.unlink(missing_ok=True)
    argv = [
        str(tunehand_bin()),
        "resume",
        "--mpv-option",
        "ao=null",
        "--mpv-option",
        f"input-ipc-server={sock}",
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        conn = _connect(sock, proc, t0)
        try:
            conn.sendall(b'{"command": ["observe_property", 1, "time-pos"]}\n')
            f = conn.makefile("rb")
            for line in f:
                msg = json.loads(line)
                if msg.get("name") == "time-pos" and (msg.get("data") or 0) > 0:
                    return time.monotonic() - t0
                if time.monotonic() - t0 > AUDIO_TIMEOUT_S:
                    break
        finally:
            conn.close()
        raise RuntimeError("resume never played")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connect(sock: Path, proc: subprocess.Popen[bytes], t0: float) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(sock))
            return s
        except OSError:
            s.close()
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"resume exited {proc.returncode}: {err[-500:]}") from None
            if time.monotonic() - t0 > AUDIO_TIMEOUT_S:
                raise RuntimeError("resume: no mpv IPC socket") from None
            time.sleep(0.002)


_FLOOR = (
    "import tunehand.cli.resume, tunehand.player.mpv_player, mpv; mpv.MPV(ao='null').terminate()"
)


def _floor(env: dict[str, str]) -> float:
    """Seconds to start the interpreter, import what `resume` imports and make an idle
    libmpv: what any `resume` pays before it can play anything."""
    import sys

    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", _FLOOR], env=env, check=True, timeout=60)
    return time.monotonic() - t0


def _ms_row(name: str, runs: list[float], target: float | None = None) -> Result:
    ms = [r * 1000 for r in runs]
    note = f"{len(ms)} runs, min {min(ms):.0f}, max {max(ms):.0f} ms"
    return check(name, statistics.median(ms), "ms", target, note)


def run() -> list[Result]:
    results: list[Result] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-off-")))
        srv = stack.enter_context(bench_server(tmp, _make_music))
        box = tmp / "box"
        env = {**bench_env(tmp, box), "XDG_CACHE_HOME": str(tmp / "cache")}
        login_cli(srv, box, bench_env(tmp), file_store=True)
        total = sum(p.stat().st_size for p in (tmp / "music").glob("*.flac"))
        print(f"  album: {TRACKS} FLAC tracks, {total / MB:.1f} MB")

        walls, rates = [], []
        for _ in range(RUNS):
            took, out = _run(env, "offline", "add", "--album", ALBUM)
            walls.append(total / MB / took)
            rates.append(float(out.rsplit(" MB/s", 1)[0].rsplit(", ", 1)[1]))
            _run(env, "offline", "remove", "--album", ALBUM)
        print(f"  pin, end to end (MB/s): {', '.join(f'{w:.1f}' for w in walls)}")
        results.append(
            check(
                f"pin a {TRACKS}-track album, loopback, end to end",
                statistics.median(walls),
                "MB/s",
                note=f"{RUNS} runs; process start, lookups, downloads, hashes",
            )
        )
        results.append(
            check(
                f"pin a {TRACKS}-track album, loopback, downloads only",
                statistics.median(rates),
                "MB/s",
                note="as `offline add` reports it",
            )
        )
        _run(env, "offline", "add", "--album", ALBUM)
        took, _ = _run(env, "offline", "add", "--album", ALBUM)
        results.append(check("pin again, all here (every file hashed)", took * 1000, "ms"))

        # The session: the album queued, played here once (the session as last known).
        _run(env, "ctl", "queue", "add", "--album", ALBUM)
        _run(env, "ctl", "repeat", "all")
        sock = tmp / "box.sock"
        online = [_time_to_audio(env, sock) for _ in range(RUNS)]
        print(f"  resume, server up (ms): {', '.join(f'{x * 1000:.0f}' for x in online)}")
        srv.stop()
        offline, floor = [], []
        for _ in range(RUNS):  # alternated, so a busy machine weighs on both alike
            offline.append(_time_to_audio(env, sock))
            floor.append(_floor(env))
        print(f"  resume, server down (ms): {', '.join(f'{x * 1000:.0f}' for x in offline)}")
        results.append(_ms_row("resume to audio, server down, track cached", offline, TARGET_MS))
        results.append(_ms_row("resume to audio, server up, track cached", online))
        print(f"  floor (ms): {', '.join(f'{x * 1000:.0f}' for x in floor)}")
        results.append(_ms_row("floor: interpreter, resume's imports, an idle libmpv", floor))
        over = statistics.median(offline) - statistics.median(floor)
        results.append(
            check("resume to audio offline, over the floor (medians)", over * 1000, "ms")
        )
    return results
