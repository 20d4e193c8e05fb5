"""A real `tunehand serve` process for API and end-to-end tests, on either backend.

`launch()` runs `python -m tunehand serve --port 0` on a fresh data dir and a generated
library, and waits (on the server's own output, never a sleep) until it listens and the
first scan has finished. `start_server` (per test) and `shared_server` (per module)
launch servers on the module's `backend`:

- `sqlite`: SQLite in the server's data dir, the in-process bus and presence;
- `postgres`: PostgreSQL and Redis (from TUNEHAND_TEST_POSTGRES_URL and
  TUNEHAND_TEST_REDIS_URL: given, as `.ci/run` does, or set by `tests/conftest.py` to
  throwaway servers of the session; skipped with a reason when neither is there).

A test that names `backend` among its arguments runs once per backend, and so does,
in a module marked `every_backend` (the server's own test modules), every test that
reaches it through `shared_server` or `start_server` (but for one marked `sqlite_only`, a
client flow the module's other tests cover on both); any other test runs on SQLite. Each
`Backend.store()` is a deployment of its own: on PostgreSQL a fresh database and a
fresh Redis prefix, so neither tests nor test runs sharing the services see each
other's rows, keys or fan-out. The backend drops them when its module ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.audiogen import make_library

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
from tests.services import POSTGRES_ENV, REDIS_ENV

STARTUP_TIMEOUT_S = 30.0
BACKENDS = ("sqlite", "postgres")
NO_SERVICE = "(and no throwaway server started: the run's first lines say why)"


def tunehand_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunehand", *args]


def without_root_overrides(cmd: list[str]) -> list[str]:
    """`cmd` run so that file modes bind it: as root (CI runs as root), without the
    capabilities that ignore them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), by setpriv."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]


@dataclass(frozen=True)
class Store:
    """Where one deployment keeps its state. Servers launched on the same store are
    instances of one deployment; on different stores they share nothing."""

    database: str | None = None
    """A database URL; None is SQLite in each server's data dir."""
    redis: str | None = None
    """A Redis URL for the bus and presence; None is the in-process ones."""
    redis_prefix: str | None = None

    def args(self) -> list[str]:
        out = ["--database", self.database] if self.database else []
        if self.redis:
            out += ["--redis", self.redis]
        if self.redis_prefix:
            out += ["--redis-prefix", self.redis_prefix]
        return out


