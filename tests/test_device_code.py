"""Device-code logins (RFC 8628 style) and the refresh grace window, on a real server.

The CLI flow runs `tunehand login --device-code` as a subprocess and approves it with
`tunehand ctl approve` from another logged-in device. The HTTP tests cover the approval
page, every polling answer, single use, expiry and the throttling of code guessing.
Tests that record failed attempts (which count per address, and every test talks from
127.0.0.1) get a server of their own; expiry and the end of the grace window use a
server started with TUNEHAND_DEVICE_CODE_TTL_S=0 and TUNEHAND_REFRESH_GRACE_S=0.
The HTTP tests run on both backends; the CLI flow (a client test, which waits one 5 s
polling interval) on SQLite only.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_helpers import NO_KEYRING, PASSWORD, Device, LineReader, client_env
from tests.fixtures_server import Backend, ServerProc, launch
from tests.test_api import Api, add_users, unique
from tunehand.server.device_code import ALPHABET, normalize

pytestmark = pytest.mark.every_backend

Json = dict[str, Any]
CODE_RE = re.compile(r"\b([A-Z]{4}-[A-Z]{4})\b")


@pytest.fixture(scope="module")
def short_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[ServerProc]:
    """Codes that expire at once and no refresh grace window."""
    srv = launch(
        tmp_path_factory.mktemp("short-server"),
        store=backend.store(),
        env={"TUNEHAND_DEVICE_CODE_TTL_S": "0", "TUNEHAND_REFRESH_GRACE_S": "0"},
    )
    yield srv
    srv.stop()


def account(srv: ServerProc) -> Api:
    name = unique("dc")
    add_users(srv, name)
    return Api(srv, name, srv.login(name))


def start(srv: ServerProc, device_id: str | None = None) -> Json:
    dev = device_id or unique("new")
    r = httpx.post(
        srv.url + "/v1/auth/device", json={"device_id": dev, "device_name": "new " + dev}
    )
    assert r.status_code == 200, r.text
    out: Json = r.json()
    out["asked_device_id"] = dev
    return out


def poll(srv: ServerProc, device_code: str) -> httpx.Response:
    return httpx.post(srv.url + "/v1/auth/device/token", json={"device_code": device_code})


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def approve(api: Api, user_code: str, allow: bool = True) -> httpx.Response:
    return api.post("/v1/auth/device/approve", json={"user_code": user_code, "approve": allow})


TICKET_RE = re.compile(r'name="confirm" value="([^"]+)"')


def page_review(srv: ServerProc, code: str, user: str, password: str) -> httpx.Response:
    """The page's first step: code, user and password (the old one-step form's fields)."""
    return httpx.post(
        srv.url + "/approve",
        data={"user_code": code, "user": user, "password": password, "action": "approve"},
    )


def page_confirm(srv: ServerProc, code: str, ticket: str, action: str) -> httpx.Response:
    return httpx.post(
        srv.url + "/approve", data={"user_code": code, "confirm": ticket, "action": action}
    )


def page_approve(
    srv: ServerProc, code: str, user: str, password: str, action: str = "approve"
) -> httpx.Response:
    """Both steps: the confirmation page, then its Confirm (or Deny) button."""
    r = page_review(srv, code, user, password)
    m = TICKET_RE.search(r.text)
    if r.status_code != 200 or m is None:
        return r
    return page_confirm(srv, code, html.unescape(m.group(1)), action)


def whoami(srv: ServerProc, access: str) -> httpx.Response:
    return httpx.get(srv.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {access}"})


# --- the CLI ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_cli_device_code_login_approved_by_ctl(tmp_path: Path, shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("cli")
    add_users(srv, user)
    old = Device(tmp_path / "old", client_env(NO_KEYRING, tmp_path / "old"))
    r = old.login(srv.url, user, PASSWORD, "--insecure-token-file")
    assert r.returncode == 0, r.stderr
    new = Device(tmp_path / "new", client_env(NO_KEYRING, tmp_path / "new"))
    proc = new.popen("login", srv.url, "--device-code", "--insecure-token-file")
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        first = out.next()
        m = CODE_RE.search(first)
        assert m, first
        code = m.group(1)
        hint = out.next()
        assert f"tunehand ctl approve {code}" in hint and srv.url + "/approve" in hint, hint
        said = old.ctl("approve", code.lower(), "--yes")
        assert "approved:" in said and user in said, said
        assert "address  127.0.0.1" in said, said  # the device that asked is shown
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert isinstance(new.status(), dict)  # `ctl status` works with the new tokens
    whoami_new = new.ok("auth", "status")
    assert f"as {user}" in whoami_new, whoami_new
    # The new device is one of the account's devices, next to the old one.
    ids = {d["id"] for d in old.json("ctl", "devices", "--all")}
    assert new.device_id() in ids and old.device_id() in ids


@pytest.mark.sqlite_only
def test_cli_device_code_denied_exits_3_with_one_line(
    tmp_path: Path, shared_server: ServerProc
) -> None:
    srv = shared_server
    user = unique("cli")
    add_users(srv, user)
    old = Device(tmp_path / "old", client_env(NO_KEYRING, tmp_path / "old"))
    assert old.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    new = Device(tmp_path / "new", client_env(NO_KEYRING, tmp_path / "new"))
    proc = new.popen("login", srv.url, "--device-code", "--insecure-token-file")
    try:
        m = CODE_RE.search(LineReader(proc.stdout).next())  # type: ignore[arg-type]
        assert m
        assert old.ctl("approve", m.group(1), "--deny").startswith("denied:")
        assert proc.wait(timeout=60) == 3
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
    assert len(lines) == 1 and "denied" in lines[0], err
    assert not (tmp_path / "new" / "tokens.json").exists()


@pytest.mark.sqlite_only
def test_cli_device_code_expired_exits_3(tmp_path: Path, short_server: ServerProc) -> None:
    new = Device(tmp_path / "new", client_env(NO_KEYRING, tmp_path / "new"))
    r = new.run("login", short_server.url, "--device-code", "--insecure-token-file")
    assert r.returncode == 3, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "warning" not in ln]
    assert len(lines) == 1 and "expired" in lines[0], r.stderr


# --- the protocol ---------------------------------------------------------------------


def test_start_answers_a_code_to_show_and_one_to_poll(shared_server: ServerProc) -> None:
    s = start(shared_server)
    assert s["expires_in"] == 600 and s["interval"] == 5
    assert s["verification_uri"] == shared_server.url + "/approve"
    assert re.fullmatch(f"[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}", s["user_code"])
    assert len(s["device_code"]) > 40
    assert not set("AEIOU01") & set(s["user_code"])
    assert normalize(s["user_code"].lower().replace("-", " ")) == s["user_code"].replace("-", "")


def test_pending_then_slow_down_grows_the_interval(shared_server: ServerProc) -> None:
    s = start(shared_server)
    r = poll(shared_server, s["device_code"])
    assert r.status_code == 400 and error_code(r) == "authorization_pending", r.text
    r = poll(shared_server, s["device_code"])  # at once: faster than 5 s
    assert r.status_code == 400 and error_code(r) == "slow_down", r.text
    assert r.json()["error"]["interval"] == 10
    r = poll(shared_server, s["device_code"])
    assert error_code(r) == "slow_down" and r.json()["error"]["interval"] == 15


def test_approved_code_gives_tokens_of_the_approving_account_once(
    shared_server: ServerProc,
) -> None:
    a, b = account(shared_server), account(shared_server)
    try:
        s = start(shared_server)
        r = approve(a, s["user_code"])
        assert r.status_code == 200, r.text
        assert r.json()["device_name"] == "new " + s["asked_device_id"]
        r = poll(shared_server, s["device_code"])
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["user"] == a.name and tokens["device_id"] == s["asked_device_id"]
        new = Api(shared_server, a.name, tokens)
        assert new.ok("GET", "/v1/auth/whoami") == {
            "user": a.name,
            "device_id": s["asked_device_id"],
        }
        # Same token answer as a password login: it refreshes like one.
        r = httpx.post(
            shared_server.url + "/v1/auth/refresh",
            json={"refresh_token": tokens["refresh_token"]},
        )
        assert r.status_code == 200, r.text
        # Isolation: A sees the new device, B does not, and B's session is untouched.
        assert s["asked_device_id"] in {d["id"] for d in a.ok("GET", "/v1/devices")["devices"]}
        assert s["asked_device_id"] not in {d["id"] for d in b.ok("GET", "/v1/devices")["devices"]}
        # Single use: the code answers nothing more, to polls or approvals.
        r = poll(shared_server, s["device_code"])
        assert r.status_code == 400 and error_code(r) == "invalid_grant", r.text
        r = approve(b, s["user_code"])
        assert r.status_code == 400 and error_code(r) == "invalid_grant", r.text
        new.close()
    finally:
        a.close()
        b.close()


def test_approve_needs_a_logged_in_device(shared_server: ServerProc) -> None:
    s = start(shared_server)
    r = httpx.post(
        shared_server.url + "/v1/auth/device/approve", json={"user_code": s["user_code"]}
    )
    assert r.status_code == 401
    assert error_code(poll(shared_server, s["device_code"])) == "authorization_pending"


def test_unknown_device_code_is_refused(shared_server: ServerProc) -> None:
    r = poll(shared_server, "thd_" + secrets.token_urlsafe(32))
    assert r.status_code == 400 and error_code(r) == "invalid_grant", r.text


def test_approval_page_is_a_form(shared_server: ServerProc) -> None:
    r = httpx.get(shared_server.url + "/approve", params={"code": "WDJB-MJHT"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('name="user_code"', 'value="WDJB-MJHT"', 'name="user"', 'type="password"'):
        assert needle in r.text
    r = httpx.get(shared_server.url + "/approve", params={"code": '"><script>'})
    assert "<script>" not in r.text


def test_approval_page_with_right_and_wrong_password(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    user = unique("web")
    add_users(srv, user)
    s = start(srv)
    r = page_approve(srv, s["user_code"], user, "wrong-pw")
    assert r.status_code == 401 and "wrong user name or password" in r.text.lower(), r.text
    r = page_approve(srv, s["user_code"], unique("nobody"), PASSWORD)
    assert r.status_code == 401, r.text
    assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
    r = page_approve(srv, s["user_code"].lower(), user, PASSWORD)
    assert r.status_code == 200 and "Approved" in r.text, r.text
    tokens = poll(srv, s["device_code"]).json()
    assert tokens["user"] == user
    assert whoami(srv, tokens["access_token"]).json()["user"] == user
    # An unknown code, with the right password, is a clear answer too.
    r = page_approve(srv, "BBBB-BBBB", user, PASSWORD)
    assert r.status_code == 404 and "no such code" in r.text.lower(), r.text


def test_expired_codes_are_refused_everywhere(short_server: ServerProc) -> None:
    a = account(short_server)
    try:
        s = start(short_server)
        assert s["expires_in"] == 0
        r = poll(short_server, s["device_code"])
        assert r.status_code == 400 and error_code(r) == "expired_token", r.text
        r = approve(a, s["user_code"])
        assert r.status_code == 400 and error_code(r) == "expired_token", r.text
        r = page_approve(short_server, s["user_code"], a.name, PASSWORD)
        assert r.status_code == 400 and "expired" in r.text, r.text
    finally:
        a.close()


def test_guessing_codes_is_throttled_per_address_and_account(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    a = account(srv)
    try:
        s = start(srv)
        for guess in ("BBBB-BBBB", "CCCC-CCCC", "not a code"):
            r = approve(a, guess)
            assert r.status_code == 404 and error_code(r) == "not_found", r.text
        # The fourth wrong guess in a row waits, and so does the right code now.
        for guess in ("DDDD-DDDD", s["user_code"]):
            r = approve(a, guess)
            assert r.status_code == 429 and error_code(r) == "rate_limited", r.text
            assert int(r.headers["Retry-After"]) >= 1
        # The approval page shares the per-address count.
        r = page_approve(srv, s["user_code"], a.name, PASSWORD)
        assert r.status_code == 429, r.text
        assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
    finally:
        a.close()


# --- the refresh grace window ----------------------------------------------------------


def refresh(srv: ServerProc, token: str, device_id: str = "") -> httpx.Response:
    body = {"refresh_token": token, "device_id": device_id}
    return httpx.post(srv.url + "/v1/auth/refresh", json=body)


def test_a_lost_refresh_answer_is_answered_again(shared_server: ServerProc) -> None:
    a = account(shared_server)
    try:
        first = a.tokens
        r = refresh(shared_server, first["refresh_token"], a.device_id)
        assert r.status_code == 200, r.text
        second = r.json()
        # The answer was lost: the device retries with the same token within the window.
        r = refresh(shared_server, first["refresh_token"], a.device_id)
        assert r.status_code == 200, r.text
        again = r.json()
        assert again["access_token"] == second["access_token"]
        assert again["refresh_token"] == second["refresh_token"]
        assert whoami(shared_server, again["access_token"]).status_code == 200
        # And the family rotates on normally from there.
        r = refresh(shared_server, again["refresh_token"], a.device_id)
        assert r.status_code == 200, r.text
        assert whoami(shared_server, r.json()["access_token"]).status_code == 200
    finally:
        a.close()


def test_reuse_in_the_window_from_elsewhere_still_revokes(shared_server: ServerProc) -> None:
    a = account(shared_server)
    try:
        first = a.tokens
        second = refresh(shared_server, first["refresh_token"], a.device_id).json()
        # Without (or with another) device id: a thief, not a lost answer.
        for dev in ("", "someone-else"):
            other = account(shared_server)
            t = other.tokens
            assert refresh(shared_server, t["refresh_token"], t["device_id"]).status_code == 200
            r = refresh(shared_server, t["refresh_token"], dev)
            assert r.status_code == 401, r.text
            other.close()
        r = refresh(shared_server, first["refresh_token"], "someone-else")
        assert r.status_code == 401
        assert whoami(shared_server, second["access_token"]).status_code == 401
    finally:
        a.close()


def test_reuse_after_the_rotated_pair_was_used_revokes(shared_server: ServerProc) -> None:
    a = account(shared_server)
    try:
        first = a.tokens
        second = refresh(shared_server, first["refresh_token"], a.device_id).json()
        third = refresh(shared_server, second["refresh_token"], a.device_id).json()
        r = refresh(shared_server, first["refresh_token"], a.device_id)
        assert r.status_code == 401, r.text
        assert whoami(shared_server, third["access_token"]).status_code == 401
    finally:
        a.close()


def test_reuse_after_the_window_revokes(short_server: ServerProc) -> None:
    a = account(short_server)
    try:
        first = a.tokens
        second = refresh(short_server, first["refresh_token"], a.device_id).json()
        r = refresh(short_server, first["refresh_token"], a.device_id)
        assert r.status_code == 401, r.text
        assert whoami(short_server, second["access_token"]).status_code == 401
    finally:
        a.close()
