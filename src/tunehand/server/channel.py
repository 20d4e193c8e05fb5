"""The session channel at `/v1/channel`: one websocket per device.

The first message authenticates (`auth`, or a Bearer header) and names the device;
the server answers `hello`. After that, commands, reports, time requests and resyncs
arrive; state, devices, directives and results go out. A malformed or unknown message
gets an `error` reply and the connection stays up; an oversized one closes it (1009).

A `Channel` is the websocket itself (`tunehand.server.websocket`): messages that need
no database (pings, time requests, a command joining its queue) are answered in the
callback; the others run in arrival order on a task that exists only while some are
waiting, and commands on a second such task, so a device's `ready` is read while its
own `transfer` (a pull) waits for it. An idle device holds no task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

from tunehand import __version__, wire
from tunehand.core import names
from tunehand.core.commands import Command, Result
from tunehand.core.protocol import (
    CLOSE_AUTH,
    CLOSE_EXPIRED,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_DEVICES,
    MAX_MESSAGE_BYTES,
    Auth,
    CommandMsg,
    DeviceHello,
    ErrorMsg,
    Failed,
    Hello,
    Ping,
    Pong,
    Ready,
    ReportMsg,
    ResultMsg,
    Resync,
    TimeReply,
    TimeRequest,
)
from tunehand.errors import AuthError, ProtocolError, QuotaError, StoreError
from tunehand.server import auth
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.db.engine import unavailable
from tunehand.server.services import Services
from tunehand.server.web import MAX_ADDRESS, NUL_MESSAGE, has_nul
from tunehand.server.websocket import CLOSE_INTERNAL, SocketSet, WebSocket

log = logging.getLogger("tunehand.channel")

PATH = "/v1/channel"
AUTH_TIMEOUT_S = 10.0
COMMANDS_PER_S = 50.0
COMMAND_BURST = 100
MAX_NAME = 128
MAX_RATE = 100.0
"""The fastest playback a report may claim (mpv's own limit on speed)."""
MAX_MS = 2**53
CLOSE_TRY_AGAIN = 1013
UNAVAILABLE = "the database is unavailable: try again"
INBOX_LIMIT = 32
"""Messages waiting for the database before the connection stops reading."""


def _decode(data: str | bytes) -> Any:
    """`wire.decode_client`, refusing what the database cannot take (a NUL in a string);
    msgspec's RecursionError (deep nesting) and UnicodeDecodeError become ProtocolErrors."""
    try:
        msg = wire.decode_client(data)
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError("malformed JSON: not valid UTF-8") from None
    # JSON can only carry a NUL as the escape \u0000 (raw control characters are refused
    # by the decoder), so a message without one needs no walk through its strings.
    escaped = "\\u0000" in data if isinstance(data, str) else b"\\u0000" in data
    if escaped and has_nul(wire.to_builtins(msg)):
        raise ProtocolError(NUL_MESSAGE)
    if isinstance(msg, ReportMsg):
        rep = msg.report
        # Bounds that keep position arithmetic finite (a rate of 1e308 would overflow it).
        if not 0.0 <= rep.rate <= MAX_RATE:
            raise ProtocolError(f"rate: must be 0 to {MAX_RATE:g}")
        if abs(rep.position_ms) > MAX_MS or abs(rep.at_ms) > MAX_MS:
            raise ProtocolError("position_ms, at_ms: must be within 2**53")
    return msg


async def _nothing(*_: Any) -> None:
    return None


async def _forwarded_client(proxy: Any, peer: str, forwarded_for: str) -> str:
    """The client's address by uvicorn's own X-Forwarded-For rules (the ones HTTP
    requests get): its middleware rewrites the scope's `client`."""
    scope = {
        "type": "websocket",
        "client": (peer, 0),
        "headers": [(b"x-forwarded-for", forwarded_for.encode("latin-1", "replace"))],
    }
    await proxy(scope, _nothing, _nothing)
    client = scope["client"]
    return str(client[0]) if isinstance(client, tuple) and client else peer


def protocol_factory(trusted_proxies: tuple[str, ...]) -> type[Channel]:
    """The class for uvicorn's `ws` setting: uvicorn makes one per upgrade request.
    With `trusted_proxies`, a device's address comes from X-Forwarded-For as for HTTP."""
    proxy: Any = None
    if trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        proxy = ProxyHeadersMiddleware(_nothing, trusted_hosts=list(trusted_proxies))

    class ServerChannel(Channel):
        __slots__ = ()

        def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any]) -> None:
            services: Services = app_state["services"]
            super().__init__(services, server_state, proxy)

    return ServerChannel


