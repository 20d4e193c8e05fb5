"""Hostile clients before login (issue 16): what they cost everyone else.

One server on SQLite (loopback). Two cases, one row each:

1. Fragment flood: one unauthenticated channel connection sends an unfinished text frame
   and then FRAGMENTS empty continuation frames as fast as it can; when the server has
   closed it (it allows 256 fragments a message), the next connection does the same,
   for FLOOD_S. Meanwhile a prober GETs `/v1/health` on a keep-alive connection every
   PROBE_EVERY_S: the figure is the p99 of those requests (the baseline before the flood
   is printed for reference). Before the fix one such flood froze the server for 26 s.
2. Ping flood: a client that never reads (SO_RCVBUF 4 KiB) sends pings of 125 bytes as
   fast as it can for PING_FLOOD_S, reconnecting when dropped. The figure is the most
   the server's VmRSS grew over its value before (sampled every RSS_EVERY_S). Before the
   fix every pong was queued: 100 MB to 1 GB in 8 s.

Frames are serialized by the websockets library's own client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import httpx
from tests.fixtures_server import ServerProc
from tests.test_websocket import handshake
from websockets.frames import Frame, Opcode

from bench.common import Result, check, ms, percentile, running_server

FRAGMENTS = 40_000
FLOOD_S = 5.0
PROBE_EVERY_S = 0.01
BASELINE_S = 2.0
TARGET_P99_MS = 50.0
PING_FLOOD_S = 10.0
PING_BURST = 1000
RSS_EVERY_S = 0.05
TARGET_RSS_MB = 20.0


def _frame(op: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    return Frame(op, data, fin).serialize(mask=True)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _probe(srv: ServerProc, seconds: float) -> list[float]:
    """`/v1/health` latencies (s) on one keep-alive connection for `seconds`."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = await http.get("/v1/health")
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
            await asyncio.sleep(PROBE_EVERY_S)
    return out


async def _fragment_floods(srv: ServerProc, seconds: float) -> tuple[int, int]:
    """Floods until `seconds` passed: (connections used, fragments the server read
    before closing, summed)."""
    flood = _frame(Opcode.TEXT, b"{", fin=False) + _frame(Opcode.CONT, fin=False) * FRAGMENTS
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        raw, status, _ = await handshake(srv)
        if not status.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {status}")
        n += 1
        with contextlib.suppress(ConnectionError):
            raw.writer.write(flood)
            await raw.writer.drain()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(30):
                while await raw.reader.read(65536):
                    pass  # until the server closes
        raw.writer.close()
    return n, n * FRAGMENTS


async def _fragment_case(srv: ServerProc) -> Result:
    baseline = await _probe(srv, BASELINE_S)
    probe = asyncio.create_task(_probe(srv, FLOOD_S))
    floods, _ = await _fragment_floods(srv, FLOOD_S)
    during = await probe
    p99 = ms(percentile(during, 99))
    note = (
        f"{floods} connections of {FRAGMENTS:,} fragments in {FLOOD_S:g} s; {len(during)}"
        f" probes; baseline p99 {ms(percentile(baseline, 99)):.1f} ms"
    )
    print(f"  fragment flood: /v1/health p99 {p99:.1f} ms ({note})")
    return check(
        f"hostile: {FRAGMENTS:,} empty fragments before login, /v1/health p99",
        p99,
        "ms",
        TARGET_P99_MS,
        note,
    )


async def _ping_flood(srv: ServerProc, seconds: float) -> tuple[int, int]:
    """Ping without reading for `seconds`, reconnecting when dropped: (bytes sent,
    times dropped)."""
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    burst = _frame(Opcode.PING, b"p" * 125) * PING_BURST
    end = time.monotonic() + seconds
    sent = drops = 0
    while time.monotonic() < end:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        raw, status, _ = await handshake(srv, sock=sock)
        if not status.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {status}")
        try:
            while time.monotonic() < end:
                raw.writer.write(burst)
                async with asyncio.timeout(max(0.01, end - time.monotonic())):
                    await raw.writer.drain()
                sent += len(burst)
        except ConnectionError:
            drops += 1
        except TimeoutError:
            pass
        raw.writer.transport.abort()
    return sent, drops


async def _ping_case(srv: ServerProc) -> Result:
    pid = srv.proc.pid
    rss0 = _rss_kib(pid)
    peak = rss0
    flood = asyncio.create_task(_ping_flood(srv, PING_FLOOD_S))
    while not flood.done():
        peak = max(peak, _rss_kib(pid))
        await asyncio.sleep(RSS_EVERY_S)
    sent, drops = await flood
    grew = (peak - rss0) / 1024
    note = (
        f"{sent / 1e6:.0f} MB of pings in {PING_FLOOD_S:g} s, dropped {drops} times;"
        f" RSS {rss0 / 1024:.0f} -> peak {peak / 1024:.0f} MiB"
    )
    print(f"  ping flood: server RSS grew {grew:.1f} MiB ({note})")
    return check(
        "hostile: non-reading ping flood, server RSS growth", grew, "MiB", TARGET_RSS_MB, note
    )


def run() -> list[Result]:
    with running_server() as srv:
        return [asyncio.run(_fragment_case(srv)), asyncio.run(_ping_case(srv))]


if __name__ == "__main__":
    import sys

    from bench.__main__ import main

    sys.exit(main(["hostile"]))
