"""The server side of a websocket on an asyncio transport, lean enough for tens of
thousands of mostly idle devices on one instance, and the HTTP connections' limits.

uvicorn parses the HTTP request and, for an upgrade, hands the connection to the
protocol class named by its `ws` setting, replaying the request's bytes. Here that class
is a `WebSocket`: it feeds what arrives to the `websockets` library's sans-I/O
`ServerProtocol` (the handshake, frames, control frames, fragment and size limits, the
close handshake are its job), writes what that has to send, and calls `on_message` for
each whole message, synchronously. A connection holds no task and no queue while it
is idle; what a message needs to wait for (the database) runs on a task that exists
only while it does.

No extension is negotiated (an offer of permessage-deflate is declined). A message may
come in at most MAX_FRAGMENTS frames and `max_size` bytes; violations close with the
RFC's codes (1002, 1007, 1009), as the library decides.

Keepalive: tunehand clients ping every 3 s. One `SocketSet` per server looks at every
connection twice a second: one silent for PING_IDLE_S is pinged, and dropped when still
silent PONG_TIMEOUT_S later, so a lost device is dropped within 8 s of its last frame
without a timer per connection. The same task ends HTTP connections whose request
has not fully arrived HEADER_TIMEOUT_S after it began (or after the connection opened).

Flow control: writes never wait. A peer that stops reading fills the transport's buffer;
past MAX_BUFFERED_OUT bytes a send fails and the owner decides (the channel disconnects
such a device, which resyncs when it reconnects). What the connection writes on its own
(pongs, close frames) is bounded too: past MAX_HELD_OUT bytes waiting, the peer is
dropped at once.

Connections: past `SocketSet.limit` open connections (`serve --max-connections`), a new
connection takes the place of the one that has waited longest (EVICT_AFTER_S or more)
without sending its request, or is answered 503 and closed; channels may take all but
HTTP_RESERVE of them, so that `/v1/health` and logins still get through when devices
fill the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.exceptions import InvalidHeaderValue
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger("tunehand.websocket")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
MAX_BUFFERED_OUT = 1024 * 1024
"""Bytes waiting to be written to one peer before a send fails (the peer is too slow)."""
MAX_HELD_OUT = 2 * MAX_BUFFERED_OUT
"""Bytes waiting for one peer past which what it sends is not answered: it is dropped (a
client that sends pings and reads no pongs). Above MAX_BUFFERED_OUT by more than the
largest message (a state with the longest queue, ~0.8 MB), so that a device merely slow
to read is closed by its owner (1013) first."""
MAX_FRAGMENTS = 256
"""Frames one message may come in (empty continuation frames cost as much as full ones)."""
FEED_BYTES = 1024
"""What the protocol is given to parse at a time (see `WebSocket.data_received`)."""
MAX_AFTER_CLOSE = 64 * 1024
"""Bytes read from a peer after our close frame, waiting for its own, before it is cut off."""
"""Frames one message may come in (empty continuation frames cost as much as full ones)."""
PING_IDLE_S = 3.5
PONG_TIMEOUT_S = 4.0
SWEEP_S = 0.5
SWEEP_STEPS = 10
CLOSE_WAIT_S = 2.0
"""How long a closing connection waits for the peer's close frame."""
HEADER_TIMEOUT_S = 10.0
"""How long an HTTP request (its headers and body) may take to arrive, from its first
byte or, on a new connection, from the connection."""
EVICT_AFTER_S = 1.0
"""How long a connection must have waited for its request before a new connection may
take its place when the server is full."""
DISCARDING = -2
MAX_DISCARD_BYTES = 1024 * 1024
"""Bytes read and dropped after a 431 answer before the connection is cut off."""
HTTP_RESERVE = 16
"""Connections of `SocketSet.limit` that channels may not take (health checks, logins)."""
MAX_HEAD_BYTES = 64 * 1024
"""The most a request's line and headers may take (httptools itself has no limit)."""
TOO_LARGE = b"request line and headers too large\n"
FULL = b"server full: too many connections, try again later\n"


