"""End to end: `tunehand login/logout/auth status`, where tokens live, and token refresh.

Every command is the real CLI in a subprocess against a real server, with a real OS
keyring (a private gnome-keyring on a private D-Bus, see tests/fixtures_keyring.py).
Each test logs in as its own user of one server per module.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_helpers import (
    NO_KEYRING,
    PASSWORD,
    Device,
    UserPool,
    client_env,
    error_line,
    files_containing,
    one_line,
)
from tests.fixtures_keyring import start_secret_service
from tests.fixtures_server import ServerProc
from tunehand.client.credentials import Credentials, KeyringStore
from tunehand.errors import KeyringError

HANGING_BACKEND = "tests.hanging_keyring.HangingKeyring"
KEYRING_TIMEOUT_S = 5.0  # KeyringStore's deadline
STARTUP_SLACK_S = 4.0  # interpreter start and imports, on a slow CI machine


@pytest.fixture(scope="module")
def srv(shared_server: ServerProc) -> ServerProc:
    return shared_server


@pytest.fixture(scope="module")
def pool(srv: ServerProc) -> UserPool:
    return UserPool(srv, "login")


@pytest.fixture
def user(pool: UserPool) -> str:
    return pool.take()


@pytest.fixture
def device(tmp_path: Path, keyring_env: dict[str, str]) -> Device:
    """A device on the real (private) keyring; this test process sees the same keyring."""
    config_dir = tmp_path / "device"
    return Device(config_dir, client_env(keyring_env, config_dir))


def keyring_login(device: Device) -> Credentials | None:
    return KeyringStore(device.config_dir).load()


def get_session(srv: ServerProc, access_token: str) -> httpx.Response:
    return httpx.get(
        srv.url + "/v1/session", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )


def rewrite_tokens_file(path: Path, **changes: Any) -> None:
    """Edit the opted-in tokens.json in place, keeping its 0600 mode."""
    blob = json.loads(path.read_text())
    blob.update(changes)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(blob))


# --- login into the keyring, logout ---------------------------------------------------


def test_login_stores_tokens_in_the_keyring_only(
    device: Device, user: str, srv: ServerProc, keyring_env: dict[str, str]
) -> None:
    r = device.login(srv.url, user, PASSWORD, "--device-name", "laptop")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "OS keyring" in r.stdout and user in r.stdout, r.stdout

    creds = keyring_login(device)
    assert creds is not None
    assert (creds.server, creds.user, creds.device_id) == (srv.url, user, device.device_id())
    assert creds.access_expires_at > time.time() + 60
    assert not (device.config_dir / "tokens.json").exists()
    secrets = [creds.access_token, creds.refresh_token]
    assert files_containing(device.config_dir, secrets) == []
    # gnome-keyring's own files hold them encrypted, never in plain text.
    assert files_containing(Path(keyring_env["XDG_DATA_HOME"]), secrets) == []
    assert stat.S_IMODE(device.config_dir.stat().st_mode) == 0o700

    out = device.ok("auth", "status")
    assert "OS keyring" in out and user in out and srv.url in out, out

    st = device.status()
    assert {
        "device",
        "playing",
        "track",
        "position_ms",
        "volume",
        "shuffle",
        "repeat",
        "queue_length",
        "version",
    } <= set(st)
    assert st["device"] is None and st["track"] is None and st["playing"] is False
    assert isinstance(st["version"], int)

    assert "logged out" in device.ok("logout")
    assert keyring_login(device) is None
    assert get_session(srv, creds.access_token).status_code == 401  # revoked on the server
    line = device.fails(3, "ctl", "status")
    assert "not logged in" in line and "tunehand login" in line, line
    line = device.fails(3, "ctl", "queue", "--json")
    assert "not logged in" in line
    r = device.run("auth", "status")
    assert r.returncode == 3 and "not logged in" in r.stdout, r
    # Logging out twice is not an error.
    assert "not logged in" in device.ok("logout")


def test_wrong_password_and_unknown_user_get_the_same_line(
    device: Device, user: str, srv: ServerProc
) -> None:
    wrong = error_line(device.login(srv.url, user, "not-the-password"), 3)
    unknown = error_line(device.login(srv.url, user + "-nobody", PASSWORD), 3)
    assert wrong == unknown
    assert "wrong user name or password" in wrong, wrong
    assert "not-the-password" not in wrong
    assert keyring_login(device) is None
    assert not (device.config_dir / "tokens.json").exists()
    # Two failures are under the throttle: the right password still works at once.
    r = device.login(srv.url, user)
    assert r.returncode == 0, r.stderr
    assert keyring_login(device) is not None


def test_login_usage_errors_are_one_line(device: Device, srv: ServerProc, user: str) -> None:
    assert "--password-stdin" in device.fails(
        2, "login", srv.url, "--user", user, "--password-stdin", input=""
    )
    line = device.fails(2, "login", "ftp://example.org", "--user", user, "--password-stdin")
    assert "http://" in line
    line = device.fails(2, "login", "--user", user, "--password-stdin", input=PASSWORD + "\n")
    assert "server URL" in line


def test_login_to_a_server_that_is_down_exits_4(device: Device, user: str, unused_url: str) -> None:
    line = error_line(device.login(unused_url, user), 4)
    assert unused_url in line, line
    assert keyring_login(device) is None


@pytest.fixture
def unused_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- no keyring, the opt-in file, a hung keyring, TUNEHAND_TOKEN ----------------------


@pytest.mark.parametrize(
    "no_keyring",
    [NO_KEYRING, {"DBUS_SESSION_BUS_ADDRESS": NO_KEYRING["DBUS_SESSION_BUS_ADDRESS"]}],
    ids=["fail-backend", "no-session-bus"],
)
def test_no_keyring_refuses_login_and_names_the_fix(
    device: Device, user: str, srv: ServerProc, no_keyring: dict[str, str]
) -> None:
    r = device.login(srv.url, user, env=no_keyring)
    line = error_line(r, 3)
    assert "keyring" in line and "--insecure-token-file" in line, line
    assert r.stdout == ""
    assert not (device.config_dir / "tokens.json").exists()
    # It fails before a login is spent: the server never saw this device.
    token = srv.login(user)["access_token"]
    devices = httpx.get(
        srv.url + "/v1/devices", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["devices"]
    id_file = device.config_dir / "device-id"
    if id_file.exists():
        assert id_file.read_text().strip() not in {d["id"] for d in devices}
    # Every command says what is wrong: not logged in, and how to log in without a keyring.
    for args in (("ctl", "status"), ("ctl", "--server", srv.url, "devices")):
        line = error_line(device.run(*args, env=no_keyring), 3)
        assert line.startswith("tunehand: not logged in: this machine has no OS keyring"), line
        assert "--insecure-token-file" in line, line
    r = device.run("auth", "--server", srv.url, "status", env=no_keyring)
    assert r.returncode == 3, r
    assert r.stdout.startswith("not logged in: this machine has no OS keyring"), r.stdout
    assert f"tunehand login {srv.url} --insecure-token-file" in r.stdout, r.stdout


def test_insecure_token_file_is_private_and_warned_about(
    tmp_path: Path, keyring_env: dict[str, str], user: str, srv: ServerProc
) -> None:
    config_dir = tmp_path / "device"
    device = Device(config_dir, client_env(keyring_env, config_dir, **NO_KEYRING))
    r = device.login(srv.url, user, PASSWORD, "--insecure-token-file")
    assert r.returncode == 0, r.stderr
    warning = one_line(r.stderr)
    assert "warning" in warning and "tokens.json" in warning, warning
    tokens = config_dir / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    blob = json.loads(tokens.read_text())
    assert blob["user"] == user and blob["server"] == srv.url
    assert blob["access_token"] and blob["refresh_token"]
    assert "insecure" in r.stdout

    assert device.status()["version"] >= 0
    assert "insecure" in device.ok("auth", "status")

    # A file other users can read is refused, with the fix.
    tokens.chmod(0o644)
    line = device.fails(3, "ctl", "status")
    assert "chmod 600" in line, line
    tokens.chmod(0o600)

    # A keyring login later replaces the opted-in file.
    keyring_device = Device(config_dir, client_env(keyring_env, config_dir))
    r = keyring_device.login(srv.url, user)
    assert r.returncode == 0, r.stderr
    assert not tokens.exists()
    creds = keyring_login(keyring_device)
    assert creds is not None and creds.user == user
    assert files_containing(config_dir, [creds.access_token, creds.refresh_token]) == []
    assert keyring_device.status()["version"] >= 0


def test_logout_removes_the_insecure_file(
    tmp_path: Path, keyring_env: dict[str, str], user: str, srv: ServerProc
) -> None:
    config_dir = tmp_path / "device"
    device = Device(config_dir, client_env(keyring_env, config_dir, **NO_KEYRING))
    assert device.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    access = json.loads((config_dir / "tokens.json").read_text())["access_token"]
    assert "logged out" in device.ok("logout")
    assert not (config_dir / "tokens.json").exists()
    assert get_session(srv, access).status_code == 401
    device.fails(3, "ctl", "status")


def test_hanging_keyring_fails_within_the_deadline(device: Device, srv: ServerProc) -> None:
    started = time.monotonic()
    r = device.run(
        "ctl", "--server", srv.url, "status", env={"PYTHON_KEYRING_BACKEND": HANGING_BACKEND}
    )
    elapsed = time.monotonic() - started
    line = error_line(r, 3)
    assert f"did not answer within {KEYRING_TIMEOUT_S:g} s" in line, line
    assert "--insecure-token-file" in line
    assert KEYRING_TIMEOUT_S - 0.5 <= elapsed < KEYRING_TIMEOUT_S + STARTUP_SLACK_S, elapsed


def _secret_service_pid(bus_address: str) -> int:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    conn = open_dbus_connection(bus_address)
    try:
        reply = conn.send_and_get_reply(
            new_method_call(bus, "GetConnectionUnixProcessID", "s", ("org.freedesktop.secrets",))
        )
    finally:
        conn.close()
    pid: int = reply.body[0]
    return pid


@pytest.fixture
def stopped_keyring(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private gnome-keyring holding one login, then frozen (SIGSTOP): a truly hung keyring."""
    with start_secret_service(tmp_path / "frozen-keyring") as env:
        yield env


