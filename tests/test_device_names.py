"""Default device names are unique within the account and say what they are (issue 20).

A device started without `--device-name` (or `device_name` in `config.toml`) asks for a
default: the host's name, `HOST-mpd` for the MPD frontend. The server gives it `-2`,
`-3`, ... when another device of the account has that name; a name the user gave is kept
as given, and a rename outlives the device's reconnects. Real server processes (SQLite,
and PostgreSQL with Redis), the real CLI and the real `tunehand mpd`.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cli_helpers import NO_KEYRING, Device, FakePlayer, LineReader, UserPool, client_env
from tests.fixtures_server import ServerProc
from tunehand.core import names

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def pool(shared_server: ServerProc) -> UserPool:
    return UserPool(shared_server, "names")


def device(tmp_path: Path, label: str) -> Device:
    cdir = tmp_path / label
    return Device(cdir, client_env(NO_KEYRING, cdir))


def login(dev: Device, srv: ServerProc, user: str, *extra: str) -> str:
    """Log `dev` in; the name the login line says it got."""
    r = dev.login(srv.url, user, "secret-pw", "--insecure-token-file", *extra)
    assert r.returncode == 0, r.stderr
    assert "(device " in r.stdout, r.stdout
    return r.stdout.split("(device ", 1)[1].split(");", 1)[0]


def listed(dev: Device) -> dict[str, str]:
    """Device id -> name, every device of the account (`ctl devices --all`)."""
    return {d["id"]: d["name"] for d in dev.json("ctl", "devices", "--all")}


@pytest.fixture
def mpd_procs() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_mpd(dev: Device, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """`tunehand mpd` on `dev`'s config dir, once it listens (it has joined the channel)."""
    proc = dev.popen("mpd", "--port", "0")
    procs.append(proc)
    assert proc.stdout is not None
    line = LineReader(proc.stdout).next(30)
    assert line.startswith("mpd frontend listening on 127.0.0.1:"), line
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    assert proc.wait(timeout=15) == 0


# --- the rule, without I/O --------------------------------------------------------------


def test_unique_adds_the_first_free_suffix() -> None:
    assert names.unique("vm", set()) == "vm"
    assert names.unique("vm", {"vm"}) == "vm-2"
    assert names.unique("vm", {"VM", "vm-2", "vm-4"}) == "vm-3"  # case-insensitive
    assert names.unique("vm-mpd", {"vm", "vm-2"}) == "vm-mpd"
    long = "x" * names.MAX_NAME
    got = names.unique(long, {long})
    assert got == "x" * (names.MAX_NAME - 2) + "-2" and len(got) == names.MAX_NAME


# --- logins, channels and the MPD frontend ------------------------------------------------


def test_two_logins_from_one_host_without_names_get_unique_names(
    shared_server: ServerProc, pool: UserPool, tmp_path: Path
) -> None:
    user = pool.take()
    first, second = device(tmp_path, "first"), device(tmp_path, "second")
    assert login(first, shared_server, user) == HOST
    assert login(second, shared_server, user) == f"{HOST}-2"
    ids = {first.device_id(): HOST, second.device_id(): f"{HOST}-2"}
    assert listed(first) == ids
    # Logging in again keeps the name each got: the default is the same as last time.
    assert login(second, shared_server, user) == f"{HOST}-2"
    assert login(first, shared_server, user) == HOST
    assert listed(second) == ids


def test_a_name_the_user_gave_is_kept_even_when_another_device_has_it(
    shared_server: ServerProc, pool: UserPool, tmp_path: Path
) -> None:
    user = pool.take()
    default, given = device(tmp_path, "default"), device(tmp_path, "given")
    assert login(default, shared_server, user) == HOST
    assert login(given, shared_server, user, "--device-name", HOST) == HOST
    assert sorted(listed(default).values()) == [HOST, HOST]
    # Renamed, it keeps the new name while it asks for the same one; asked for another
    # one, it takes that.
    given.ok("ctl", "devices", "rename", given.device_id(), "study")
    assert login(given, shared_server, user, "--device-name", HOST) == "study"
    assert login(given, shared_server, user, "--device-name", "den") == "den"
    assert listed(default)[given.device_id()] == "den"
    # On the channel too: a device that sends its own name keeps it.
    tok = shared_server.login(user)
    player = FakePlayer(shared_server.url, tok["access_token"], tok["device_id"], HOST).start()
    try:
        player.wait_message(lambda m: m.get("type") == "hello")
        assert listed(default)[tok["device_id"]] == HOST
    finally:
        player.close()


