"""The channel's own websocket (`tunehand.server.websocket`, on the websockets library's
sans-I/O protocol) against a real server, frame by frame from a raw TCP client: the
handshake, control frames, fragmentation, every protocol violation with its close code,
the keepalive that drops a silent peer, hostile clients (fragment and ping floods, idle
and dribbling connections, more connections than the server may hold), and the pieces
that need no server (trusted proxies, the sweep, a peer too slow to read)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.utils import accept_key

from tests.fixtures_server import ServerProc, launch
from tests.test_api import all_tracks, device_token_sync, new_account
from tunehand.core.protocol import MAX_MESSAGE_BYTES
from tunehand.server import websocket as wsmod
from tunehand.server.websocket import SocketSet, WebSocket

TIMEOUT_S = 15.0
KERNEL_SNDBUF_MAX = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
"""The most the kernel buffers for one TCP socket's sending side."""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    s = launch(Path(tmp_path_factory.mktemp("ws")))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token(srv: ServerProc) -> str:
    api = new_account(srv, "ws")
    return str(api.token)


def frame(op: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    if n < 126:
        head = bytes((b0, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = bytes((b0, (0x80 if mask else 0) | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, (0x80 if mask else 0) | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    """A websocket client that writes and reads frames byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.url = ""

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def auth(self, token: str, device_id: str = "raw") -> bytes:
        """`auth` as `device_id`, with a token of that device (logged in if need be)."""
        if self.url:
            token = device_token_sync(self.url, token, device_id)
        msg = {"type": "auth", "token": token, "device": {"id": device_id, "name": device_id}}
        return json.dumps(msg).encode()

    async def frame(self, timeout: float = TIMEOUT_S) -> tuple[int, bytes]:
        """The next frame from the server (which never masks): (opcode, payload)."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "server frames are not masked"
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def message(self, type_: str) -> dict[str, Any]:
        """The next text message of JSON `type_` (skipping others)."""
        while True:
            op, payload = await self.frame()
            assert op == 1, (op, payload)
            msg: dict[str, Any] = json.loads(payload)
            if msg.get("type") == type_:
                return msg

    async def closed_with(self) -> int:
        """Read until the server's close frame; then the connection ends. Its code."""
        while True:
            op, payload = await self.frame()
            if op == 8:
                code = int.from_bytes(payload[:2], "big") if payload else 1005  # no code
                async with asyncio.timeout(TIMEOUT_S):
                    assert await self.reader.read() == b""  # then the server closes
                return code


async def handshake(
    srv: ServerProc,
    path: str = "/v1/channel",
    headers: dict[str, str] | None = None,
    sock: socket.socket | None = None,
) -> tuple[Raw, str, dict[str, str]]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    if sock is None:
        reader, writer = await asyncio.open_connection(host, int(port))
    else:
        reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    sent = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        **(headers or {}),
    }
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items() if v)
    writer.write(request.encode() + b"\r\n")
    async with asyncio.timeout(TIMEOUT_S):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head.strip().split("\r\n")
    got = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    if status.startswith("HTTP/1.1 101"):
        assert got["sec-websocket-accept"] == accept_key(key)
    raw = Raw(reader, writer)
    raw.url = srv.url
    return raw, status, got


async def test_handshake_declines_compression_and_answers_pings(srv: ServerProc) -> None:
    raw, status, headers = await handshake(srv)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert "sec-websocket-extensions" not in headers  # no permessage-deflate
    raw.send(frame(9, b"are you there"))
    assert await raw.frame() == (10, b"are you there")
    raw.send(frame(8, (1000).to_bytes(2, "big") + b"bye"))
    assert await raw.closed_with() == 1000


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/elsewhere", {}, "404"),
        ("/v1/channel", {"Sec-WebSocket-Key": ""}, "400"),
        ("/v1/channel", {"Sec-WebSocket-Key": "c2hvcnQ="}, "400"),
        ("/v1/channel", {"Sec-WebSocket-Version": "8"}, "426"),
    ],
)
async def test_bad_handshakes_get_an_http_error(
    srv: ServerProc, path: str, headers: dict[str, str], status: str
) -> None:
    raw, line, got = await handshake(srv, path, headers)
    assert line.split(" ")[1] == status, line
    if status == "426":
        assert got["sec-websocket-version"] == "13"
    async with asyncio.timeout(TIMEOUT_S):
        await raw.reader.read()  # the body, then the server closes
    assert raw.reader.at_eof()


async def test_a_fragmented_message_with_a_ping_inside_is_joined(
    srv: ServerProc, token: str
) -> None:
    raw, _, _ = await handshake(srv)
    auth = raw.auth(token, "fragments")
    raw.send(frame(1, auth[:10], fin=False))
    raw.send(frame(9, b"mid"))
    raw.send(frame(0, auth[10:20], fin=False))
    raw.send(frame(0, auth[20:]))
    assert await raw.frame() == (10, b"mid")  # the ping is answered at once
    hello = await raw.message("hello")
    assert hello["device_id"] == "fragments"
    # A binary message is JSON too; a bad one gets an error and the channel stays.
    raw.send(frame(2, json.dumps({"type": "ping"}).encode()))
    assert (await raw.message("pong"))["type"] == "pong"
    raw.send(frame(1, b"{not json"))
    err = await raw.message("error")
    assert err["code"] == "invalid"
    raw.send(frame(8, b""))
    assert await raw.closed_with() == 1005  # the empty close frame, echoed


async def test_messages_that_wait_for_the_database_keep_their_order(
    srv: ServerProc, token: str
) -> None:
    """An auth and more resyncs than the inbox holds, in one write: all are answered, in
    order, and reading resumes after the connection stopped reading meanwhile."""
    from tunehand.server.channel import INBOX_LIMIT

    raw, _, _ = await handshake(srv)
    n = INBOX_LIMIT + 8
    burst = [frame(1, raw.auth(token, "burst"))]
    burst += [frame(1, json.dumps({"type": "resync"}).encode()) for _ in range(n)]
    burst.append(frame(1, json.dumps({"type": "time", "t0": 7}).encode()))
    raw.send(b"".join(burst))
    hello = await raw.message("hello")
    kinds = []
    while len(kinds) < n + 1:
        op, payload = await raw.frame()
        assert op == 1
        kind = json.loads(payload)["type"]
        if kind != "devices":  # this device coming online, pushed meanwhile
            kinds.append(kind)
    assert kinds == ["state"] * n + ["time"]  # the time request waited its turn
    assert hello["device_id"] == "burst"
    raw.send(frame(1, json.dumps({"type": "time", "t0": 8}).encode()))
    assert (await raw.message("time"))["t0"] == 8


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(1, b"{}", mask=False)], 1002),
        ([frame(1, b"{}", rsv=0x40)], 1002),
        ([frame(3, b"")], 1002),
        ([frame(9, b"x", fin=False)], 1002),
        ([frame(9, b"x" * 126)], 1002),
        ([frame(0, b"orphan")], 1002),
        ([frame(1, b"{", fin=False), frame(1, b"}")], 1002),
        ([frame(1, b"\xff\xfe")], 1007),
        ([frame(8, b"\x03")], 1002),
        ([frame(8, (999).to_bytes(2, "big"))], 1002),
        ([frame(8, (1000).to_bytes(2, "big") + b"\xff")], 1007),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "unknown-opcode",
        "fragmented-control",
        "long-control",
        "orphan-continuation",
        "message-inside-fragments",
        "bad-utf8",
        "one-byte-close",
        "bad-close-code",
        "bad-close-reason",
    ],
)
async def test_protocol_violations_close_with_the_rfc_code(
    srv: ServerProc, frames: list[bytes], code: int
) -> None:
    raw, _, _ = await handshake(srv)
    for f in frames:
        raw.send(f)
    assert await raw.closed_with() == code


