"""A real `tunehand serve` process for API and end-to-end tests, on SQLite or PostgreSQL.

`start_server()` runs `python -m tunehand serve --port 0` on a fresh data dir and a
generated library, waits (on the server's own output, never a sleep) until it listens
and the first scan has finished, and stops it at teardown. `backend` parametrizes a
test over SQLite and PostgreSQL (PostgreSQL runs when TUNEHAND_TEST_POSTGRES_URL is
set, which `.ci/run` always does).
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audiogen import make_library

STARTUP_TIMEOUT_S = 30.0


def tunehand_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunehand", *args]


@dataclass
class ServerProc:
    url: str
    data_dir: Path
    music: Path
    database: str | None
    proc: subprocess.Popen[str]
    env: dict[str, str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

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


def fresh_postgres_database() -> tuple[str, Callable[[], None]]:
    """A new empty database on the test PostgreSQL; returns its URL and a dropper."""
    base = os.environ.get("TUNEHAND_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TUNEHAND_TEST_POSTGRES_URL is not set (CI always sets it)")
    name = "th_" + secrets.token_hex(6)
    asyncio.run(_pg_admin(base, f"CREATE DATABASE {name}"))
    url = base.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        asyncio.run(_pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    return url, drop


def launch(
    root: Path,
    *,
    music: Path | None = None,
    database: str | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    wait_scan: bool = True,
) -> ServerProc:
    data_dir = root / "data"
    if music is None:
        music = root / "music"
        make_library(music)
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TUNEHAND_TOKEN", None)
    args = ["serve", "--port", "0", "--music", str(music), "--data-dir", str(data_dir)]
    if database:
        args += ["--database", database]
    proc = subprocess.Popen(
        tunehand_cmd(*args, *extra_args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    srv = ServerProc("", data_dir, music, database, proc, full_env)
    for stream in (proc.stdout, proc.stderr):
        threading.Thread(target=_pump, args=(stream, srv), daemon=True).start()
    line = srv.wait_for_line("listening on")
    srv.url = line.rsplit(" ", 1)[1].strip()
    if wait_scan:
        srv.wait_for_line("library scan finished")
    return srv


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProc]]:
    """Factory: start as many real servers as a test needs; all are stopped at teardown."""
    started: list[ServerProc] = []
    droppers: list[Callable[[], None]] = []

    def start(*, backend: str = "sqlite", **kw: Any) -> ServerProc:
        if backend == "postgres" and "database" not in kw:
            url, drop = fresh_postgres_database()
            droppers.append(drop)
            kw["database"] = url
        srv = launch(tmp_path_factory.mktemp("server"), **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
    for drop in droppers:
        drop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test against SQLite and against PostgreSQL."""
    name: str = request.param
    if name == "postgres" and not os.environ.get("TUNEHAND_TEST_POSTGRES_URL"):
        pytest.skip("TUNEHAND_TEST_POSTGRES_URL is not set (CI always sets it)")
    return name


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One SQLite server for a whole test module (tests must use their own users)."""
    srv = launch(tmp_path_factory.mktemp("shared-server"))
    yield srv
    srv.stop()
