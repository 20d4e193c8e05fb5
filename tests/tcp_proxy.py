"""A tiny TCP proxy standing in for a load balancer in front of several server instances.

`TcpProxy(upstream)` listens on 127.0.0.1:0 (see `url` / `port`) and forwards every
accepted connection to the current upstream `(host, port)`, bytes both ways, until
either side closes. It runs its own asyncio loop in a background thread, so sync and
async tests alike can use it. `switch(upstream)` points new connections elsewhere (and
by default cuts the open ones, as a balancer does when it takes a backend out); a
connection whose upstream refuses is closed at once, as a balancer with a dead backend
would. `close()` stops the thread and every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 64 * 1024
START_TIMEOUT_S = 10.0


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.accepted = 0
        """Connections accepted so far (each one tried the upstream of its moment)."""
        self.cut_after: int | None = None
        """When set: each connection is cut (RST) once this many bytes came back from
        the upstream through it, as a network that drops in the middle of a download."""
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port: int = self._call(self._start)

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A proxy in front of `http://host:port`."""
        return cls(_host_port(url))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the proxy's loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(START_TIMEOUT_S)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(client_w)
        host, port = self.upstream
        try:
            up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            self._writers.discard(client_w)
            _abort(client_w)
            return
        self._writers.add(up_w)
        pipes = [
            asyncio.create_task(self._pipe(client_r, up_w, client_w)),
            asyncio.create_task(self._pipe(up_r, client_w, up_w, self.cut_after)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for w in (client_w, up_w):
                self._writers.discard(w)
                _abort(w)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        src_w: asyncio.StreamWriter,
        limit: int | None = None,
    ) -> None:
        """Copy until EOF (then close `dst` once its buffer is out, so the other direction
        ends too) or an error on either side (then cut both at once); with `limit`, cut
        both once that many bytes went through."""
        sent = 0
        try:
            while data := await src.read(CHUNK):
                if limit is not None and sent + len(data) >= limit:
                    dst.write(data[: limit - sent])
                    await dst.drain()
                    _abort(dst)
                    _abort(src_w)
                    return
                sent += len(data)
                dst.write(data)
                await dst.drain()
        except OSError:
            _abort(dst)
            _abort(src_w)
        else:
            dst.close()

    def switch(self, upstream: tuple[str, int] | str, *, drop: bool = True) -> None:
        """New connections go to `upstream` (a (host, port) or an http URL); with `drop`,
        the open connections are cut so their clients reconnect through the new one."""
        target = _host_port(upstream) if isinstance(upstream, str) else upstream

        async def run() -> None:
            self.upstream = target
            if drop:
                for w in list(self._writers):
                    _abort(w)

        self._call(run)

    def close(self) -> None:
        async def run() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                _abort(w)
            for t in list(self._pipes):
                t.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(run)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abort(w: asyncio.StreamWriter) -> None:
    """Close a socket at once (RST), as a dead backend or a balancer cutting it would."""
    transport = w.transport
    if not transport.is_closing():
        transport.abort()


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)
