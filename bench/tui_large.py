"""The TUI's liked list at 1,000, 10,000 and 50,000 tracks (the `FakeBackend`'s
`big_library`), headless, in this process.

For each size, `TunehandApp` runs headless on a fake whose likes are the whole library
(the queue then holds at most MAX_QUEUE of them). The figure is the time, from the key
`3` to the session playing, of the walk tests/test_tui_large.py checks: open the liked
list and wait until it is drawn, `end` to its last row, then `pageup`, `up`, `enter`
to play from there, every step settled (every worker done, the screen refreshed). Also
printed: how many rows were formatted (only the visible ones should be). Nothing here
should grow with the size of the list; the target is the generous bound the test once
asserted, for the 50,000-track case.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import Result, check

SIZES = (1_000, 10_000, 50_000)
RUNS = 3
TARGET_MS = 10_000.0
"""For the 50,000-track case; the smaller ones are for reference."""


async def _walk(size: int) -> tuple[float, int]:
    """One run: (ms from `3` to playing, rows formatted)."""
    from tests.test_tui_support import commands, main_screen, running, settle

    from tunehand.tui.backend_fake import FakeBackend, big_library

    library = big_library(size)
    fake = FakeBackend(library)
    fake.likes_ids = list(library.tracks)
    async with running(fake) as (app, pilot, _fake):
        started = time.perf_counter()
        await pilot.press("3")
        await settle(pilot)
        table = main_screen(app).likes.table
        if len(table.rows) != size:
            raise RuntimeError(f"the liked list shows {len(table.rows)} rows, not {size}")
        formatted = 0
        original = table._cells

        def cells(row: Any) -> Any:
            nonlocal formatted
            formatted += 1
            return original(row)

        table._cells = cells
        await pilot.press("end")
        await settle(pilot)
        await pilot.press("pageup", "up", "enter")
        await settle(pilot)
        elapsed = (time.perf_counter() - started) * 1000
        if not commands(fake) or commands(fake)[0][0] != "play":
            raise RuntimeError(f"enter did not play: {commands(fake)}")
        if fake.state.current_entry is None:
            raise RuntimeError("nothing plays after enter")
        return elapsed, formatted


def run() -> list[Result]:
    results = []
    for size in SIZES:
        times, rows = [], []
        for _ in range(RUNS):
            ms, formatted = asyncio.run(_walk(size))
            times.append(ms)
            rows.append(formatted)
        median = statistics.median(times)
        print(
            f"   {size:>6} liked tracks: open, end, play {median:.0f} ms median"
            f" ({', '.join(f'{t:.0f}' for t in times)}); rows formatted {max(rows)}"
        )
        results.append(
            check(
                f"tui liked list open to play ({size // 1000}k tracks)",
                median,
                "ms",
                TARGET_MS if size == SIZES[-1] else None,
                f"median of {RUNS}; {max(rows)} rows formatted",
            )
        )
    return results


if __name__ == "__main__":
    from bench.__main__ import print_summary

    print_summary(run())