@dataclass
class ServerProc:
    url: str
    data_dir: Path
    music: Path
    store: Store
    proc: subprocess.Popen[str]
    env: dict[str, str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

    @property
    def database(self) -> str | None:
        return self.store.database

    def wait_for_line(self, needle: str, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Block until the server prints a line containing `needle` (stdout or stderr)."""
        for line in self.log:
            if needle in line:
                return line
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"server never printed {needle!r}; output:\n" + "\n".join(self.log)
                ) from None
            if line == _EXITED:
                raise AssertionError(
                    f"server exited before printing {needle!r}; output:\n" + "\n".join(self.log)
                )
            if needle in line:
                return line

    def admin(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--data-dir", str(self.data_dir)]
        if self.database:
            extra += ["--database", self.database]
        return subprocess.run(
            tunehand_cmd("admin", *args, *extra),
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def add_user(self, name: str, password: str = "secret-pw") -> None:
        r = self.admin("add-user", name, "--password-stdin", input=password + "\n")
        assert r.returncode == 0, r.stderr

    def login(
        self, name: str, password: str = "secret-pw", device_id: str | None = None
    ) -> dict[str, Any]:
        """Log in over HTTP; returns the token answer (access_token, refresh_token, ...)."""
        device_id = device_id or "d" + secrets.token_hex(8)
        r = httpx.post(
            self.url + "/v1/auth/login",
            json={
                "user": name,
                "password": password,
                "device_id": device_id,
                "device_name": device_id,
            },
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


_EXITED = "\x00exited"


def _pump(stream: Any, srv: ServerProc) -> None:
    for line in stream:
        line = line.rstrip("\n")
        srv.log.append(line)
        srv.lines.put(line)
    srv.lines.put(_EXITED)


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_admin_sync(url: str, sql: str) -> None:
    """`_pg_admin`, also from a test that runs in an event loop (then in a thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _pg_admin(url, sql)).result()


def fresh_postgres_database(base: str | None = None) -> tuple[str, Callable[[], None]]:
    """A new empty database on the PostgreSQL at `base` (the test PostgreSQL by
    default); returns its URL and a dropper."""
    base = base or os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set {NO_SERVICE}")
    name = "th_" + secrets.token_hex(6)
    _pg_admin_sync(base, f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        _pg_admin_sync(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url, drop


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, then a fresh PostgreSQL database
    (dropped after the test; skipped without PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    database, drop = fresh_postgres_database()
    try:
        yield database
    finally:
        drop()


@pytest.fixture
async def migrated_engine(empty_database: str) -> AsyncIterator[AsyncEngine]:
    """An engine on `empty_database`, migrated to the newest schema."""
    from tunehand.server.db.engine import open_engine
    from tunehand.server.db.migrate import upgrade

    engine = open_engine(empty_database)
    await upgrade(engine)
    yield engine
    await engine.dispose()


def _drop_redis_keys(url: str, prefix: str) -> None:
    """Delete what a deployment left in Redis (presence hashes; channels leave nothing)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        with contextlib.suppress(redis.RedisError, OSError):  # a fault test may have it down
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@dataclass(eq=False)
class Backend:
    """One backend the server tests run on; hands out stores and drops them at the end."""

    name: str
    postgres_url: str | None = None
    """The PostgreSQL and Redis to use; by default the test ones (from the environment)."""
    redis_url: str | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def store(self) -> Store:
        """A new deployment: on PostgreSQL a fresh database and a fresh Redis prefix."""
        if self.name == "sqlite":
            return Store()
        redis_url = self.redis_url or os.environ.get(REDIS_ENV)
        if not redis_url:
            pytest.skip(f"{REDIS_ENV} is not set {NO_SERVICE}")
        database, drop = fresh_postgres_database(self.postgres_url)
        prefix = f"tunehand-test-{secrets.token_hex(6)}:"
        self._cleanups.append(drop)
        self._cleanups.append(lambda: _drop_redis_keys(redis_url, prefix))
        return Store(database, redis_url, prefix)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            cleanup()
        self._cleanups.clear()


@contextmanager
def two_instances(
    tmp_path_factory: pytest.TempPathFactory, store: Store, music: Path | None = None
) -> Iterator[tuple[ServerProc, ServerProc]]:
    """Instances A (scans `music`, or a generated library) and B (`--no-scan`, same
    files) of one deployment; both stopped at the end."""
    a = launch(tmp_path_factory.mktemp("inst-a"), music=music, store=store)
    try:
        b = launch(
            tmp_path_factory.mktemp("inst-b"),
            music=a.music,
            store=store,
            extra_args=("--no-scan",),
            wait_scan=False,
        )
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (the workers of `tunehand serve
    --workers N`), from every process's /proc/PID/stat: /proc/PID/task/TID/children
    is documented as reliable only while the children are stopped, and once listed one
    of two running workers."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "PID (comm) STATE PPID ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def skip_without_services(name: str) -> None:
    """Skip (with the reason) a PostgreSQL + Redis test when the services are not set."""
    if name == "postgres":
        missing = [e for e in (POSTGRES_ENV, REDIS_ENV) if not os.environ.get(e)]
        if missing:
            pytest.skip(f"{' and '.join(missing)} not set {NO_SERVICE}")


def launch(
    root: Path,
    *,
    music: Path | None = None,
    store: Store | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    wait_scan: bool = True,
    max_files: int | None = None,
) -> ServerProc:
    srv = spawn(root, music=music, store=store, extra_args=extra_args, env=env, max_files=max_files)
    ready(srv, wait_scan=wait_scan)
    return srv


def spawn(
    root: Path,
    *,
    music: Path | None = None,
    store: Store | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    max_files: int | None = None,
) -> ServerProc:
    """Start a server and return at once (`ready` waits until it listens). `max_files`:
    its RLIMIT_NOFILE, soft and hard (the descriptors it may hold)."""
    data_dir = root / "data"
    if music is None:
        music = root / "music"
        make_library(music)
    store = store or Store()
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TUNEHAND_TOKEN", None)
    args = ["serve", "--port", "0", "--music", str(music), "--data-dir", str(data_dir)]
    cmd = tunehand_cmd(*args, *store.args(), *extra_args)
    if max_files is not None:
        cmd = ["prlimit", f"--nofile={max_files}:{max_files}", "--", *cmd]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    srv = ServerProc("", data_dir, music, store, proc, full_env)
    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=_pump, args=(stream, srv), daemon=True).start()
    return srv


def ready(srv: ServerProc, *, wait_scan: bool = True) -> None:
    """Wait until a spawned server listens (and has finished its first scan)."""
    line = srv.wait_for_line("listening on")
    srv.url = line.rsplit(" ", 1)[1].strip()
    if wait_scan:
        srv.wait_for_line("library scan finished")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "every_backend: run the module's server tests on SQLite + the in-process bus and"
        " on PostgreSQL + Redis",
    )
    config.addinivalue_line(
        "markers",
        "sqlite_only: in an every_backend module, a test of the client (not the server) that"
        " runs on SQLite only",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `backend` (see the module docstring), at module scope: a module's
    shared server starts once per backend, and its tests are grouped by backend."""
    if "backend" not in metafunc.fixturenames:
        return
    named = "backend" in inspect.signature(metafunc.function).parameters
    if named or metafunc.definition.get_closest_marker("every_backend"):
        only = metafunc.definition.get_closest_marker("sqlite_only")
        names = BACKENDS[:1] if only else BACKENDS
        metafunc.parametrize("backend", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backend the module's servers run on (SQLite unless parametrized)."""
    name: str = getattr(request, "param", "sqlite")
    skip_without_services(name)
    b = Backend(name)
    yield b
    b.close()


@pytest.fixture(scope="module")
def postgres_backend() -> Iterator[Backend]:
    """PostgreSQL + Redis, for the tests of several instances (skipped without them)."""
    skip_without_services("postgres")
    b = Backend("postgres")
    yield b
    b.close()


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[Callable[..., ServerProc]]:
    """Factory: start as many real servers as a test needs, each on a store of its own
    on the test's backend (or on `store=`, or on `backend=`); all are stopped at
    teardown."""
    started: list[ServerProc] = []
    default = backend

    def start(
        *, store: Store | None = None, backend: Backend | None = None, **kw: Any
    ) -> ServerProc:
        store = store or (backend or default).store()
        srv = launch(tmp_path_factory.mktemp("server"), store=store, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[ServerProc]:
    """One server for a whole test module, on its backend (tests use their own users)."""
    srv = launch(tmp_path_factory.mktemp(f"shared-{backend.name}"), store=backend.store())
    yield srv
    srv.stop()


def assert_log_clean(srv: ServerProc, since: int = 0) -> None:
    """The server printed no traceback and no "unexpected error" (from line `since`)."""
    text = "\n".join(srv.log[since:])
    assert "Traceback" not in text, text
    assert "unexpected error" not in text, text


@pytest.fixture
def shared_server_log_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a module's `usefixtures`: each test that uses `shared_server` leaves no
    traceback in its log (what the server printed while the test ran), whichever tests
    ran before it or run at all."""
    if "shared_server" not in request.fixturenames:
        yield
        return
    srv: ServerProc = request.getfixturevalue("shared_server")
    since = len(srv.log)
    yield
    assert_log_clean(srv, since)