async def test_too_big_is_refused_before_the_payload_arrives(srv: ServerProc) -> None:
    raw, _, _ = await handshake(srv)
    # Only the header of a frame longer than the limit: the server does not wait for it.
    raw.send(bytes((0x81, 0x80 | 127)) + (MAX_MESSAGE_BYTES + 1).to_bytes(8, "big"))
    assert await raw.closed_with() == 1009
    raw, _, _ = await handshake(srv)
    half = b"x" * (MAX_MESSAGE_BYTES // 2 + 1)
    raw.send(frame(1, half, fin=False) + frame(0, half, fin=False))
    assert await raw.closed_with() == 1009


async def test_a_silent_peer_is_pinged_then_dropped(srv: ServerProc, token: str) -> None:
    raw, _, _ = await handshake(srv)
    raw.send(frame(1, raw.auth(token, "quiet")))
    await raw.message("hello")
    t0 = time.monotonic()
    # Never answer: the server pings once after PING_IDLE_S, then gives up.
    while True:
        op, _ = await raw.frame()
        if op == 9:
            break
    pinged = time.monotonic() - t0
    assert await raw.closed_with() == 1011
    dropped = time.monotonic() - t0
    assert wsmod.PING_IDLE_S - 0.5 <= pinged <= wsmod.PING_IDLE_S + 2 * wsmod.SWEEP_S + 1
    idle = wsmod.PING_IDLE_S + wsmod.PONG_TIMEOUT_S
    assert idle - 0.5 <= dropped <= idle + 2 * wsmod.SWEEP_S + 1


async def test_a_peer_that_answers_pings_stays(srv: ServerProc, token: str) -> None:
    raw, _, _ = await handshake(srv)
    raw.send(frame(1, raw.auth(token, "answers")))
    await raw.message("hello")
    for _ in range(2):
        while True:
            op, payload = await raw.frame()
            if op == 9:
                break
        raw.send(frame(10, payload))
    # Still up: it answers a time request.
    raw.send(frame(1, json.dumps({"type": "time", "t0": 1}).encode()))
    assert (await raw.message("time"))["t0"] == 1


async def test_a_device_that_never_authenticates_is_closed(srv: ServerProc) -> None:
    raw, _, _ = await handshake(srv)
    t0 = time.monotonic()
    # It answers pings, so only the authentication deadline can end it.
    while True:
        op, payload = await raw.frame(timeout=20)
        if op == 9:
            raw.send(frame(10, payload))
            continue
        assert op == 8
        assert int.from_bytes(payload[:2], "big") == 4001
        break
    assert time.monotonic() - t0 >= 9.5


async def address_seen(srv: ServerProc, token: str, forwarded_for: str) -> str:
    """The address the server records for a device connecting with this header."""
    device = f"fwd-{os.urandom(4).hex()}"
    raw, _, _ = await handshake(srv, headers={"X-Forwarded-For": forwarded_for})
    raw.send(frame(1, raw.auth(token, device)))
    hello = await raw.message("hello")
    return str(next(d["address"] for d in hello["devices"] if d["id"] == device))


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    srv: ServerProc, token: str, tmp_path: Path
) -> None:
    # Not a proxy of this server's: a device cannot choose the address it is listed at.
    assert await address_seen(srv, token, "203.0.113.9") == "127.0.0.1"
    proxied = launch(tmp_path, extra_args=("--trust-proxy", "127.0.0.1"))
    try:
        token2 = str(new_account(proxied, "fwd").token)
        # The same rules as for HTTP (uvicorn's): the first hop from the right that is
        # not a trusted proxy; a port is no part of the address.
        assert await address_seen(proxied, token2, "203.0.113.9") == "203.0.113.9"
        assert await address_seen(proxied, token2, "198.51.100.4:5000, 127.0.0.1") == (
            "198.51.100.4"
        )
    finally:
        proxied.stop()


