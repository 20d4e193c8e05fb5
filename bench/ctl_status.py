"""`tunehand ctl status --json` wall time, with the file token store and with a real keyring.

Against one real server: a device logged in with `--insecure-token-file` (tokens.json),
and one logged in to a private gnome-keyring on a private D-Bus session bus (the test
suite's `start_secret_service`). Each configuration runs the `tunehand` console entry
RUNS times after WARMUPS warm-ups, timed with perf_counter around subprocess.run; a bare
`python -c pass` runs interleaved as the floor. Then `python -X importtime` shows which
imports the command pays for.

Bytecode: an installed tunehand runs from cached .pyc files, but an editable install
under PYTHONDONTWRITEBYTECODE=1 (as in CI and dev shells) recompiles tunehand's modules
on every start. The measured runs therefore use a private bytecode cache
(PYTHONPYCACHEPREFIX, filled by the warm-ups, so nothing is written into the source
tree); the uncached figure is printed for reference.
"""

from __future__ import annotations

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
from tests.fixtures_server import ServerProc

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
TARGET_MEDIAN_MS = 80.0
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


def _measure(env: dict[str, str]) -> tuple[list[float], list[float]]:
    """(ctl status ms, python -c pass ms), interleaved so drift hits both alike."""
    ctl = [str(tunehand_bin()), "ctl", "status", "--json"]
    bare = [sys.executable, "-c", "pass"]
    for _ in range(WARMUPS):
        _timed(bare, env)
        _timed(ctl, env)
    ctl_ms: list[float] = []
    bare_ms: list[float] = []
    for _ in range(RUNS):
        bare_ms.append(_timed(bare, env)[0])
        elapsed, out = _timed(ctl, env)
        ctl_ms.append(elapsed)
        if "version" not in json.loads(out):
            raise RuntimeError(f"ctl status --json printed no version: {out!r}")
    return ctl_ms, bare_ms


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
    argv = [sys.executable, "-X", "importtime", "-m", "tunehand", "ctl", "status", "--json"]
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


def _keyring_figures(srv: ServerProc, tmp: Path) -> list[Result]:
    """The same measurement with tokens in a private gnome-keyring (the default store)."""
    label = "ctl status --json, keyring"
    try:
        with start_secret_service(tmp / "keyring") as keyring_env:
            key_dir = tmp / "keyring-device"
            login_cli(srv, key_dir, clean_env(keyring_env), file_store=False)
            key_env = clean_env({**keyring_env, "TUNEHAND_CONFIG_DIR": str(key_dir)})
            key_env = _cached(key_env, tmp / "pycache")
            ctl_ms, bare_ms = _measure(key_env)
            results = _figures(label, ctl_ms, TARGET_MEDIAN_MS, _busy_note(bare_ms))
            results += _figures("python -c pass (keyring run)", bare_ms, None)
            _importtime(key_env, "keyring")
            return results
    except pytest.fail.Exception as exc:  # start_secret_service found no daemon
        note = "skipped: " + str(exc).splitlines()[0]
        ok = None
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        note = "error: " + str(exc).splitlines()[0]
        ok = False
    print(f"  keyring: {note}")
    return [Result(f"{label} median", math.nan, "ms", TARGET_MEDIAN_MS, ok, note)]


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
        print(f"  server {srv.url} (SQLite); {WARMUPS} warm-ups then {RUNS} runs each")

        file_dir = tmp / "file-device"
        base_env = clean_env()
        login_cli(srv, file_dir, base_env, file_store=True)
        file_env = clean_env({"TUNEHAND_CONFIG_DIR": str(file_dir)})
        ctl_ms, _ = _measure(_uncached(file_env))
        results += _figures("ctl status --json, file store, no .pyc", ctl_ms, None)
        cached_env = _cached(file_env, tmp / "pycache")
        ctl_ms, bare_ms = _measure(cached_env)
        note = _busy_note(bare_ms)
        results += _figures("ctl status --json, file store", ctl_ms, TARGET_MEDIAN_MS, note)
        results += _figures("python -c pass (file-store run)", bare_ms, None)
        _importtime(cached_env, "file store")

        results += _keyring_figures(srv, tmp)
    return results
