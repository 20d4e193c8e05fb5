"""The direct Secret Service read (the `ctl` fast path) against a real gnome-keyring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_credentials import make_credentials
from tunehand.client.credentials import KEYRING_SERVICE, KeyringStore
from tunehand.client.secret_service import Unavailable, read_secret


def test_reads_what_keyring_wrote(keyring_env: dict[str, str], tmp_path: Path) -> None:
    store = KeyringStore(tmp_path / "cfg")
    creds = make_credentials()
    store.save(creds)
    attrs = {"service": KEYRING_SERVICE, "username": str((tmp_path / "cfg").resolve())}
    assert read_secret(attrs, 2.0) == creds.to_json()
    assert KeyringStore(tmp_path / "cfg").load() == creds


def test_missing_item_falls_back(keyring_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        read_secret({"service": KEYRING_SERVICE, "username": str(tmp_path / "nobody")}, 2.0)
    assert KeyringStore(tmp_path / "nobody").load() is None


def test_no_bus_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    with pytest.raises(Unavailable):
        read_secret({"service": KEYRING_SERVICE, "username": "x"}, 2.0)


def test_load_does_not_import_keyring(keyring_env: dict[str, str], tmp_path: Path) -> None:
    KeyringStore(tmp_path / "cfg").save(make_credentials())
    code = (
        "import sys; from pathlib import Path;"
        "from tunehand.client.credentials import KeyringStore;"
        f"assert KeyringStore(Path({str(tmp_path / 'cfg')!r})).load() is not None;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('keyring', 'secretstorage', 'cryptography')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=keyring_env | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
