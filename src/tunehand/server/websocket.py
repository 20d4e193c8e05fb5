"""The server side of a websocket (RFC 6455) on an asyncio transport, lean enough for
tens of thousands of mostly idle devices on one instance.

uvicorn parses the HTTP request and, for an upgrade, hands the connection to the
protocol class named by its `ws` setting, replaying the request's bytes. Here that class
is a `WebSocket`: it answers the handshake, parses client frames as they arrive and calls
`on_message` for each whole message, synchronously. A connection holds no task, no
queue and no parser state while it is idle (about 1 KiB of Python objects besides the
transport); what a message needs to wait for (the database) runs on a task that exists
only while it does.

Frames: client frames must be masked and carry no extension bits (no extension is
negotiated: an offer of permessage-deflate is declined by not answering it); pings are
answered at once; fragmented messages are joined up to `max_size`; a close is answered
and the connection closed. Violations close with the RFC's codes (1002, 1007, 1009).

Keepalive: tunehand clients ping every 3 s. One `SocketSet` per server looks at every
connection twice a second: one silent for PING_IDLE_S is pinged, and dropped when still
silent PONG_TIMEOUT_S later, so a lost device is dropped within 8 s of its last frame
without a timer per connection.

Flow control: writes never wait. A peer that stops reading fills the transport's buffer;
past MAX_BUFFERED_OUT bytes a send fails and the owner decides (the channel disconnects
such a device, which resyncs when it reconnects).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from typing import Any, cast

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

log = logging.getLogger("tunehand.websocket")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
MAX_REQUEST_BYTES = 16 * 1024
MAX_BUFFERED_OUT = 1024 * 1024
"""Bytes waiting to be written to one peer before a send fails (the peer is too slow)."""
PING_IDLE_S = 3.5
PONG_TIMEOUT_S = 4.0
SWEEP_S = 0.5
SWEEP_STEPS = 10
CLOSE_WAIT_S = 2.0
"""How long a closing connection waits for the peer's close frame."""


