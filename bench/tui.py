"""The TUI with a 50,000-track library (the `FakeBackend`'s `big_library`), headless.

- startup: a fresh `python -c` process (so interpreter start and every import count)
  builds the 50,000-track fake library, starts `TunehandApp` headless and stops at the
  first refresh after the main screen is mounted and the library list holds its rows.
  The figure is the wall time from spawning the process to that line on its stdout
  (median of STARTUP_RUNS); the child's own count from its first line (perf_counter)
  and the part spent generating the fake library are printed too.
- memory: the same child's RSS at that first frame, and its peak (VmHWM); plus the peak
  after it also opened the 50,000-track liked list.
- key latency: in a fresh process, the search results list has the focus while a query
  is typed character by character (debounced searches run whenever typing pauses) and
  now-playing snapshots arrive at SNAPSHOT_HZ; `down` is sent through the driver as a
  terminal key would be, and the figure is the time until the cursor moved and the
  screen refreshed after it (`call_after_refresh` from the key's action), over PRESSES.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Result, check, percentile

STARTUP_RUNS = 7
PRESSES = 50
SNAPSHOT_HZ = 100
STARTUP_TARGET_MS = 700.0
RSS_TARGET_MB = 150.0
KEY_TARGET_MS = 50.0
CHILD_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parent.parent

_STARTUP = r"""
import time
T0 = time.perf_counter()
import json, sys

from tunehand.tui.app import TunehandApp
from tunehand.tui.backend_fake import FakeBackend, big_library
from tunehand.tui.screens.main import MainScreen

T_IMPORTS = time.perf_counter()
library = big_library(50_000)
T_LIBRARY = time.perf_counter()
fake = FakeBackend(library)
fake.likes_ids = list(library.tracks)
fake.seed(list(library.tracks)[:100], index=3, position_ms=30_000)
OPEN_LIKES = "--likes" in sys.argv


def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


app = TunehandApp(fake, debounce_s=0.25)
figures = {}
open_main = app.open_main


def first_frame():
    if "first_frame_ms" in figures:
        return
    assert isinstance(app.screen, MainScreen) and app.screen.is_mounted
    figures.update(
        first_frame_ms=(time.perf_counter() - T0) * 1000,
        imports_ms=(T_IMPORTS - T0) * 1000,
        library_ms=(T_LIBRARY - T_IMPORTS) * 1000,
        rows=len(app.screen.library.table.rows),
        rss_kb=status_kb("VmRSS"),
        hwm_kb=status_kb("VmHWM"),
    )
    print("FRAME " + json.dumps(figures), flush=True)
    if OPEN_LIKES:
        app.screen.action_show_likes()
        app.set_timer(0.5, likes_shown)
    else:
        app.exit()


def likes_shown():
    likes = app.screen.likes.table
    figures.update(
        likes_rows=len(likes.rows), likes_rss_kb=status_kb("VmRSS"),
        likes_hwm_kb=status_kb("VmHWM"),
    )
    app.exit()


def open_main_hooked(account):
    open_main(account)
    screen = app.main
    table = screen.library.table
    original = table.set_rows

    def set_rows(rows, **kw):
        original(rows, **kw)
        if rows and "first_frame_ms" not in figures:
            screen.call_after_refresh(first_frame)

    table.set_rows = set_rows


app.open_main = open_main_hooked
app.run(headless=True, size=(120, 34))
print("DONE " + json.dumps(figures), flush=True)
"""

_LATENCY = r"""
import asyncio, json, random, sys, time

from textual import events

from tunehand.tui.app import TunehandApp
from tunehand.tui.backend_fake import FakeBackend, big_library
from tunehand.tui.screens.main import MainScreen

PRESSES, HZ = int(sys.argv[1]), int(sys.argv[2])
WORDS = ("northbound", "minuit", "lanterns", "harbour", "silver", "paper", "golden")


