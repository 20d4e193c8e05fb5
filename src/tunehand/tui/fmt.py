"""How the TUI writes times and tracks: pure functions, no Textual."""

from __future__ import annotations

from collections.abc import Sequence

from tunehand.core.clock import clock
from tunehand.core.protocol import TrackView

TRACK_COLUMNS = ("#", "Title", "Artist", "Album", "Time")


def duration(ms: int) -> str:
    return clock(ms) if ms > 0 else "-:--"


def track_cells(t: TrackView, number: str = "") -> Sequence[str]:
    return (
        number or (str(t.track_no) if t.track_no else ""),
        t.title,
        t.artist or "Unknown artist",
        t.album,
        duration(t.duration_ms),
    )


def progress_bar(pos_ms: int, dur_ms: int, width: int) -> tuple[int, bool]:
    """How many full cells of `width` are done, and whether a half cell follows."""
    if dur_ms <= 0 or width <= 0:
        return 0, False
    halves = min(2 * width, max(0, pos_ms) * 2 * width // dur_ms)
    return halves // 2, bool(halves % 2)
