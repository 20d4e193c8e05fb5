"""Reconnect delays: jittered exponential backoff that never gives up.

Pure: the caller passes a random source (`random.Random`, or a fixed one in tests).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

INITIAL_S = 0.25
FACTOR = 2.0
MAX_S = 15.0


def backoff(
    rng: random.Random, initial: float = INITIAL_S, maximum: float = MAX_S
) -> Iterator[float]:
    """Delays in seconds: full jitter over an exponentially growing cap."""
    cap = min(initial, maximum)
    while True:
        yield rng.uniform(cap / 2, cap)
        cap = min(cap * FACTOR, maximum)
