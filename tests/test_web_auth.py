"""The web app's login (refresh token in an HttpOnly cookie, CSRF double submit), the
device kind `web`, renaming devices, and how the app's files are served.

The login tests talk HTTP to a real server on both backends, with the cookies a browser
would keep (httpx's cookie jar honours Path, HttpOnly and SameSite the way a browser's
does for same-site requests). The file serving is checked on its own ASGI app over a
folder made by the test, and on the real server for what every page answer carries.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_helpers import NO_KEYRING, PASSWORD, Device, client_env
from tests.fixtures_server import ServerProc
from tests.test_api import Api, add_users, new_account, unique
from tests.test_device_code import approve, start

pytestmark = pytest.mark.every_backend

Json = dict[str, Any]


class Browser:
    """A browser's view of one origin: its cookie jar, and the Origin it sends."""

    def __init__(self, srv: ServerProc) -> None:
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url, timeout=30, headers={"Origin": srv.url})

    def csrf(self) -> str:
        return self.http.cookies.get("th_csrf") or ""

    def login(self, user: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
        return self.http.post("/v1/auth/web/login", json={"user": user, "password": password, **kw})

    def refresh(self, csrf: str | None = None) -> httpx.Response:
        token = self.csrf() if csrf is None else csrf
        return self.http.post("/v1/auth/web/refresh", json={}, headers={"X-CSRF-Token": token})

    def logout(self) -> httpx.Response:
        return self.http.post("/v1/auth/web/logout", json={}, headers={"X-CSRF-Token": self.csrf()})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(shared_server: ServerProc) -> Iterator[Browser]:
    b = Browser(shared_server)
    yield b
    b.close()


def set_cookies(r: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of `r` by cookie name, lower-cased."""
    out = {}
    for h in r.headers.get_list("set-cookie"):
        out[h.split("=", 1)[0]] = h.lower()
    return out


def user(srv: ServerProc) -> str:
    name = unique("web")
    add_users(srv, name)
    return name


def test_login_keeps_the_refresh_token_out_of_the_page(
    shared_server: ServerProc, browser: Browser
) -> None:
    name = user(shared_server)
    r = browser.login(name, device_name="Chromium on Linux")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "device_id", "user", "csrf_token"}
    assert body["user"] == name and body["access_token"].startswith("tha_")
    assert "thr_" not in r.text  # the refresh token is never in a body the page reads
    assert r.headers["cache-control"] == "no-store"
    cookies = set_cookies(r)
    refresh = cookies["th_refresh"]
    for attr in ("httponly", "samesite=strict", "path=/v1/auth/web"):
        assert attr in refresh, refresh
    assert "secure" not in refresh  # plain HTTP here; tests/test_e2e_tls.py covers TLS
    assert "httponly" not in cookies["th_csrf"] and "samesite=strict" in cookies["th_csrf"]
    assert body["csrf_token"] == browser.csrf()
    # The access token works on the API; the tab is a device of kind `web`.
    api = Api(shared_server, name, {"access_token": body["access_token"], **body})
    devices = api.ok("GET", "/v1/devices")["devices"]
    tab = next(d for d in devices if d["id"] == body["device_id"])
    assert (tab["kind"], tab["name"]) == ("web", "Chromium on Linux")
    api.close()


async def test_a_tab_stays_web_when_its_channel_connects(
    shared_server: ServerProc, browser: Browser
) -> None:
    from tests.test_api import channel

    name = user(shared_server)
    body = browser.login(name, device_name="Chromium on Linux").json()
    tab = body["device_id"]
    async with channel(
        shared_server, body["access_token"], device_id=tab, capabilities=("play", "web")
    ) as ch:
        assert ch.hello["type"] == "hello"
        kinds = {d["id"]: d["kind"] for d in ch.hello["devices"]}
        assert kinds[tab] == "web"
    api = Api(shared_server, name, body)
    listed = {d["id"]: d["kind"] for d in api.ok("GET", "/v1/devices")["devices"]}
    assert listed[tab] == "web"
    api.close()


def test_two_tabs_with_the_same_default_name_get_unique_names(shared_server: ServerProc) -> None:
    name = user(shared_server)
    tabs = [Browser(shared_server) for _ in range(3)]
    ids = []
    for tab in tabs:
        r = tab.login(name, device_name="Chromium on Linux", device_name_default=True)
        assert r.status_code == 200, r.text
        ids.append(r.json()["device_id"])
    # A name the user typed is kept as given, even when another device has it.
    chosen = Browser(shared_server)
    mine = chosen.login(name, device_name="Chromium on Linux").json()
    api = Api(shared_server, name, mine)
    listed = {d["id"]: d["name"] for d in api.ok("GET", "/v1/devices")["devices"]}
    assert [listed[i] for i in ids] == [
        "Chromium on Linux",
        "Chromium on Linux-2",
        "Chromium on Linux-3",
    ]
    assert listed[mine["device_id"]] == "Chromium on Linux"
    api.close()
    for b in (*tabs, chosen):
        b.close()


def test_wrong_password_sets_no_cookie(shared_server: ServerProc, browser: Browser) -> None:
    name = user(shared_server)
    r = browser.login(name, "wrong")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in r.headers


def test_refresh_needs_the_csrf_header_and_rotates_the_cookie(
    shared_server: ServerProc, browser: Browser
) -> None:
    name = user(shared_server)
    first = browser.login(name).json()
    old_cookie = browser.http.cookies.get("th_refresh")
    for bad in ("", "0" * 64):
        r = browser.refresh(csrf=bad)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf", r.text
    assert browser.http.cookies.get("th_refresh") == old_cookie  # refused before rotating
    r = browser.refresh()
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["device_id"] == first["device_id"] and again["user"] == name
    assert again["access_token"] != first["access_token"]
    assert browser.http.cookies.get("th_refresh") not in (None, old_cookie)
    # The old refresh cookie, replayed from elsewhere (no grace: another address is not
    # simulated here, so it is replayed after the new one was used), ends the login.
    assert browser.refresh().status_code == 200
    thief = httpx.Client(base_url=shared_server.url, timeout=30)
    thief.cookies.set("th_refresh", old_cookie or "", path="/v1/auth/web")
    r = thief.post("/v1/auth/web/refresh", json={}, headers={"X-CSRF-Token": browser.csrf()})
    assert r.status_code == 401, r.text
    thief.close()
    assert browser.refresh().status_code == 401  # the whole family was revoked


def test_a_cross_site_origin_is_refused(shared_server: ServerProc, browser: Browser) -> None:
    name = user(shared_server)
    assert browser.login(name).status_code == 200
    r = browser.http.post(
        "/v1/auth/web/refresh",
        json={},
        headers={"X-CSRF-Token": browser.csrf(), "Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    r = browser.http.post(
        "/v1/auth/web/login",
        json={"user": name, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403


def test_refresh_without_a_login_clears_and_says_unauthorized(browser: Browser) -> None:
    r = browser.refresh(csrf="x")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_logout_revokes_the_tab_and_clears_the_cookies(
    shared_server: ServerProc, browser: Browser
) -> None:
    name = user(shared_server)
    body = browser.login(name).json()
    r = browser.logout()
    assert r.status_code == 200 and r.json() == {"ok": True}
    cookies = set_cookies(r)
    assert "max-age=0" in cookies["th_refresh"] and "max-age=0" in cookies["th_csrf"]
    gone = httpx.get(
        shared_server.url + "/v1/session",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert gone.status_code == 401


def test_the_same_browser_logs_in_again_as_the_same_device(
    shared_server: ServerProc, browser: Browser
) -> None:
    name = user(shared_server)
    first = browser.login(name).json()
    again = browser.login(name, device_id=first["device_id"]).json()
    assert again["device_id"] == first["device_id"]
    # Another account in the same browser gets a device of its own.
    other = user(shared_server)
    theirs = browser.login(other, device_id=first["device_id"]).json()
    assert theirs["device_id"] != first["device_id"]


def test_device_code_login_of_a_tab(shared_server: ServerProc, browser: Browser) -> None:
    api = new_account(shared_server, "dcw")
    code = start(shared_server)
    poll = {"device_code": code["device_code"]}
    pending = browser.http.post("/v1/auth/web/device/token", json=poll)
    assert pending.status_code == 400
    assert pending.json()["error"]["code"] == "authorization_pending"
    assert "set-cookie" not in pending.headers
    assert approve(api, code["user_code"]).status_code == 200
    done = browser.http.post("/v1/auth/web/device/token", json=poll)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["user"] == api.name and "thr_" not in done.text
    assert "httponly" in set_cookies(done)["th_refresh"]
    assert browser.refresh().status_code == 200  # the cookie it set is a working login
    tab = next(d for d in api.ok("GET", "/v1/devices")["devices"] if d["id"] == body["device_id"])
    assert tab["kind"] == "web"
    api.close()


def test_rename_a_device(shared_server: ServerProc) -> None:
    api = new_account(shared_server, "ren")
    other = new_account(shared_server, "ren")
    path = f"/v1/devices/{api.device_id}"
    r = api.http.patch(path, json={"name": "  Kitchen\x1b[31m  "})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["kind"]) == ("Kitchen[31m", "terminal")
    listed = {d["id"]: d["name"] for d in api.ok("GET", "/v1/devices")["devices"]}
    assert listed[api.device_id] == "Kitchen[31m"
    for bad in ("", "   ", "x" * 65):
        r = api.http.patch(path, json={"name": bad})
        assert r.status_code == 422, (bad, r.text)
    # Another account's device is not found, and keeps its name.
    r = other.http.patch(path, json={"name": "mine now"})
    assert r.status_code == 404
    listed = {d["id"]: d["name"] for d in api.ok("GET", "/v1/devices")["devices"]}
    assert listed[api.device_id] == "Kitchen[31m"
    api.close()
    other.close()


# --- the app's files ---------------------------------------------------------------


@pytest.fixture
def files_app(tmp_path: Path) -> Iterator[Any]:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from tunehand.server import webapp
    from tunehand.server.web import ApiError, handle_error

    root = tmp_path / "static"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>" + "x" * 2000)
    (root / "js" / "main.js").write_text("export const a = 1;\n" * 200)
    (root / "sw.js").write_text("self.addEventListener('fetch', () => {});\n")
    (root / "manifest.webmanifest").write_text('{"name": "tunehand"}')
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    app = Starlette(
        routes=webapp.make_routes(webapp.Files(root)),
        exception_handlers={ApiError: handle_error},
    )
    with TestClient(app) as client:
        yield client


def test_files_are_served_with_a_strict_policy(files_app: Any) -> None:
    r = files_app.get("/", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.text.startswith("<!doctype html>")
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for part in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert part in csp
    assert "unsafe" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    js = files_app.get("/app/js/main.js", headers={"Accept-Encoding": "gzip"})
    assert js.headers["content-type"].startswith("text/javascript")
    assert js.headers["content-encoding"] == "gzip"
    assert js.text == "export const a = 1;\n" * 200  # decoded by the client
    raw = files_app.get("/app/js/main.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert int(js.headers["content-length"]) < len(gzip.compress(raw.content)) + 32
    sw = files_app.get("/sw.js")
    assert sw.headers["service-worker-allowed"] == "/"
    manifest = files_app.get("/manifest.webmanifest")
    assert manifest.headers["content-type"] == "application/manifest+json"


def test_an_unchanged_file_answers_304(files_app: Any) -> None:
    first = files_app.get("/app/js/main.js")
    etag = first.headers["etag"]
    again = files_app.get("/app/js/main.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_nothing_outside_the_app_is_served(files_app: Any) -> None:
    for path in (
        "/app/../outside.txt",
        "/app/%2e%2e/outside.txt",
        "/app/.hidden",
        "/app/index.html",
        "/app/nope.js",
        "/app/js",
    ):
        r = files_app.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "outside" not in r.text and "secret" not in r.text
    assert files_app.get("/app/a%00b").status_code == 422


def test_the_server_serves_the_app_at_its_root(shared_server: ServerProc) -> None:
    r = httpx.get(shared_server.url + "/")
    assert r.status_code == 200, r.text
    assert "content-security-policy" in r.headers
    assert '<script type="module"' in r.text and "/app/" in r.text
    assert "<script>" not in r.text  # nothing inline: the policy would block it


def test_ctl_devices_shows_the_kind_and_renames(
    shared_server: ServerProc, browser: Browser, tmp_path: Path
) -> None:
    name = user(shared_server)
    tab = browser.login(name, device_name="Firefox on Android").json()
    dev = Device(tmp_path / "term", client_env(NO_KEYRING, tmp_path / "term"))
    assert dev.login(shared_server.url, name, PASSWORD, "--insecure-token-file").returncode == 0
    kinds = {d["name"]: d["kind"] for d in dev.json("ctl", "devices", "--all")}
    assert kinds["Firefox on Android"] == "web"
    assert "terminal" in kinds.values()
    dev.ok("ctl", "devices", "rename", "Firefox", "phone browser")
    listed = {d["id"]: d["name"] for d in dev.json("ctl", "devices", "--all")}
    assert listed[tab["device_id"]] == "phone browser"
    line = dev.fails(5, "ctl", "devices", "rename", "nosuchdevice", "x")
    assert "no device 'nosuchdevice'" in line
