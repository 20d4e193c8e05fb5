"""The session channel at `/v1/channel`: one websocket per device.

The first message authenticates (`auth`, or a Bearer header) and names the device;
the server answers `hello`. After that, commands, reports, time requests and resyncs
arrive; state, devices, directives and results go out. A malformed or unknown message
gets an `error` reply and the connection stays up; an oversized one closes it (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tunehand import __version__, wire
from tunehand.core.commands import Command, Result
from tunehand.core.protocol import (
    CLOSE_AUTH,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    MAX_MESSAGE_BYTES,
    Auth,
    CommandMsg,
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
from tunehand.errors import AuthError, ProtocolError, StoreError
from tunehand.server import auth
from tunehand.server.db import accounts as qa
from tunehand.server.db.engine import unavailable
from tunehand.server.hub import Connection
from tunehand.server.service import now_ms
from tunehand.server.services import Services
from tunehand.server.web import MAX_ADDRESS, NUL_MESSAGE, has_nul

log = logging.getLogger("tunehand.channel")

AUTH_TIMEOUT_S = 10.0
COMMANDS_PER_S = 50.0
COMMAND_BURST = 100.0
MAX_NAME = 128
MAX_RATE = 100.0
"""The fastest playback a report may claim (mpv's own limit on speed)."""
MAX_MS = 2**53
CLOSE_TRY_AGAIN = 1013
UNAVAILABLE = "the database is unavailable: try again"


class _Bucket:
    """Token bucket bounding the command rate of one connection."""

    __slots__ = ("burst", "level", "rate", "t")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.level, self.t = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.t) * self.rate)
        self.t = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


async def _receive(ws: WebSocket) -> str | bytes | None:
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        return None
    data: str | bytes | None = msg.get("text")
    if data is None:
        data = msg.get("bytes") or b""
    return data


def _decode(data: str | bytes) -> Any:
    """`wire.decode_client`, refusing what the database cannot take (a NUL in a string);
    msgspec's RecursionError (deep nesting) and UnicodeDecodeError become ProtocolErrors."""
    try:
        msg = wire.decode_client(data)
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError("malformed JSON: not valid UTF-8") from None
    if has_nul(wire.to_builtins(msg)):
        raise ProtocolError(NUL_MESSAGE)
    if isinstance(msg, ReportMsg):
        rep = msg.report
        # Bounds that keep position arithmetic finite (a rate of 1e308 would overflow it).
        if not 0.0 <= rep.rate <= MAX_RATE:
            raise ProtocolError(f"rate: must be 0 to {MAX_RATE:g}")
        if abs(rep.position_ms) > MAX_MS or abs(rep.at_ms) > MAX_MS:
            raise ProtocolError("position_ms, at_ms: must be within 2**53")
    return msg


