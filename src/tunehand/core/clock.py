"""Position arithmetic: where playback is at a given server time.

Plain functions with no imports, so even `tunehand ctl` (which must start fast and
does not load the dataclass model) computes positions exactly as everyone else.
"""


def extrapolate(
    position_ms: int, at_ms: int, playing: bool, rate: float, now_ms: int, duration_ms: int = 0
) -> int:
    """`position_ms` anchored at server time `at_ms`, moved on to `now_ms`.

    The clock only runs while playing with `rate > 0` (audible), and never past the
    track's duration (when known, i.e. > 0) or below zero.
    """
    pos = position_ms
    if playing and rate > 0 and now_ms > at_ms:
        pos += int((now_ms - at_ms) * rate)
    if duration_ms > 0:
        pos = min(pos, duration_ms)
    return max(pos, 0)


def clock(ms: int | None) -> str:
    """A time as people read it: 1:05, 1:02:03; "-:--" when unknown."""
    if ms is None:
        return "-:--"
    s = max(0, ms) // 1000
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
