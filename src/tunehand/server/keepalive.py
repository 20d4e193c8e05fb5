"""uvicorn's sans-I/O websocket protocol, tuned for tens of thousands of idle devices.

A lost device must be noticed within seconds (the session pauses where it was), so
every connection is watched. uvicorn pings each one every `ws_ping_interval`; with tens
of thousands of devices that is thousands of pings and pongs a second, although every
tunehand client pings the server on its own every 3 s. Here a connection's ping timer
first looks at when the peer last sent anything (its own pings count): if that is
recent, the timer is set again from then and no ping goes out. A peer silent for the
interval is pinged and, with no answer within `ws_ping_timeout`, dropped as before,
so a lost device is still dropped `interval + timeout` after its last frame.

Also, uvicorn keeps the handshake's request and response (their headers, ~3 KiB) for
the life of the connection; they are let go once the handshake is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any


def protocol_class() -> type[asyncio.Protocol] | str:
    """The protocol for uvicorn's `ws` setting; "auto" if this uvicorn lacks the hooks."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:
        return "auto"
    if not all(
        hasattr(WebSocketsSansIOProtocol, name)
        for name in ("data_received", "send_keepalive_ping", "start_keepalive")
    ):
        return "auto"

    class QuietKeepalive(WebSocketsSansIOProtocol):
        last_rx = 0.0

        def data_received(self, data: bytes) -> None:
            self.last_rx = self.loop.time()
            super().data_received(data)

        def send_keepalive_ping(self) -> None:
            interval: Any = self.ping_interval
            idle = self.loop.time() - self.last_rx
            if interval and idle < interval:
                self.ping_timer = self.loop.call_later(interval - idle, self.send_keepalive_ping)
                return
            super().send_keepalive_ping()

        def start_keepalive(self) -> None:
            # Called once the handshake response is written; nothing reads them after.
            self.request: Any = None
            self.response: Any = None
            super().start_keepalive()

    return QuietKeepalive