def test_frozen_gnome_keyring_fails_within_the_deadline(
    stopped_keyring: dict[str, str], tmp_path: Path, srv: ServerProc, user: str
) -> None:
    config_dir = tmp_path / "device"
    device = Device(config_dir, client_env(stopped_keyring, config_dir))
    assert device.login(srv.url, user).returncode == 0
    pid = _secret_service_pid(stopped_keyring["DBUS_SESSION_BUS_ADDRESS"])
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = device.run("ctl", "status")
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    line = error_line(r, 3)
    assert "did not answer" in line, line
    assert elapsed < KEYRING_TIMEOUT_S + STARTUP_SLACK_S, elapsed


def test_tunehand_token_from_the_environment(
    tmp_path: Path, keyring_env: dict[str, str], user: str, srv: ServerProc
) -> None:
    config_dir = tmp_path / "ci"
    token = srv.login(user)["access_token"]
    device = Device(config_dir, client_env(keyring_env, config_dir, TUNEHAND_TOKEN=token))
    st = device.json("ctl", "--server", srv.url, "status")
    assert st["device"] is None and isinstance(st["version"], int)
    device.ok("ctl", "--server", srv.url, "volume", "42")
    assert device.json("ctl", "--server", srv.url, "status")["volume"] == 42
    out = device.ok("auth", "--server", srv.url, "status")
    assert "TUNEHAND_TOKEN" in out
    # Nothing was stored for this device.
    assert keyring_login(device) is None
    assert not (config_dir / "tokens.json").exists()

    line = device.fails(3, "ctl", "status")  # no server configured
    assert "--server" in line, line
    assert "TUNEHAND_TOKEN" in device.fails(2, "login", srv.url, "--user", user)
    line = error_line(
        device.run("ctl", "--server", srv.url, "status", env={"TUNEHAND_TOKEN": "tha_bogus"}), 3
    )
    assert "tha_bogus" not in line


