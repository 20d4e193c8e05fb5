"""The server's clock: the time as every part of the server stamps it."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