# --- pieces without a server ---------------------------------------------------------


class _Transport:
    """The transport's side only (a boundary fake)."""

    def __init__(self, buffered: int = 0) -> None:
        self.written: list[bytes] = []
        self.buffered = buffered
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


class _State:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def _open_socket(sockets: SocketSet, transport: _Transport) -> WebSocket:
    """A websocket past its handshake (what it wrote for that forgotten)."""
    sock = WebSocket(sockets, _State(), 1000)
    sock.connection_made(transport)  # type: ignore[arg-type]
    sock.data_received(UPGRADE)
    assert transport.written[0].startswith(b"HTTP/1.1 101 "), transport.written
    assert sock in sockets.open
    transport.written.clear()
    return sock


async def test_the_sweep_pings_the_silent_and_drops_the_dead() -> None:
    sockets = SocketSet(ping_idle_s=3.5, pong_timeout_s=4.0)
    quiet, busy, stuck = _Transport(), _Transport(), _Transport(buffered=4096)
    a, b = await _open_socket(sockets, quiet), await _open_socket(sockets, busy)
    c = await _open_socket(sockets, stuck)
    t = a.last_rx
    b.last_rx = t + 3.0
    c.last_rx = t
    sockets.sweep(t + 3.6)
    assert quiet.written == [bytes((0x89, 8)) + b"tunehand"] and not busy.written
    sockets.sweep(t + 7.0)
    assert not quiet.closed
    sockets.sweep(t + 7.7)
    assert quiet.closed and quiet.written[-1][:4] == bytes((0x88, 2 + 22)) + b"\x03\xf3"
    assert not quiet.aborted  # nothing waited: a close that sends the close frame
    assert stuck.aborted  # data waits for a dead peer: aborted, not left to TCP retries
    assert not busy.closed  # pinged, not dropped
    assert busy.written == [bytes((0x89, 8)) + b"tunehand"]
    sockets.close()


