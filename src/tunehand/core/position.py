"""The audible position of the device that plays, and when its session anchor is wrong.

A player publishes its position in steps (mpv refreshes `time-pos` on its playloop
ticks, every few to ~50 ms), and each step is exact at the instant it was published:
what was audible then. So a device reports a step as it is, `position_ms` at the
step's own time, never moved on by a guess of the time since (that guess runs ahead
of the speaker whenever the output's clock is slower than the server's).

The output's clock is not the server's: a sound card's crystal is off by tens of ppm,
and an output that underruns (a small buffer, a slow or busy CPU) plays measurably
slower, ~9% with mpv's null output at a 10 ms buffer. The model fits the steps of the
last RATE_WINDOW_MS to a line, and reports that line's rate with the position, so
the server extrapolates at the speed the device really plays; whenever a step is
more than DRIFT_MS off the session's anchor, the device re-anchors it. A player that
says it waits for data and publishes nothing for STALL_MS (a stall) is reported at
rate 0 from then on, so nobody runs the clock ahead of the speaker.

Pure: times come in as arguments (server milliseconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tunehand.core.model import Position

DRIFT_MS = 5
"""Re-anchor when an audible step is this far off the session's line (the target is
< 10 ms; the server re-anchors a report REANCHOR_TOLERANCE_MS off its line)."""
RATE_WINDOW_MS = 3_000
RATE_MIN_SPAN_MS = 400
"""The steps must span this long before their rate is trusted (1.0 until then)."""
RATE_MIN_STEPS = 6
RATE_SNAP = 0.0015
"""A rate this close to 1 is reported as 1: a crystal's drift (< 100 ppm) is left to the
position check, which re-anchors it every few minutes."""
RATE_DIGITS = 3
RATE_LIMITS = (0.5, 1.5)
JUMP_MS = 150
"""A step this far off the line of the steps before it is a discontinuity (a seek, a
restart): the steps before it no longer say anything about the rate."""
STALL_MS = 100
"""No step for this long while the player says it is waiting (mpv: `core-idle` while not
paused: buffering, a stream that stalled): the output stalled. Missing steps alone are
not a stall: an mpv starved of CPU publishes nothing while its output plays on from its
buffer (PulseAudio's is large), and a transfer planned from a rate-0 anchor then starts
the target far behind (seen: 249 ms). A stall the player does not see shows in the next
step, which re-anchors at once."""


@dataclass(frozen=True, slots=True)
class Step:
    position_ms: int
    at_ms: int


class PositionModel:
    """The audible steps of one stretch of continuous playback, and their rate."""

    def __init__(self) -> None:
        self._steps: deque[Step] = deque()

    def reset(self) -> None:
        """A discontinuity (load, seek, pause, resume, another entry): start over."""
        self._steps.clear()

    @property
    def steps(self) -> int:
        return len(self._steps)

    def observe(self, position_ms: int, at_ms: int) -> bool:
        """Take a published step; False when it is not new (the same step again)."""
        steps = self._steps
        if steps and at_ms <= steps[-1].at_ms:
            return False
        if steps:
            last = steps[-1]
            if position_ms == last.position_ms:
                return False  # not a step: the player did not publish anything new
            expected = last.position_ms + (at_ms - last.at_ms) * self.rate()
            if abs(position_ms - expected) > JUMP_MS:
                steps.clear()
        steps.append(Step(position_ms, at_ms))
        while len(steps) > 2 and steps[-1].at_ms - steps[0].at_ms > RATE_WINDOW_MS:
            steps.popleft()
        return True

    def rate(self) -> float:
        """The audible position's speed against the server clock (least squares over the
        window), rounded; 1.0 until the steps span RATE_MIN_SPAN_MS."""
        steps = self._steps
        if len(steps) < RATE_MIN_STEPS or steps[-1].at_ms - steps[0].at_ms < RATE_MIN_SPAN_MS:
            return 1.0
        n = len(steps)
        t0, p0 = steps[0].at_ms, steps[0].position_ms
        mt = sum(s.at_ms - t0 for s in steps) / n
        mp = sum(s.position_ms - p0 for s in steps) / n
        sxx = sum((s.at_ms - t0 - mt) ** 2 for s in steps)
        sxy = sum((s.at_ms - t0 - mt) * (s.position_ms - p0 - mp) for s in steps)
        if sxx <= 0:
            return 1.0
        r = min(max(sxy / sxx, RATE_LIMITS[0]), RATE_LIMITS[1])
        return 1.0 if abs(r - 1.0) < RATE_SNAP else round(r, RATE_DIGITS)

    def check(self, anchor: Position, now_ms: int, waiting: bool = False) -> Position | None:
        """The anchor to report when the last step is off `anchor`'s line by more than
        DRIFT_MS (or the output stalled while `anchor` runs: `waiting`, the player says
        it waits for data); None when it is right."""
        if not self._steps:
            return None
        last = self._steps[-1]
        if waiting and now_ms - last.at_ms > STALL_MS:
            # Stalled: the position is still the last step's, and it does not move.
            if anchor.rate == 0 and abs(anchor.at(now_ms) - last.position_ms) <= DRIFT_MS:
                return None
            return Position(last.position_ms, now_ms, True, 0.0)
        off = last.position_ms - anchor.at(last.at_ms)
        rate = self.rate()
        if abs(off) > DRIFT_MS or (anchor.rate == 0) != (rate == 0):
            return Position(last.position_ms, last.at_ms, True, rate)
        return None
