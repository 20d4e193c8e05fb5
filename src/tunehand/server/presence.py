"""Which devices of an account are connected, across every server instance.

In-process by default (the hub's own connections); with Redis, each instance writes
its devices into a per-account hash (`<prefix>presence:<account id>`) and refreshes
them every few seconds, so a device connected to instance A counts as online on
instance B, and the devices of an instance that died fall out after `STALE_S`.
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
"""Accounts written per round trip of a heartbeat."""
STALE_S = 15.0


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


class RedisPresence:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis: Any = redis_client(url)
        self._prefix = prefix
        self._instance = os.urandom(6).hex()
        self._local = LocalPresence()
        self._task: asyncio.Task[None] | None = None

    def _key(self, account_id: int) -> str:
        return f"{self._prefix}presence:{account_id}"

    def _value(self, caps: tuple[str, ...]) -> str:
        return json.dumps({"i": self._instance, "c": list(caps), "t": time.time()})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        import redis.exceptions

        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self.beat()  # Redis is restarting: the next beat writes everything

    async def beat(self) -> None:
        """Write every device of this instance again, with the time: entries not written
        for STALE_S (their instance died) no longer count. Pipelined, a batch of
        accounts per round trip: one awaited HSET per account kept the loop busy for a
        second of every beat with thousands of accounts."""
        accounts = list(self._local._devices)
        for i in range(0, len(accounts), HEARTBEAT_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for account_id in accounts[i : i + HEARTBEAT_BATCH]:
                # Read now, not when the beat began: a device that left meanwhile (its
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
        # While Redis restarts, the next heartbeat after it is back writes the device.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self._redis.hset(self._key(account_id), device_id, self._value(caps))

    async def leave(self, account_id: int, device_id: str) -> None:
        import redis.exceptions

        await self._local.leave(account_id, device_id)
        # While Redis restarts, the device's entry goes stale and falls out after STALE_S.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            raw = await self._redis.hget(self._key(account_id), device_id)
            if raw is not None and json.loads(raw).get("i") == self._instance:
                await self._redis.hdel(self._key(account_id), device_id)

    async def online(self, account_id: int, capability: str | None = None) -> list[str]:
        return with_capability(await self.devices(account_id), capability)

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
            except ValueError:
                continue
            if now - float(v.get("t", 0)) <= STALE_S:
                name = device.decode() if isinstance(device, bytes) else str(device)
                out[name] = tuple(str(c) for c in v.get("c", []))
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for account_id, devices in list(self._local._devices.items()):
            for device_id in list(devices):
                try:
                    await self.leave(account_id, device_id)
                except Exception:  # Redis may already be gone at shutdown
                    break
        await self._redis.aclose()


def open_presence(
    redis_url: str | None, prefix: str = DEFAULT_PREFIX
) -> LocalPresence | RedisPresence:
    return RedisPresence(redis_url, prefix) if redis_url else LocalPresence()
