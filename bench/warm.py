"""Handoff to a warm device: `ctl transfer` to the predicted next device, which the server
keeps loaded paused near the position, so the transfer skips the prepare phase.

Setup as `bench.handoff` (a real server, two real receivers with mpv `ao=null` at the
case's output buffer, mpv's own positions polled over IPC). TRAINING transfers back and
forth first (r1->r2, r2->r1, twice: then each is the other's usual next device, so the
one not playing is kept warm), then HANDOFFS measured ones, back and forth, each to the
warm device: the row notes any handoff whose target `GET /v1/devices` did not list as
`warm` just before the command. The figures and their measurement are `bench.handoff`'s:
`ctl transfer` until the target plays (by mpv's clock), the gap and the jump.

One row per output buffer (CASES), and one with every CPU kept busy; `BENCH_WARM_CASES`
picks some by name.
"""

from __future__ import annotations

import math
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Result, check, login_cli, percentile, selected_cases
from bench.handoff import (
    TARGET_ROW_GAP_MEDIAN_MS,
    TARGET_ROW_JUMP_MEDIAN_MS,
    TARGET_ROW_JUMP_P90_MS,
    Api,
    Case,
    Handoff,
    MpvWatch,
    Poller,
    Receiver,
    Remote,
    _load,
    _med,
    bench_env,
    bench_server,
    busy_loop,
    dump_logs_on_error,
    run_handoffs,
    start_playing,
    start_receiver,
    summary,
)

TRAINING = 4
"""r1->r2, r2->r1, twice: the prediction needs 2 transfers each way."""
TARGET_WARM_TRANSFER_MS = 80.0

CASES = (
    Case("null 0.01", ("ao=null", "ao-null-buffer=0.01")),
    Case("null 0.2", ("ao=null", "ao-null-buffer=0.2")),
    Case("null 0.05 busy", ("ao=null", "ao-null-buffer=0.05"), busy=True),
)
"""The busy row keeps every CPU spinning (`bench.handoff.busy_loop`): its gap and jump
have the targets of any handoff (the switch lead must hold there too); its latency is
reported without one, since the spinning processes slow the `ctl` process's own start."""
CASES_ENV = "BENCH_WARM_CASES"


@dataclass
class Row:
    case: str
    handoffs: list[Handoff] = field(default_factory=list)
    cold: int = 0
    """Measured handoffs whose target was not listed warm before the command."""
    load: str = ""
    error: str = ""


def run() -> list[Result]:
    rows: list[Row] = []
    for case in selected_cases(CASES, CASES_ENV):
        print(f"  === case {case.name}: mpv {' '.join(case.mpv_options)}")
        row = Row(case.name)
        try:
            _run(case, row)
        except Exception as exc:  # one case failing must not hide the others
            row.error = f"{type(exc).__name__}: {exc}"
            print(f"  case {case.name} failed: {row.error}")
        rows.append(row)
    print(
        f"  {'case':<10} {'n':>3} {'cold':>4} {'ctl→plays med':>13} {'p90':>6} "
        f"{'|jump| med':>10} {'p90':>6} {'gap med':>8}  load"
    )
    results: list[Result] = []
    for r in rows:
        lat = [h.latency_ms for h in r.handoffs]
        jumps = [abs(h.jump_ms) for h in r.handoffs]
        gaps = [abs(h.gap_ms) for h in r.handoffs]
        p90 = percentile(lat, 90) if lat else math.nan
        jp90 = percentile(jumps, 90) if jumps else math.nan
        print(
            f"  {r.case:<10} {len(lat):>3} {r.cold:>4} {_med(lat):>13.1f} {p90:>6.1f} "
            f"{_med(jumps):>10.1f} {jp90:>6.1f} {_med(gaps):>8.1f}  {r.load}"
            + (f"  ({r.error})" if r.error else "")
        )
        c = r.case
        results += [
            check(
                f"[warm {c}] ctl transfer → target plays median",
                _med(lat),
                "ms",
                None if c.endswith("busy") else TARGET_WARM_TRANSFER_MS,
            ),
            check(f"[warm {c}] ctl transfer → target plays p90", p90, "ms"),
            check(f"[warm {c}] |jump| median", _med(jumps), "ms", TARGET_ROW_JUMP_MEDIAN_MS),
            check(f"[warm {c}] |jump| p90", jp90, "ms", TARGET_ROW_JUMP_P90_MS),
            check(f"[warm {c}] gap median", _med(gaps), "ms", TARGET_ROW_GAP_MEDIAN_MS),
            check(
                f"[warm {c}] handoffs to a device not warm",
                float(r.cold) if lat else math.nan,
                "",
                0.0,
            ),
        ]
    return results


def _run(case: Case, row: Row) -> None:
    receivers: dict[str, Receiver] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="th-warm-")))
        stack.push(dump_logs_on_error(receivers))
        if case.busy:
            stack.enter_context(busy_loop())
        srv = stack.enter_context(bench_server(tmp))
        for name in ("r1", "r2"):
            receivers[name] = start_receiver(stack, srv, tmp, name, case.mpv_options)
        api = Api(srv)
        stack.callback(api.close)
        api.wait_online(list(receivers.values()))
        watches = {n: MpvWatch(n, r.socket_path, r.proc) for n, r in receivers.items()}
        for w in watches.values():
            stack.callback(w.close)
        poller = Poller(list(watches.values()))
        stack.callback(poller.stop)
        ctl_dir = tmp / "ctl"
        login_cli(srv, ctl_dir, bench_env(tmp), file_store=True)
        env = bench_env(tmp, ctl_dir)
        start_playing(env, api, "r1", watches["r1"])
        remote = Remote(srv.url, api.token)
        stack.callback(remote.close)
        print(f"  load average {_load()}")
        print(f"  {TRAINING} training handoffs (w), then the measured ones, each to a warm device:")

        done = [0]

        def before(_src: str, tgt: str) -> str:
            """Was the target warm just before the command (the server's device list)?"""
            done[0] += 1
            devices = {d["name"]: d for d in api.get("/v1/devices")["devices"]}
            if devices.get(tgt, {}).get("warm"):
                return "warm"
            if done[0] > TRAINING:
                row.cold += 1
            return "target not warm"

        handoffs, _ = run_handoffs(env, remote, watches, receivers, TRAINING, before)
        row.handoffs = handoffs
        print(summary("ctl transfer → warm target plays", [h.latency_ms for h in handoffs]))
        print(summary("jump, signed", [h.jump_ms for h in handoffs]))
        print(summary("gap, signed", [h.gap_ms for h in handoffs]))
        row.load = _load()
        print(f"  load average {row.load}")
