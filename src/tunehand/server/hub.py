"""Live channel connections of this instance, and fan-out to them through the bus.

Sending never waits: a message goes to the connection's transport at once, so one slow
device never delays the others; a device that stops reading is disconnected once too
much waits for it (`tunehand.server.websocket.MAX_BUFFERED_OUT`) and resyncs when it
reconnects.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from tunehand.server.bus import Bus
from tunehand.server.presence import LocalPresence, Presence, with_capability

ALL = "*"
DEVICES = -1
"""The `version` of a devices message on the bus: some device of the account joined or
left, on some instance."""
PRESENCE_CACHE_S = 5.0
"""How long the devices online of an account with devices here are taken as known,
unless a devices message says they changed (a heartbeat is 5 s, staleness 15 s)."""
TRANSFERS = "transfers"
"""Topic for a transfer target's ready/failed, which may reach another instance."""


class Connection(Protocol):
    """One device's channel on this instance (`tunehand.server.channel.Channel`)."""

    account_id: int
    device_id: str
    capabilities: tuple[str, ...]

    def push(self, data: bytes) -> bool:
        """Send `data` (or keep it until `hello` is out); False when the device is too
        slow to take it."""
        ...

    def close(self, code: int, reason: str) -> None: ...


def topic(account_id: int) -> str:
    """The account's topic (on Redis, the channel `<prefix>acct:<account id>`)."""
    return f"acct:{account_id}"


