"""Throwaway PostgreSQL and Redis servers for the tests, from the Debian packages.

`Redis()` and `Postgres()` each run one server of their own: on a free port of
127.0.0.1, with everything (data, sockets) in a temp dir of their own, and nothing kept
on disk past `close()` (nor past the next start, when the process was killed hard).
`start()` returns once the server answers (its "ready" log line, then a PING or a
connection, never a sleep), `stop()` shuts it down cleanly, `kill()` with SIGKILL (a
crash), and `start()` again brings it back on the same port and data
(a restart: what the fault tests need). As context managers they start and close.

The servers are children of one long-lived thread of this process and get a signal
when it dies (PR_SET_PDEATHSIG), so none outlives a test run, even one killed hard. They
run in a process group of their own, so a Ctrl-C in the terminal reaches only pytest,
which then stops them itself.

PostgreSQL refuses to run as root: as root, `initdb` and `postgres` run as the
`postgres` system user (which the Debian package creates), owning the temp dir.

A server that does not start raises `ServiceError` with one line: what is missing
(`ServiceMissing`: a binary, or the `postgres` user), or the server's last log lines.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

POSTGRES_ENV = "TUNEHAND_TEST_POSTGRES_URL"
REDIS_ENV = "TUNEHAND_TEST_REDIS_URL"
"""Where the tests find their PostgreSQL and Redis (see tests/conftest.py)."""

START_TIMEOUT_S = 60.0
"""Deadline for a server to be ready (initdb not included)."""
STOP_TIMEOUT_S = 30.0
"""Deadline for a clean shutdown, after which the server is killed."""
LOG_LINES = 30
"""How many of the server's last log lines are kept (and shown when it fails)."""
PORT_ATTEMPTS = 3
"""Free ports are picked, then bound by the server: another process may take one
in between, and then the next one is tried."""

DIR_PREFIX = "tunehand-throwaway-"
OWNER_FILE = "owner"
"""In each temp dir: the pid and start time of the process that made it."""

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
"""Loaded here, not in a forked child (where dlopen could wait on a lock held by
another thread at the fork)."""

_spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="services-spawner")
"""Every server is forked from this thread: the parent-death signal fires when the
thread that forked a process ends, and this one lives as long as the process (unlike,
say, the worker thread of an `asyncio.to_thread` that restarts a server)."""


class ServiceError(RuntimeError):
    """A throwaway server could not be started (a binary missing, or it failed)."""


class ServiceMissing(ServiceError):
    """What a throwaway server needs is not installed."""


