"""Device-code phishing (RFC 8628 §5.4), on a real server: a code alone, even from a
link that fills it in, never approves a device unseen.

The approval page asks for the code and a password first, then shows the device that
asked (its name, escaped; its address; when it asked) with a Confirm and a Deny button;
only that page's answer, carrying its signed ticket, approves. `tunehand ctl approve`
prints the same details and asks y/N (`--yes` for scripts).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
import pytest

from tests.cli_helpers import NO_KEYRING, PASSWORD, Device, client_env
from tests.fixtures_server import ServerProc
from tests.test_api import add_users, unique
from tests.test_device_code import (
    TICKET_RE,
    account,
    error_code,
    page_confirm,
    page_review,
    poll,
)

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

HOSTILE = '<b>evil</b>\x1b]0;pwned\x07 "quoted"\u202egnp.exe\r\nforged line'


def start_named(srv: ServerProc, name: str) -> dict[str, str]:
    r = httpx.post(
        srv.url + "/v1/auth/device", json={"device_id": unique("new"), "device_name": name}
    )
    assert r.status_code == 200, r.text
    out: dict[str, str] = r.json()
    return out


def test_a_prefilled_code_shows_a_warning_and_approves_nothing(shared_server: ServerProc) -> None:
    srv = shared_server
    s = start_named(srv, "kitchen")
    r = httpx.get(s["verification_uri_complete"])
    assert r.status_code == 200
    assert f'value="{s["user_code"]}"' in r.text
    assert "A link filled in this code" in r.text
    assert 'value="review"' in r.text and "Confirm" not in r.text
    r = httpx.get(srv.url + "/approve")
    assert "A link filled in this code" not in r.text
    assert error_code(poll(srv, s["device_code"])) == "authorization_pending"


def test_the_password_step_shows_the_device_escaped_and_approves_nothing(
    shared_server: ServerProc,
) -> None:
    srv = shared_server
    a = account(srv)
    try:
        s = start_named(srv, HOSTILE)
        # The old one-step form (code, user, password, action=approve) only shows.
        r = page_review(srv, s["user_code"], a.name, PASSWORD)
        assert r.status_code == 200, r.text
        assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
        name = re.search(r'<td id="device-name">(.*?)</td>', r.text, re.S)
        assert name, r.text
        # Kept without its control and bidi characters, shown HTML-escaped.
        assert name.group(1) == (
            "&lt;b&gt;evil&lt;/b&gt;]0;pwned &quot;quoted&quot;gnp.exe  forged line"
        ), name.group(1)
        assert "<b>evil" not in r.text and "\x1b" not in r.text and "\u202e" not in r.text
        assert '<td id="device-address">127.0.0.1</td>' in r.text
        asked = re.search(r'<td id="device-asked">(.*?)</td>', r.text)
        assert asked and re.fullmatch(
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)", asked.group(1)
        ), r.text
        assert f"logged in as <b>{a.name}</b>" in r.text
        assert "Confirm: approve this device" in r.text and 'value="deny"' in r.text
        ticket = TICKET_RE.search(r.text)
        assert ticket
        r = page_confirm(srv, s["user_code"], html.unescape(ticket.group(1)), "approve")
        assert r.status_code == 200 and "Approved:" in r.text, r.text
        tokens = poll(srv, s["device_code"]).json()
        assert tokens["user"] == a.name
    finally:
        a.close()


def test_a_forged_or_foreign_ticket_approves_nothing(shared_server: ServerProc) -> None:
    srv = shared_server
    a = account(srv)
    try:
        mine, other = start_named(srv, "mine"), start_named(srv, "other")
        r = page_review(srv, mine["user_code"], a.name, PASSWORD)
        m = TICKET_RE.search(r.text)
        assert m
        ticket = html.unescape(m.group(1))
        account_id, exp, mac = ticket.split(".")
        for code, bad in (
            (mine["user_code"], ""),  # the confirmation step with no ticket: shows the form
            (mine["user_code"], "1.9999999999.AAAA"),
            (mine["user_code"], f"{account_id}.{int(exp) + 1}.{mac}"),  # a later expiry
            (mine["user_code"], f"{int(account_id) + 1}.{exp}.{mac}"),  # another account
            (other["user_code"], ticket),  # the ticket of another code
        ):
            r = page_confirm(srv, code, bad, "approve")
            assert "Approved" not in r.text, r.text
            assert r.status_code in (400, 401), (bad, r.status_code, r.text)
        for s in (mine, other):
            assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
        r = page_confirm(srv, mine["user_code"], ticket, "deny")
        assert r.status_code == 200 and "Denied: mine stays logged out" in r.text, r.text
        assert error_code(poll(srv, mine["device_code"])) == "access_denied"
        # A ticket answers once: the code is decided.
        r = page_confirm(srv, mine["user_code"], ticket, "approve")
        assert r.status_code == 400 and "already used" in r.text, r.text
    finally:
        a.close()


def test_review_api_shows_the_device_to_a_logged_in_device(shared_server: ServerProc) -> None:
    srv = shared_server
    a = account(srv)
    try:
        s = start_named(srv, "bad\x1b[2Jname\u202e")
        r = a.post("/v1/auth/device/review", json={"user_code": s["user_code"].lower()})
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["device_name"] == "bad[2Jname" and p["address"] == "127.0.0.1", p
        assert p["user_code"] == s["user_code"] and p["user"] == a.name
        assert 0 < p["expires_in"] <= 600 and p["asked_ms"] > 0
        assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
        r = a.post("/v1/auth/device/review", json={"user_code": "BBBB-BBBB"})
        assert r.status_code == 404 and error_code(r) == "not_found"
    finally:
        a.close()


@pytest.mark.sqlite_only
def test_ctl_approve_prints_the_device_and_asks(tmp_path: Path, shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("ask")
    add_users(srv, user)
    old = Device(tmp_path / "old", client_env(NO_KEYRING, tmp_path / "old"))
    assert old.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    s = start_named(srv, "phone\x1b]0;x\x07\u202eevil")
    # No answer (a script without --yes): refused in one line, nothing approved.
    r = old.run("ctl", "approve", s["user_code"], input="")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "device   phone]0;xevil" in r.stdout and "address  127.0.0.1" in r.stdout, r.stdout
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout
    assert "[y/N]" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not approved" in lines[0] and "--yes" in lines[0], r.stderr
    r = old.run("ctl", "approve", s["user_code"], input="n\n")
    assert r.returncode == 1 and "not approved" in r.stderr
    assert error_code(poll(srv, s["device_code"])) == "authorization_pending"
    r = old.run("ctl", "approve", s["user_code"], input="y\n")
    assert r.returncode == 0, r.stderr
    assert f"approved: phone]0;xevil is logged in as {user}" in r.stdout, r.stdout
    assert poll(srv, s["device_code"]).json()["user"] == user
