"""The `tunehand.security` log, read from a real server's stderr and its data dir's
security.log: one line per event (failed and throttled logins, refresh-token reuse,
revocation, logout, device-code approvals and denials, admin user changes), never a
password or a token, and a hostile user name cannot forge a line.

Also here: the server's data dir is created 0700, and what it writes in it is 0600.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Callable

import httpx
import pytest

from tests.cli_helpers import PASSWORD
from tests.fixtures_server import ServerProc, launch
from tests.test_api import Api, unique
from tests.test_device_code import page_approve, start

pytestmark = pytest.mark.every_backend

VALUE = r'(?:"(?:[^"\\]|\\.)*"|[A-Za-z0-9._\-@:/\[\]]+)'
LINE = re.compile(rf"^\S+ \S+ tunehand\.security: (\w+)((?: \w+={VALUE})*)$")
FIELD = re.compile(rf" (\w+)=({VALUE})")
HOSTILE = 'mallory\nFAKE tunehand.security: user_added user=root "x"'
WRONG_PW = "wrong-pw-" + "7f3a9c"


def events(lines: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The security lines among `lines`, parsed (a line that does not parse fails)."""
    out = []
    for ln in lines:
        if "tunehand.security" not in ln:
            continue
        m = LINE.match(ln)
        assert m, f"not one security line: {ln!r}"
        fields = {
            k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(m.group(2))
        }
        out.append((m.group(1), fields))
    return out


def wait_for(srv: ServerProc, event: str, **want: str) -> dict[str, str]:
    """The first `event` line with these fields in the server's stderr (the server logs
    after it answers, so poll with a deadline)."""
    deadline = time.monotonic() + 10
    while True:
        for name, fields in events(list(srv.log)):
            if name == event and all(fields.get(k) == v for k, v in want.items()):
                return fields
        assert time.monotonic() < deadline, f"no {event} {want} in:\n" + "\n".join(srv.log)
        time.sleep(0.05)  # polling the log for a condition, with a deadline


def test_security_events_are_logged_one_line_each_without_secrets(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    user = unique("sec")
    srv.add_user(user, PASSWORD)  # the real `admin add-user`: security.log only
    secrets_seen: list[str] = [PASSWORD, WRONG_PW]

    # Refresh-token reuse from elsewhere revokes the family.
    t1 = srv.login(user, PASSWORD)
    secrets_seen += [t1["access_token"], t1["refresh_token"]]
    body = {"refresh_token": t1["refresh_token"], "device_id": t1["device_id"]}
    r = httpx.post(srv.url + "/v1/auth/refresh", json=body)
    assert r.status_code == 200, r.text
    secrets_seen += [r.json()["access_token"], r.json()["refresh_token"]]
    r = httpx.post(srv.url + "/v1/auth/refresh", json={"refresh_token": t1["refresh_token"]})
    assert r.status_code == 401, r.text
    wait_for(srv, "refresh_reused", device=t1["device_id"])

    # Logout, and a device revoked by another.
    a = Api(srv, user, srv.login(user, PASSWORD))
    b = Api(srv, user, srv.login(user, PASSWORD))
    secrets_seen += [a.token, b.token, a.tokens["refresh_token"], b.tokens["refresh_token"]]
    try:
        assert a.delete(f"/v1/devices/{b.device_id}").status_code == 200
        wait_for(srv, "device_revoked", user=user, device=b.device_id, by=a.device_id)
        # Device-code approvals: by a logged-in device, and denied on the page.
        s = start(srv)
        secrets_seen.append(s["device_code"])
        r = a.post("/v1/auth/device/approve", json={"user_code": s["user_code"]})
        assert r.status_code == 200, r.text
        wait_for(
            srv,
            "device_code_approved",
            user=user,
            device=s["asked_device_id"],
            asked_from="127.0.0.1",
            address="127.0.0.1",
        )
        s = start(srv)
        secrets_seen.append(s["device_code"])
        r = page_approve(srv, s["user_code"], user, PASSWORD, action="deny")
        assert r.status_code == 200 and "Denied" in r.text, r.text
        wait_for(srv, "device_code_denied", user=user, device=s["asked_device_id"])
        assert a.post("/v1/auth/logout").status_code == 200
        wait_for(srv, "logout", user=user, device=a.device_id)
    finally:
        a.close()
        b.close()

    # Failed logins (a name chosen to forge a line), then the throttled one.
    for _ in range(3):
        r = httpx.post(
            srv.url + "/v1/auth/login",
            json={"user": HOSTILE, "password": WRONG_PW, "device_id": unique("d")},
        )
        assert r.status_code == 401, r.text
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": HOSTILE, "password": WRONG_PW, "device_id": unique("d")},
    )
    assert r.status_code == 429, r.text
    quoted = '"mallory\\nFAKE tunehand.security: user_added user=root \\"x\\""'
    wait_for(srv, "login_throttled", address="127.0.0.1", user=HOSTILE)
    log_text = "\n".join(srv.log)
    assert log_text.count(f"login_failed user={quoted} address=127.0.0.1") == 3, log_text
    assert not any(ln.startswith("FAKE") for ln in srv.log)

    r = srv.admin("remove-user", user)
    assert r.returncode == 0 and r.stderr == "", r.stderr

    # security.log in the data dir holds the server's lines and the admin's, 0600.
    path = srv.data_dir / "security.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    file_lines = path.read_text().splitlines()
    names = [name for name, _ in events(file_lines)]
    for name in (
        "user_added",
        "refresh_reused",
        "device_revoked",
        "device_code_approved",
        "device_code_denied",
        "logout",
        "login_failed",
        "login_throttled",
        "user_removed",
    ):
        assert name in names, (name, file_lines)
    assert ("user_added", {"user": user, "by": "admin"}) in events(file_lines)
    assert ("user_removed", {"user": user, "by": "admin"}) in events(file_lines)
    for secret in secrets_seen:
        assert secret not in log_text
        assert secret not in "\n".join(file_lines)


@pytest.mark.sqlite_only
def test_a_new_data_dir_is_0700_and_its_files_0600(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("fresh")
    srv = launch(root)
    try:
        data = srv.data_dir
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        srv.add_user(unique("perm"), PASSWORD)  # writes security.log from `admin` too
        files = [p for p in data.iterdir() if p.is_file()]
        assert {p.name for p in files} >= {"tunehand.db", "signing.key", "security.log"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
    finally:
        assert srv.stop() == 0