async def test_a_keepalive_ping_is_answered_whole_or_split() -> None:
    sockets = SocketSet()
    transport = _Transport()
    sock = await _open_socket(sockets, transport)
    ping = frame(9, b"\x01\x02\x03\x04")
    sock.data_received(ping)  # the usual case: one read, one 4-byte ping
    sock.data_received(ping[:3])  # the same, cut in two by the network
    sock.data_received(ping[3:])
    sock.data_received(frame(9, b"abc") + b"\x89")  # 10 bytes, but not a lone ping
    sock.data_received(frame(9, b"wxyz")[1:])
    assert transport.written == [
        b"\x8a\x04\x01\x02\x03\x04",
        b"\x8a\x04\x01\x02\x03\x04",
        b"\x8a\x03abc",
        b"\x8a\x04wxyz",
    ]
    assert not transport.closed
    sockets.close()


async def test_a_close_reason_is_cut_between_characters() -> None:
    sockets, transport = SocketSet(), _Transport()
    sock = await _open_socket(sockets, transport)
    sock.close(1008, "é" * 100)  # 200 bytes of UTF-8
    (written,) = transport.written
    assert written[:4] == bytes((0x88, 2 + 122)) + (1008).to_bytes(2, "big")
    assert written[4:].decode() == "é" * 61  # 122 bytes: the 123rd would split a character
    sockets.close()


async def test_a_peer_too_slow_to_read_is_refused_more() -> None:
    sockets = SocketSet()
    slow = _Transport(buffered=wsmod.MAX_BUFFERED_OUT + 1)
    sock = await _open_socket(sockets, slow)
    assert sock.send(b"{}")  # not paused: the transport takes it
    sock.pause_writing()
    assert not sock.send(b"{}")
    sock.resume_writing()
    assert sock.send(b"{}")
    assert slow.written == [bytes((0x81, 2)) + b"{}"] * 2
    sockets.close()


async def test_a_peer_that_floods_instead_of_answering_our_close_is_cut_off() -> None:
    sockets, transport = SocketSet(), _Transport()
    sock = await _open_socket(sockets, transport)
    sock.close(4001, "authenticate first")
    assert transport.written[-1][:4] == bytes((0x88, 20)) + (4001).to_bytes(2, "big")
    sock.data_received(frame(9, b"x" * 125) * 400)  # 52 KB of pings: still answered
    assert not transport.aborted
    sock.data_received(frame(9, b"x" * 125) * 200)  # past MAX_AFTER_CLOSE: cut off
    assert transport.aborted
    sockets.close()


# --- closing: the server stopping, a device that stops reading ---------------------------


async def test_the_server_stopping_closes_with_1012(tmp_path: Path) -> None:
    """README: "The server restarting closes with 1012" (the devices reconnect)."""
    music = tmp_path / "music"
    music.mkdir()
    s = launch(tmp_path, music=music)
    try:
        token = new_account(s, "bye").token
        raw, _, _ = await handshake(s)
        raw.send(frame(1, raw.auth(token, "stays")))
        await raw.message("hello")
        s.proc.send_signal(signal.SIGTERM)
        assert await raw.closed_with() == wsmod.CLOSE_RESTART == 1012
        assert s.proc.wait(timeout=20) == 0
    finally:
        s.stop()


async def test_a_device_that_stops_reading_is_disconnected_with_1013(srv: ServerProc) -> None:
    """README: "A device that stops reading is disconnected (1013) once 1 MiB waits for it".

    The device authenticates with a small receive buffer and then reads nothing while the
    account's session changes: every change is a state message of a long queue (~250 KB).
    It keeps sending (so it is not dropped as silent) until it reads again, finding the
    states and then the close frame with 1013."""
    api = new_account(srv, "slow")
    ids = [t["id"] for t in all_tracks(api)]
    api.cmd("queue_add", track_ids=[ids[i % len(ids)] for i in range(3_000)])
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    raw, _, _ = await handshake(srv, sock=sock)
    raw.send(frame(1, raw.auth(api.token, "stops-reading")))
    await raw.message("hello")
    # Stop reading; change the session until more than the server lets wait for this
    # device can be on its way: its own 1 MiB plus the most the kernel buffers for a
    # socket (the first state past them makes it give up). Then read at once: the close
    # frame waits behind the states, and the server drops the connection 2 s after it.
    budget = wsmod.MAX_BUFFERED_OUT + KERNEL_SNDBUF_MAX + 64 * 1024  # and our small buffer
    sent = n = 0
    while sent <= budget:
        n += 1
        out = api.cmd("volume", value=n % 100)  # a new state each time
        sent += len(json.dumps(out["state"]))
        raw.send(frame(9, b"alive"))  # a ping: it is not silent
        await raw.writer.drain()
    codes = []
    while True:
        op, payload = await raw.frame()
        if op == 8:
            codes.append(int.from_bytes(payload[:2], "big"))
            break
    assert codes == [1013], codes
    assert b"too slow" in payload
    api.close()
