"""Start-up of the `tunehand` command: `ctl status --json` with the file store and the keyring.

Against one real server: a device logged in with `--insecure-token-file` (tokens.json),
and one logged in to a private gnome-keyring on a private D-Bus session bus (the test
suite's `start_secret_service`). Each round runs every case once, in turn, so drift hits
them alike; after WARMUPS rounds, RUNS rounds are timed with perf_counter around
subprocess.run. The cases (one row each, median and p90):

    python -c pass                       the floor: a bare interpreter
    tunehand --version                   the console entry, argparse, no command
    tunehand ctl --help                  every ctl parser built
    ctl status --json, file store        the login from tokens.json
    ctl status --json, keyring           the login from the Secret Service (the default)

Then `python -X importtime` shows which imports `ctl status --json` pays for.

Bytecode: an installed tunehand runs from compiled .pyc files, but an editable install
under PYTHONDONTWRITEBYTECODE=1 (as in CI and dev shells) recompiles tunehand's modules
on every start. The measured runs therefore use a private bytecode cache
(PYTHONPYCACHEPREFIX), filled first by `python -m compileall` over tunehand's sources
and then by the warm-ups (the standard library's modules), so nothing is written into the
source tree; the uncached figure is printed for reference.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest
from tests.fixtures_keyring import start_secret_service

from bench.common import (
    Result,
    check,
    clean_env,
    login_cli,
    ms,
    percentile,
    running_server,
    tunehand_bin,
)

WARMUPS = 3
RUNS = 30
TARGET_MEDIAN_MS = 60.0
IMPORTTIME_RUNS = 5
TOP = 10
TIMEOUT_S = 30.0
BUSY_RATIO = 1.4
"""Above this median/min ratio of the `python -c pass` floor, the figures are flagged."""


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `argv` once; its wall time in ms and its stdout. A failure raises."""
    t0 = time.perf_counter()
    r = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False
    )
    elapsed = ms(time.perf_counter() - t0)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return elapsed, r.stdout


Case = tuple[list[str], dict[str, str]]
"""argv and environment of one timed command."""


def _check_status(out: str) -> None:
    if "version" not in json.loads(out):
        raise RuntimeError(f"ctl status --json printed no version: {out!r}")


def _measure(cases: dict[str, Case]) -> dict[str, list[float]]:
    """Wall times (ms) of every case over RUNS rounds, each round running every case."""
    for _ in range(WARMUPS):
        for argv, env in cases.values():
            _timed(argv, env)
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(RUNS):
        for label, (argv, env) in cases.items():
            elapsed, out = _timed(argv, env)
            times[label].append(elapsed)
            if "status" in argv:
                _check_status(out)
    return times


def _compile(env: dict[str, str]) -> None:
    """Compile tunehand's modules into the private bytecode cache, as an install would."""
    import tunehand

    source = Path(tunehand.__file__).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(source)],
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )


def _busy_note(bare_ms: list[float]) -> str:
    """A warning when the `python -c pass` floor itself is noisy: the machine is busy."""
    ratio = statistics.median(bare_ms) / min(bare_ms)
    if ratio <= BUSY_RATIO:
        return ""
    note = f"busy machine: python -c pass median is {ratio:.1f}x its min"
    print(f"  warning: {note}; the medians are inflated, the minimums are closer to the truth")
    return note


def _figures(
    label: str, samples: list[float], target: float | None, note: str = ""
) -> list[Result]:
    median = statistics.median(samples)
    p90 = percentile(samples, 90)
    print(
        f"  {label}: median {median:.1f} ms, p90 {p90:.1f} ms, "
        f"min {min(samples):.1f} ms, max {max(samples):.1f} ms (n={len(samples)})"
    )
    return [
        check(f"{label} median", median, "ms", target, note),
        check(f"{label} p90", p90, "ms"),
    ]


