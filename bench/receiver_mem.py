"""Memory of a playing `tunehand receiver`: VmRSS after PLAY_S seconds of playback.

One real server (bench.handoff's library of long generated tracks) and one receiver
(mpv with `ao=null` and a JSON IPC socket, through which the benchmark sees mpv's
time-pos advance). The queue plays on the receiver; once mpv's position has advanced
for PLAY_S seconds, VmRSS of the receiver's process and of all its descendants is read
from /proc/PID/status (with RssAnon, RssFile, VmHWM, and Pss from smaps_rollup: most
file-backed pages are shared libraries, so Pss drops when other processes map them too).

For reference, at the same time, bare interpreters that build up to what the receiver
does, printing VmRSS after each stage: the receiver's Python imports (without mpv);
importing libmpv; an idle `mpv.MPV` with tunehand's options and `ao=null`; then playing
the same two stream URLs from the server as the receiver does (the current track, the
next one appended for gapless prefetch) for PLAY_S. Once with tunehand's mpv options
and once with `cache=no` and `prefetch-playlist=no` added, to show what those cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import Result, check, login_cli
from bench.handoff import (
    Api,
    MpvWatch,
    Poller,
    Receiver,
    bench_env,
    bench_server,
    dump_logs_on_error,
    start_playing,
    start_receiver,
    stop_processes,
)

PLAY_S = 10.0
TARGET_MB = 80.0
LEAN_OPTIONS = {"cache": "no", "prefetch-playlist": "no"}

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
ssl.create_default_context()
rss("+ the receiver's Python imports")
from tunehand.player.mpv_player import DEFAULTS, import_mpv
mpv = import_mpv()
rss("+ libmpv loaded")
extra = json.loads(sys.argv[1])
opts = {**DEFAULTS, "ao": "null", **extra}
player = mpv.MPV(**{k.replace("-", "_"): v for k, v in opts.items()})
rss("+ idle mpv.MPV")
player.loadfile(sys.argv[2])
player.command("loadfile", sys.argv[3], "append")
time.sleep(float(sys.argv[4]))
rss("+ playing the stream (next appended)")
player.terminate()
"""


def _status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status that matter here (0 when the process is gone)."""
    out = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0, "Pss": 0}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        text += Path(f"/proc/{pid}/smaps_rollup").read_text()
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


def _mb(kb: int) -> float:
    return kb / 1024


def _stages(proc: subprocess.Popen[str], label: str) -> None:
    """Print the staged RSS lines a reference interpreter wrote (it has finished)."""
    out, err = proc.communicate(timeout=PLAY_S + 60)
    if proc.returncode != 0:
        print(f"  reference ({label}) failed: {err.strip().splitlines()[-1:]}")
        return
    print(f"  reference, {label}:")
    for line in out.splitlines():
        stage, f = json.loads(line)
        print(
            f"    {stage:<40} VmRSS {_mb(f['VmRSS']):>6.1f} MB "
            f"(anon {_mb(f['RssAnon']):.1f}, file {_mb(f['RssFile']):.1f})"
        )


def run() -> list[Result]:
    results: list[Result] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-mem-")))
        srv = stack.enter_context(bench_server(tmp))
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
        login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
        idle, _ = _tree_status(rec.proc.pid)

        t0 = time.monotonic()
        start_playing(bench_env(tmp, ctl_dir), api, "r1", watch)
        first = watch.advances(t0)[0][0]

        entries = api.get("/v1/session/queue")["entries"]
        urls = [srv.url + e["track"]["url"] for e in entries[:2]]
        refs: dict[str, subprocess.Popen[str]] = {}
        for label, extra in (
            ("tunehand's mpv options", {}),
            ("+ " + str(LEAN_OPTIONS), LEAN_OPTIONS),
        ):
            argv = [sys.executable, "-c", _STAGES, json.dumps(extra), *urls, str(PLAY_S)]
            refs[label] = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bench_env(tmp)
            )
        stack.callback(stop_processes, list(refs.values()))

        time.sleep(max(0.0, first + PLAY_S - time.monotonic()))
        if not watch.playing():
            raise RuntimeError(f"the receiver stopped playing:\n{rec.log_tail()}")
        adv = watch.advances(first)
        st, kids = _tree_status(rec.proc.pid)
        print(
            f"  receiver pid {rec.proc.pid} ({kids} descendant processes); mpv advanced "
            f"{adv[-1][1] - adv[0][1]:.1f} s in {time.monotonic() - first:.1f} s"
        )
        print(
            f"  receiver, connected, before playing: VmRSS {_mb(idle['VmRSS']):.1f} MB "
            f"(anon {_mb(idle['RssAnon']):.1f}, file {_mb(idle['RssFile']):.1f})"
        )
        print(
            f"  receiver, after {PLAY_S:g} s playing: VmRSS {_mb(st['VmRSS']):.1f} MB "
            f"(anon {_mb(st['RssAnon']):.1f}, file {_mb(st['RssFile']):.1f}; "
            f"peak VmHWM {_mb(st['VmHWM']):.1f}; Pss {_mb(st['Pss']):.1f}, lowered by the "
            "reference interpreters below sharing the same libraries right now)"
        )
        for label, proc in refs.items():
            _stages(proc, label)
        results += [
            check(
                f"receiver RSS after {PLAY_S:g} s playing",
                _mb(st["VmRSS"]),
                "MB",
                TARGET_MB,
                f"anon {_mb(st['RssAnon']):.0f} MB, file {_mb(st['RssFile']):.0f} MB",
            ),
            check("receiver RSS before playing", _mb(idle["VmRSS"]), "MB"),
        ]
    return results