async def main():
    library = big_library(50_000)
    fake = FakeBackend(library)
    fake.seed(list(library.tracks)[:500], index=3, position_ms=30_000)
    app = TunehandApp(fake, debounce_s=0.25)
    out = {}
    async with app.run_test(size=(120, 34)) as pilot:
        while not isinstance(app.screen, MainScreen) or app.snapshot is None:
            await pilot.pause(0.01)
        screen = app.screen
        search = screen.search
        await pilot.press("slash", *"silver", "enter")  # Enter searches at once
        while not search.table.rows:
            await pilot.pause(0.01)
        await pilot.press("enter")  # to the results
        table = search.table
        assert app.focused is table, app.focused
        stop = asyncio.Event()

        async def snapshots():
            while not stop.is_set():
                fake.advance(1000 // HZ)
                fake.publish()
                await asyncio.sleep(1 / HZ)

        async def typing():
            rng = random.Random(1)
            while not stop.is_set():
                word = rng.choice(WORDS)[: rng.randint(2, 5)]
                for i in range(1, len(word) + 1):
                    search.input.value = word[:i]  # as typed: Input.Changed, a debounced search
                    await asyncio.sleep(rng.uniform(0.05, 0.15))
                await asyncio.sleep(rng.uniform(0.3, 0.6))  # the search runs

        done = {}
        original = table.action_cursor

        def action_cursor(delta):
            original(delta)
            token = done.get("token")
            if token is not None:
                done["moved"] = time.perf_counter()
                table.call_after_refresh(token.set)

        table.action_cursor = action_cursor
        tasks = [asyncio.create_task(snapshots()), asyncio.create_task(typing())]
        await asyncio.sleep(0.5)
        rng = random.Random(2)
        lat, handled, missed = [], [], 0
        searches0 = search.searches
        for _ in range(PRESSES):
            if table.cursor_row >= len(table.rows) - 1:
                table.cursor_row = 0
            token = asyncio.Event()
            done["token"] = token
            sent = time.perf_counter()
            app._driver.send_message(events.Key("down", None))
            try:
                await asyncio.wait_for(token.wait(), 2.0)
            except TimeoutError:
                missed += 1
                continue
            finally:
                done["token"] = None
            now = time.perf_counter()
            lat.append((now - sent) * 1000)
            handled.append((done["moved"] - sent) * 1000)
            await asyncio.sleep(rng.uniform(0.02, 0.12))
        out["searches"] = search.searches - searches0
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.update(latency_ms=lat, handled_ms=handled, missed=missed)
    print("LATENCY " + json.dumps(out), flush=True)


asyncio.run(main())
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEHAND_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


def _startup_once(open_likes: bool = False) -> tuple[float, dict[str, Any]]:
    """Spawn the startup child; (ms from spawn to its FRAME line, its figures)."""
    args = [sys.executable, "-c", _STARTUP, *(["--likes"] if open_likes else [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
    )
    assert proc.stdout is not None
    wall = float("nan")
    figures: dict[str, Any] = {}
    try:
        for line in proc.stdout:
            if line.startswith("FRAME "):
                wall = (time.perf_counter() - t0) * 1000
            elif line.startswith("DONE "):
                figures = json.loads(line[5:])
        _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not figures:
        raise RuntimeError(f"startup child failed ({proc.returncode}): {err.strip()[-2000:]}")
    return wall, figures


def _latency() -> dict[str, Any]:
    args = [sys.executable, "-c", _LATENCY, str(PRESSES), str(SNAPSHOT_HZ)]
    r = subprocess.run(
        args, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=CHILD_TIMEOUT_S
    )
    for line in r.stdout.splitlines():
        if line.startswith("LATENCY "):
            out: dict[str, Any] = json.loads(line[8:])
            return out
    raise RuntimeError(f"latency child failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def run() -> list[Result]:
    walls: list[float] = []
    runs: list[dict[str, Any]] = []
    _startup_once()  # warm the page cache and the .pyc files: not counted
    for _ in range(STARTUP_RUNS):
        wall, figures = _startup_once()
        walls.append(wall)
        runs.append(figures)
    inner = [f["first_frame_ms"] for f in runs]
    imports = statistics.median(f["imports_ms"] for f in runs)
    library = statistics.median(f["library_ms"] for f in runs)
    print(
        f"   startup to first frame, wall ms: {', '.join(f'{w:.0f}' for w in walls)}"
        f" (in the child from its first line: median {statistics.median(inner):.0f};"
        f" imports {imports:.0f}, generating the fake library {library:.0f})"
    )
    rss = statistics.median(f["rss_kb"] for f in runs) / 1024
    hwm = max(f["hwm_kb"] for f in runs) / 1024
    _, likes = _startup_once(open_likes=True)
    likes_hwm = likes["likes_hwm_kb"] / 1024
    print(
        f"   memory: RSS at the first frame {rss:.1f} MB (peak {hwm:.1f} MB);"
        f" peak after opening the {likes['likes_rows']}-track liked list {likes_hwm:.1f} MB"
    )
    lat = _latency()
    values = lat["latency_ms"]
    print(
        f"   key latency over {len(values)} presses ({lat['missed']} missed,"
        f" {lat['searches']} searches ran, snapshots at {SNAPSHOT_HZ} Hz): median"
        f" {statistics.median(values):.1f} ms, p90 {percentile(values, 90):.1f},"
        f" max {max(values):.1f}; key handled after median"
        f" {statistics.median(lat['handled_ms']):.1f} ms"
    )
    return [
        check(
            "tui startup to first frame (50k tracks)",
            statistics.median(walls),
            "ms",
            STARTUP_TARGET_MS,
            f"median of {STARTUP_RUNS} processes, from spawn",
        ),
        check("tui RSS at first frame (50k tracks)", rss, "MB", RSS_TARGET_MB),
        check(
            "tui peak RSS with the 50k liked list open",
            likes_hwm,
            "MB",
            RSS_TARGET_MB,
        ),
        check(
            "tui key to refresh (search + snapshots)",
            statistics.median(values) if values else float("nan"),
            "ms",
            KEY_TARGET_MS,
            f"median of {len(values)}; p90 {percentile(values, 90):.1f} ms",
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import print_summary

    print_summary(run())
