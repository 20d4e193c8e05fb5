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
FORGET_S = 3600
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


_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return {added, tostring(now), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""
"""A heartbeat on Redis's clock (instances' clocks may differ): record instance ARGV[1],
forget instances silent for ARGV[2] seconds, and return whether the record was missing,
Redis's time and every instance's last beat."""

_ENTRY = """
local function entry(raw)
  local ok, v = pcall(cjson.decode, raw or '')
  if ok and type(v) == 'table' then return v end
  return {}
end
"""
"""A stored entry decoded, or an empty table for anything else (never a script error)."""

_WRITE = (
    _ENTRY
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 2, #ARGV, 3 do
  local joined = tonumber(ARGV[i + 2])
  local theirs = tonumber(entry(redis.call('HGET', KEYS[1], ARGV[i]))['t'])
  if not joined or not theirs or theirs <= joined then
    local value = cjson.encode({i = ARGV[1], c = cjson.decode(ARGV[i + 1]), t = joined or now})
    redis.call('HSET', KEYS[1], ARGV[i], value)
  end
end
return tostring(now)
"""
)
"""Write the entries of instance ARGV[1] (then per device: id, capabilities as JSON, when
it joined, or '' for a join now on Redis's clock, which the script returns). An entry
written again keeps its join time and never goes over a later join's: that device has
since connected to another instance."""

_LEAVE = (
    _ENTRY
    + """
local v = entry(redis.call('HGET', KEYS[1], ARGV[1]))
if v['i'] == ARGV[2] and tonumber(v['t']) == tonumber(ARGV[3]) then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
)
"""Delete a device's entry if it is the one written for its join at ARGV[3] on instance
ARGV[2] (not a later join, here or on the instance the device joined next)."""


class RedisPresence:
    """Presence on Redis: a hash per account, `device -> {"i": instance, "c": caps,
    "t": joined at}`, and one sorted set `<prefix>instances` of every instance's last
    heartbeat (on Redis's clock), which each instance reads when it beats.

    A device counts as online while the instance that wrote its entry had beaten within
    STALE_S when this instance last read the heartbeats (or, for an instance started
    since, while the entry is that recent). A heartbeat is one round trip whatever the
    number of devices (it used to rewrite every device: with 6,667 accounts that held
    Redis and both instances up for tens of milliseconds every 5 s, a late fan-out each
    time). What a heartbeat no longer heals is healed where it breaks: an instance writes
    all its devices again when its heartbeat record was missing (Redis restarted, as it
    keeps nothing on disk, or this instance was silent for FORGET_S) or a join failed,
    until that succeeds; a leave that failed is retried at every beat."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis: Any = redis_client(url)
        self._prefix = prefix
        self._instance = os.urandom(6).hex()
        self._local = LocalPresence()
        self._joined: dict[tuple[int, str], float] = {}
        """When each device of this instance joined (Redis's clock): a later join of the
        device elsewhere wins over a rewrite of this one."""
        self._leaving: dict[tuple[int, str], float] = {}
        """Devices gone from here (and when they had joined) whose entries may still be
        in Redis: a leave that failed, or one made while a rewrite was under way."""
        self._rewriting = 0
        self._task: asyncio.Task[None] | None = None
        self._beats: dict[str, float] = {}
        """Every instance's last heartbeat, as read at this one's last beat ..."""
        self._beats_at: tuple[float, float] | None = None
        """... at this time (Redis's clock, and this process's monotonic clock)."""
        self._dirty = 0
        """Counts what Redis may lack (it lost the entries, a join failed) ..."""
        self._clean = 0
        """... up to what a rewrite of every device has made good."""

    def _key(self, account_id: int) -> str:
        return f"{self._prefix}presence:{account_id}"

    @property
    def _instances(self) -> str:
        return self._prefix + "instances"

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        import redis.exceptions

        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.beat()  # Redis is restarting: a later beat makes up for it

    async def beat(self) -> None:
        """Say this instance is alive and read when every other one last said so; then
        make good what Redis lacks, if anything."""
        added, now, flat = await self._redis.eval(
            _BEAT, 1, self._instances, self._instance, FORGET_S
        )
        self._beats = {
            (i.decode() if isinstance(i, bytes) else str(i)): float(t)
            for i, t in zip(flat[::2], flat[1::2], strict=True)
        }
        self._beats_at = (float(now), time.monotonic())
        if added:
            self._dirty += 1
        try:
            if self._dirty != self._clean:
                dirty = self._dirty
                await self._write_all()
                self._clean = dirty
        finally:
            if self._leaving:
                await self._retry_leaves()

    async def _write_all(self) -> None:
        """Write every device of this instance again, a batch of accounts per round trip
        (never over a later join of the device on another instance)."""
        accounts = list(self._local._devices)
        self._rewriting += 1
        try:
            await self._write_batches(accounts)
        finally:
            self._rewriting -= 1

    async def _write_batches(self, accounts: list[int]) -> None:
        for i in range(0, len(accounts), HEARTBEAT_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for account_id in accounts[i : i + HEARTBEAT_BATCH]:
                # Read now, not when the rewrite began: a device that left meanwhile (its
                # entry deleted) must not be written back.
                args: list[str | float] = []
                for device, caps in self._local._devices.get(account_id, {}).items():
                    args += [device, json.dumps(caps), self._joined.get((account_id, device), 0)]
                if args:
                    pipe.eval(_WRITE, 1, self._key(account_id), self._instance, *args)
            if len(pipe):
                await pipe.execute()

    async def _retry_leaves(self) -> None:
        left = list(self._leaving.items())
        await self._drop(left)
        for key, joined in left:
            if self._leaving.get(key) == joined:  # not left again meanwhile
                del self._leaving[key]

    async def _drop(self, left: list[tuple[tuple[int, str], float]]) -> None:
        """Delete the entries of these joins here, a batch per round trip."""
        for i in range(0, len(left), HEARTBEAT_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for (account_id, device_id), joined in left[i : i + HEARTBEAT_BATCH]:
                pipe.eval(_LEAVE, 1, self._key(account_id), device_id, self._instance, joined)
            await pipe.execute()

    async def join(self, account_id: int, device_id: str, caps: tuple[str, ...]) -> None:
        import redis.exceptions

        await self._local.join(account_id, device_id, caps)
        key = (account_id, device_id)
        self._joined[key] = self._now()  # until Redis says when
        try:
            joined = await self._redis.eval(
                _WRITE, 1, self._key(account_id), self._instance, device_id, json.dumps(caps), ""
            )
            if key in self._joined:  # (not left meanwhile)
                self._joined[key] = float(joined)
        except (redis.exceptions.RedisError, OSError):
            self._dirty += 1  # Redis is restarting: the beats write it once it is back

    async def leave(self, account_id: int, device_id: str) -> None:
        import redis.exceptions

        await self._local.leave(account_id, device_id)
        joined = self._joined.pop((account_id, device_id), 0.0)
        if self._rewriting:  # a batch already sent may write it back: delete it later too
            self._leaving[(account_id, device_id)] = joined
        try:
            await self._redis.eval(
                _LEAVE, 1, self._key(account_id), device_id, self._instance, joined
            )
        except (redis.exceptions.RedisError, OSError):
            self._leaving[(account_id, device_id)] = joined  # the beats retry it

    async def online(self, account_id: int, capability: str | None = None) -> list[str]:
        return with_capability(await self.devices(account_id), capability)

    def _now(self) -> float:
        """Redis's clock now, as far as this instance knows it (its last beat read it)."""
        if self._beats_at is None:
            return time.time()
        redis_then, here_then = self._beats_at
        return redis_then + time.monotonic() - here_then

    def _alive(self, instance: str, joined: float) -> bool:
        """The entry's instance beat within STALE_S; or, one not among the heartbeats
        last read (it started since), the entry is that recent."""
        if instance == self._instance or self._beats_at is None:
            return True  # (nothing read yet: no instance is known dead)
        beat = self._beats.get(instance, joined)
        return self._now() - beat <= STALE_S

    async def devices(self, account_id: int) -> dict[str, tuple[str, ...]]:
        """Devices on every instance; while Redis is unreachable, this instance's only."""
        import redis.exceptions

        try:
            entries = await self._redis.hgetall(self._key(account_id))
        except (redis.exceptions.RedisError, OSError):
            return await self._local.devices(account_id)
        out: dict[str, tuple[str, ...]] = {}
        for device, raw in entries.items():
            try:
                v = json.loads(raw)
                alive = self._alive(str(v["i"]), float(v["t"]))
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
        left = list({**self._leaving, **self._joined}.items())
        self._local._devices.clear()
        self._joined.clear()
        self._leaving.clear()
        with contextlib.suppress(Exception):  # Redis may already be gone at shutdown
            await self._drop(left)
            await self._redis.zrem(self._instances, self._instance)
        await self._redis.aclose()


def open_presence(
    redis_url: str | None, prefix: str = DEFAULT_PREFIX
) -> LocalPresence | RedisPresence:
    return RedisPresence(redis_url, prefix) if redis_url else LocalPresence()
