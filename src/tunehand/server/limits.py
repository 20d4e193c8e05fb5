"""Bounds on what one client, one network or one account can make the server do.

- `network(address)`: the prefix an address belongs to (/24 for IPv4, /64 for IPv6),
  a second key next to the exact address for every per-address limit: one host holds
  many addresses of its network (a /64 is one IPv6 subnet; loopback is a /8).
- `HashGate`: password hashing (argon2, ~50 ms of a core and 64 MiB each) runs at most
  `slots` at a time server-wide, and a network holds at most `per_network` of them
  (running or waiting). Beyond the first a request waits at most `wait_s`; beyond the
  second it is refused at once. So a flood from one network takes a few slots and
  everyone else's logins keep theirs.
- `Buckets`: token buckets by key (an account's REST requests), kept in a bounded map.
- `Quotas`: how much one account may store.

No I/O here but the monotonic clock (given as an argument where it matters).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tunehand.core.model import MAX_QUEUE

DEFAULT_MAX_DEVICES = 64
"""Devices of one account online at once (`serve --max-devices`)."""


def network(address: str) -> str:
    """`address`'s network: "198.51.100.0/24", "2001:db8:1:2::/64"; a name that is no
    IP address (a test client, a proxy's odd header) is its own network."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


class Busy(Exception):
    """Too much hashing at once: try again in `retry_after_s`."""

    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HashGate:
    def __init__(self, slots: int, per_network: int, wait_s: float) -> None:
        self.slots, self.per_network, self.wait_s = slots, per_network, wait_s
        self._sem = asyncio.Semaphore(slots)
        self._held: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, address: str) -> AsyncIterator[None]:
        net = network(address)
        if self._held.get(net, 0) >= self.per_network:
            raise Busy(1, "too many logins from this network at once")
        self._held[net] = self._held.get(net, 0) + 1
        try:
            try:
                await asyncio.wait_for(self._sem.acquire(), self.wait_s)
            except TimeoutError:
                raise Busy(
                    max(1, int(self.wait_s)), "the server is busy checking passwords"
                ) from None
            try:
                yield
            finally:
                self._sem.release()
        finally:
            left = self._held[net] - 1
            if left:
                self._held[net] = left
            else:
                del self._held[net]


def default_hash_gate() -> HashGate:
    """Twice the cores (argon2 runs in threads, off the event loop), and a network a
    quarter of them (at least 2): a flood from one network always leaves slots to the
    others."""
    slots = max(4, 2 * (os.cpu_count() or 1))
    return HashGate(slots=slots, per_network=max(2, slots // 4), wait_s=10.0)


class Buckets:
    """Token buckets by key: `rate` per second, up to `burst`. At most `max_keys` are
    kept; when full, the map starts again (every key gets a full bucket: a bound on
    memory, not on anyone's rate)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._levels: dict[object, tuple[float, float]] = {}

    def take(self, key: object, now: float | None = None) -> float:
        """0.0 when a token was taken; else the seconds until one is there."""
        now = time.monotonic() if now is None else now
        level, at = self._levels.get(key, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < 1:
            self._levels[key] = (level, now)
            return (1 - level) / self.rate
        if key not in self._levels and len(self._levels) >= self.max_keys:
            self._levels.clear()
        self._levels[key] = (level - 1, now)
        return 0.0


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one account may keep. A write past one is refused (`QuotaError`, over HTTP
    409 `quota`; a command past the queue's, `quota`)."""

    playlists: int = 1_000
    playlist_entries: int = 10_000
    likes: int = 50_000
    devices: int = 500
    """Device rows (logins), revoked ones included until the purge forgets them."""
    remote_tracks: int = 10_000
    queue: int = MAX_QUEUE
    """(Enforced by the core: a command past it is refused as `invalid`.)"""


QUOTAS = Quotas()