class SocketSet:
    """The open websockets of one server, and the one task that keeps them alive."""

    def __init__(self, ping_idle_s: float = PING_IDLE_S, pong_timeout_s: float = PONG_TIMEOUT_S):
        self.ping_idle_s, self.pong_timeout_s = ping_idle_s, pong_timeout_s
        self.open: set[WebSocket] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, sock: WebSocket) -> None:
        self.open.add(sock)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep())

    def discard(self, sock: WebSocket) -> None:
        self.open.discard(sock)

    async def _sweep(self) -> None:
        """Every connection is looked at once per SWEEP_S, a slice at a time: a pass
        over tens of thousands in one go would stall every device's messages for it."""
        loop = asyncio.get_running_loop()
        while True:
            socks = list(self.open)
            size = -(-len(socks) // SWEEP_STEPS)
            for i in range(SWEEP_STEPS):
                await asyncio.sleep(SWEEP_S / SWEEP_STEPS)
                if size:
                    self.sweep(loop.time(), socks[i * size : (i + 1) * size])

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
                sock.write_frame(OP_PING, b"tunehand")
            elif now - sock.pinged >= timeout:
                sock.fail(CLOSE_INTERNAL, "keepalive ping timeout", dead=True)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def frame_length(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """The payload length of the frame at `pos` in `buf` and the length of its header
    before any mask key; None while the header is not all there."""
    end = len(buf)
    if end - pos < 2:
        return None
    n = buf[pos + 1] & 0x7F
    if n == 126:
        return None if end - pos < 4 else (int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4)
    if n == 127:
        return None if end - pos < 10 else (int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10)
    return n, 2


def _header(op: int, n: int) -> bytes:
    if n < 126:
        return bytes((0x80 | op, n))
    if n < 65536:
        return bytes((0x80 | op, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | op, 127)) + n.to_bytes(8, "big")


def _close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload: the code, then at most 123 bytes of reason, cut between
    characters (a cut inside one would be invalid UTF-8, which the peer must refuse)."""
    cut = reason.encode()[:123].decode(errors="ignore").encode()
    return code.to_bytes(2, "big") + cut


def _valid_close_code(code: int) -> bool:
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class WebSocket(asyncio.Protocol):
    """One websocket connection; subclasses handle messages (`on_message`)."""

    __slots__ = (
        "_buf",
        "_frags",
        "closing",
        "deadline",
        "headers",
        "last_rx",
        "loop",
        "max_size",
        "paused",
        "peer",
        "pinged",
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
        self.headers: dict[str, str] | None = {}
        """The request's headers (lowercase names) until the handshake is answered."""
        self._buf: bytes | bytearray = b""
        self._frags: list[bytes] | None = None
        self.closing = False
        self.paused = False
        self.peer = ""
        self.last_rx = self.pinged = self.deadline = 0.0

    # --- what subclasses implement ----------------------------------------------

    def on_open(self) -> None:
        """The handshake is answered; `headers` are still there until this returns."""

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
        t = self.transport
        if self.closing or t is None:
            return False
        if self.paused and t.get_write_buffer_size() > MAX_BUFFERED_OUT:
            return False
        t.write(_header(OP_TEXT, len(data)) + data)
        return True

    def write_frame(self, op: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_header(op, len(payload)) + payload)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame; the connection ends when the peer answers, or soon."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.write_frame(OP_CLOSE, _close_payload(code, reason))
        self.loop.call_later(CLOSE_WAIT_S, self._abort)

    def fail(self, code: int, reason: str, *, dead: bool = False) -> None:
        """Close at once (a protocol violation). A `dead` peer's connection is aborted if
        anything waits to be written to it: that would hold the connection open for as
        long as TCP keeps retrying, and its device would not count as lost meanwhile."""
        if self.transport is None:
            return
        if not self.closing:
            self.closing = True
            self.write_frame(OP_CLOSE, _close_payload(code, reason))
        if dead and self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.server_state.connections.add(self)
        self.last_rx = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.sockets.discard(self)
        self.closing = True
        self.transport = None
        self._buf, self._frags = b"", None
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
        if self.headers is not None:  # still in the handshake
            self._respond(503, "shutting down")
        else:
            self.fail(CLOSE_RESTART, "server restarting")

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        self.pinged = 0.0
        if self.headers is not None:
            self._handshake(data)
            return
        if len(data) == 10 and data[0] == 0x89 and data[1] == 0x84 and not self._buf:
            # A lone keepalive ping with a 4-byte payload, as clients send every few
            # seconds (thousands a second on a busy server): answered right here.
            t = self.transport
            if t is not None and not t.is_closing():
                t.write(b"\x8a\x04" + apply_mask(data[6:], data[2:6]))
            return
        buf = self._buf + data if self._buf else data
        pos, end = 0, len(buf)
        try:
            while self.transport and not self.transport.is_closing():
                length = frame_length(buf, pos)
                if length is None:
                    break
                n, hdr = length
                b0, b1 = buf[pos], buf[pos + 1]
                if b0 & 0x70:
                    raise _Violation(CLOSE_PROTOCOL, "reserved bits set")
                if not b1 & 0x80:
                    raise _Violation(CLOSE_PROTOCOL, "client frames must be masked")
                if n > self.max_size:
                    raise _Violation(CLOSE_TOO_BIG, "message too big")
                start = pos + hdr + 4
                if end < start + n:
                    break
                payload = apply_mask(bytes(buf[start : start + n]), bytes(buf[start - 4 : start]))
                pos = start + n
                self._frame(b0 & 0x0F, bool(b0 & 0x80), payload)
        except _Violation as v:
            self.fail(v.code, v.reason)
            return
        if self.transport is None or self.transport.is_closing():
            self._buf = b""
        elif pos < end:
            self._buf = bytearray(buf[pos:]) if pos else buf
            if len(self._buf) > self.max_size + 14:
                self.fail(CLOSE_TOO_BIG, "message too big")
        else:
            self._buf = b""

    # --- inside ---------------------------------------------------------------------

    def _frame(self, op: int, fin: bool, payload: bytes) -> None:
        if op >= 8:
            if not fin or len(payload) > 125:
                raise _Violation(CLOSE_PROTOCOL, "bad control frame")
            if op == OP_PING:
                self.write_frame(OP_PONG, payload)
            elif op == OP_CLOSE:
                self._closed_by_peer(payload)
            elif op != OP_PONG:
                raise _Violation(CLOSE_PROTOCOL, "unknown opcode")
            return
        frags = self._frags
        if op == OP_CONT:
            if frags is None:
                raise _Violation(CLOSE_PROTOCOL, "continuation without a message")
            frags.append(payload)
            if sum(len(f) for f in frags) - 1 > self.max_size:
                raise _Violation(CLOSE_TOO_BIG, "message too big")
            if not fin:
                return
            self._frags = None
            op, payload = frags[0][0], b"".join(frags[1:])
        elif op in (OP_TEXT, OP_BINARY):
            if frags is not None:
                raise _Violation(CLOSE_PROTOCOL, "a message inside a fragmented one")
            if not fin:
                self._frags = [bytes((op,)), payload]
                return
        else:
            raise _Violation(CLOSE_PROTOCOL, "unknown opcode")
        if self.closing:
            return  # after our close: only the peer's close counts now
        if op == OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                raise _Violation(CLOSE_INVALID_DATA, "text is not valid UTF-8") from None
            self.on_message(text)
        else:
            self.on_message(payload)

    def _closed_by_peer(self, payload: bytes) -> None:
        if len(payload) == 1:
            raise _Violation(CLOSE_PROTOCOL, "bad close frame")
        code = int.from_bytes(payload[:2], "big") if payload else CLOSE_NORMAL
        if payload and not _valid_close_code(code):
            raise _Violation(CLOSE_PROTOCOL, "bad close code")
        try:
            payload[2:].decode()
        except UnicodeDecodeError:
            raise _Violation(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
        if not self.closing:
            self.closing = True
            self.write_frame(OP_CLOSE, code.to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()

    def _handshake(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        head, sep, rest = bytes(buf).partition(b"\r\n\r\n")
        if not sep:
            if len(buf) > MAX_REQUEST_BYTES:
                self._respond(431, "request header fields too large")
            else:
                self._buf = bytes(buf)
            return
        self._buf = b""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if len(parts) != 3 or parts[0] != "GET":
            self._respond(405, "method not allowed")
            return
        if parts[1].partition("?")[0] != self.path:
            self._respond(404, "not found")
            return
        key = headers.get("sec-websocket-key", "")
        try:
            ok_key = len(base64.b64decode(key.encode(), validate=True)) == 16
        except (binascii.Error, ValueError):
            ok_key = False
        upgrade = "websocket" in headers.get("upgrade", "").lower()
        connection = "upgrade" in [
            t.strip() for t in headers.get("connection", "").lower().split(",")
        ]
        if not (upgrade and connection and ok_key):
            self._respond(400, "not a websocket handshake")
            return
        if headers.get("sec-websocket-version", "") != "13":
            self._respond(426, "websocket version 13 only", b"Sec-WebSocket-Version: 13\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID, usedforsecurity=False).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.headers = headers
        self.sockets.add(self)
        try:
            self.on_open()
        finally:
            self.headers = None
        if rest and self.transport is not None:
            self.data_received(rest)

    def _respond(self, status: int, message: str, extra: bytes = b"") -> None:
        self.closing = True
        self.headers = None
        if self.transport is None:
            return
        body = message.encode() + b"\n"
        self.transport.write(
            f"HTTP/1.1 {status} {message}\r\n".encode()
            + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            + extra
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.transport.close()


class _Violation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason
