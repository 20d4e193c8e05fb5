"""Credential stores: the real gnome-keyring, a hung or missing keyring, the file, the env."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import secretstorage

from tests import hanging_keyring as hanging
from tests.fixtures_keyring import start_secret_service
from tunehand.client.credentials import (
    MAX_BLOB_BYTES,
    Credentials,
    EnvStore,
    FileStore,
    KeyringStore,
    not_logged_in,
    open_store,
    refresh_lock,
)
from tunehand.errors import AuthError, KeyringError

ROOT = Path(__file__).resolve().parent.parent
ACCESS = "a" * 180 + "-access-token"  # realistic: ~200 chars
REFRESH = "r" * 180 + "-refresh-token"


def make_credentials(**changes: object) -> Credentials:
    values: dict[str, object] = {
        "server": "https://music.example.org:8443",
        "user": "alice@example.org",
        "device_id": "d0123456789abcdef0123",
        "access_token": ACCESS,
        "access_expires_at": 1_767_225_600.25,
        "refresh_token": REFRESH,
    }
    values.update(changes)
    return Credentials(**values)  # type: ignore[arg-type]


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message
    assert "\n" not in message
    assert ACCESS not in message
    assert REFRESH not in message
    return message


def run_python(code: str, env: Mapping[str, str | None]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with `env` on top of ours (None removes a var)."""
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Credentials


def test_json_round_trip() -> None:
    credentials = make_credentials()
    assert Credentials.from_json(credentials.to_json()) == credentials
    assert Credentials.from_json(credentials.to_json().encode()) == credentials


def test_blob_fits_one_windows_credential() -> None:
    blob = make_credentials(
        server="https://a-rather-long-host-name.music.example.org:8443/tunehand",
        user="someone.with.a.long.name@example.org",
    ).to_json()
    assert " " not in blob
    assert len(blob.encode()) < MAX_BLOB_BYTES
    assert len(blob.encode()) < 700


def test_repr_hides_tokens() -> None:
    text = repr(make_credentials())
    assert ACCESS not in text
    assert REFRESH not in text
    assert "alice@example.org" in text


@pytest.mark.parametrize(
    "blob",
    [
        "",
        "not json",
        "[]",
        '{"v": 2}',
        make_credentials().to_json().replace('"user":"alice@example.org"', '"user":3'),
        make_credentials().to_json().replace("1767225600.25", "true"),
    ],
)
def test_damaged_blob(blob: str) -> None:
    with pytest.raises(AuthError) as info:
        Credentials.from_json(blob)
    assert "tunehand login" in one_line(info.value)


# KeyringStore against the real gnome-keyring


def stored_items(username: str) -> list[str]:
    connection = secretstorage.dbus_init()
    try:
        collection = secretstorage.get_default_collection(connection)
        items = collection.search_items({"service": "tunehand", "username": username})
        return [item.get_secret().decode() for item in items]
    finally:
        connection.close()


def test_keyring_round_trip(keyring_env: dict[str, str], tmp_path: Path) -> None:
    store = KeyringStore(tmp_path / "cfg")
    assert store.load() is None
    assert store.location == "OS keyring (SecretService)"
    credentials = make_credentials()
    store.save(credentials)
    assert store.load() == credentials
    assert stored_items(str(tmp_path / "cfg")) == [credentials.to_json()]

    newer = make_credentials(access_token="b" * 200, access_expires_at=1_767_229_200.0)
    store.save(newer)
    assert KeyringStore(tmp_path / "cfg").load() == newer
    assert len(stored_items(str(tmp_path / "cfg"))) == 1

    store.delete()
    assert store.load() is None
    store.delete()  # already logged out: not an error
    assert stored_items(str(tmp_path / "cfg")) == []


def test_config_dirs_do_not_collide(keyring_env: dict[str, str], tmp_path: Path) -> None:
    kitchen = KeyringStore(tmp_path / "kitchen")
    desk = KeyringStore(tmp_path / "desk")
    kitchen.save(make_credentials(device_id="d" + "1" * 20))
    desk.save(make_credentials(device_id="d" + "2" * 20))
    loaded_kitchen, loaded_desk = kitchen.load(), desk.load()
    assert loaded_kitchen is not None
    assert loaded_kitchen.device_id == "d" + "1" * 20
    assert loaded_desk is not None
    assert loaded_desk.device_id == "d" + "2" * 20
    kitchen.delete()
    assert kitchen.load() is None
    assert desk.load() is not None
    desk.delete()