def test_the_mpd_frontend_is_named_host_mpd_and_a_rename_outlives_its_restart(
    shared_server: ServerProc,
    pool: UserPool,
    tmp_path: Path,
    mpd_procs: list[subprocess.Popen[str]],
) -> None:
    user = pool.take()
    tui, mpd = device(tmp_path, "tui"), device(tmp_path, "mpd")
    assert login(tui, shared_server, user) == HOST
    assert login(mpd, shared_server, user) == f"{HOST}-2"
    proc = start_mpd(mpd, mpd_procs)
    assert listed(tui)[mpd.device_id()] == f"{HOST}-mpd"
    # A second MPD frontend of the account (another config dir) gets HOST-mpd-2.
    other = device(tmp_path, "mpd2")
    login(other, shared_server, user)
    second = start_mpd(other, mpd_procs)
    assert listed(tui)[other.device_id()] == f"{HOST}-mpd-2"
    stop(second)
    # Renamed, it keeps the new name across a restart (it asks for the same default).
    tui.ok("ctl", "devices", "rename", f"{HOST}-mpd", "jukebox")
    stop(proc)
    start_mpd(mpd, mpd_procs)
    assert listed(tui)[mpd.device_id()] == "jukebox"
    assert listed(tui)[other.device_id()] == f"{HOST}-mpd-2"


def test_a_device_code_login_without_a_name_gets_a_unique_default(
    shared_server: ServerProc, pool: UserPool, tmp_path: Path
) -> None:
    user = pool.take()
    old, new = device(tmp_path, "old"), device(tmp_path, "new")
    assert login(old, shared_server, user) == HOST
    proc = new.popen("login", shared_server.url, "--device-code", "--insecure-token-file")
    try:
        assert proc.stdout is not None
        out = LineReader(proc.stdout)
        m = re.search(r"\b([A-Z]{4}-[A-Z]{4})\b", out.next())
        assert m, out.seen
        old.ctl("approve", m.group(1), "--yes")
        while not (line := out.next(60)).startswith("logged in to "):
            pass
        assert f"(device {HOST}-2)" in line, line
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert listed(old)[new.device_id()] == f"{HOST}-2"


def test_devices_joining_at_once_with_one_default_get_distinct_names(
    shared_server: ServerProc, pool: UserPool
) -> None:
    """Eight channels of one account send `auth` with the same default name at the same
    moment: each gets a name of its own (on PostgreSQL the naming is serialised per
    account; SQLite runs one write at a time)."""
    from websockets.sync.client import connect

    user = pool.take()
    logins = [shared_server.login(user) for _ in range(8)]
    ws_url = "ws://" + shared_server.url.removeprefix("http://") + "/v1/channel"
    barrier = threading.Barrier(len(logins))

    def join(tok: dict[str, str]) -> str:
        with connect(ws_url, open_timeout=15) as ws:
            hello = {"id": tok["device_id"], "name": "racer", "name_default": True}
            barrier.wait(timeout=15)
            ws.send(json.dumps({"type": "auth", "token": tok["access_token"], "device": hello}))
            while (msg := json.loads(ws.recv(timeout=15)))["type"] != "hello":
                assert msg["type"] != "error", msg
            return str(msg["device_id"])

    with ThreadPoolExecutor(len(logins)) as workers:
        joined = list(workers.map(join, logins))
    assert sorted(joined) == sorted(t["device_id"] for t in logins)
    h = {"Authorization": f"Bearer {logins[0]['access_token']}"}
    devices = httpx.get(shared_server.url + "/v1/devices", headers=h, timeout=10).json()
    got = sorted(d["name"] for d in devices["devices"])
    assert got == sorted(["racer", *(f"racer-{n}" for n in range(2, 9))]), got
