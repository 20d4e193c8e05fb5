"""Which devices of an account are connected, across every server instance.

In-process by default (the hub's own connections); with Redis, each instance writes
its devices into a per-account hash (`<prefix>presence:<account id>`) and its own
heartbeat into `<prefix>instances` every few seconds, so a device connected to instance
A counts as online on instance B, and the devices of an instance that died fall out
after `STALE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any, Protocol

from tunehand.server.bus import DEFAULT_PREFIX, redis_client

HEARTBEAT_S = 5.0
HEARTBEAT_BATCH = 500
"""Accounts (or devices, at shutdown) written per round trip when an instance writes
all its devices again."""
STALE_S = 15.0
"""A device is offline once its instance has not beaten for this long."""
FORGET_S = 3600.0
"""An instance silent this long leaves the heartbeat set (the entries it left count as
offline; each is replaced when its device joins again)."""


class Presence(Protocol):
    async def join(self, account_id: int, device_id: str, caps: tuple[str, ...]) -> None: ...
    async def leave(self, account_id: int, device_id: str) -> None: ...
    async def online(self, account_id: int, capability: str | None = None) -> list[str]: ...
    async def devices(self, account_id: int) -> dict[str, tuple[str, ...]]: ...
    async def close(self) -> None: ...


def with_capability(devices: dict[str, tuple[str, ...]], capability: str | None) -> list[str]:
    return sorted(d for d, caps in devices.items() if capability is None or capability in caps)


class LocalPresence:
    def __init__(self) -> None:
        self._devices: dict[int, dict[str, tuple[str, ...]]] = {}

    async def join(self, account_id: int, device_id: str, caps: tuple[str, ...]) -> None:
        self._devices.setdefault(account_id, {})[device_id] = caps

    async def leave(self, account_id: int, device_id: str) -> None:
        devices = self._devices.get(account_id, {})
        devices.pop(device_id, None)
        if not devices:
            self._devices.pop(account_id, None)

    async def online(self, account_id: int, capability: str | None = None) -> list[str]:
        return with_capability(await self.devices(account_id), capability)

    async def devices(self, account_id: int) -> dict[str, tuple[str, ...]]:
        """Online devices of the account and their capabilities."""
        return dict(self._devices.get(account_id, {}))

    async def close(self) -> None:
        self._devices.clear()


_LEAVE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v)['i'] == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
"""Delete a device's entry if instance ARGV[2] wrote it (not one written since by the
instance the device joined next)."""


class RedisPresence:
    """Presence on Redis: a hash per account, `device -> {"i": instance, "c": caps,
    "t": written at}`, and one sorted set `<prefix>instances` of every instance's last
    heartbeat, which each instance reads when it beats.

    A device counts as online while the instance that wrote its entry has beaten
    within STALE_S (or, for an instance started since the last read, while the entry
    is that recent). A heartbeat is one round trip whatever the number of devices (it
    used to rewrite every device: with 6,667 accounts that held Redis and both
    instances up for tens of milliseconds every 5 s, a late fan-out each time). Entries
    are written again only when Redis may have lost them: when this instance's heartbeat
    record was missing (Redis restarted, as it keeps nothing on disk, or this instance
    was silent for FORGET_S), or after a join or leave that failed."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis: Any = redis_client(url)
        self._prefix = prefix
        self._instance = os.urandom(6).hex()
        self._local = LocalPresence()
        self._task: asyncio.Task[None] | None = None
        self._beats: dict[str, float] = {}
        """Every instance's last heartbeat (Unix time), as read at this one's last beat."""
        self._rewrite = False
        """A join or leave failed: the next beat writes every device again."""

    def _key(self, account_id: int) -> str:
        return f"{self._prefix}presence:{account_id}"

    @property
    def _instances(self) -> str:
        return self._prefix + "instances"

    def _value(self, caps: tuple[str, ...]) -> str:
        return json.dumps({"i": self._instance, "c": list(caps), "t": time.time()})

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        import redis.exceptions

        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.beat()  # Redis is restarting: a later beat writes everything

    async def beat(self) -> None:
        """Say this instance is alive, and read when every other one last said so."""
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._instances, {self._instance: now})
        pipe.zremrangebyscore(self._instances, "-inf", now - FORGET_S)
        pipe.zrange(self._instances, 0, -1, withscores=True)
        added, _, beats = await pipe.execute()
        self._beats = {(i.decode() if isinstance(i, bytes) else i): t for i, t in beats}
        if added or self._rewrite:
            self._rewrite = False
            await self._write_all()

    async def _write_all(self) -> None:
        """Write every device of this instance, a batch of accounts per round trip."""
        accounts = list(self._local._devices)
        for i in range(0, len(accounts), HEARTBEAT_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for account_id in accounts[i : i + HEARTBEAT_BATCH]:
                # Read now, not when the rewrite began: a device that left meanwhile (its
                # entry deleted) must not be written back.
                devices = self._local._devices.get(account_id)
                if devices:
                    pipe.hset(
                        self._key(account_id),
                        mapping={d: self._value(c) for d, c in devices.items()},
                    )
            if len(pipe):
                await pipe.execute()

    async def join(self, account_id: int, device_id: str, caps: tuple[str, ...]) -> None:
        import redis.exceptions

        await self._local.join(account_id, device_id, caps)
        try:
            await self._redis.hset(self._key(account_id), device_id, self._value(caps))
        except (redis.exceptions.RedisError, OSError):
            self._rewrite = True  # Redis is restarting: the first beat after it writes it

    async def leave(self, account_id: int, device_id: str) -> None:
        import redis.exceptions

        await self._local.leave(account_id, device_id)
        try:
            await self._redis.eval(_LEAVE, 1, self._key(account_id), device_id, self._instance)
        except (redis.exceptions.RedisError, OSError):
            # Redis is restarting. If it kept the entry, the rewrite does not delete it:
            # it counts until this instance stops beating or the device joins again.
            self._rewrite = True

    async def online(self, account_id: int, capability: str | None = None) -> list[str]:
        return with_capability(await self.devices(account_id), capability)

    def _alive(self, instance: str, written: float, now: float) -> bool:
        """The entry's instance beat within STALE_S; or, one not among the heartbeats
        last read (it started since), the entry is that recent."""
        if instance == self._instance:
            return True
        return now - self._beats.get(instance, written) <= STALE_S

    async def devices(self, account_id: int) -> dict[str, tuple[str, ...]]:
        """Devices on every instance; while Redis is unreachable, this instance's only."""
        import redis.exceptions

        try:
            entries = await self._redis.hgetall(self._key(account_id))
        except (redis.exceptions.RedisError, OSError):
            return await self._local.devices(account_id)
        now = time.time()
        out: dict[str, tuple[str, ...]] = {}
        for device, raw in entries.items():
            try:
                v = json.loads(raw)
                alive = self._alive(str(v["i"]), float(v["t"]), now)
                caps = tuple(str(c) for c in v["c"])
            except (ValueError, KeyError, TypeError):
                continue
            if alive:
                out[device.decode() if isinstance(device, bytes) else str(device)] = caps
        return out

    async def close(self) -> None:
        """Delete this instance's entries (pipelined) and its heartbeat record."""
        if self._task is not None:
            self._task.cancel()
        left = [(a, d) for a, devices in self._local._devices.items() for d in devices]
        self._local._devices.clear()
        with contextlib.suppress(Exception):  # Redis may already be gone at shutdown
            for i in range(0, len(left), HEARTBEAT_BATCH):
                pipe = self._redis.pipeline(transaction=False)
                for account_id, device_id in left[i : i + HEARTBEAT_BATCH]:
                    pipe.eval(_LEAVE, 1, self._key(account_id), device_id, self._instance)
                await pipe.execute()
            await self._redis.zrem(self._instances, self._instance)
        await self._redis.aclose()


def open_presence(
    redis_url: str | None, prefix: str = DEFAULT_PREFIX
) -> LocalPresence | RedisPresence:
    return RedisPresence(redis_url, prefix) if redis_url else LocalPresence()
