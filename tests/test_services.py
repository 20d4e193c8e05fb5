"""The throwaway servers of `tests.services`: they answer on their URL, stop, restart on
the same port and data, survive a kill, say clearly what is missing or what went wrong,
and never outlive the process that started them."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.services as services
from tests.services import Postgres, Redis, ServiceError, ServiceMissing

EXIT_TIMEOUT_S = 30.0


def _skip_if_missing(make: type[Redis] | type[Postgres]) -> Redis | Postgres:
    try:
        return make().start()
    except ServiceMissing as e:
        pytest.skip(str(e))


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    server = _skip_if_missing(Redis)
    assert isinstance(server, Redis)
    with server:
        yield server


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Postgres]:
    server = _skip_if_missing(Postgres)
    assert isinstance(server, Postgres)
    with server:
        yield server


def redis_cmd(url: str, *args: str) -> object:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def pg_query(url: str, sql: str) -> object:
    import asyncpg

    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_redis_answers_stops_restarts_and_survives_a_kill(redis_server: Redis) -> None:
    url, port = redis_server.url, redis_server.port
    assert port is not None and url == f"redis://127.0.0.1:{port}/0"
    assert redis_cmd(url, "PING") is True
    assert redis_cmd(url, "CONFIG", "GET", "save") == {b"save": b""}
    assert redis_cmd(url, "CONFIG", "GET", "appendonly") == {b"appendonly": b"no"}
    redis_server.stop()
    assert not redis_server.running and refused(port)
    redis_server.start()
    assert redis_server.url == url and redis_cmd(url, "PING") is True
    redis_server.kill()
    assert redis_server.proc is not None and redis_server.proc.returncode == -signal.SIGKILL
    redis_server.start()
    assert redis_cmd(url, "PING") is True


def test_closing_removes_the_server_and_its_dir() -> None:
    server = _skip_if_missing(Redis)
    assert server.dir is not None and server.dir.is_dir() and server.port is not None
    server.close()
    assert not server.running and refused(server.port)
    assert not server.dir.exists()


def test_postgres_has_the_database_and_keeps_its_data_over_a_restart(
    pg_server: Postgres,
) -> None:
    url, port = pg_server.url, pg_server.port
    assert url == f"postgresql://postgres@127.0.0.1:{port}/test"
    assert pg_query(url, "SELECT current_database()") == "test"
    assert pg_query(url, "SHOW listen_addresses") == "127.0.0.1"
    assert pg_server.proc is not None
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the postgres user
        assert os.stat(f"/proc/{pg_server.proc.pid}").st_uid == pwd.getpwnam("postgres").pw_uid
    pg_query(url, "CREATE TABLE kept (n int)")
    pg_query(url, "INSERT INTO kept VALUES (1)")
    pg_server.stop()
    assert not pg_server.running and refused(pg_server.port or 0)
    pg_server.start()
    assert pg_server.url == url
    assert pg_query(url, "SELECT count(*) FROM kept") == 1


def test_postgres_restarts_after_a_kill(pg_server: Postgres) -> None:
    url = pg_server.url
    pg_query(url, "CREATE TABLE crash (n int)")
    pg_query(url, "INSERT INTO crash VALUES (1)")
    assert pg_server.proc is not None
    pg_server.kill()  # the postmaster and its backends, no shutdown checkpoint
    assert pg_server.proc.returncode == -signal.SIGKILL
    pg_server.start()
    assert pg_query(url, "SELECT count(*) FROM crash") == 1


def test_a_port_taken_meanwhile_fails_with_the_servers_log(redis_server: Redis) -> None:
    port = redis_server.port
    assert port is not None
    redis_server.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(ServiceError) as err:
            redis_server.start()
    message = str(err.value)
    assert "\n" not in message
    assert f"throwaway Redis on port {port} did not start" in message
    assert "Address already in use" in message


def test_missing_binaries_are_named_with_their_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceMissing, match=r"^redis-server is not installed \(Debian package"):
        Redis().start()
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(ServiceMissing, match=r"Debian package postgresql"):
        Postgres().start()


CHILD = """
import os, sys
from tests.services import Postgres, Redis
servers = [Redis().start(), Postgres().start()]
print(" ".join(f"{s.proc.pid}:{s.dir}" for s in servers), flush=True)
sys.stdin.read()
"""


def test_the_servers_die_with_the_process_that_started_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed hard, the process cannot stop its servers: they get a signal when it
    dies (PR_SET_PDEATHSIG) and shut down. Their temp dirs go at the next start."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    try:
        services.postgres_bindir()
    except ServiceMissing as e:
        pytest.skip(str(e))
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        started = [p.split(":", 1) for p in child.stdout.readline().split()]
        assert len(started) == 2, "the child did not start both servers"
        # Opened before the kill, while the pids are surely the servers'.
        fds = [os.pidfd_open(int(pid)) for pid, _ in started]
    finally:
        child.kill()
        child.wait()
    try:
        for fd in fds:
            ready, _, _ = select.select([fd], [], [], EXIT_TIMEOUT_S)
            assert ready, "a server outlived the process that started it"
        assert all(Path(path).is_dir() for _, path in started)
        monkeypatch.setattr(services, "_swept", False)  # as in a new process
        services._sweep_stale_dirs()
        assert not any(Path(path).exists() for _, path in started)
    finally:
        for fd in fds:
            os.close(fd)
        for _, path in started:
            shutil.rmtree(path, ignore_errors=True)
