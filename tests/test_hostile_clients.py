"""Hostile clients against a real server process (issue 16, findings 1, 2 and 5): a
fragment flood and a ping flood before login, idle and slowly dribbling connections,
and more connections than the server may hold. Each is sent by a raw TCP client; frames
are made by the websockets library's own client-side serialization."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.frames import Frame, Opcode

from tests.fixtures_server import ServerProc, launch, tunehand_cmd
from tests.test_api import new_account
from tests.test_websocket import TIMEOUT_S, Raw, handshake
from tunehand.server import websocket as wsmod

MAX_CONNECTIONS = 40


def frame(op: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    """A client frame (masked), serialized by the websockets library."""
    return Frame(op, data, fin).serialize(mask=True)


def _host_port(srv: ServerProc) -> tuple[str, int]:
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def status_of(srv: ServerProc, path: str = "/v1/health") -> int:
    """The status of a GET on a new connection; 0 when the server closed it unanswered."""
    reader, writer = await asyncio.open_connection(*_host_port(srv))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT_S):
            line = await reader.readline()
        return int(line.split()[1]) if line else 0
    except ConnectionError:
        return 0
    finally:
        writer.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    s = launch(Path(tmp_path_factory.mktemp("hostile")))
    yield s
    s.stop()


# --- before login: floods on one websocket -------------------------------------------


async def test_a_flood_of_empty_fragments_is_cut_off(srv: ServerProc) -> None:
    """40,000 empty continuation frames after an unfinished text frame: the connection
    is closed with 1009 once MAX_FRAGMENTS arrived, and the server answers meanwhile."""
    raw, _, _ = await handshake(srv)
    empty = frame(Opcode.CONT, fin=False)
    raw.send(frame(Opcode.TEXT, b"{", fin=False) + empty * 40_000)
    assert await status_of(srv) == 200
    assert await raw.closed_with() == 1009


async def test_a_message_in_the_most_fragments_allowed_is_whole(srv: ServerProc) -> None:
    token = new_account(srv, "frags").token
    raw, _, _ = await handshake(srv)
    auth = raw.auth(str(token), "many-fragments")
    middle = frame(Opcode.CONT, fin=False) * (wsmod.MAX_FRAGMENTS - 2)
    raw.send(frame(Opcode.TEXT, auth[:5], fin=False) + middle + frame(Opcode.CONT, auth[5:]))
    assert (await raw.message("hello"))["device_id"] == "many-fragments"
    # One fragment more is one too many.
    raw.send(frame(Opcode.TEXT, b"{", fin=False) + middle + frame(Opcode.CONT, fin=False))
    raw.send(frame(Opcode.CONT, b"}"))
    assert await raw.closed_with() == 1009


async def test_a_client_that_pings_and_never_reads_is_dropped(srv: ServerProc) -> None:
    """The pongs waiting for a peer that reads nothing are bounded: past MAX_HELD_OUT
    the server drops it (before, every pong was queued: 1 GB in 8 s)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(_host_port(srv))
    sock.setblocking(False)
    raw, status, _ = await handshake(srv, sock=sock)
    assert status.startswith("HTTP/1.1 101")
    rss0 = rss_kib(srv.proc.pid)
    burst = frame(Opcode.PING, b"p" * 125) * 1000  # 131 KB, 127 KB of pongs
    sent = 0
    dropped = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            raw.writer.write(burst)
            async with asyncio.timeout(TIMEOUT_S):
                await raw.writer.drain()
        except ConnectionError:
            dropped = True
            break
        sent += len(burst)
    assert dropped, f"still connected after {sent} bytes of pings"
    # What waited for it is gone, and it never was more than the bound and the kernel's.
    grew_mib = (rss_kib(srv.proc.pid) - rss0) / 1024
    assert grew_mib < 32, grew_mib
    assert sent < 64 * 1024 * 1024
    assert await status_of(srv) == 200
    raw.writer.close()


# --- HTTP: requests that never arrive --------------------------------------------------


