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