def _die_with_parent(sig: int) -> None:
    """In the child, after fork (and after it took the `postgres` user's ids, which
    clear the setting): get `sig` when the forking thread ends."""
    if _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:  # the parent died before prctl
        os.kill(os.getpid(), sig)


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` (None if there is none): a pid and its start
    time name one process, even once the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> str:
    return f"{os.getpid()} {_process_start(os.getpid())}"


_swept = False


def _sweep_stale_dirs() -> None:
    """Delete the temp dirs of throwaway servers whose process is gone (killed hard,
    it could not delete them; its servers died with it). Once per process."""
    global _swept
    if _swept:
        return
    _swept = True
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*")):
        try:
            pid, start = Path(path, OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue  # not ours to judge (or being made right now)
        if pid.isdigit() and _process_start(int(pid)) != start:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server:
    """One server process and its temp dir; subclasses say how to set up, launch,
    probe and stop it."""

    name: ClassVar[str]
    ready_line: ClassVar[str]
    stop_signal: ClassVar[int]
    death_signal: ClassVar[int]

    def __init__(self) -> None:
        self.port: int | None = None
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._pump_thread: threading.Thread | None = None
        self._user: pwd.struct_passwd | None = None

    # --- what a subclass provides ---------------------------------------------------

    def check(self) -> None:
        """Raise ServiceMissing unless what the server needs is installed."""

    def _setup(self) -> None:
        """Once, before the first start (after `check`): make the data dir."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        """Whether the server answers a client now (after its ready line)."""
        raise NotImplementedError

    def _first_start(self) -> None:
        """Once, after the first start (e.g. create a database)."""

    @property
    def url(self) -> str:
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pick_port(self) -> str:
        """Choose the port before the first start, so that the URL is known while the
        server starts; returns the URL. (Should another process take the port
        meanwhile, the first start moves to another one.)"""
        if self.port is None:
            self.port = free_port()
        return self.url

    def start(self) -> Self:
        """Start the server (again, on the same port and data, after a stop or a kill)
        and return once it answers; a no-op while it runs."""
        if self.running:
            return self
        first = self.dir is None
        if first:
            self.check()
            _sweep_stale_dirs()
            self.dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{self.name.lower()}-"))
            try:
                (self.dir / OWNER_FILE).write_text(_owner())
                self._setup()
            except BaseException:
                self._remove_dir()
                raise
        try:
            for attempt in range(PORT_ATTEMPTS):
                if first and (attempt > 0 or self.port is None):
                    self.port = free_port()
                if self._launch():
                    break
                if not first or attempt == PORT_ATTEMPTS - 1 or not self._port_taken():
                    raise ServiceError(self._failure("did not start"))
            if first:
                self._first_start()
        except BaseException:
            self.kill()
            if first:
                self._remove_dir()
            raise
        return self

    def _launch(self) -> bool:
        """Run the server; True once it answers, False if it exited first."""
        if self._pump_thread is not None:  # the last run's log, read to its end
            self._pump_thread.join(STOP_TIMEOUT_S)
        self.log.clear()
        ready = threading.Event()
        self.proc = _spawner.submit(self._popen, self._argv()).result()
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.proc.stdout, ready), daemon=True, name=f"{self.name}-log"
        )
        self._pump_thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise ServiceError(self._failure(f"was not ready within {START_TIMEOUT_S:g} s"))
        if self.proc.poll() is not None:
            self.proc.wait()
            return False
        # Ready by its own log; it may still refuse a client for a moment, hence a
        # bounded probe with short connect timeouts.
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise ServiceError(self._failure("logged ready but never answered"))
            time.sleep(0.05)
        return True

    def _popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        user = self._user
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=_child_env(),
            process_group=0,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            preexec_fn=lambda: _die_with_parent(self.death_signal),
        )

    def _pump(self, stream: Any, ready: threading.Event) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            if self.ready_line in line:
                ready.set()
        stream.close()
        ready.set()  # it exited: whoever waits finds out

    def _port_taken(self) -> bool:
        return any("Address already in use" in line for line in self.log)

    def _failure(self, what: str) -> str:
        tail = " | ".join(line.strip() for line in list(self.log)[-8:] if line.strip())
        code = self.proc.poll() if self.proc else None
        exited = f" (exit status {code})" if code is not None else ""
        return f"throwaway {self.name} on port {self.port} {what}{exited}; log: {tail or '(empty)'}"

    def stop(self) -> None:
        """Shut the server down cleanly (killed if it takes longer than STOP_TIMEOUT_S)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every process it started (its process group)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return  # reaped: its pid (the group's id) may belong to another process now
        os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet, so the group is still ours
        proc.wait()

    def close(self) -> None:
        """Stop the server and delete its temp dir."""
        self.stop()
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _child_env() -> dict[str, str]:
    """A plain environment: C messages (the ready lines are matched in English)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PG"))}
    env.update(LC_ALL="C", LANG="C")
    return env


def _find(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ServiceMissing(f"{binary} is not installed (Debian package {package})")
    return path


class Redis(_Server):
    """A throwaway Redis: no persistence (`--save "" --appendonly no`)."""

    name = "Redis"
    ready_line = "Ready to accept connections"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGTERM

    def check(self) -> None:
        self._exe = _find("redis-server", "redis-server")

    def _argv(self) -> list[str]:
        return [
            self._exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", "",
            "--daemonize", "no",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        assert self.port is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def postgres_bindir() -> Path:
    """The newest of Debian's /usr/lib/postgresql/<version>/bin, else where `postgres`
    is on PATH."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [d for d in found if (d / "initdb").exists()]
    if found:
        return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    exe = shutil.which("postgres")
    if exe and (Path(exe).parent / "initdb").exists():
        return Path(exe).parent
    raise ServiceMissing(
        "PostgreSQL's initdb and postgres are not installed (no /usr/lib/postgresql/*/bin;"
        " Debian package postgresql)"
    )


class Postgres(_Server):
    """A throwaway PostgreSQL: a fresh cluster (superuser `postgres`, trust auth) on
    127.0.0.1 only, its unix socket in the temp dir, with a database `database`. No
    fsync (nothing outlives the machine), but commits are written before they return,
    so they outlive a `kill()` as on a real server."""

    name = "PostgreSQL"
    ready_line = "database system is ready to accept connections"
    stop_signal = signal.SIGINT  # fast shutdown: disconnects clients, checkpoints
    death_signal = signal.SIGQUIT  # immediate shutdown, children included

    def __init__(self, database: str = "test") -> None:
        super().__init__()
        self.database = database

    def check(self) -> None:
        self.bindir = postgres_bindir()
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceMissing(
                    "running as root and there is no postgres user to run PostgreSQL as"
                    " (Debian package postgresql creates it)"
                ) from None

    def _setup(self) -> None:
        assert self.dir is not None
        user = self._user
        (self.dir / "socket").mkdir()
        if user:
            for path in (self.dir, self.dir / "socket"):
                os.chown(path, user.pw_uid, user.pw_gid)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres"]
        initdb += ["-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        r = subprocess.run(
            initdb,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.dir,
            env=_child_env(),
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if r.returncode != 0:
            tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-5:])
            raise ServiceError(f"initdb for a throwaway PostgreSQL failed: {tail}")

    def _argv(self) -> list[str]:
        assert self.dir is not None
        return [
            str(self.bindir / "postgres"),
            "-D", str(self.dir / "data"),
            "-p", str(self.port),
            "-k", str(self.dir / "socket"),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _client(self, binary: str, *args: str) -> list[str]:
        """A client's argv, connecting as `postgres` to the database `postgres`."""
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        return [str(self.bindir / binary), *where, *args]

    def _answers(self) -> bool:
        r = subprocess.run(
            self._client("pg_isready", "-q"), env=_child_env(), timeout=10, check=False
        )
        return r.returncode == 0

    def _first_start(self) -> None:
        create = f'CREATE DATABASE "{self.database}"'
        r = subprocess.run(
            self._client("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", create),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if r.returncode != 0:
            raise ServiceError(
                f"could not create database {self.database} on the throwaway PostgreSQL:"
                f" {r.stderr.strip()}"
            )