def _importtime(env: dict[str, str], title: str) -> None:
    """Print the TOP imports by cumulative time (median over IMPORTTIME_RUNS runs)."""
    # The console script itself (as `tunehand` runs), not `-m tunehand`, which adds runpy.
    argv = [sys.executable, "-X", "importtime", str(tunehand_bin()), "ctl", "status", "--json"]
    cumulative: dict[str, list[int]] = defaultdict(list)
    self_us: dict[str, list[int]] = defaultdict(list)
    totals: list[int] = []
    for _ in range(IMPORTTIME_RUNS):
        r = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False
        )
        if r.returncode != 0:
            raise RuntimeError(f"importtime run exited {r.returncode}: {r.stderr.strip()[-500:]}")
        total = 0
        for line in r.stderr.splitlines():
            if not line.startswith("import time:"):
                continue
            fields = line[len("import time:") :].split("|")
            if len(fields) != 3 or not fields[0].strip().isdigit():
                continue  # the header
            name = fields[2].strip()
            self_us[name].append(int(fields[0]))
            cumulative[name].append(int(fields[1]))
            total += int(fields[0])
        totals.append(total)
    median_cum = {name: statistics.median(v) for name, v in cumulative.items()}
    median_self = {name: statistics.median(v) for name, v in self_us.items()}
    print(
        f"  importtime, {title}: {len(median_cum)} modules, "
        f"{statistics.median(totals) / 1000:.1f} ms of imports (median of {IMPORTTIME_RUNS})"
    )
    print(f"    {'cumulative':>10}  {'self':>8}  module")
    for name, cum in sorted(median_cum.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"    {cum / 1000:>7.1f} ms  {median_self[name] / 1000:>5.1f} ms  {name}")
    by_package: dict[str, float] = defaultdict(float)
    for name, value in median_self.items():
        by_package[name.split(".", 1)[0]] += value
    print("    self time by top-level package:")
    for package, value in sorted(by_package.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"    {value / 1000:>7.1f} ms  {package}")


def _cached(env: dict[str, str], cache: Path) -> dict[str, str]:
    """`env` with Python's bytecode cache on, kept under `cache` (not in the source tree)."""
    out = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**out, "PYTHONPYCACHEPREFIX": str(cache)}


def _uncached(env: dict[str, str]) -> dict[str, str]:
    out = {key: value for key, value in env.items() if key != "PYTHONPYCACHEPREFIX"}
    return {**out, "PYTHONDONTWRITEBYTECODE": "1"}


def run() -> list[Result]:
    results: list[Result] = []
    with running_server() as srv, tempfile.TemporaryDirectory(prefix="tunehand-ctl-") as t:
        tmp = Path(t)
        print(f"  server {srv.url} (SQLite); {WARMUPS} warm-up rounds then {RUNS} rounds")

        file_dir = tmp / "file-device"
        login_cli(srv, file_dir, clean_env(), file_store=True)
        file_env = clean_env({"TUNEHAND_CONFIG_DIR": str(file_dir)})
        status = [str(tunehand_bin()), "ctl", "status", "--json"]
        uncached = _measure(
            {"ctl status --json, file store, no .pyc": (status, _uncached(file_env))}
        )
        for label, samples in uncached.items():
            results += _figures(label, samples, None)

        cached_env = _cached(file_env, tmp / "pycache")
        _compile(cached_env)
        cases: dict[str, Case] = {
            "python -c pass": ([sys.executable, "-c", "pass"], cached_env),
            "tunehand --version": ([str(tunehand_bin()), "--version"], cached_env),
            "tunehand ctl --help": ([str(tunehand_bin()), "ctl", "--help"], cached_env),
            "ctl status --json, file store": (status, cached_env),
        }
        keyring_label = "ctl status --json, keyring"
        with contextlib.ExitStack() as stack:
            try:
                keyring_env = stack.enter_context(start_secret_service(tmp / "keyring"))
            except pytest.fail.Exception as exc:  # start_secret_service found no daemon
                skipped = "skipped: " + str(exc).splitlines()[0]
                print(f"  keyring: {skipped}")
                results.append(
                    Result(
                        f"{keyring_label} median", math.nan, "ms", TARGET_MEDIAN_MS, None, skipped
                    )
                )
            else:
                key_dir = tmp / "keyring-device"
                login_cli(srv, key_dir, clean_env(keyring_env), file_store=False)
                key_env = clean_env({**keyring_env, "TUNEHAND_CONFIG_DIR": str(key_dir)})
                cases[keyring_label] = (status, _cached(key_env, tmp / "pycache"))
            times = _measure(cases)
            note = _busy_note(times["python -c pass"])
            for label, samples in times.items():
                target = TARGET_MEDIAN_MS if label.startswith("ctl status") else None
                results += _figures(label, samples, target, note if target else "")
            _importtime(cached_env, "file store")
            if keyring_label in cases:
                _importtime(cases[keyring_label][1], "keyring")
    return results