# --- transparent refresh ---------------------------------------------------------------


def test_expired_access_token_is_refreshed_and_rotated(
    device: Device, user: str, srv: ServerProc
) -> None:
    assert device.login(srv.url, user).returncode == 0
    before = keyring_login(device)
    assert before is not None
    store = KeyringStore(device.config_dir)
    store.save(Credentials(**{**_fields(before), "access_expires_at": time.time() - 60}))

    assert device.status()["version"] >= 0
    after = keyring_login(device)
    assert after is not None
    assert after.refresh_token != before.refresh_token
    assert after.access_token != before.access_token
    assert after.access_expires_at > time.time() + 60
    assert files_containing(device.config_dir, [after.access_token, after.refresh_token]) == []
    # The next call uses the new token without refreshing again.
    assert device.status()["version"] >= 0
    assert keyring_login(device) == after

    # The old refresh token was used once; using it again is reuse: the device is logged out.
    r = httpx.post(
        srv.url + "/v1/auth/refresh", json={"refresh_token": before.refresh_token}, timeout=10
    )
    assert r.status_code == 401
    assert get_session(srv, after.access_token).status_code == 401
    line = device.fails(3, "ctl", "status")
    assert "log in again" in line, line
    assert keyring_login(device) is None  # the dead login is forgotten


