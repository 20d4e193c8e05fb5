"""`tunehand serve --workers N`: N server processes on one port, sharing PostgreSQL and
Redis like instances. Devices land on both; a command through one worker reaches a
device on the other; SIGTERM stops them all cleanly; a worker that dies takes the
others down with a non-zero exit; without PostgreSQL and Redis it is refused."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from tests.fixtures_server import Backend, ServerProc, child_pids, launch, tunehand_cmd
from tests.test_api import Api, Chan, acmd, add_users, all_tracks, channel, unique


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def server_side_inode(client_port: int, server_port: int) -> str:
    """The inode of the server's end of the TCP connection from `client_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                local, remote = cols[1], cols[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                ):
                    return cols[9]
    raise AssertionError(f"no connection from port {client_port}")


def owner(srv: ServerProc, ch: Chan) -> int:
    """The worker process holding this device's channel."""
    client_port = ch.ws.local_address[1]
    server_port = int(srv.url.rsplit(":", 1)[1])
    inode = server_side_inode(client_port, server_port)
    for pid in child_pids(srv.proc.pid):
        if inode in socket_inodes(pid):
            return pid
    raise AssertionError("no worker holds the connection")


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, postgres_backend: Backend
) -> Iterator[ServerProc]:
    srv = launch(
        tmp_path_factory.mktemp("workers"),
        store=postgres_backend.store(),
        extra_args=("--workers", "2"),
    )
    yield srv
    srv.stop()


async def spread(srv: ServerProc, token: str, stack: AsyncExitStack) -> dict[int, Chan]:
    """Connect devices until both workers hold one; one device per worker."""
    by_worker: dict[int, Chan] = {}
    for _ in range(64):
        ch = await stack.enter_async_context(channel(srv, token, device_id=unique("w")))
        by_worker.setdefault(owner(srv, ch), ch)
        if len(by_worker) == 2:
            return by_worker
    raise AssertionError("64 connections all went to one worker")


async def test_a_command_on_one_worker_reaches_a_device_on_the_other(
    workers: ServerProc,
) -> None:
    assert len(child_pids(workers.proc.pid)) == 2
    name = unique("wk")
    add_users(workers, name)
    api = Api(workers, name, workers.login(name))
    token = api.token
    async with AsyncExitStack() as stack:
        first, second = (await spread(workers, token, stack)).values()
        tid = all_tracks(api)[0]["id"]
        res = await first.command("queue_add", track_ids=[tid])
        assert res["code"] == "ok", res
        got = await second.wait("state", lambda m: m["version"] == res["version"])
        assert [e["track_id"] for e in got["state"]["queue"]] == [tid]
        # A command over HTTP (to either worker) reaches both devices.
        async with httpx.AsyncClient(base_url=workers.url, headers=api.headers) as http:
            out = await acmd(http, "volume", value=33)
        await first.wait("state", lambda m: m["version"] == out["state"]["version"])
        await second.wait("state", lambda m: m["version"] == out["state"]["version"])


def test_sigterm_stops_every_worker(tmp_path: Path, postgres_backend: Backend) -> None:
    srv = launch(tmp_path, store=postgres_backend.store(), extra_args=("--workers", "3"))
    pids = child_pids(srv.proc.pid)
    assert len(pids) == 3
    assert srv.stop(signal.SIGTERM) == 0
    srv.wait_for_line("tunehand server stopped")
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")  # ended, and reaped by the parent


def test_a_worker_that_dies_stops_the_rest(tmp_path: Path, postgres_backend: Backend) -> None:
    srv = launch(tmp_path, store=postgres_backend.store(), extra_args=("--workers", "2"))
    first, other = child_pids(srv.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert srv.proc.wait(timeout=30) == 1
    srv.wait_for_line("a server worker ended")
    assert not os.path.exists(f"/proc/{other}")


@pytest.mark.parametrize(
    "args",
    [("--workers", "2"), ("--workers", "0"), ("--workers", "2", "--redis", "redis://127.0.0.1:1")],
)
def test_workers_need_postgres_and_redis(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = subprocess.run(
        tunehand_cmd("serve", "--port", "0", "--data-dir", str(tmp_path), *args),
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TUNEHAND_")},
    )
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
