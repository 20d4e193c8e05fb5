"""Memory of a playing `tunehand receiver`: the peak VmRSS while it plays, across a track end.

One real server on a library of TRACKS realistic tracks (TRACK_S s of 16-bit stereo
44.1 kHz noise as FLAC, ~600 kbit/s: mpv's read-ahead fills its byte limit, as with
music) and one receiver (mpv with `ao=null` and a JSON IPC socket, through which the
benchmark sees mpv's time-pos advance). The queue plays on the receiver for PLAY_S,
then is sought to END_S before the end of the track: mpv prefetches the next entry
(two demuxers at once), advances gaplessly, and plays AFTER_S of the next track.

VmRSS of the receiver's process (and any descendants) is read from /proc every
SAMPLE_S from the first advance of time-pos to the end; the figure judged is the peak
of those samples (the median of the first PLAY_S is shown as the steady state). RssAnon
and RssFile are the samples' at that peak; VmHWM, the high-water mark since the process
started, includes start-up (loading libmpv) before anything plays.

For the breakdown, at the same time, a bare interpreter builds up to what the receiver
does, printing VmRSS after each stage: the receiver's Python imports (without mpv);
loading libmpv; an idle `MpvPlayer` with tunehand's options and `ao=null`; start-up
pages given back (`tunehand.cli.residency`); then playing the last seconds of the
first track with the next appended (prefetch), and giving start-up pages back again.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import Result, check, login_cli
from bench.handoff import (
    TRACKS,
    Api,
    MpvWatch,
    Poller,
    Receiver,
    bench_env,
    bench_server,
    ctl,
    dump_logs_on_error,
    start_playing,
    start_receiver,
    stop_processes,
)

TRACK_S = 240
PLAY_S = 10.0
END_S = 25.0
AFTER_S = 10.0
SAMPLE_S = 0.25
TARGET_MB = 80.0

_STAGES = """
import json, sys, time

def rss(stage):
    fields = dict.fromkeys(("VmRSS", "RssAnon", "RssFile"), 0)
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in fields:
            fields[key] = int(value.split()[0])
    print(json.dumps([stage, fields]), flush=True)

rss("bare interpreter")
import tunehand.cli.main, tunehand.cli.receiver, tunehand.cli.device, tunehand.client.agent
import tunehand.client.channel, websockets.asyncio.client, ssl
from tunehand.cli import residency
ssl.create_default_context()
residency.tune_malloc()
rss("+ the receiver's Python imports")
from tunehand.player.mpv_player import MpvPlayer, import_mpv
import_mpv()
rss("+ libmpv loaded")
import asyncio
loop = asyncio.new_event_loop()
player = MpvPlayer(lambda event: None, loop, {"ao": "null"})
time.sleep(0.5)
rss("+ idle MpvPlayer")
residency.release_startup_pages()
rss("+ start-up pages given back")
url, next_url, start_s, play_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
player.load("1", url, position_ms=int(start_s * 1000), paused=False)
player.set_next("2", next_url)
time.sleep(play_s)
rss("+ playing the track's end (next prefetched)")
residency.release_startup_pages()
time.sleep(2)
rss("+ start-up pages given back, 2 s on")
player.close()
"""


def _make_music(music: Path) -> None:
    """TRACKS tagged FLAC files of TRACK_S s of pink noise (sox, then mutagen)."""
    from mutagen.flac import FLAC

    music.mkdir(parents=True, exist_ok=True)
    for i in range(1, TRACKS + 1):
        path = music / f"{i:02d} bench {i}.flac"
        head = ["sox", "-q", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path)]
        subprocess.run([*head, "synth", str(TRACK_S), "pinknoise", "vol", "0.3"], check=True)
        audio = FLAC(path)
        audio["title"], audio["artist"], audio["album"] = f"Bench {i}", "Bench", "Bench"
        audio["tracknumber"] = str(i)
        audio.save()


def _status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status that matter here (0 when the process is gone)."""
    out = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in out and value.split():
            out[key] = int(value.split()[0])
    return out


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _tree_status(pid: int) -> tuple[dict[str, int], int]:
    """Summed status fields of `pid` and its descendants; and how many descendants."""
    kids = _descendants(pid)
    total = _status(pid)
    for k in kids:
        for key, value in _status(k).items():
            total[key] += value
    return total, len(kids)


