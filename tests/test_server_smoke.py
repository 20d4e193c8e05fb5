"""The server starts on each backend (SQLite; PostgreSQL + Redis), migrates, scans, logs
in and answers a command."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.fixtures_server import ServerProc

pytestmark = pytest.mark.every_backend


def test_serve_login_command(start_server: Callable[..., ServerProc]) -> None:
    srv = start_server()
    srv.add_user("alice")
    tokens = srv.login("alice")
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    found = httpx.get(srv.url + "/v1/search", params={"q": "ros"}, headers=h).json()["tracks"]
    assert {t["artist"] for t in found} == {"Sigur Rós"}
    r = httpx.post(
        srv.url + "/v1/session/commands",
        json={"op": "queue_add", "command_id": "c1", "track_ids": [found[0]["id"]]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"]["version"] == 1
    assert srv.stop() == 0


@pytest.mark.sqlite_only
def test_the_data_files_are_private_and_a_readable_key_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A data dir that already exists (0755) still gets a 0600 database (and -wal/-shm) and
    signing key; a signing key others can read stops `serve` with one line, exit 2."""
    import stat
    import subprocess

    from tests.fixtures_server import launch, tunehand_cmd

    root = tmp_path_factory.mktemp("private")
    data = root / "data"
    data.mkdir(mode=0o755)
    srv = launch(root)
    try:
        files = [p for p in data.iterdir() if p.name.startswith(("tunehand.db", "signing.key"))]
        assert {p.name for p in files} >= {"tunehand.db", "signing.key"}, files
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
    finally:
        assert srv.stop() == 0
    key = data / "signing.key"
    key.chmod(0o644)
    r = subprocess.run(
        tunehand_cmd("serve", "--port", "0", "--no-scan", "--data-dir", str(data)),
        capture_output=True,
        text=True,
        timeout=60,
        env=srv.env,
        check=False,
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "readable by other users" in lines[0], r.stderr
    assert f"chmod 600 {key}" in lines[0], lines
