"""`python -m bench [MODULE...]`: run the benchmarks and print a summary table.

With no arguments every module in MODULES runs, in order. A module that fails is
reported as a MISS and the others still run. Exit status: 0 when every figure with a
target meets it, 1 otherwise, 2 for an unknown module name.
"""

from __future__ import annotations

import argparse
import importlib
import io
import math
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from bench.common import Result

MODULES = (
    "ctl_status",
    "fanout",
    "handoff",
    "warm",
    "web",
    "revoke",
    "receiver_mem",
    "mpd",
    "tui",
    "tui_large",
    "hostile",
    "load",
    "subsonic",
    "transcode",
    "jam",
    "offline",
)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every server and daemon is stopped


def _figure(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if value.is_integer() and not unit:
        return str(int(value))
    text = f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def _status(result: Result) -> str:
    if result.ok is None:
        return "SKIP" if math.isnan(result.value) and result.target is not None else "-"
    return "PASS" if result.ok else "MISS"


def print_summary(results: Sequence[Result], out: TextIO = sys.stdout) -> None:
    rows = [
        (
            r.name,
            _figure(r.value, r.unit),
            "" if r.target is None else f"≤ {r.target:g} {r.unit}".rstrip(),
            _status(r),
            r.note,
        )
        for r in results
    ]
    header = ("benchmark", "figure", "target", "result", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(4)]
        print("  ".join(cells) + (f"  {row[4]}" if row[4] else ""), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"any of: {', '.join(MODULES)}"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.modules if name not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    signal.signal(signal.SIGTERM, _on_sigterm)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)

    results: list[Result] = []
    for name in args.modules or MODULES:
        print(f"== {name}")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            results += module.run()
        except Exception as exc:
            traceback.print_exc()
            results.append(Result(name, math.nan, "", None, False, f"error: {exc}"))
        print(f"   ({time.perf_counter() - t0:.1f} s)")
    print()
    print_summary(results)
    return 1 if any(r.ok is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