def _bearer(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


async def _send(ws: WebSocket, obj: object) -> None:
    await ws.send_text(wire.encode(obj).decode())


async def channel_endpoint(ws: WebSocket) -> None:
    services: Services = ws.state.services
    await ws.accept()
    try:
        first = await asyncio.wait_for(_receive(ws), AUTH_TIMEOUT_S)
    except (TimeoutError, WebSocketDisconnect):
        await _close(ws, CLOSE_AUTH, "authenticate first")
        return
    if first is None:
        return
    if len(first) > MAX_MESSAGE_BYTES:
        await _close(ws, CLOSE_TOO_BIG, "message too big")
        return
    try:
        hello = _decode(first)
        if not isinstance(hello, Auth):
            raise ProtocolError("the first message must be `auth`")
        if not hello.device.id or len(hello.device.id) > 64 or len(hello.device.name) > MAX_NAME:
            raise ProtocolError("device: id must be 1 to 64 characters, name at most 128")
        token = hello.token or _bearer(ws) or ""
        who = await auth.authenticate(services.engine, token, now_ms())
    except ProtocolError as exc:
        await _send(ws, ErrorMsg("invalid", str(exc)))
        await _close(ws, CLOSE_POLICY, "bad first message")
        return
    except AuthError as exc:
        await _send(ws, ErrorMsg("unauthorized", str(exc)))
        await _close(ws, CLOSE_AUTH, "unauthorized")
        return
    except Exception as exc:
        if not unavailable(exc):
            raise
        await _unavailable(ws, exc)
        return
    device = hello.device
    address = (ws.client.host if ws.client else "")[:MAX_ADDRESS]
    try:
        async with services.engine.begin() as conn:
            owner = await qa.device(conn, device.id)
            if owner is not None and (owner.account_id != who.account_id or owner.revoked):
                await _send(ws, ErrorMsg("unauthorized", "this device id is not yours or revoked"))
                await _close(ws, CLOSE_AUTH, "unauthorized")
                return
            await qa.upsert_device(
                conn, who.account_id, device.id, device.name or device.id, now_ms(), address
            )
    except Exception as exc:
        if not unavailable(exc):
            raise
        await _unavailable(ws, exc)
        return
    conn_obj = Connection(
        who.account_id,
        device.id,
        device.name,
        address,
        tuple(device.capabilities),
        lambda data: ws.send_text(data.decode()),
        lambda code, reason: _close(ws, code, reason),
    )
    sessions = services.sessions
    await services.hub.attach(conn_obj)
    try:
        state = await sessions.state(who.account_id)
        full = None
        if hello.last_version != state.version:
            full = await sessions.state_message(who.account_id, state)
        await _send(
            ws,
            Hello(
                device.id,
                now_ms(),
                state.version,
                full,
                await sessions.devices(who.account_id),
                __version__,
            ),
        )
        conn_obj.start()
        await sessions.publish_devices(who.account_id)
        await _serve(ws, services, who.account_id, device.id)
    except WebSocketDisconnect:
        pass
    except Exception as exc:
        if not unavailable(exc):
            raise
        await _unavailable(ws, exc)  # the device reconnects, and its hello resyncs it
    finally:
        last = await services.hub.detach(conn_obj)
        if last and not services.hub.closing:
            try:
                await sessions.device_lost(who.account_id, device.id)
                await sessions.publish_devices(who.account_id)
            except Exception as exc:
                if not (isinstance(exc, StoreError) or unavailable(exc)):
                    raise
                log.warning("could not record the loss of device %s: %r", device.id, exc)


class _Commands:
    """A device's commands, run in arrival order on a task of their own that exists only
    while some are waiting, so a device's `ready` is read while its own `transfer` (a
    pull) waits for it, and an idle connection holds no task."""

    __slots__ = ("account_id", "device_id", "pending", "services", "task", "ws")

    def __init__(self, ws: WebSocket, services: Services, account_id: int, device_id: str) -> None:
        self.ws, self.services = ws, services
        self.account_id, self.device_id = account_id, device_id
        self.pending: deque[Command] | None = None  # created with the first command
        self.task: asyncio.Task[None] | None = None

    def add(self, cmd: Command) -> bool:
        """Queue a command; False when COMMAND_BURST of them are waiting already."""
        if self.pending is None:
            self.pending = deque()
        elif len(self.pending) >= COMMAND_BURST:
            return False
        self.pending.append(cmd)
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        return True

    async def _run(self) -> None:
        pending = self.pending
        try:
            while pending:
                await self._one(pending.popleft())
        finally:
            self.task = None
            self.pending = None

    async def _one(self, cmd: Command) -> None:
        sessions = self.services.sessions
        try:
            res = await sessions.execute(self.account_id, cmd, self.device_id)
        except StoreError as exc:
            res = Result(cmd.command_id, "unavailable", str(exc))
        except Exception as exc:
            if not unavailable(exc):
                raise
            res = Result(cmd.command_id, "unavailable", UNAVAILABLE)
        # The device may be gone meanwhile: the command was applied, and a retry from its
        # next connection gets the stored result.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await _send(self.ws, ResultMsg(res.command_id, res.code, res.message, res.version))

    def cancel(self) -> None:
        self.pending = None
        if self.task is not None:
            self.task.cancel()


async def _serve(ws: WebSocket, services: Services, account_id: int, device_id: str) -> None:
    """Read messages until the connection ends; commands run on `_Commands`."""
    bucket = _Bucket(COMMANDS_PER_S, COMMAND_BURST)
    commands = _Commands(ws, services, account_id, device_id)
    try:
        await _read_loop(ws, services, account_id, device_id, bucket, commands)
    finally:
        commands.cancel()


async def _read_loop(
    ws: WebSocket,
    services: Services,
    account_id: int,
    device_id: str,
    bucket: _Bucket,
    commands: _Commands,
) -> None:
    sessions = services.sessions
    while True:
        data = await _receive(ws)
        if data is None:
            return
        if len(data) > MAX_MESSAGE_BYTES:
            await _close(ws, CLOSE_TOO_BIG, "message too big")
            return
        try:
            msg: Any = _decode(data)
        except ProtocolError as exc:
            await _send(ws, ErrorMsg("invalid", str(exc)))
            continue
        if isinstance(msg, TimeRequest):
            t1 = now_ms()
            await _send(ws, TimeReply(msg.t0, t1, now_ms()))
        elif isinstance(msg, Ping):
            await _send(ws, Pong(now_ms()))
        elif isinstance(msg, CommandMsg):
            if not bucket.take() or not commands.add(msg.command):
                await _send(ws, ResultMsg(msg.command.command_id, "rate_limited", "slow down"))
                continue
        elif isinstance(msg, ReportMsg):
            if not bucket.take():
                continue
            code = await sessions.report(account_id, device_id, msg.report)
            if code == "stale_term":
                await _send(ws, ErrorMsg("stale_term", "another device holds playback: stop"))
        elif isinstance(msg, Resync):
            state = await sessions.state(account_id)
            await _send(ws, await sessions.state_message(account_id, state))
        elif isinstance(msg, Ready):
            await services.hub.transfer_reply(account_id, device_id, msg.transfer_id, True, "")
        elif isinstance(msg, Failed):
            await services.hub.transfer_reply(
                account_id, device_id, msg.transfer_id, False, msg.message[:200]
            )
        elif isinstance(msg, Auth):
            await _send(ws, ErrorMsg("invalid", "already authenticated"))


async def _unavailable(ws: WebSocket, exc: BaseException) -> None:
    """The database is down or restarting: tell the device and close with 1013 (try
    again later); it reconnects with backoff and resyncs."""
    log.warning("channel: database unavailable: %r", exc)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await _send(ws, ErrorMsg("unavailable", UNAVAILABLE))
    await _close(ws, CLOSE_TRY_AGAIN, "database unavailable: reconnect later")


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.close(code, reason)
