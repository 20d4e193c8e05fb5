"""Live channel connections of this instance, and fan-out to them through the bus.

Sending never waits: a message goes to the connection's transport at once, so one slow
device never delays the others; a device that stops reading is disconnected once too
much waits for it (`tunehand.server.websocket.MAX_BUFFERED_OUT`) and resyncs when it
reconnects.
"""

from __future__ import annotations

import contextlib
import json
import os
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
CONTROL = "control"
"""Topic every instance (and worker) listens on for revocations: a device revoked, a
login logged out, an account removed, a device's newer connection taking over."""
REVOKED_DEVICE = "device"
REVOKED_FAMILY = "family"
REMOVED_ACCOUNT = "account"
REPLACED = "replace"
JAM = "jam"
"""A jam started, ended or changed its members: the accounts named ("m") move their
devices to the session they are now on, told the notice ("n")."""
RECENT_S = 30.0
"""How long a revocation is remembered, for a channel that authenticated before it and
attaches after it went by; and for stream and art URLs, how long a revoked device is
refused without asking the database (`revoked_device`)."""
CLOSE_REVOKED = 4003
CLOSE_REPLACED = 4009


class Connection(Protocol):
    """One device's channel on this instance (`tunehand.server.channel.Channel`)."""

    account_id: int
    device_id: str
    capabilities: tuple[str, ...]
    family: str
    """The token family (login) the connection authenticated with."""
    joined: tuple[int, str]
    """When it attached (ns since the epoch) and a random tag: the later of two
    connections of one device wins."""
    replaced: bool
    """Set when a newer connection of its device took over (its loss is no loss)."""

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
        self._recent: dict[tuple[str, int, str], float] = {}
        """Revocations heard within RECENT_S: (kind, account, device or family) -> until."""
        self._revoked_ids: dict[str, float] = {}
        """Devices revoked within RECENT_S (by id alone, for stream and art links)."""
        self._home: dict[int, int] = {}
        """Guest accounts with devices here -> the jam host whose session they are on."""
        self._guests: dict[int, set[int]] = {}
        """Jam hosts -> their guest accounts with devices here."""
        self._subscribed: set[int] = set()
        self._jams_seen: dict[str, float] = {}
        self.on_jam: Callable[[list[int], str], None] | None = None
        """Called with (accounts, notice) when a jam change (here or on another instance)
        moved those accounts to another session."""

    async def start(self) -> None:
        await self.bus.start(self._deliver)
        await self.bus.subscribe(TRANSFERS)
        await self.bus.subscribe(CONTROL)

    # --- revocation ---------------------------------------------------------------

    async def revoke(self, kind: str, account_id: int, value: str = "") -> None:
        """Close, on every instance, the channels of a revoked device (`REVOKED_DEVICE`,
        value: its id), of a logged-out login (`REVOKED_FAMILY`, value: the family) or of
        a removed account (`REMOVED_ACCOUNT`). Call after the change is committed."""
        msg = {"k": kind, "a": account_id, "v": value}
        self._control(msg)  # here at once, whatever the bus does
        await self.bus.publish(CONTROL, json.dumps(msg).encode())

    def revoked_lately(self, device_id: str) -> bool:
        """Whether the device was revoked within RECENT_S, as heard here (on any instance)."""
        until = self._revoked_ids.get(device_id)
        return until is not None and until > time.monotonic()

    def _revoked(self, conn: Connection) -> str | None:
        """Why a connection about to attach is revoked already, if it is."""
        now = time.monotonic()
        for key, why in (
            ((REVOKED_DEVICE, conn.account_id, conn.device_id), "this device was revoked"),
            ((REVOKED_FAMILY, conn.account_id, conn.family), "logged out"),
            ((REMOVED_ACCOUNT, conn.account_id, ""), "the account was removed"),
        ):
            until = self._recent.get(key)
            if until is not None and until > now:
                return why
        return None

    def _remember(self, key: tuple[str, int, str]) -> None:
        now = time.monotonic()
        if len(self._recent) > 10_000:
            self._recent = {k: u for k, u in self._recent.items() if u > now}
        self._recent[key] = now + RECENT_S

    def _control(self, msg: Any) -> None:
        try:
            kind, account_id, value = str(msg["k"]), int(msg["a"]), str(msg["v"])
        except (KeyError, TypeError, ValueError):
            return
        if kind == JAM:
            self._jam_message(msg)
            return
        devices = self._conns.get(account_id, {})
        if kind == REPLACED:
            try:
                stamp = (int(msg["t"]), str(msg["n"]))
            except (KeyError, TypeError, ValueError):
                return
            for c in list(devices.get(value, [])):
                if c.joined < stamp:
                    c.replaced = True
                    c.close(CLOSE_REPLACED, "replaced by a newer connection of this device")
            return
        if kind == REMOVED_ACCOUNT:
            self._remember((kind, account_id, ""))
            doomed = [c for cs in devices.values() for c in cs]
            why = "the account was removed"
        elif kind == REVOKED_DEVICE:
            self._remember((kind, account_id, value))
            now = time.monotonic()
            if len(self._revoked_ids) > 10_000:
                self._revoked_ids = {d: u for d, u in self._revoked_ids.items() if u > now}
            self._revoked_ids[value] = now + RECENT_S
            doomed = list(devices.get(value, []))
            why = "this device was revoked"
        elif kind == REVOKED_FAMILY:
            self._remember((kind, account_id, value))
            doomed = [c for cs in devices.values() for c in cs if c.family == value]
            why = "logged out"
        else:
            return
        for c in doomed:
            c.close(CLOSE_REVOKED, why)

    # --- jams -------------------------------------------------------------------

    async def jam_changed(self, accounts: list[int], notice: str) -> None:
        """Tell every instance (this one at once) that `accounts` are on another session
        now. Call after the change is committed."""
        msg = {"k": JAM, "a": 0, "v": "", "m": accounts, "n": notice, "id": os.urandom(8).hex()}
        self._control(msg)
        await self.bus.publish(CONTROL, json.dumps(msg).encode())

    def _jam_message(self, msg: Any) -> None:
        try:
            accounts = [int(a) for a in msg["m"]]
            notice, tag = str(msg["n"]), str(msg["id"])
        except (KeyError, TypeError, ValueError):
            return
        now = time.monotonic()
        if tag in self._jams_seen:
            return  # ours, heard back from the bus
        if len(self._jams_seen) > 10_000:
            self._jams_seen = {t: u for t, u in self._jams_seen.items() if u > now}
        self._jams_seen[tag] = now + RECENT_S
        if self.on_jam is not None:
            self.on_jam(accounts, notice)

    async def set_home(self, account_id: int, host: int | None) -> None:
        """The session the account's devices here are on: a jam host's (`host`), or its
        own (None). Their fan-out then comes from that session's topic."""
        old = self._home.get(account_id)
        if old == host or (host is None and old is None):
            return
        if old is not None:
            self._home.pop(account_id, None)
            guests = self._guests.get(old, set())
            guests.discard(account_id)
            if not guests:
                self._guests.pop(old, None)
        if host is not None and host != account_id and account_id in self._conns:
            self._home[account_id] = host
            self._guests.setdefault(host, set()).add(account_id)
        for acct in {account_id, *(x for x in (old, host) if x is not None)}:
            await self._resubscribe(acct)
            self._forget_online(acct)

    def home(self, account_id: int) -> int:
        """The account whose session the account's devices here are on."""
        return self._home.get(account_id, account_id)

    def local_conns(self, account_id: int) -> list[Connection]:
        return [c for cs in self._conns.get(account_id, {}).values() for c in cs]

    async def _resubscribe(self, account_id: int) -> None:
        """Listen to the account's topic while its own devices or its guests' are here."""
        wanted = (account_id in self._conns and account_id not in self._home) or bool(
            self._guests.get(account_id)
        )
        if wanted and account_id not in self._subscribed:
            self._subscribed.add(account_id)
            await self.bus.subscribe(topic(account_id))
        elif not wanted and account_id in self._subscribed:
            self._subscribed.discard(account_id)
            await self.bus.unsubscribe(topic(account_id))

    def _session_conns(self, account_id: int) -> list[dict[str, list[Connection]]]:
        """The connections here on the session of `account_id`: its own devices' (unless
        it is a guest elsewhere) and its jam guests'."""
        out = []
        own = self._conns.get(account_id)
        if own and account_id not in self._home:
            out.append(own)
        for g in self._guests.get(account_id, ()):
            d = self._conns.get(g)
            if d:
                out.append(d)
        return out

    def local_accounts(self) -> list[int]:
        return list(self._conns)

    def push_local(self, account_id: int, payload: bytes) -> None:
        """Send to this instance's connections of the account only (a resync)."""
        for conns in list(self._conns.get(account_id, {}).values()):
            for c in list(conns):
                c.push(payload)

    async def transfer_reply(
        self,
        account_id: int,
        device_id: str,
        transfer_id: str,
        ok: bool,
        message: str,
        start_ms: int = 0,
    ) -> None:
        reply = {
            "a": account_id,
            "d": device_id,
            "t": transfer_id,
            "ok": ok,
            "m": message,
            "s": start_ms,
        }
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

    async def attach(self, conn: Connection) -> bool:
        """Take an admitted connection in (see `admit`); False (and it is closed) when its
        login was revoked while it authenticated. Earlier connections of its device, here
        or on another instance, are closed with CLOSE_REPLACED: one device never plays
        twice."""
        why = self._revoked(conn)
        if why is not None:
            self.release(conn.account_id, conn.device_id)
            conn.close(CLOSE_REVOKED, why)
            return False
        devices = self._conns.setdefault(conn.account_id, {})
        await self._resubscribe(conn.account_id)
        same = devices.setdefault(conn.device_id, [])
        for old in list(same):
            old.replaced = True
            old.close(CLOSE_REPLACED, "replaced by a newer connection of this device")
        same.append(conn)
        self.release(conn.account_id, conn.device_id)
        caps = {c for cs in devices[conn.device_id] for c in cs.capabilities}
        await self.presence.join(conn.account_id, conn.device_id, tuple(sorted(caps)))
        self._forget_online(conn.account_id)
        # The caller starts the connection's writer once it has sent `hello`, so nothing
        # queued meanwhile overtakes it.
        replace = {
            "k": REPLACED,
            "a": conn.account_id,
            "v": conn.device_id,
            "t": conn.joined[0],
            "n": conn.joined[1],
        }
        await self.bus.publish(CONTROL, json.dumps(replace).encode())
        return True

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
            await self.set_home(conn.account_id, None)
            await self._resubscribe(conn.account_id)
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
        if name == CONTROL:
            with contextlib.suppress(ValueError):
                self._control(json.loads(data))
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
            for g in self._guests.get(account_id, ()):
                self._forget_online(g)
        elif version > 0 and self.on_version is not None:
            self.on_version(account_id, version, payload)
        groups = self._session_conns(account_id)
        if not groups:
            return
        target = to.decode()
        conns = [
            c
            for devices in groups
            for c in (
                [c for cs in devices.values() for c in cs]
                if target == ALL
                else devices.get(target, [])
            )
        ]
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