class SocketSet:
    """The open websockets of one server, the HTTP connections waiting for a request,
    the connection limit, and the one task that keeps them all in check."""

    def __init__(self, ping_idle_s: float = PING_IDLE_S, pong_timeout_s: float = PONG_TIMEOUT_S):
        self.ping_idle_s, self.pong_timeout_s = ping_idle_s, pong_timeout_s
        self.open: set[WebSocket] = set()
        self.waiting: dict[Http, float] = {}
        """HTTP connections whose request has not fully arrived, oldest first: when it
        began (a loop time)."""
        self.limit = 0
        """The most connections (HTTP and websocket) held at once; 0: no limit."""
        self.header_timeout_s = HEADER_TIMEOUT_S
        self._task: asyncio.Task[None] | None = None

    def add(self, sock: WebSocket) -> None:
        self.open.add(sock)
        self._start()

    def discard(self, sock: WebSocket) -> None:
        self.open.discard(sock)

    def channels_full(self) -> bool:
        return bool(self.limit) and len(self.open) >= max(1, self.limit - HTTP_RESERVE)

    def wait_request(self, conn: Http, now: float) -> None:
        """`conn` waits for a request from now on (the newest of the waiting)."""
        self.waiting.pop(conn, None)
        self.waiting[conn] = now
        self._start()

    def evict(self, now: float) -> bool:
        """Make room for a new connection: close the one that has waited longest for
        its request, if it has waited EVICT_AFTER_S (a client sends its request at once:
        idle connections must not keep everyone else out). False if there is none."""
        for conn, since in self.waiting.items():
            if now - since < EVICT_AFTER_S:
                return False
            del self.waiting[conn]
            conn.request_timeout()
            return True
        return False

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Every connection is looked at once per SWEEP_S, a slice at a time: a pass
        over tens of thousands in one go would stall every device's messages for it."""
        loop = asyncio.get_running_loop()
        while True:
            socks = list(self.open)
            size = -(-len(socks) // SWEEP_STEPS)
            for i in range(SWEEP_STEPS):
                await asyncio.sleep(SWEEP_S / SWEEP_STEPS)
                now = loop.time()
                self.expire(now)
                if size:
                    self.sweep(now, socks[i * size : (i + 1) * size])

    def expire(self, now: float) -> None:
        """End the HTTP connections whose request is overdue (the oldest come first)."""
        due = []
        for conn, since in self.waiting.items():
            if now - since < self.header_timeout_s:
                break
            due.append(conn)
        for conn in due:
            del self.waiting[conn]
            conn.request_timeout()

    def sweep(self, now: float, socks: list[WebSocket] | None = None) -> None:
        """Ping the connections (`socks`, or all) silent for `ping_idle_s`; drop those
        that stayed silent `pong_timeout_s` after their ping; close those that never
        authenticated."""
        idle, timeout = self.ping_idle_s, self.pong_timeout_s
        for sock in list(self.open) if socks is None else socks:
            if sock.deadline and now >= sock.deadline:
                sock.deadline = 0.0
                sock.on_deadline()
            if now - sock.last_rx < idle or sock.closing:
                continue
            if not sock.pinged:
                sock.pinged = now
                sock.ping(b"tunehand")
            elif now - sock.pinged >= timeout:
                sock.fail(CLOSE_INTERNAL, "keepalive ping timeout", dead=True)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _close_reason(reason: str) -> str:
    """At most 123 bytes of `reason` (what fits in a close frame), cut between
    characters (a cut inside one would be invalid UTF-8, which the peer must refuse)."""
    return reason.encode()[:123].decode(errors="ignore")


def _plain(status: int, phrase: str, body: bytes, extra: bytes = b"") -> bytes:
    """A whole plain-text HTTP response that closes the connection."""
    return (
        f"HTTP/1.1 {status} {phrase}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _refuse(transport: asyncio.BaseTransport) -> None:
    """Answer a connection past the limit with 503 before its request, and close it."""
    t = cast(asyncio.Transport, transport)
    t.write(_plain(503, "Service Unavailable", FULL, b"Retry-After: 5\r\n"))
    t.close()


class Http(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools), with a deadline for each request to arrive
    and the server's connection limit."""

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None
    ):
        super().__init__(config, server_state, app_state, _loop)
        self.sockets: SocketSet = app_state["services"].sockets
        self.refused = False
        self.head_bytes = 0
        """Bytes of the request's head (line and headers) so far; -1 once it is whole,
        DISCARDING once it was too large and answered."""
        self.discarded = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self.sockets.limit
        if limit and len(self.connections) >= limit and not self.sockets.evict(self.loop.time()):
            self.refused = True
            _refuse(transport)
            return
        super().connection_made(transport)
        self.sockets.wait_request(self, self.loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.sockets.waiting.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.head_bytes == DISCARDING:
            # Answered 431: what still comes is read and dropped (closing with unread
            # input would reset the connection and lose the answer) up to a bound; the
            # request deadline ends the connection if the peer never stops.
            self.discarded += len(data)
            if self.discarded > MAX_DISCARD_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        if self.head_bytes >= 0:  # still in the head: all of `data` was
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.write(_plain(431, "Request Header Fields Too Large", TOO_LARGE))
                if self.transport.can_write_eof():
                    self.head_bytes = DISCARDING
                    self.transport.write_eof()
                else:
                    self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self.sockets.wait_request(self, self.loop.time())

    def on_headers_complete(self) -> None:
        self.head_bytes = -1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.sockets.waiting.pop(self, None)
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self.sockets.waiting.pop(self, None)
        super().handle_websocket_upgrade()

    def request_timeout(self) -> None:
        """The request did not arrive in time: close (no answer: it may never read)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class WebSocket(asyncio.Protocol):
    """One websocket connection; subclasses handle messages (`on_message`)."""

    __slots__ = (
        "after_close",
        "closing",
        "deadline",
        "frags",
        "headers",
        "last_rx",
        "loop",
        "max_size",
        "paused",
        "peer",
        "pinged",
        "proto",
        "server_state",
        "sockets",
        "transport",
    )
    path = "/"
    """The one path this class answers; any other gets 404."""

    def __init__(self, sockets: SocketSet, server_state: Any, max_size: int) -> None:
        self.sockets, self.server_state, self.max_size = sockets, server_state, max_size
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.proto: ServerProtocol | None = None
        self.headers: dict[str, str] | None = None
        """The request's headers (lowercase names) while `on_open` runs."""
        self.frags: list[bytes] | None = None
        """A fragmented message so far: its opcode (one byte), then its fragments."""
        self.closing = False
        self.paused = False
        self.after_close = 0
        self.peer = ""
        self.last_rx = self.pinged = self.deadline = 0.0

    # --- what subclasses implement ----------------------------------------------

    def on_open(self) -> None:
        """The handshake is answered; `headers` are there until this returns."""

    def on_message(self, data: str | bytes) -> None:
        """A whole text (str) or binary (bytes) message."""

    def on_closed(self) -> None:
        """The connection is gone (called once)."""

    def on_deadline(self) -> None:
        """`deadline` (a loop time) passed."""

    # --- sending ----------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send a text message (UTF-8 `data`); False when the peer is too slow (more
        than MAX_BUFFERED_OUT bytes wait) or the connection is closing."""
        t, p = self.transport, self.proto
        if self.closing or t is None or p is None or p.state is not State.OPEN:
            return False
        if self.paused and t.get_write_buffer_size() > MAX_BUFFERED_OUT:
            return False
        p.send_text(data)
        self._flush()
        return True

    def ping(self, payload: bytes) -> None:
        p = self.proto
        if p is not None and p.state is State.OPEN:
            p.send_ping(payload)
            self._flush()

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame; the connection ends when the peer answers, or soon."""
        p = self.proto
        if self.closing or self.transport is None or p is None:
            return
        self.closing = True
        if p.state is State.OPEN:
            p.send_close(code, _close_reason(reason))
            self._flush()
        self.loop.call_later(CLOSE_WAIT_S, self._abort)

    def fail(self, code: int, reason: str, *, dead: bool = False) -> None:
        """Close at once (a protocol violation). A `dead` peer's connection is aborted if
        anything waits to be written to it: that would hold the connection open for as
        long as TCP keeps retrying, and its device would not count as lost meanwhile."""
        t, p = self.transport, self.proto
        if t is None or p is None:
            return
        self.closing = True
        if p.state is State.OPEN or p.state is State.CLOSING:
            p.fail(code, _close_reason(reason))
            self._flush()  # the close frame, then half-closed
        if dead and t.get_write_buffer_size():
            t.abort()
        elif dead or not p.eof_sent:
            t.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        """Write what the protocol has to send; close when it says the stream ends."""
        t, p = self.transport, self.proto
        if t is None or p is None:
            return
        out = p.data_to_send()
        if not out:
            return
        eof = not out[-1]  # websockets' SEND_EOF: the stream ends
        if t.is_closing():
            return
        data = b"".join(out)
        if data:
            t.write(data)
        if eof:
            # Half-close, as the library asks: the peer reads everything up to the close
            # frame, while what it still sends is read and dropped (a full close with
            # unread data would reset the connection, and the close frame with it).
            self.closing = True
            if t.can_write_eof():
                t.write_eof()
                self.loop.call_later(CLOSE_WAIT_S, self._abort)
            else:
                t.close()

    def _bound(self) -> None:
        """Drop a peer whose input made us write past MAX_HELD_OUT (pongs it never reads)."""
        t = self.transport
        if t is not None and not t.is_closing() and t.get_write_buffer_size() > MAX_HELD_OUT:
            log.warning("websocket: %s reads too little of what it asks for: dropped", self.peer)
            self.closing = True
            t.abort()

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.server_state.connections.add(self)
        self.last_rx = self.loop.time()
        self.proto = ServerProtocol(max_size=self.max_size)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.sockets.discard(self)
        self.closing = True
        self.transport = None
        self.proto = self.frags = None
        self.on_closed()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: the devices reconnect to another instance (or
        this one, restarted)."""
        p = self.proto
        if p is not None and p.state is State.CONNECTING:
            self._respond(p, p.reject(503, "shutting down\n"))
        else:
            self.fail(CLOSE_RESTART, "server restarting")

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        self.pinged = 0.0
        if len(data) <= FEED_BYTES:
            self._feed(data)
            return
        # The library parses all it is given before it says what it found: a read of
        # 256 KiB of empty frames would be 40,000 frames parsed before the first one
        # counted. A slice at a time, what breaks a limit stops the parsing early.
        for i in range(0, len(data), FEED_BYTES):
            t = self.transport
            if t is None or t.is_closing():
                return
            self._feed(data[i : i + FEED_BYTES])

    def _feed(self, data: bytes) -> None:
        p = self.proto
        if p is None:
            return
        if self.closing and p.state is State.CLOSING and not p.eof_sent:
            # Our close frame is out and the library still parses, for the peer's: a
            # peer that floods instead of answering is not read for long.
            self.after_close += len(data)
            if self.after_close > MAX_AFTER_CLOSE and self.transport is not None:
                self.transport.abort()
                return
        p.receive_data(data)
        for event in p.events_received():
            if isinstance(event, Frame):
                if event.opcode <= Opcode.BINARY and not self.closing:
                    self._data_frame(event)
            elif isinstance(event, Request):
                self._handshake(p, event)
        self._flush()
        self._bound()
        if p.state is State.CLOSING or p.state is State.CLOSED:
            self.closing = True

    # --- inside ---------------------------------------------------------------------

    def _data_frame(self, frame: Frame) -> None:
        """A text, binary or continuation frame (the library checked their order and
        the message's size)."""
        op, data = frame.opcode, bytes(frame.data)
        frags = self.frags
        if op is Opcode.CONT:
            if frags is None:  # cannot happen: the library refuses an orphan
                return
            if len(frags) > MAX_FRAGMENTS:
                self.fail(CLOSE_TOO_BIG, "message in too many fragments")
                return
            frags.append(data)
            if not frame.fin:
                return
            self.frags = None
            op, data = Opcode(frags[0][0]), b"".join(frags[1:])
        elif not frame.fin:
            self.frags = [bytes((op,)), data]
            return
        if op is Opcode.TEXT:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.fail(CLOSE_INVALID_DATA, "text is not valid UTF-8")
                return
            self.on_message(text)
        else:
            self.on_message(data)

    def _handshake(self, p: ServerProtocol, request: Request) -> None:
        if request.path.partition("?")[0] != self.path:
            self._respond(p, p.reject(404, "not found\n"))
            return
        if self.sockets.channels_full():
            response = p.reject(503, FULL.decode())
            response.headers["Retry-After"] = "5"
            self._respond(p, response)
            return
        response = p.accept(request)
        exc = p.handshake_exc
        if isinstance(exc, InvalidHeaderValue) and exc.name == "Sec-WebSocket-Version":
            # RFC 6455 4.2.2: name the version this server speaks.
            response = p.reject(426, "websocket version 13 only\n")
            response.headers["Sec-WebSocket-Version"] = "13"
        if response.status_code != 101:
            self._respond(p, response)
            return
        p.send_response(response)
        self._flush()
        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        # The library's parser keeps the request for the connection's life: its headers
        # (~1.5 KiB) are not needed past this point.
        request.headers.clear()
        self.headers = headers
        self.sockets.add(self)
        try:
            self.on_open()
        finally:
            self.headers = None

    def _respond(self, p: ServerProtocol, response: Response) -> None:
        """An HTTP answer instead of the upgrade; the connection then closes."""
        self.closing = True
        p.send_response(response)
        self._flush()
