"""Device ids are minted by the server at login (issue 16), on a real server.

A login (password or device code) that proposes no `device_id` gets one made by the
server; its token opens a channel under that id only (4001 under any other). The real
client sends no id on a fresh config dir's first login, keeps the answered one in
`device-id` (0600) and sends it again on the next login, so the device stays the same.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.cli_helpers import NO_KEYRING, PASSWORD, Device, LineReader, client_env
from tests.fixtures_server import ServerProc
from tests.test_api import TIMEOUT_S, add_users, channel, expect_closed, unique, ws_url

MINTED_RE = re.compile(r"^d[0-9a-f]{20}$")
CODE_RE = re.compile(r"\b([A-Z]{4}-[A-Z]{4})\b")


def login(srv: ServerProc, user: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(srv.url + "/v1/auth/login", json={"user": user, "password": PASSWORD, **extra})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def whoami(srv: ServerProc, access: str) -> str:
    r = httpx.get(srv.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 200, r.text
    return str(r.json()["device_id"])


def device_ids(srv: ServerProc, access: str) -> set[str]:
    r = httpx.get(srv.url + "/v1/devices", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 200, r.text
    return {str(d["id"]) for d in r.json()["devices"]}


async def refused_under(srv: ServerProc, token: str, device_id: str) -> int:
    async with connect(ws_url(srv)) as ws:
        hello = {"type": "auth", "token": token, "device": {"id": device_id, "name": "x"}}
        await ws.send(json.dumps(hello))
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert (err["type"], err["code"]) == ("error", "unauthorized"), err
        return await expect_closed(ws)


@pytest.mark.parametrize("proposed", [{}, {"device_id": ""}])
async def test_a_login_without_a_device_id_gets_one_minted(
    shared_server: ServerProc, proposed: dict[str, str]
) -> None:
    srv = shared_server
    user = unique("mint")
    add_users(srv, user)
    answer = login(srv, user, device_name="fresh", **proposed)
    minted = answer["device_id"]
    assert MINTED_RE.match(minted), minted
    assert whoami(srv, answer["access_token"]) == minted
    assert device_ids(srv, answer["access_token"]) == {minted}
    async with channel(srv, answer["access_token"], device_id=minted, bound=False) as ch:
        assert ch.hello["device_id"] == minted
    other = login(srv, user)["device_id"]  # a second login without an id: another device
    assert MINTED_RE.match(other) and other != minted
    for elsewhere in (other, "d" + "0" * 20, unique("dev")):
        assert await refused_under(srv, answer["access_token"], elsewhere) == 4001
    assert device_ids(srv, answer["access_token"]) == {minted, other}


def test_a_proposed_id_is_still_kept_when_new_or_the_accounts_own(
    shared_server: ServerProc,
) -> None:
    srv = shared_server
    mine, theirs = unique("mint"), unique("mint")
    add_users(srv, mine, theirs)
    dev = unique("proposed")
    first = login(srv, mine, device_id=dev)
    assert first["device_id"] == dev
    assert login(srv, mine, device_id=dev)["device_id"] == dev  # the same device again
    # ... with a new token family: the first login's tokens are over.
    gone = httpx.get(
        srv.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert gone.status_code == 401, gone.text
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": theirs, "password": PASSWORD, "device_id": dev},
    )
    assert r.status_code == 401, r.text


def test_a_device_code_start_without_an_id_gets_one_minted(shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("mint")
    add_users(srv, user)
    approver = login(srv, user)
    started = httpx.post(srv.url + "/v1/auth/device", json={"device_name": "tv"})
    assert started.status_code == 200, started.text
    code = started.json()
    ok = httpx.post(
        srv.url + "/v1/auth/device/approve",
        json={"user_code": code["user_code"], "approve": True},
        headers={"Authorization": f"Bearer {approver['access_token']}"},
    )
    assert ok.status_code == 200, ok.text
    r = httpx.post(srv.url + "/v1/auth/device/token", json={"device_code": code["device_code"]})
    assert r.status_code == 200, r.text
    minted = r.json()["device_id"]
    assert MINTED_RE.match(minted) and minted != approver["device_id"], minted
    assert whoami(srv, r.json()["access_token"]) == minted


# --- the real client ----------------------------------------------------------------


def fresh(tmp_path: Path, name: str) -> Device:
    config_dir = tmp_path / name
    return Device(config_dir, client_env(NO_KEYRING, config_dir))


def stored(device: Device) -> tuple[str, str]:
    """The kept device id and the access token of the opted-in tokens file."""
    path = device.config_dir / "device-id"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = json.loads((device.config_dir / "tokens.json").read_text())
    assert tokens["device_id"] == device.device_id()
    return device.device_id(), str(tokens["access_token"])


def test_the_clients_first_login_keeps_the_servers_id(
    tmp_path: Path, shared_server: ServerProc
) -> None:
    srv = shared_server
    user = unique("mint")
    add_users(srv, user)
    laptop = fresh(tmp_path, "laptop")
    assert laptop.run("ctl", "devices").returncode == 3  # not logged in: no id yet
    # The client makes no id of its own: a refused login leaves none behind.
    assert laptop.login(srv.url, user, "wrong-pw", "--insecure-token-file").returncode == 3
    assert not (laptop.config_dir / "device-id").exists()
    r = laptop.login(srv.url, user, PASSWORD, "--insecure-token-file")
    assert r.returncode == 0, r.stderr
    first, access = stored(laptop)
    assert MINTED_RE.match(first) and whoami(srv, access) == first
    r = laptop.login(srv.url, user, PASSWORD, "--insecure-token-file")  # again: same device
    assert r.returncode == 0, r.stderr
    again, access = stored(laptop)
    assert again == first and whoami(srv, access) == first
    desk = fresh(tmp_path, "desk")
    assert desk.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    assert desk.device_id() != first
    ids = [d["id"] for d in laptop.json("ctl", "devices", "--all")]
    assert sorted(ids) == sorted([first, desk.device_id()]), ids


def device_code_login(new: Device, old: Device, srv: ServerProc) -> None:
    proc = new.popen("login", srv.url, "--device-code", "--insecure-token-file")
    try:
        m = CODE_RE.search(LineReader(proc.stdout).next())  # type: ignore[arg-type]
        assert m
        assert "approved:" in old.ctl("approve", m.group(1), "--yes")
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_clients_device_code_login_keeps_the_servers_id(
    tmp_path: Path, shared_server: ServerProc
) -> None:
    srv = shared_server
    user = unique("mint")
    add_users(srv, user)
    old = fresh(tmp_path, "old")
    assert old.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    new = fresh(tmp_path, "new")
    waiting = new.popen("login", srv.url, "--device-code", "--insecure-token-file")
    try:  # a code is shown, and still no id exists here: the server mints it
        assert CODE_RE.search(LineReader(waiting.stdout).next())  # type: ignore[arg-type]
        assert not (new.config_dir / "device-id").exists()
    finally:
        waiting.kill()
        waiting.wait()
    device_code_login(new, old, srv)
    first, access = stored(new)
    assert MINTED_RE.match(first) and first != old.device_id()
    assert whoami(srv, access) == first
    device_code_login(new, old, srv)  # again from the same config dir: the same device
    again, access = stored(new)
    assert again == first and whoami(srv, access) == first


async def test_the_tuis_first_login_keeps_the_servers_id(
    tmp_path: Path, shared_server: ServerProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from tunehand.errors import AuthError
    from tunehand.tui.backend_live import LiveBackend

    srv = shared_server
    user = unique("mint")
    await asyncio.to_thread(add_users, srv, user)
    for key, value in NO_KEYRING.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TUNEHAND_TOKEN", raising=False)
    term = Device(tmp_path / "tui", {})
    backend, _ = LiveBackend.from_args(argparse.Namespace(config_dir=str(term.config_dir)))
    backend.use_token_file()
    with pytest.raises(AuthError):
        await backend.login(srv.url, user, "wrong-pw")
    assert not (term.config_dir / "device-id").exists()
    await backend.login(srv.url, user, PASSWORD)
    first, access = stored(term)
    assert MINTED_RE.match(first) and await asyncio.to_thread(whoami, srv, access) == first
    await backend.login(srv.url, user, PASSWORD)  # again: the same device
    again, access = stored(term)
    assert again == first and await asyncio.to_thread(whoami, srv, access) == first


def test_a_token_from_the_environment_plays_as_its_own_device(
    tmp_path: Path, shared_server: ServerProc
) -> None:
    """`TUNEHAND_TOKEN` on a config dir that never logged in (CI, a container): the
    device is the token's own, as the server names it (the client makes up none)."""
    srv = shared_server
    user = unique("envtok")
    add_users(srv, user)
    tokens = login(srv, user)
    minted = str(tokens["device_id"])
    config_dir = tmp_path / "ci"
    env = client_env(NO_KEYRING, config_dir, TUNEHAND_TOKEN=str(tokens["access_token"]))
    ci = Device(config_dir, env)
    proc = ci.popen("ctl", "--server", srv.url, "watch")
    try:
        first = json.loads(LineReader(proc.stdout).next())  # type: ignore[arg-type]
        assert "version" in first
        online = httpx.get(
            srv.url + "/v1/devices",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        ).json()["devices"]
        assert [d["id"] for d in online if d["online"]] == [minted], online
        assert not (config_dir / "device-id").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert "Traceback" not in err and "4001" not in err, err