def test_keyring_username_is_the_absolute_dir(
    keyring_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    KeyringStore(Path("cfg")).save(make_credentials())
    assert KeyringStore(tmp_path / "cfg").load() == make_credentials()
    KeyringStore(tmp_path / "cfg").delete()


def test_another_process_reads_the_login(keyring_env: dict[str, str], tmp_path: Path) -> None:
    store = KeyringStore(tmp_path / "cfg")
    store.save(make_credentials())
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import tunehand.client.credentials as c\n"
        "assert 'keyring' not in sys.modules, 'keyring must be imported lazily'\n"
        f"loaded = c.KeyringStore(Path({str(tmp_path / 'cfg')!r})).load()\n"
        "print(loaded.user, loaded.access_expires_at)\n"
    )
    result = run_python(code, keyring_env)
    store.delete()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alice@example.org 1767225600.25\n"


def test_damaged_keyring_entry(keyring_env: dict[str, str], tmp_path: Path) -> None:
    import keyring.backends.SecretService

    username = str(tmp_path / "cfg")
    keyring.backends.SecretService.Keyring().set_password("tunehand", username, "{oops")  # type: ignore[no-untyped-call]
    with pytest.raises(AuthError) as info:
        KeyringStore(tmp_path / "cfg").load()
    assert "tunehand logout" in one_line(info.value)
    KeyringStore(tmp_path / "cfg").delete()


def test_locked_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its own gnome-keyring: a locked collection cannot be unlocked again without a prompt.
    with start_secret_service(tmp_path / "locked") as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
        connection = secretstorage.dbus_init()
        secretstorage.get_default_collection(connection).lock()
        connection.close()
        store = KeyringStore(tmp_path / "cfg")
        with pytest.raises(KeyringError) as info:
            store.save(make_credentials())
        message = one_line(info.value)
        assert message.startswith("the OS keyring is locked: unlock it")
        assert "TUNEHAND_TOKEN" in message
        with pytest.raises(KeyringError, match="locked"):
            store.load()


# KeyringStore without a usable keyring


def test_no_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    store = KeyringStore(tmp_path / "cfg")
    # No keyring holds no login: load says so (None, and why in `missing`)...
    assert store.load() is None
    assert store.missing is not None and store.missing.startswith("no OS keyring available")
    line = not_logged_in(store, "http://h:1")
    assert line.startswith("not logged in: this machine has no OS keyring"), line
    assert "tunehand login http://h:1 --insecure-token-file" in line, line
    # ...while storing or checking fails with the fix.
    calls: list[Callable[[], object]] = [
        store.check,
        lambda: store.save(make_credentials()),
        store.delete,
    ]
    for call in calls:
        with pytest.raises(KeyringError) as info:
            call()
        assert one_line(info.value) == (
            "no OS keyring available: start gnome-keyring (or another Secret Service), "
            "set TUNEHAND_TOKEN, or log in with --insecure-token-file"
        )


def test_no_secret_service_falls_back_to_no_keyring(tmp_path: Path) -> None:
    # The real detection path, in a fresh process (keyring caches what it detects).
    env: dict[str, str | None] = {
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHON_KEYRING_BACKEND": None,
    }
    code = (
        "from pathlib import Path\n"
        "from tunehand.client.credentials import KeyringStore\n"
        "from tunehand.errors import KeyringError\n"
        "try:\n"
        f"    KeyringStore(Path({str(tmp_path / 'cfg')!r})).check()\n"
        "except KeyringError as exc:\n"
        "    print(exc)\n"
    )
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no OS keyring available: start gnome-keyring")


def test_unknown_backend_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Keyring")
    with pytest.raises(KeyringError) as info:
        KeyringStore(tmp_path).load()
    assert one_line(info.value).startswith(
        "PYTHON_KEYRING_BACKEND=no.such.Keyring cannot be used (ModuleNotFoundError): fix or unset"
    )


