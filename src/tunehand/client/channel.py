"""The device's websocket to `/v1/channel`: authenticate, read, send, reconnect forever.

Reconnects with jittered exponential backoff (never gives up) and tells its owner
when the connection comes and goes. Only a refused login ends it (`AuthError`), a newer
connection of this same device taking over (`Replaced`: the owner stops its player and
does not fight back), or a URL with no channel (404) before it ever connected
(`UsageError`: not a server root). Library exceptions stop here: the owner sees
`ServerMessage`s and booleans.

While connected, the access token is renewed before it expires and sent on the open
channel (`auth` again), so the server never has to close it (CLOSE_EXPIRED) and the
session never sees the device come and go every quarter hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from tunehand import wire
from tunehand.core.backoff import backoff
from tunehand.core.protocol import (
    CLOSE_AUTH,
    CLOSE_EXPIRED,
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    MAX_MESSAGE_BYTES,
    Auth,
    DeviceHello,
    ErrorMsg,
    ServerMessage,
)
from tunehand.errors import AuthError, ProtocolError, TunehandError

log = logging.getLogger("tunehand.channel")

PING_INTERVAL_S = 3.0
PING_TIMEOUT_S = 4.0
REAUTH_EVERY_S = 30.0
"""How often an open channel asks for the access token: when it changed (renewed before
it expires), it is sent on the channel."""


class Replaced(TunehandError):
    """Another connection of this device (this config dir) took over: stop here."""

    exit_code = 2


def channel_url(server: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server[len("https://") :] + "/v1/channel"
    return "ws://" + server[len("http://") :] + "/v1/channel"


class Channel:
    def __init__(
        self,
        server: str,
        token: Callable[[], Awaitable[str]],
        device: DeviceHello,
        on_message: Callable[[ServerMessage], None],
        on_connection: Callable[[bool], None],
        last_version: Callable[[], int | None],
        ca_file: str | None = None,
    ) -> None:
        self.server = server
        self._token = token
        self._device = device
        self._on_message = on_message
        self._on_connection = on_connection
        self._last_version = last_version
        self._ca_file = ca_file
        self._ws: Any = None
        self._lock = asyncio.Lock()
        self.connected = False
        self._ever_connected = False
        self._delays = backoff(random.Random())
        self.attempt_failed = asyncio.Event()
        """Set when an attempt to connect (or a connection) failed: a device that has no
        server yet may start from its offline cache instead of waiting."""

    async def run(self) -> None:
        """Stay connected until cancelled; raises AuthError when the login is refused."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        self._delays = backoff(random.Random())
        while True:
            try:
                token = await self._token()
                ssl_ctx = None
                if self.server.startswith("https://"):
                    import ssl

                    ssl_ctx = ssl.create_default_context(cafile=self._ca_file)
                async with connect(
                    channel_url(self.server),
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_size=MAX_MESSAGE_BYTES * 16,
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    open_timeout=10,
                    ssl=ssl_ctx,
                ) as ws:
                    await ws.send(
                        wire.encode(Auth(self._device, last_version=self._last_version())).decode()
                    )
                    self._ws = ws
                    reauth = asyncio.ensure_future(self._reauth(ws, token))
                    try:
                        await self._read(ws)
                    except ConnectionClosed as exc:  # the close code says what next
                        log.info("channel: connection lost (%s)", type(exc).__name__)
                    finally:
                        reauth.cancel()
                    close_code = ws.close_code
                if close_code == CLOSE_REPLACED:
                    raise Replaced(
                        "another connection of this device took over (the same config dir"
                        " in another process?): stopped here"
                    )
                if close_code in (CLOSE_AUTH, CLOSE_REVOKED):
                    raise AuthError("the server refused this device's login: log in again")
                if close_code == CLOSE_EXPIRED:
                    log.info("channel: the access token expired; reconnecting with a new one")
            except asyncio.CancelledError:
                raise
            except (AuthError, Replaced):
                self._lost()
                raise
            except ProtocolError as exc:
                log.warning("the server sent something unreadable: %s", exc)
            except InvalidStatus as exc:
                if exc.response.status_code == 404 and not self._ever_connected:
                    # No channel at this URL from the start: a wrong URL (".../v1"), not a
                    # server that went away; say so instead of retrying for ever.
                    from tunehand.client.http import not_a_server_root

                    self._lost()
                    raise not_a_server_root(self.server, "/v1/channel") from None
                log.info("channel: connection refused (%s)", exc.response.status_code)
            except (
                ConnectionClosed,
                WebSocketException,
                OSError,
                TimeoutError,
                TunehandError,
            ) as exc:
                log.info("channel: connection lost (%s)", type(exc).__name__)
            self.attempt_failed.set()
            self._lost()
            await asyncio.sleep(next(self._delays))

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            msg = wire.decode_server(raw)
            if isinstance(msg, ErrorMsg) and msg.code == "unauthorized":
                raise AuthError(f"logged out ({msg.message}): log in again")
            if not self.connected and msg.type == "hello":
                self.connected = self._ever_connected = True
                self._delays = backoff(random.Random())
                self._on_connection(True)
            self._on_message(msg)

    async def _reauth(self, ws: Any, sent: str) -> None:
        """Send the access token again on the open channel each time it is renewed."""
        while True:
            await asyncio.sleep(REAUTH_EVERY_S)
            try:
                token = await self._token()
            except AuthError:
                return  # logged out: the server closes the channel when it expires
            except TunehandError as exc:  # the server is unreachable a moment: later
                log.info("channel: cannot renew the access token now (%s)", exc)
                continue
            if token != sent:
                try:
                    async with self._lock:
                        await ws.send(wire.encode(Auth(self._device, token=token)).decode())
                except Exception:  # the connection just dropped; run() reconnects
                    return
                sent = token

    def _lost(self) -> None:
        self._ws = None
        if self.connected:
            self.connected = False
            self._on_connection(False)

    async def send(self, msg: object) -> bool:
        """Send if connected; False when there is no connection right now."""
        ws = self._ws
        if ws is None or not self.connected:
            return False
        try:
            async with self._lock:
                await ws.send(wire.encode(msg).decode())
        except Exception:  # the connection just dropped; run() reconnects
            return False
        return True

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
