"""Clock offset to the server from NTP-style exchanges (t0, t1, t2, t3).

t0 and t3 are the client's monotonic clock (ms) when the request left and the reply
arrived; t1 and t2 the server's clock when it received and answered. The estimate
uses the lowest-delay samples, which are the least skewed by queueing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEEP = 16
BEST = 4


@dataclass(frozen=True, slots=True)
class Sample:
    offset_ms: float
    delay_ms: float


def sample(t0: float, t1: float, t2: float, t3: float) -> Sample:
    offset = ((t1 - t0) + (t2 - t3)) / 2
    delay = max(0.0, (t3 - t0) - (t2 - t1))
    return Sample(offset, delay)


@dataclass
class TimeSync:
    samples: list[Sample] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.samples.append(s)
        del self.samples[:-KEEP]

    @property
    def ready(self) -> bool:
        return bool(self.samples)

    @property
    def offset_ms(self) -> float:
        """server clock - local monotonic clock, from the lowest-delay samples."""
        if not self.samples:
            return 0.0
        best = sorted(self.samples, key=lambda s: s.delay_ms)[:BEST]
        return sorted(s.offset_ms for s in best)[len(best) // 2]

    @property
    def rtt_ms(self) -> float:
        if not self.samples:
            return 0.0
        return min(s.delay_ms for s in self.samples)

    def server_ms(self, local_ms: float) -> int:
        return int(local_ms + self.offset_ms)

    def local_ms(self, server_ms: float) -> float:
        return server_ms - self.offset_ms