@pytest.mark.usefixtures("hanging_keyring")
def test_hung_keyring_times_out(tmp_path: Path) -> None:
    store = KeyringStore(tmp_path, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(KeyringError) as info:
        store.load()
    elapsed = time.monotonic() - started
    assert hanging.ENTERED.is_set()
    assert 0.5 <= elapsed < 5
    assert one_line(info.value) == (
        "the OS keyring did not answer within 0.5 s: unlock it (gnome-keyring/KWallet), "
        "or use TUNEHAND_TOKEN / --insecure-token-file"
    )
    with pytest.raises(KeyringError, match="did not answer"):
        store.save(make_credentials())


# FileStore


def test_file_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "tokens.json"
    store = FileStore(path)
    assert store.load() is None
    assert store.location == f"file {path} (insecure)"
    store.save(make_credentials())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.load() == make_credentials()
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json"]
    store.delete()
    assert not path.exists()
    store.delete()


def test_file_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{}")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        FileStore(path).save(make_credentials())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_store_refuses_a_readable_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    FileStore(path).save(make_credentials())
    path.chmod(mode)
    with pytest.raises(AuthError) as info:
        FileStore(path).load()
    assert one_line(info.value) == (
        f"{path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`"
    )


def test_file_store_damaged(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{")
    path.chmod(0o600)
    with pytest.raises(AuthError, match="is damaged: delete it"):
        FileStore(path).load()


# EnvStore


def test_env_store() -> None:
    store = EnvStore("ci-token", "https://s.example")
    assert store.location == "TUNEHAND_TOKEN"
    credentials = store.load()
    assert credentials is not None
    assert credentials.server == "https://s.example"
    assert credentials.access_token == "ci-token"
    assert credentials.refresh_token == ""
    assert math.isinf(credentials.access_expires_at)
    calls: list[Callable[[], object]] = [lambda: store.save(make_credentials()), store.delete]
    for call in calls:
        with pytest.raises(AuthError) as info:
            call()
        assert one_line(info.value) == "TUNEHAND_TOKEN is set: unset it to log in or out"


def test_env_store_needs_a_server() -> None:
    with pytest.raises(AuthError, match="no server is configured"):
        EnvStore("ci-token").load()


# open_store


def test_env_token_wins(tmp_path: Path) -> None:
    FileStore(tmp_path / "tokens.json").save(make_credentials())
    store = open_store(tmp_path, {"TUNEHAND_TOKEN": " tok\n"}, "https://s.example")
    assert isinstance(store, EnvStore)
    loaded = store.load()
    assert loaded is not None
    assert loaded.access_token == "tok"


def test_opted_in_file_wins_over_keyring(tmp_path: Path) -> None:
    FileStore(tmp_path / "tokens.json").save(make_credentials())
    store = open_store(tmp_path, {"TUNEHAND_TOKEN": ""}, None)
    assert isinstance(store, FileStore)
    assert store.path == tmp_path / "tokens.json"


def test_keyring_by_default(tmp_path: Path) -> None:
    store = open_store(tmp_path / "cfg", {}, None)
    assert isinstance(store, KeyringStore)
    assert store.location == "OS keyring"  # nothing asked of the keyring yet
    assert not (tmp_path / "cfg").exists()


# refresh_lock


def test_refresh_lock_excludes_another_process(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tunehand.client.credentials import refresh_lock\n"
        "from tunehand.errors import AuthError\n"
        "config_dir = Path(sys.argv[1])\n"
        "try:\n"
        "    with refresh_lock(config_dir, timeout_s=0):\n"
        "        print('acquired at once', flush=True)\n"
        "except AuthError:\n"
        "    print('busy', flush=True)\n"
        "with refresh_lock(config_dir, timeout_s=60):\n"
        "    print('acquired', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    with refresh_lock(config_dir):
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(config_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "busy\n"
    # Released: the child, waiting in its second refresh_lock, now gets it.
    assert child.stdout.readline() == "acquired\n"
    assert child.wait(timeout=60) == 0
    child.stdout.close()
    assert stat.S_IMODE((config_dir / "refresh.lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700


def test_refresh_lock_gives_up_after_its_deadline(tmp_path: Path) -> None:
    with (
        refresh_lock(tmp_path),
        pytest.raises(AuthError) as info,
        refresh_lock(tmp_path, timeout_s=0),
    ):
        pass
    assert "stop that process and retry" in one_line(info.value)
    with refresh_lock(tmp_path, timeout_s=0):
        pass  # free again
