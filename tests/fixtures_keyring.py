"""Real Secret Service fixtures: a private D-Bus session bus running gnome-keyring.

`secret_service` (session scope) starts, under a temporary HOME:

    dbus-daemon --config-file=TMP/bus.conf --nofork --print-address=1
        bus.conf listens on unix:dir=/tmp/tunehand-bus-XXXX (short: socket paths are
        limited to ~100 bytes) and has no <servicedir>, so nothing is
        D-Bus-activated: an activated gnome-keyring would inherit the real HOME.
    gnome-keyring-daemon --foreground --unlock --components=secrets   (stdin: "test")
        --unlock reads the login password from stdin and creates the "login"
        collection, unlocked, as the default.

It waits for the daemon to own org.freedesktop.secrets (a NameOwnerChanged signal, no
sleeping), checks that the default collection is unlocked, and yields the env vars a test
sets (or passes to a subprocess) so the real user's keyring is never touched. Both daemons
are our children: teardown terminates and reaps them by pid.

`start_secret_service(tmp)` is the same as a context manager, for a test that needs its
own keyring (for instance one it locks). `keyring_env` applies `secret_service` to the
current test; `hanging_keyring` selects tests.hanging_keyring.HangingKeyring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import hanging_keyring as hanging

SECRETS_NAME = "org.freedesktop.secrets"
STARTUP_TIMEOUT_S = 10.0
ENV_KEYS = (
    "DBUS_SESSION_BUS_ADDRESS",
    "HOME",
    "XDG_RUNTIME_DIR",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
)

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"{program} not found: install {package} (e.g. apt-get install {package}); "
            "the keyring tests run against a real Secret Service",
            pytrace=False,
        )
    return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[-2000:]
    except OSError:
        return ""


@contextmanager
def start_secret_service(tmp: Path) -> Iterator[dict[str, str]]:
    """Run a private dbus-daemon + gnome-keyring under `tmp`; yield the env to use them."""
    dbus_daemon = _require("dbus-daemon", "dbus")
    keyring_daemon = _require("gnome-keyring-daemon", "gnome-keyring")
    # jeepney and secretstorage come with keyring; jeepney ships no type hints.
    import secretstorage
    from jeepney import MatchRule  # type: ignore[import-untyped]
    from jeepney.bus_messages import message_bus  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

    tmp.mkdir(parents=True, exist_ok=True)
    # The bus socket lives in a short dir of its own: unix socket paths max out near 100 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="tunehand-bus-"))
    env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for key, name in (
        ("HOME", "home"),
        ("XDG_RUNTIME_DIR", "run"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (tmp / name).mkdir(mode=0o700)
        env[key] = str(tmp / name)
    conf = tmp / "bus.conf"
    conf.write_text(_BUS_CONF.format(dir=socket_dir))
    bus_log, keyring_log = tmp / "dbus-daemon.log", tmp / "gnome-keyring.log"

    bus: subprocess.Popen[bytes] | None = None
    keyring_process: subprocess.Popen[bytes] | None = None
    try:
        with bus_log.open("wb") as err:
            bus = subprocess.Popen(
                [dbus_daemon, f"--config-file={conf}", "--nofork", "--print-address=1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        bus.stdout.close()
        if not address:
            pytest.fail(f"dbus-daemon did not start: {_log(bus_log)}", pytrace=False)
        env["DBUS_SESSION_BUS_ADDRESS"] = address

        connection = open_dbus_connection(address)
        try:
            rule = MatchRule(
                type="signal",
                sender="org.freedesktop.DBus",
                interface="org.freedesktop.DBus",
                member="NameOwnerChanged",
                path="/org/freedesktop/DBus",
            )
            rule.add_arg_condition(0, SECRETS_NAME)
            connection.send_and_get_reply(message_bus.AddMatch(rule))
            with connection.filter(rule, bufsize=16) as signals, keyring_log.open("wb") as log:
                keyring_process = subprocess.Popen(
                    [keyring_daemon, "--foreground", "--unlock", "--components=secrets"],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env=env,
                )
                assert keyring_process.stdin is not None
                keyring_process.stdin.write(b"test")  # the login keyring's password
                keyring_process.stdin.close()
                owned = connection.send_and_get_reply(message_bus.NameHasOwner(SECRETS_NAME))
                if not owned.body[0]:
                    try:
                        while not connection.recv_until_filtered(
                            signals, timeout=STARTUP_TIMEOUT_S
                        ).body[2]:
                            pass
                    except TimeoutError:
                        pytest.fail(
                            f"gnome-keyring-daemon did not register {SECRETS_NAME} within "
                            f"{STARTUP_TIMEOUT_S:g} s: {_log(keyring_log)}",
                            pytrace=False,
                        )
            collection = secretstorage.get_default_collection(connection)
            if collection.is_locked():
                pytest.fail("gnome-keyring's login collection is locked", pytrace=False)
        finally:
            connection.close()

        yield {key: env[key] for key in ENV_KEYS}
    finally:
        if keyring_process is not None:
            _stop(keyring_process)
        if bus is not None:
            _stop(bus)
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private, unlocked gnome-keyring for the whole test session: the env vars to use it."""
    with start_secret_service(tmp_path_factory.mktemp("secret-service")) as env:
        yield env


@pytest.fixture
def keyring_env(secret_service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this test (keyring, platformdirs) at the private gnome-keyring."""
    for key, value in secret_service.items():
        monkeypatch.setenv(key, value)
    for key in ("PYTHON_KEYRING_BACKEND", "TUNEHAND_TOKEN", "TUNEHAND_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    return secret_service


@pytest.fixture
def hanging_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Select a keyring backend whose calls block until teardown."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", hanging.NAME)
    hanging.ENTERED.clear()
    hanging.RELEASE.clear()
    try:
        yield
    finally:
        hanging.RELEASE.set()  # free the worker thread the store gave up on
