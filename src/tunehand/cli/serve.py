"""`tunehand serve`: run the sync server until SIGINT or SIGTERM.

The database is opened and migrated before the socket listens, so a bad
`--database` ends with one line; the listening URL is printed once the app is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import FrameType
from typing import Any

from tunehand.cli.serverside import settings_from
from tunehand.errors import StoreError, TunehandError, UsageError
from tunehand.server import channel, encoder_slots, security
from tunehand.server.app import create_app, open_database
from tunehand.server.services import Services, Settings
from tunehand.server.streams import load_or_create_key

MAX_WORKERS = 64
FD_RESERVE = 64
"""Descriptors a server process keeps for itself (database, Redis, files, the listening
socket) besides its connections."""


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGINT/SIGTERM shutdown ends with exit 0, not the signal,
        and the app learns of the shutdown before uvicorn closes the websockets."""

        on_exit: Callable[[], None] | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.on_exit is not None:
                self.on_exit()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return Server


class _Progress:
    """Scan progress on the terminal, at most once a second, for long scans."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total < 200 or (done < total and now - self.last < 1.0):
            return
        self.last = now
        end = "\n" if done >= total or not sys.stderr.isatty() else "\r"
        print(f"scanning music: {done}/{total} files", end=end, file=sys.stderr, flush=True)


def _tune_gc() -> None:
    """A full collection walks every tracked object; with the server's libraries loaded
    that alone paused the loop ~0.25 s, a p99 spike for every device. What startup made
    lives as long as the process: freeze it out of the collector's sight, and let more
    young objects pile up between collections (fewer of them reach the older ones)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (not on Windows): its sockets and callbacks cost a
    fraction of asyncio's, which is most of the server's time between two devices."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket. proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on
    sockets that say so, and without it keep-alive answers wait ~40 ms for delayed ACKs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise TunehandError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def _max_connections(wanted: int | None) -> int:
    """The connections one server process may hold: `wanted`, or what the open-file
    limit leaves. The soft limit is raised to the hard one first (a server's sockets
    are its files; the usual soft default of 1,024 would cap it needlessly)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY:
        soft = top
    elif soft < top:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
            soft = top
    room = max(1, soft - FD_RESERVE)
    if wanted is None:
        return room
    if not 1 <= wanted <= room:
        raise UsageError(
            f"--max-connections: must be 1 to {room} (the open-file limit, ulimit -n, is"
            f" {soft}; {FD_RESERVE} of it are kept for the server's own files)"
        )
    return wanted


async def _migrate(settings: Settings) -> None:
    engine = await open_database(settings)
    await engine.dispose()
    if settings.redis_url:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.from_url(settings.redis_url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
        finally:
            await client.aclose()


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    settings = settings_from(args)
    workers = getattr(args, "workers", 1)
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers: must be 1 to {MAX_WORKERS}")
    if workers > 1 and not (
        settings.redis_url and (settings.database_url or "").startswith("post")
    ):
        raise UsageError(
            "--workers above 1 needs PostgreSQL (--database) and Redis (--redis): the"
            " workers share sessions and devices through them, as several instances do"
        )
    max_connections = _max_connections(getattr(args, "max_connections", None))
    certfile, keyfile = getattr(args, "certfile", None), getattr(args, "keyfile", None)
    if bool(certfile) != bool(keyfile):
        raise UsageError("--certfile and --keyfile go together")
    for f in (certfile, keyfile):
        if f and not os.access(f, os.R_OK):
            raise UsageError(f"cannot read {f}")
    # Arguments are checked before anything is written or migrated.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    security.to_file(settings.data_dir)
    if workers > 1:
        # --max-transcodes (default: one per core) is for the whole command: the workers
        # share that many slots live (one worker may use them all), never N times them.
        slots = encoder_slots.prepare(settings.data_dir)
        settings = replace(settings, encoder_slots=slots)
    # The signing key now, so that a bad one is one line (not a failed app startup).
    load_or_create_key(settings.data_dir, os.environ)
    asyncio.run(_migrate(settings))
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if certfile else 'http'}://{shown}:{port}"
    if workers == 1:
        _serve(settings, sock, url, certfile, keyfile, max_connections, announce=True)
    else:
        code = _supervise(workers, settings, sock, url, certfile, keyfile, max_connections)
        if code:
            return code
    print("tunehand server stopped", file=sys.stderr, flush=True)
    return 0


def _supervise(
    workers: int,
    settings: Settings,
    sock: socket.socket,
    url: str,
    certfile: str | None,
    keyfile: str | None,
    max_connections: int,
) -> int:
    """Fork `workers` servers on the one listening socket (the kernel hands each new
    connection to one of them); the first scans the library and says when it listens.
    SIGINT and SIGTERM are passed on once; if a worker dies, the others are stopped."""
    pids: list[int] = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)  # a terminal's ^C reaches the parent, which passes it on once
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                first = replace(settings, scan_on_start=settings.scan_on_start and i == 0)
                _serve(first, sock, url, certfile, keyfile, max_connections, announce=i == 0)
                code = 0
            except TunehandError as exc:
                print(f"tunehand: worker {i + 1}: {exc}", file=sys.stderr, flush=True)
            except BaseException as exc:
                print(f"tunehand: worker {i + 1} failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                sys.stdout.flush()
                os._exit(code)
        pids.append(pid)
    sock.close()
    live = set(pids)

    def stop(sig: int, _frame: FrameType | None) -> None:
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    failed = 0
    while live:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        live.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code and not failed:
            failed = 1
            print(f"tunehand: a server worker ended ({code}): stopping", file=sys.stderr)
            stop(signal.SIGTERM, None)
    return failed


def _serve(
    settings: Settings,
    sock: socket.socket,
    url: str,
    certfile: str | None,
    keyfile: str | None,
    max_connections: int,
    *,
    announce: bool,
) -> None:
    import uvicorn

    from tunehand.server.websocket import Http

    def ready(services: Services) -> None:
        services.sockets.limit = max_connections
        # Devices cut off by a shutdown are not lost: they keep playing and reconnect.
        server.on_exit = services.hub.begin_shutdown
        _tune_gc()
        if not announce:
            return
        folders = ", ".join(str(m) for m in settings.music) or "none (pass --music DIR)"
        print(f"tunehand server listening on {url}", flush=True)
        print(f"data: {settings.data_dir}; music: {folders}", file=sys.stderr, flush=True)

    app = create_app(settings, on_ready=ready, progress=_Progress())
    server: Any = None
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Upgrade requests go to the channel's own websocket (server.websocket): no
        # task, queue or compression state per idle device; its keepalive pings a
        # device silent for 3.5 s and drops it 4 s later.
        ws=channel.protocol_factory(settings.trusted_proxies),
        # uvicorn's HTTP protocol, with a deadline for each request to arrive and the
        # connection limit (server.websocket.Http).
        http=Http,
        timeout_graceful_shutdown=5,
        # Client addresses drive login throttling: believe X-Forwarded-For only from
        # proxies the operator named.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = _server_class()(config)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))