async def test_idle_and_dribbling_connections_are_closed(srv: ServerProc) -> None:
    """A connection that sends nothing, and one that sends a request's headers a byte
    at a time, are closed HEADER_TIMEOUT_S after they began."""
    host, port = _host_port(srv)
    t0 = time.monotonic()
    idle_r, idle_w = await asyncio.open_connection(host, port)
    drip_r, drip_w = await asyncio.open_connection(host, port)

    async def dribble() -> float:
        for byte in b"GET /v1/health HTTP/1.1\r\nX-Slow: " + b"a" * 10_000:
            try:
                drip_w.write(bytes((byte,)))
                await drip_w.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.2)  # the attacker's pace
            if drip_r.at_eof():  # closed by the server
                break
        return time.monotonic() - t0

    async def idle() -> float:
        async with asyncio.timeout(wsmod.HEADER_TIMEOUT_S + 10):
            assert await idle_r.read() == b""  # closed, unanswered
        return time.monotonic() - t0

    async def eof(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(wsmod.HEADER_TIMEOUT_S + 10):
                assert await reader.read() == b""

    idle_s, drip_s = await asyncio.gather(idle(), dribble())
    await eof(drip_r)
    for took in (idle_s, drip_s):
        assert wsmod.HEADER_TIMEOUT_S - 0.5 <= took <= wsmod.HEADER_TIMEOUT_S + 5, took
    idle_w.close()
    drip_w.close()


async def test_a_request_head_past_64_kib_gets_431(srv: ServerProc) -> None:
    reader, writer = await asyncio.open_connection(*_host_port(srv))
    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    with contextlib.suppress(ConnectionError):
        for _ in range(20):  # 20 headers of 8 KB, never ended
            writer.write(b"X-Big: " + b"a" * 8192 + b"\r\n")
            await writer.drain()
    async with asyncio.timeout(TIMEOUT_S):
        line = await reader.readline()
    assert line.startswith(b"HTTP/1.1 431 "), line
    writer.close()
    assert await status_of(srv) == 200


# --- more connections than the server may hold ----------------------------------------


async def test_past_the_limit_channels_are_refused_and_health_still_answers(
    tmp_path: Path,
) -> None:
    s = launch(tmp_path, extra_args=("--max-connections", str(MAX_CONNECTIONS)))
    try:
        tokens = []
        for n in range(4):  # a few devices per account, as a household has
            api = new_account(s, f"full{n}")
            tokens.append(str(api.token))
            api.close()
        channels: list[Raw] = []
        for i in range(MAX_CONNECTIONS - wsmod.HTTP_RESERVE):
            raw, status, _ = await handshake(s)
            assert status.startswith("HTTP/1.1 101"), (i, status)
            raw.send(frame(Opcode.TEXT, raw.auth(tokens[i % 4], f"full-{i}")))
            await raw.message("hello")
            channels.append(raw)
        # Channels may not take the last HTTP_RESERVE connections: a new one gets 503.
        _, status, headers = await handshake(s)
        assert status.startswith("HTTP/1.1 503"), status
        assert headers["retry-after"] == "5"
        assert await status_of(s) == 200
        # Idle connections take the rest; one more is refused...
        host, port = _host_port(s)
        idle = [await asyncio.open_connection(host, port) for _ in range(wsmod.HTTP_RESERVE)]
        assert await status_of(s) in (503, 0)
        # ...until the idle ones have waited EVICT_AFTER_S: then the newcomer takes the
        # place of the one that waited longest.
        deadline = time.monotonic() + wsmod.EVICT_AFTER_S + TIMEOUT_S
        while (code := await status_of(s)) != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert code == 200
        async with asyncio.timeout(TIMEOUT_S):
            assert await idle[0][0].read() == b""  # the oldest, closed
        # The devices were never touched.
        for raw in channels[:3]:
            raw.send(frame(Opcode.TEXT, json.dumps({"type": "time", "t0": 5}).encode()))
            assert (await raw.message("time"))["t0"] == 5
        for _, w in idle:
            w.close()
    finally:
        s.stop()


async def test_more_connections_than_descriptors_do_not_take_the_server_down(
    tmp_path: Path,
) -> None:
    """Finding 5: 600 idle connections to a server with 512 descriptors took it offline.
    The default limit leaves the server room for its own files: connections past it
    are refused, a device already there keeps working, and /v1/health answers."""
    s = launch(tmp_path, max_files=512)
    try:
        api = new_account(s, "fds")
        token = str(api.token)
        api.close()
        device, _, _ = await handshake(s)
        device.send(frame(Opcode.TEXT, device.auth(token, "fds-device")))
        await device.message("hello")
        host, port = _host_port(s)
        idle = [await asyncio.open_connection(host, port) for _ in range(600)]

        async def refused(reader: asyncio.StreamReader) -> bool:
            """Answered 503 (or closed) at once, unlike those held."""
            try:
                async with asyncio.timeout(1.0):
                    head = await reader.read(100)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            return head.startswith(b"HTTP/1.1 503") or head == b""

        n_refused = sum(await asyncio.gather(*(refused(r) for r, _ in idle)))
        assert 600 - (512 - 64) <= n_refused < 600, n_refused
        deadline = time.monotonic() + wsmod.EVICT_AFTER_S + TIMEOUT_S
        while (code := await status_of(s)) != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert code == 200
        device.send(frame(Opcode.TEXT, json.dumps({"type": "time", "t0": 9}).encode()))
        assert (await device.message("time"))["t0"] == 9
        for _, w in idle:
            w.close()
        assert s.proc.poll() is None
    finally:
        s.stop()


def test_max_connections_out_of_range_is_one_line(tmp_path: Path) -> None:
    import subprocess

    for bad in ("0", "99999999"):
        out = subprocess.run(
            tunehand_cmd(
                "serve", "--port", "0", "--data-dir", str(tmp_path), "--max-connections", bad
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "--max-connections: must be 1 to" in lines[0], out.stderr
    shown = subprocess.run(
        tunehand_cmd("serve", "--help"), capture_output=True, text=True, timeout=60, check=True
    )
    assert "--max-connections N" in shown.stdout and "ulimit -n" in shown.stdout