class Channel(WebSocket):
    """One device's channel: the websocket, the device it authenticated as, and the
    hub's view of it (`push`, `close`)."""

    __slots__ = (
        "account_id",
        "attached",
        "bearer",
        "capabilities",
        "cmd_task",
        "cmds",
        "device_id",
        "early",
        "expiry",
        "family",
        "forwarded",
        "inbox",
        "joined",
        "level",
        "lost",
        "proxy",
        "replaced",
        "services",
        "t_level",
        "task",
    )
    path = PATH

    def __init__(self, services: Services, server_state: Any, proxy: Any = None) -> None:
        super().__init__(services.sockets, server_state, MAX_MESSAGE_BYTES)
        self.services, self.proxy = services, proxy
        self.account_id = 0
        self.device_id = ""
        self.capabilities: tuple[str, ...] = ()
        self.bearer = ""
        self.forwarded = ""
        """X-Forwarded-For, until the address is resolved (behind trusted proxies only)."""
        self.early: list[bytes] | None = []
        """What the hub pushed before `hello` went out (None once it has)."""
        self.inbox: deque[str | bytes] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cmds: deque[Command] | None = None
        self.cmd_task: asyncio.Task[None] | None = None
        self.level, self.t_level = float(COMMAND_BURST), time.monotonic()
        self.lost = False
        self.attached = False
        self.family = ""
        self.joined = (0, "")
        self.replaced = False
        self.expiry: asyncio.TimerHandle | None = None
        """Closes the channel when its access token expires (unless `auth` came again)."""

    # --- the hub's side ---------------------------------------------------------------

    def push(self, data: bytes) -> bool:
        """Queue `data` for the device; False when it is too slow to take it."""
        if self.early is not None:
            self.early.append(data)
            return True
        return self.send(self.services.signer.bind_urls(data, self.device_id)) or self.closing

    # --- the websocket's side ---------------------------------------------------------

    def on_open(self) -> None:
        assert self.headers is not None
        header = self.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            self.bearer = header[7:].strip()
        if self.proxy is not None:
            self.forwarded = self.headers.get("x-forwarded-for", "")
        self.deadline = self.loop.time() + AUTH_TIMEOUT_S

    def on_deadline(self) -> None:
        if not self.account_id:
            self.close(CLOSE_AUTH, "authenticate first")

    def on_message(self, data: str | bytes) -> None:
        if self.task is not None:
            if self.inbox is None:
                self.inbox = deque()
            self.inbox.append(data)
            if len(self.inbox) == INBOX_LIMIT and self.transport is not None:
                self.transport.pause_reading()
            return
        step = self._handle(data)
        if step is not None:
            self.task = self.loop.create_task(self._serially(step))

    def on_closed(self) -> None:
        self.lost = True
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.cmds = None
        if self.cmd_task is not None:
            self.cmd_task.cancel()
        if self.task is None:
            self.task = self.loop.create_task(self._serially(None))
        # uvicorn's graceful shutdown waits for these before the lifespan closes the
        # database and the bus.
        tasks: set[asyncio.Task[None]] = self.server_state.tasks
        tasks.add(self.task)
        self.task.add_done_callback(tasks.discard)

    # --- in order -----------------------------------------------------------------------

    async def _serially(self, step: Awaitable[None] | None) -> None:
        try:
            if step is not None:
                await step
            while self.inbox:
                data = self.inbox.popleft()
                if len(self.inbox) == INBOX_LIMIT - 1 and self.transport is not None:
                    self.transport.resume_reading()
                step = self._handle(data)
                if step is not None:
                    await step
            self.inbox = None
            if self.lost:
                await self._detach()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not unavailable(exc):
                log.exception("channel: device %s", self.device_id or "(not authenticated)")
                self.close(CLOSE_INTERNAL, "internal error")
            elif not self.lost:
                self._unavailable(exc)
            if self.lost:
                await self._detach()
        finally:
            self.task = None
            if self.inbox and not self.lost:  # arrived while the last step finished
                self.task = self.loop.create_task(self._serially(None))

    def _handle(self, data: str | bytes) -> Awaitable[None] | None:
        """Answer a message now, or return what must wait for it."""
        if self.closing:
            return None
        if len(data) > MAX_MESSAGE_BYTES:
            self.close(CLOSE_TOO_BIG, "message too big")
            return None
        if not self.account_id:
            return self._authenticate(data)
        try:
            msg: Any = _decode(data)
        except ProtocolError as exc:
            if self._take():
                self._send(ErrorMsg("invalid", str(exc)))
            return None
        # Every message takes a token of the connection's bucket; past it a command gets
        # `rate_limited`, a report is dropped (the next one says the same), the others an
        # error.
        if not self._take():
            if isinstance(msg, CommandMsg):
                self._send(ResultMsg(msg.command.command_id, "rate_limited", "slow down"))
            elif not isinstance(msg, ReportMsg):
                self._send(ErrorMsg("rate_limited", f"slow down: {msg.type} dropped"))
            return None
        if isinstance(msg, TimeRequest):
            t1 = now_ms()
            self._send(TimeReply(msg.t0, t1, now_ms()))
        elif isinstance(msg, Ping):
            self._send(Pong(now_ms()))
        elif isinstance(msg, CommandMsg):
            if not self._add(msg.command):
                self._send(ResultMsg(msg.command.command_id, "rate_limited", "slow down"))
        elif isinstance(msg, ReportMsg):
            return self._report(msg)
        elif isinstance(msg, Resync):
            return self._resync()
        elif isinstance(msg, Ready):
            return self.services.hub.transfer_reply(
                self.account_id, self.device_id, msg.transfer_id, True, "", msg.start_ms
            )
        elif isinstance(msg, Failed):
            return self.services.hub.transfer_reply(
                self.account_id, self.device_id, msg.transfer_id, False, msg.message[:200]
            )
        elif isinstance(msg, Auth):
            return self._reauthenticate(msg)
        return None

    def _send(self, obj: object) -> None:
        data = wire.encode(obj)
        if self.device_id:
            data = self.services.signer.bind_urls(data, self.device_id)
        self.send(data)

    def _take(self) -> bool:
        """The token bucket bounding this connection's messages (all of them)."""
        now = time.monotonic()
        self.level = min(COMMAND_BURST, self.level + (now - self.t_level) * COMMANDS_PER_S)
        self.t_level = now
        if self.level < 1:
            return False
        self.level -= 1
        return True

    async def _report(self, msg: ReportMsg) -> None:
        code = await self.services.sessions.report(self.account_id, self.device_id, msg.report)
        if code == "stale_term":
            self._send(ErrorMsg("stale_term", "another device holds playback: stop"))
        elif code == "conflict":
            # Made before a newer state, which is on its way. Should its fan-out have been
            # lost (Redis down a moment), the device would report from the old one forever,
            # each report refused: send the state with the refusal.
            await self._resync()

    async def _resync(self) -> None:
        sessions = self.services.sessions
        session, state = await sessions.view(self.account_id)
        self._send(await sessions.state_message(session, state))

    async def _authenticate(self, first: str | bytes) -> None:
        services = self.services
        try:
            hello = _decode(first)
            if not isinstance(hello, Auth):
                raise ProtocolError("the first message must be `auth`")
            device = hello.device
            if not device.id or len(device.id) > 64 or len(device.name) > MAX_NAME:
                raise ProtocolError("device: id must be 1 to 64 characters, name at most 128")
            who = await auth.authenticate(services.engine, hello.token or self.bearer, now_ms())
            if who.device_id != device.id:
                # A token opens channels for its own device only: revoking that device
                # then closes every channel the login could open.
                raise AuthError(
                    f"this login belongs to device {who.device_id}, not {device.id}: log in"
                    " again from this device"
                )
        except ProtocolError as exc:
            self._send(ErrorMsg("invalid", str(exc)))
            self.close(CLOSE_POLICY, "bad first message")
            return
        except AuthError as exc:
            self._send(ErrorMsg("unauthorized", str(exc)))
            self.close(CLOSE_AUTH, "unauthorized")
            return
        if self.forwarded:
            self.peer = await _forwarded_client(self.proxy, self.peer, self.forwarded)
            self.forwarded = ""
        self.peer = self.peer[:MAX_ADDRESS]
        hub, most = services.hub, services.settings.max_devices
        if not await hub.admit(who.account_id, device.id, most):
            message = f"too many devices online: this server allows {most} per account"
            self._send(ErrorMsg("too_many_devices", message))
            self.close(CLOSE_TOO_MANY_DEVICES, "too many devices online")
            return
        try:
            registered = await self._register(who.account_id, device)
        except BaseException:
            hub.release(who.account_id, device.id)
            raise
        if not registered or self.lost:
            hub.release(who.account_id, device.id)
            return
        self.deadline = 0.0
        self.account_id, self.device_id = who.account_id, device.id
        self.capabilities = tuple(device.capabilities)
        self.family = who.family
        self._expire_at(who.expires_ms)
        sessions = services.sessions
        self.joined = (time.time_ns(), os.urandom(6).hex())
        if not await services.hub.attach(self):
            return
        self.attached = True
        seat = await sessions.seat(who.account_id)
        await hub.set_home(who.account_id, seat.session if seat.role == "guest" else None)
        state = await sessions.state(seat.session)
        full = None
        if hello.last_version != state.version or seat.in_jam:
            # In a jam the device may hold another session's state of the same version.
            full = await sessions.state_message(seat.session, state)
        devices = await sessions.devices_view(who.account_id)
        self._send(Hello(device.id, now_ms(), state.version, full, devices, __version__))
        early, self.early = self.early or [], None
        for data in early:
            if not self.push(data):
                self.close(CLOSE_TRY_AGAIN, "too slow: reconnect and resync")
        await sessions.publish_device(who.account_id, device.id)

    def _expire_at(self, expires_ms: int) -> None:
        """Close the channel when the access token it holds expires."""
        if self.expiry is not None:
            self.expiry.cancel()
        delay_s = max(0.0, (expires_ms - now_ms()) / 1000)
        self.expiry = self.loop.call_later(delay_s, self._expired)

    def _expired(self) -> None:
        self.expiry = None
        self._send(ErrorMsg("expired", "the access token expired: reconnect with a fresh one"))
        self.close(CLOSE_EXPIRED, "access token expired")

    async def _reauthenticate(self, msg: Auth) -> None:
        """`auth` again on an open channel: a fresh access token of the same login's
        device (the client refreshes before the old one expires), which moves the
        channel's expiry; any other token closes the channel."""
        if not msg.token:
            self._send(ErrorMsg("invalid", "already authenticated: `auth` again needs a token"))
            return
        try:
            who = await auth.authenticate(self.services.engine, msg.token, now_ms())
        except AuthError as exc:
            self._send(ErrorMsg("unauthorized", str(exc)))
            self.close(CLOSE_AUTH, "unauthorized")
            return
        if who.account_id != self.account_id or who.device_id != self.device_id:
            # Changes nothing: the channel stays its own device's.
            self._send(ErrorMsg("invalid", "already authenticated as another device"))
            return
        if self.lost:
            return
        self.family = who.family
        self._expire_at(who.expires_ms)

    async def _register(self, account_id: int, device: DeviceHello) -> bool:
        """Record the device (new, or seen again); False when the id is someone else's."""
        device_id, name = device.id, names.clean(device.name)
        async with self.services.engine.begin() as conn:
            owner = await qa.device(conn, device_id)
            if owner is not None and (owner.account_id != account_id or owner.revoked):
                self._send(ErrorMsg("unauthorized", "this device id is not yours or revoked"))
                self.close(CLOSE_AUTH, "unauthorized")
                return False
            if owner is None:
                try:
                    await auth.check_device_room(conn, account_id)
                except QuotaError as exc:
                    self._send(ErrorMsg("quota", str(exc)))
                    self.close(CLOSE_TOO_MANY_DEVICES, "too many devices")
                    return False
            await qa.upsert_device(
                conn,
                account_id,
                device_id,
                name or device_id,
                now_ms(),
                self.peer,
                default=bool(name) and device.name_default,
            )
        return True

    async def _detach(self) -> None:
        """The connection is gone: forget it; if it was the device's last, the device
        is lost (its session pauses) unless the server is shutting down."""
        if not self.attached:
            return
        self.attached = False
        services, account_id, device_id = self.services, self.account_id, self.device_id
        last = await services.hub.detach(self)
        # A connection replaced by a newer one of its device is no loss: the device is
        # still there (maybe on another instance), and its session must not pause.
        if last and not services.hub.closing and not self.replaced:
            try:
                await services.sessions.device_lost(account_id, device_id)
                await services.sessions.publish_device(account_id, device_id)
            except Exception as exc:
                if not (isinstance(exc, StoreError) or unavailable(exc)):
                    raise
                log.warning("could not record the loss of device %s: %r", device_id, exc)

    # --- commands -----------------------------------------------------------------------

    def _add(self, cmd: Command) -> bool:
        """Queue a command; False when COMMAND_BURST of them are waiting already."""
        if self.cmds is None:
            self.cmds = deque()
        elif len(self.cmds) >= COMMAND_BURST:
            return False
        self.cmds.append(cmd)
        if self.cmd_task is None:
            self.cmd_task = self.loop.create_task(self._commands(self.cmds))
        return True

    async def _commands(self, pending: deque[Command]) -> None:
        try:
            while pending:
                await self._command(pending.popleft())
        finally:
            self.cmd_task = None
            self.cmds = None

    async def _command(self, cmd: Command) -> None:
        try:
            res = await self.services.sessions.execute(self.account_id, cmd, self.device_id)
        except StoreError as exc:
            res = Result(cmd.command_id, "unavailable", str(exc))
        except Exception as exc:
            if not unavailable(exc):
                log.exception("channel: command %s", cmd.command_id)
                self.close(CLOSE_INTERNAL, "internal error")
                return
            res = Result(cmd.command_id, "unavailable", UNAVAILABLE)
        # The device may be gone meanwhile: the command was applied, and a retry from its
        # next connection gets the stored result.
        self._send(ResultMsg(res.command_id, res.code, res.message, res.version))

    def _unavailable(self, exc: BaseException) -> None:
        """The database is down or restarting: tell the device and close with 1013 (try
        again later); it reconnects with backoff and resyncs."""
        log.warning("channel: database unavailable: %r", exc)
        self._send(ErrorMsg("unavailable", UNAVAILABLE))
        self.close(CLOSE_TRY_AGAIN, "database unavailable: reconnect later")


__all__ = ["PATH", "Channel", "SocketSet", "protocol_factory"]