def test_refused_access_token_is_refreshed_once(
    tmp_path: Path, keyring_env: dict[str, str], user: str, srv: ServerProc
) -> None:
    config_dir = tmp_path / "device"
    device = Device(config_dir, client_env(keyring_env, config_dir, **NO_KEYRING))
    assert device.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    tokens = config_dir / "tokens.json"
    before = json.loads(tokens.read_text())
    # Not expired by the clock, but refused by the server (401): refresh and retry.
    rewrite_tokens_file(tokens, access_token="tha_" + "x" * 43)

    device.ok("ctl", "volume", "33")
    assert device.status()["volume"] == 33
    after = json.loads(tokens.read_text())
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] not in (before["access_token"], "tha_" + "x" * 43)
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600


def test_concurrent_commands_share_one_refresh(device: Device, user: str, srv: ServerProc) -> None:
    assert device.login(srv.url, user).returncode == 0
    before = keyring_login(device)
    assert before is not None
    KeyringStore(device.config_dir).save(
        Credentials(**{**_fields(before), "access_expires_at": time.time() - 60})
    )
    procs = [device.popen("ctl", "status", "--json") for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert err == ""
        assert isinstance(json.loads(out)["version"], int)
    after = keyring_login(device)
    assert after is not None and after.refresh_token != before.refresh_token
    # Had two processes spent the same refresh token, the server would have logged the
    # device out (reuse detection): it is still logged in.
    assert device.status()["version"] >= 0
    assert get_session(srv, after.access_token).status_code == 200


def _fields(c: Credentials) -> dict[str, Any]:
    return {
        "server": c.server,
        "user": c.user,
        "device_id": c.device_id,
        "access_token": c.access_token,
        "access_expires_at": c.access_expires_at,
        "refresh_token": c.refresh_token,
    }


# --- admin while the server runs ---------------------------------------------------


def test_admin_user_lifecycle_while_the_server_runs(
    device: Device, srv: ServerProc, pool: UserPool
) -> None:
    name = f"{pool.prefix}-admin-{os.getpid()}"
    r = srv.admin("add-user", name, "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert name in r.stdout

    listed = json.loads(srv.admin("list-users", "--json").stdout)
    assert all(set(u) == {"id", "name"} for u in listed)
    assert name in [u["name"] for u in listed]

    # The running server knows the new user at once.
    assert device.login(srv.url, name).returncode == 0
    device.ok("ctl", "volume", "12")

    line = error_line(srv.admin("add-user", name, "--password-stdin", input="x\n"), 1)
    assert "already exists" in line, line

    r = srv.admin("remove-user", name)
    assert r.returncode == 0, r.stderr
    # The removed user's device is refused at once (its token gets 401): exit 3, one line.
    line = device.fails(3, "ctl", "status")
    assert "log in" in line, line
    assert "wrong user name or password" in error_line(device.login(srv.url, name), 3)
    assert device.login(srv.url, pool.take()).returncode == 0  # clears the failure count
    line = error_line(srv.admin("remove-user", name), 5)
    assert name in line


# --- tokens belong to the server that issued them -------------------------------------


@pytest.mark.parametrize("where", ["keyring", "file"])
def test_another_server_never_touches_this_login(
    tmp_path: Path,
    keyring_env: dict[str, str],
    user: str,
    srv: ServerProc,
    start_server: Any,
    where: str,
) -> None:
    """`--server OTHER` with a login for this server: "not logged in to OTHER", exit 3, and
    the tokens for this server stay (never sent to OTHER, never deleted for its refusal)."""
    config_dir = tmp_path / "device"
    extra = NO_KEYRING if where == "file" else {}
    device = Device(config_dir, client_env(keyring_env, config_dir, **extra))
    flags = ("--insecure-token-file",) if where == "file" else ()
    assert device.login(srv.url, user, PASSWORD, *flags).returncode == 0
    before = device.status()
    other = start_server()
    for args in (("devices",), ("status", "--json"), ("devices", "--all")):
        line = device.fails(3, "ctl", "--server", other.url, *args)
        assert line.startswith(f"tunehand: not logged in to {other.url}:"), line
        assert srv.url in line, line
    # A server that is down: the same, with no request at all.
    line = device.fails(3, "ctl", "--server", "http://127.0.0.1:9", "status")
    assert line.startswith("tunehand: not logged in to http://127.0.0.1:9:"), line
    # This server's login is intact, and so is the one in the keyring or the file.
    after = device.status()
    assert after["version"] >= before["version"]
    device.ok("ctl", "--server", srv.url + "/", "volume", "33")
    assert device.status()["volume"] == 33
    if where == "file":
        assert json.loads((config_dir / "tokens.json").read_text())["server"] == srv.url
    else:
        creds = keyring_login(device)
        assert creds is not None and creds.server == srv.url


async def test_the_tui_logs_in_to_the_token_file_where_there_is_no_keyring(
    tmp_path: Path, user: str, srv: ServerProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live TUI backend: no keyring is reported, then the opted-in 0600 file is used."""
    import argparse

    from tunehand.tui.backend_live import LiveBackend

    for key, value in NO_KEYRING.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TUNEHAND_TOKEN", raising=False)
    config_dir = tmp_path / "tui"
    backend, _ = LiveBackend.from_args(argparse.Namespace(config_dir=str(config_dir)))
    problem = await backend.token_store_problem()
    assert problem is not None and problem.startswith("no OS keyring available"), problem
    with pytest.raises(KeyringError):
        await backend.login(srv.url, user, PASSWORD)
    assert not (config_dir / "tokens.json").exists()
    path = backend.use_token_file()
    assert path == str(config_dir / "tokens.json")
    account = await backend.login(srv.url, user, PASSWORD)
    assert (account.server, account.user) == (srv.url, user)
    assert stat.S_IMODE((config_dir / "tokens.json").stat().st_mode) == 0o600
    assert await backend.token_store_problem() is None
