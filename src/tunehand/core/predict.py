"""Which device the user moves to next: the warm next device's prediction.

Pure: the account's past transfers, the active device and the hour of day come in as
arguments. The rule: among the past transfers away from the active device, the target
seen most often around this hour (the same hour or one either side, on the 24 h
circle); when no target reaches `MIN_COUNT` there, the one seen most often at any hour.
Ties go to the most recent. A target seen fewer than `MIN_COUNT` times is never
predicted (one transfer does not warm a device).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_COUNT = 2
"""Transfers to a target (from the active device) before it is predicted."""
HOUR_SPAN = 1
"""Hours either side of the current one that count as "around this hour"."""
HISTORY_MAX = 200
"""Past transfers kept per account (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class PastTransfer:
    """A completed transfer: `source` to `target` at `at_ms`, in hour `hour` (0-23)."""

    source: str
    target: str
    hour: int
    at_ms: int


def _near(a: int, b: int, span: int) -> bool:
    d = abs(a - b) % 24
    return min(d, 24 - d) <= span


def _best(past: Iterable[PastTransfer], min_count: int) -> str | None:
    counts: dict[str, tuple[int, int]] = {}  # target: (count, latest at_ms)
    for t in past:
        n, latest = counts.get(t.target, (0, t.at_ms))
        counts[t.target] = (n + 1, max(latest, t.at_ms))
    ranked = sorted(counts.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]), reverse=True)
    if not ranked or ranked[0][1][0] < min_count:
        return None
    return ranked[0][0]


def next_device(
    past: Iterable[PastTransfer],
    active: str,
    hour: int,
    *,
    min_count: int = MIN_COUNT,
) -> str | None:
    """The device the user most likely moves to from `active` at `hour`; None: no guess."""
    away = [t for t in past if t.source == active and t.target != active]
    around = [t for t in away if _near(t.hour, hour, HOUR_SPAN)]
    return _best(around, min_count) or _best(away, min_count)