class Hub:
    def __init__(self, bus: Bus, presence: Presence | None = None) -> None:
        self.bus = bus
        self.presence: Presence = presence or LocalPresence()
        self._conns: dict[int, dict[str, list[Connection]]] = {}
        self._online: dict[int, tuple[float, dict[str, tuple[str, ...]]]] = {}
        """Presence of accounts with devices here, read at most every PRESENCE_CACHE_S:
        every command asks which devices are online (on Redis a round trip)."""
        self._forgets = 0
        self._admitted: dict[int, dict[str, int]] = {}
        """Devices let in by `admit` and not yet attached (how many connections each)."""
        self.closing = False
        self.on_transfer_reply: Callable[[dict[str, Any]], None] | None = None
        self.on_version: Callable[[int, int, bytes], None] | None = None
        """Called with (account, version, state message) for every session version fanned
        out through the bus, by this instance or another one."""

    async def start(self) -> None:
        await self.bus.start(self._deliver)
        await self.bus.subscribe(TRANSFERS)

    def local_accounts(self) -> list[int]:
        return list(self._conns)

    def push_local(self, account_id: int, payload: bytes) -> None:
        """Send to this instance's connections of the account only (a resync)."""
        for conns in list(self._conns.get(account_id, {}).values()):
            for c in list(conns):
                c.push(payload)

    async def transfer_reply(
        self, account_id: int, device_id: str, transfer_id: str, ok: bool, message: str
    ) -> None:
        reply = {"a": account_id, "d": device_id, "t": transfer_id, "ok": ok, "m": message}
        await self.bus.publish(TRANSFERS, json.dumps(reply).encode())

    async def online(self, account_id: int, capability: str | None = None) -> list[str]:
        """Devices of the account connected to any instance (with `capability`, if given).

        For an account with devices here the answer is kept until a devices message
        (a join or leave on any instance) or PRESENCE_CACHE_S; this instance hears those
        only for such accounts, so the others are asked every time."""
        if account_id not in self._conns:
            return await self.presence.online(account_id, capability)
        now = time.monotonic()
        hit = self._online.get(account_id)
        if hit is None or hit[0] <= now:
            forgets = self._forgets
            devices = await self.presence.devices(account_id)
            hit = (now + PRESENCE_CACHE_S, devices)
            if forgets == self._forgets and account_id in self._conns:
                self._online[account_id] = hit  # nothing changed while it was read
        return with_capability(hit[1], capability)

    def _forget_online(self, account_id: int) -> None:
        self._forgets += 1
        self._online.pop(account_id, None)

    def connection_count(self) -> int:
        return sum(len(c) for d in self._conns.values() for c in d.values())

    async def admit(self, account_id: int, device_id: str, most: int) -> bool:
        """Let a device of the account in unless `most` other devices are online (on any
        instance) or being let in here; `attach` (or `release`) must follow. Joins on
        this instance are counted exactly; joins at the same moment on others, as far
        as presence shows them."""
        online = set(await self.presence.devices(account_id))
        admitted = self._admitted.setdefault(account_id, {})
        online.update(self._conns.get(account_id, {}), admitted)
        if device_id not in online and len(online) >= most:
            if not admitted:
                del self._admitted[account_id]
            return False
        admitted[device_id] = admitted.get(device_id, 0) + 1
        return True

    def release(self, account_id: int, device_id: str) -> None:
        """Undo an `admit` (the connection attached, or went away before it could)."""
        admitted = self._admitted.get(account_id, {})
        left = admitted.get(device_id, 0) - 1
        if left > 0:
            admitted[device_id] = left
        else:
            admitted.pop(device_id, None)
            if not admitted:
                self._admitted.pop(account_id, None)

    async def attach(self, conn: Connection) -> None:
        """Add an admitted connection (see `admit`)."""
        devices = self._conns.setdefault(conn.account_id, {})
        if not devices:
            await self.bus.subscribe(topic(conn.account_id))
        devices.setdefault(conn.device_id, []).append(conn)
        self.release(conn.account_id, conn.device_id)
        caps = {c for cs in devices[conn.device_id] for c in cs.capabilities}
        await self.presence.join(conn.account_id, conn.device_id, tuple(sorted(caps)))
        self._forget_online(conn.account_id)
        # The caller starts the connection's writer once it has sent `hello`, so nothing
        # queued meanwhile overtakes it.

    async def detach(self, conn: Connection) -> bool:
        """Forget a connection. True when it was the device's last one."""
        devices = self._conns.get(conn.account_id, {})
        conns = devices.get(conn.device_id, [])
        if conn in conns:
            conns.remove(conn)
        last = not conns
        if last:
            devices.pop(conn.device_id, None)
            await self.presence.leave(conn.account_id, conn.device_id)
            self._forget_online(conn.account_id)
        if not devices:
            self._conns.pop(conn.account_id, None)
            await self.bus.unsubscribe(topic(conn.account_id))
        return last

    async def send(self, account_id: int, payload: bytes, to: str = ALL, version: int = 0) -> None:
        """Send to every connection of the account (or one device) on every instance;
        `version`: for a state message (to ALL), the session version it carries; DEVICES
        for a devices message; else 0.

        On the bus: `<version>\n<to>\n<payload>`. A JSON payload holds no raw newline,
        so the target is what lies between the first and the last one."""
        await self.bus.publish(topic(account_id), b"%d\n%s\n%s" % (version, to.encode(), payload))

    async def _deliver(self, name: str, data: bytes) -> None:
        if name == TRANSFERS:
            if self.on_transfer_reply is not None:
                with contextlib.suppress(ValueError, TypeError):
                    self.on_transfer_reply(json.loads(data))
            return
        try:
            account_id = int(name.rsplit(":", 1)[1])
            head, rest = data.split(b"\n", 1)
            version = int(head)
            to, payload = rest.rsplit(b"\n", 1)
        except (ValueError, IndexError):
            return
        if version == DEVICES:
            self._forget_online(account_id)
        elif version > 0 and self.on_version is not None:
            self.on_version(account_id, version, payload)
        devices = self._conns.get(account_id)
        if not devices:
            return
        target = to.decode()
        conns = (
            [c for cs in devices.values() for c in cs] if target == ALL else devices.get(target, [])
        )
        for c in list(conns):
            if not c.push(payload):
                c.close(1013, "too slow: reconnect and resync")

    async def close_device(self, account_id: int, device_id: str, code: int, reason: str) -> None:
        for c in list(self._conns.get(account_id, {}).get(device_id, [])):
            c.close(code, reason)

    def begin_shutdown(self) -> None:
        self.closing = True

    async def close_all(self, code: int, reason: str) -> None:
        self.closing = True
        for devices in list(self._conns.values()):
            for conns in list(devices.values()):
                for c in list(conns):
                    c.close(code, reason)