class _Sampler:
    """VmRSS (and friends) of a process tree every SAMPLE_S, on its own thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.descendants = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            st, self.descendants = _tree_status(self.pid)
            self.samples.append((time.monotonic(), st))
            self._stop.wait(SAMPLE_S)

    def between(self, t0: float, t1: float) -> list[dict[str, int]]:
        return [st for t, st in list(self.samples) if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _mb(kb: float) -> float:
    return kb / 1024


def _line(label: str, f: dict[str, int]) -> str:
    return (
        f"{label:<44} VmRSS {_mb(f['VmRSS']):>6.1f} MB "
        f"(anon {_mb(f['RssAnon']):.1f}, file {_mb(f['RssFile']):.1f})"
    )


def _stages(proc: subprocess.Popen[str]) -> None:
    """Print the staged RSS lines the reference interpreter wrote (it has finished)."""
    out, err = proc.communicate(timeout=PLAY_S + 60)
    if proc.returncode != 0:
        print(f"  reference failed: {err.strip().splitlines()[-1:]}")
        return
    print("  reference interpreter, stage by stage:")
    for line in out.splitlines():
        stage, f = json.loads(line)
        print("    " + _line(stage, f))


def _wait_for_advance(watch: MpvWatch) -> float:
    """The time mpv's position went back to the start (the gapless advance)."""
    deadline = time.monotonic() + END_S + 30
    late = False
    while time.monotonic() < deadline:
        pos = watch.position()
        if pos is not None and pos > TRACK_S - END_S - 5:
            late = True
        elif late and pos is not None and pos < END_S / 2:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError("the receiver never advanced to the next track")


def run() -> list[Result]:
    results: list[Result] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-mem-")))
        srv = stack.enter_context(bench_server(tmp, _make_music))
        receivers: dict[str, Receiver] = {}
        stack.push(dump_logs_on_error(receivers))
        rec = receivers["r1"] = start_receiver(stack, srv, tmp, "r1")
        api = Api(srv)
        stack.callback(api.close)
        api.wait_online([rec])
        watch = MpvWatch("r1", rec.socket_path, rec.proc)
        stack.callback(watch.close)
        poller = Poller([watch])
        stack.callback(poller.stop)
        ctl_dir = tmp / "ctl"
        env = bench_env(tmp, ctl_dir)
        login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
        sampler = _Sampler(rec.proc.pid)
        stack.callback(sampler.stop)
        time.sleep(1.0)
        idle = sampler.samples[-1][1]

        t0 = time.monotonic()
        start_playing(env, api, "r1", watch)
        first = watch.advances(t0)[0][0]

        entries = api.get("/v1/session/queue")["entries"]
        urls = [srv.url + e["track"]["url"] for e in entries[:2]]
        argv = [sys.executable, "-c", _STAGES, *urls, str(TRACK_S - 12), str(PLAY_S)]
        ref = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bench_env(tmp)
        )
        stack.callback(stop_processes, [ref])

        time.sleep(max(0.0, first + PLAY_S - time.monotonic()))
        if not watch.playing():
            raise RuntimeError(f"the receiver stopped playing:\n{rec.log_tail()}")
        steady_end = time.monotonic()
        ctl(env, "seek", str(TRACK_S - END_S))
        advanced = _wait_for_advance(watch)
        time.sleep(AFTER_S)
        if not watch.playing():
            raise RuntimeError(f"the receiver stopped after the advance:\n{rec.log_tail()}")
        end = time.monotonic()
        sampler.stop()

        window = sampler.between(first, end)
        peak = max(window, key=lambda st: st["VmRSS"])
        steady = statistics.median(st["VmRSS"] for st in sampler.between(first, steady_end))
        adv = watch.advances(advanced)
        print(
            f"  receiver pid {rec.proc.pid} ({sampler.descendants} descendant processes); "
            f"{len(window)} samples over {end - first:.1f} s of playing; after the advance "
            f"mpv went {adv[-1][1] - adv[0][1]:.1f} s into the next track"
        )
        print("  " + _line("receiver, connected, before playing:", idle))
        print(f"  receiver, first {PLAY_S:g} s of a track: median VmRSS {_mb(steady):.1f} MB")
        print("  " + _line("receiver, peak while playing (incl. the advance):", peak))
        print(f"  receiver, VmHWM (since start, incl. loading libmpv): {_mb(peak['VmHWM']):.1f} MB")
        _stages(ref)
        results += [
            check(
                "receiver RSS, peak while playing",
                _mb(peak["VmRSS"]),
                "MB",
                TARGET_MB,
                f"anon {_mb(peak['RssAnon']):.0f} MB, file {_mb(peak['RssFile']):.0f} MB",
            ),
            check("receiver RSS, first 10 s playing (median)", _mb(steady), "MB"),
            check("receiver RSS before playing", _mb(idle["VmRSS"]), "MB"),
        ]
    return results
