"""The web app in a real browser (Debian's Chromium, headless, through Selenium) against a
real `tunehand serve`: logins (password, wrong password, device code), browsing, search as
you type, queue edits seen by another device, playing in the tab (the <audio> element's
currentTime advances and the server says the tab plays), the phone layout with touch,
"Tap to play here" when the browser refuses to play without a gesture, the CSP with no
violation logged, the tokens out of the page's reach, and offline/reconnect.

Another device's view is `tunehand ctl ... --json` of a logged-in config dir.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_helpers import (
    DeviceDir,
    add_users,
    ctl,
    ctl_ok,
    login_all,
    make_tones,
    restart_server,
    status,
)
from tests.fixtures_server import ServerProc, launch
from tests.web_helpers import (
    audio_state,
    browser_log,
    click,
    csp_violations,
    require_chromium,
    shown,
    tap,
    testid,
    testids,
    type_into,
    wait_audio_advancing,
    wait_js,
    wait_testid,
    wait_text,
    wait_until,
    web_login,
)

pytestmark = pytest.mark.timeout(180)

STATIC = Path(__file__).resolve().parent.parent / "src" / "tunehand" / "webapp" / "static"
TONES = ("Long One", "Long Two", "Long Three")
_users = itertools.count()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One server for the module: the generated library plus three 2-minute tones."""
    require_chromium()
    from tests.audiogen import make_library

    root = tmp_path_factory.mktemp("web")
    music = make_library(root / "music")
    make_tones(music / "Tester" / "Long Tones", TONES, album="Long Tones", duration_s=120)
    srv = launch(root, music=music)
    yield srv
    srv.stop()


@pytest.fixture
def user(web_server: ServerProc) -> str:
    """A fresh account (its own session) for one test."""
    name = f"web{next(_users)}"
    add_users(web_server, [name])
    return name


@pytest.fixture
def other(web_server: ServerProc, user: str, tmp_path: Path) -> DeviceDir:
    """A terminal device of the same account: what "another device" sees."""
    dev = DeviceDir("other", tmp_path / "other")
    login_all(web_server.url, user, [dev])
    return dev


def queue_of(dev: DeviceDir) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ctl_ok(dev, "queue", "--json"))
    return out


def titles(q: dict[str, Any]) -> list[str]:
    return [e["track"]["title"] for e in q["entries"]]


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll another process's view (ctl) until `pred` holds: ctl has no event to wait on
    (each call is a process of its own), so this polls with a deadline."""
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
    raise AssertionError(f"{what}: never held in {timeout:g} s (last: {last!r})")


class Row:
    """A row found by its title: looked up afresh whenever the page re-rendered it (search
    as you type may draw its results again after the row was first seen)."""

    def __init__(self, driver: Any, testid_: str, title: str) -> None:
        self.driver, self.testid, self.title = driver, testid_, title

    def find(self, d: Any) -> Any:
        for r in shown(d, self.testid):
            if r.text.split("\n")[0] == self.title:
                return r
        return None

    def get_attribute(self, name: str) -> Any:
        return wait_until(
            self.driver,
            lambda d: (r := self.find(d)) is not None and r.get_attribute(name),
            message=f"no row {self.title!r}",
        )


def search_and_row(driver: Any, query: str, title: str, *, touch: bool = False) -> Row:
    """Search for `query` and return the track row titled `title` (once it is shown)."""
    nav = testid(driver, "nav-search")
    tap(driver, nav) if touch else click(driver, nav)
    type_into(wait_testid(driver, "search-input"), query)
    row = Row(driver, "track-row", title)
    wait_until(driver, row.find, message=f"no track row {title!r} for {query!r}")
    return row


def press_nth(driver: Any, rows: str, i: int, name: str) -> None:
    """Click button `name` in the i-th displayed `rows` element, found afresh (a row
    re-rendered meanwhile is looked up again, not clicked stale)."""

    def act(d: Any) -> bool:
        found = shown(d, rows)
        if len(found) <= i:
            return False
        click(d, testids(found[i], name)[0])
        return True

    wait_until(driver, act, message=f"no {name} in {rows} #{i}")


def press(driver: Any, scope: Any, name: str, *, touch: bool = False) -> None:
    """Press button `name` in `scope` (an element, or a `Row` found afresh if the page
    drew it again meanwhile)."""
    if not isinstance(scope, Row):
        el = testids(scope, name)[0]
        tap(driver, el) if touch else click(driver, el)
        return

    def act(d: Any) -> bool:
        r = scope.find(d)
        if r is None:
            return False
        el = testids(r, name)[0]  # a stale row raises here, before any click: retried
        tap(d, el) if touch else click(d, el)
        return True

    wait_until(driver, act, message=f"no {name} in row {scope.title!r}")


# --- logging in -----------------------------------------------------------------------


def test_password_login_and_wrong_password(desktop: Any, web_server: ServerProc, user: str) -> None:
    desktop.get(web_server.url + "/")
    type_into(wait_testid(desktop, "login-user"), user)
    type_into(testid(desktop, "login-password"), "not-the-password")
    click(desktop, testid(desktop, "login-submit"))
    err = wait_testid(desktop, "login-error")
    assert "wrong" in err.text.lower(), err.text
    assert not testid(desktop, "connection-status").is_displayed()

    device = web_login(desktop, web_server.url, user)
    assert re.fullmatch(r"d[0-9a-f]{20}", device), device
    name = wait_text(desktop, "this-device-name", lambda s: bool(s.strip()))
    assert " on " in name, name  # "<Browser> on <OS>"
    # The page was loaded again: the refresh cookie logs it in without a password.
    desktop.get(web_server.url + "/")
    wait_text(desktop, "connection-status", lambda s: s == "online")
    assert desktop.execute_script("return window.tunehand.deviceId") == device


def test_tokens_are_out_of_the_pages_reach(desktop: Any, web_server: ServerProc, user: str) -> None:
    web_login(desktop, web_server.url, user)
    cookies = desktop.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    refresh = next(c for c in cookies if c["name"] == "th_refresh")
    assert refresh["httpOnly"] and refresh["sameSite"] == "Strict", refresh
    assert refresh["path"] == "/v1/auth/web", refresh
    seen = desktop.execute_script(
        "const all = {cookie: document.cookie};"
        "for (const s of [localStorage, sessionStorage])"
        "  for (let i = 0; i < s.length; i++) all[s.key(i)] = s.getItem(s.key(i));"
        "return all;"
    )
    assert "th_refresh" not in seen["cookie"], seen
    assert refresh["value"] not in json.dumps(seen), seen
    stored = {k for k in seen if k != "cookie"}
    assert stored <= {"th_device_id", "th_device_name"}, stored
    assert not [k for k in seen if "token" in k.lower()], seen
    assert desktop.execute_script("return indexedDB.databases()") == []
    # Logging out clears the cookies and shows the login screen.
    click(desktop, testid(desktop, "logout"))
    wait_testid(desktop, "login-user")
    names = {c["name"] for c in desktop.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}
    assert "th_refresh" not in names, names


def test_device_code_login(desktop: Any, web_server: ServerProc, other: DeviceDir) -> None:
    desktop.get(web_server.url + "/")
    click(desktop, wait_testid(desktop, "login-device-code"))
    code = wait_text(desktop, "device-code-user-code", lambda s: bool(re.fullmatch(r"\S{4,}", s)))
    r = ctl(other, "approve", code, "--yes")
    assert r.returncode == 0, r.stderr
    wait_text(desktop, "connection-status", lambda s: s == "online", timeout=30)
    device = wait_js(desktop, "return window.tunehand.deviceId")
    devices = json.loads(ctl_ok(other, "devices", "--json"))
    assert device in [d["id"] for d in devices], devices


def test_a_refused_device_code_says_so(
    desktop: Any, web_server: ServerProc, other: DeviceDir
) -> None:
    desktop.get(web_server.url + "/")
    click(desktop, wait_testid(desktop, "login-device-code"))
    code = wait_text(desktop, "device-code-user-code", lambda s: bool(re.fullmatch(r"\S{4,}", s)))
    r = ctl(other, "approve", code, "--deny", "--yes")
    assert r.returncode == 0, r.stderr
    wait_text(desktop, "login-error", "refused", timeout=30)
    assert not testid(desktop, "connection-status").is_displayed()


def test_an_expired_device_code_says_so(
    desktop: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A code nobody approved in time: the page says it expired and offers the login
    again (a server whose codes live 2 s; the page learns that from the server's
    answer, and the server's own `expired_token` says the same)."""
    root = tmp_path_factory.mktemp("web-expiry")
    srv = launch(root, music=None, wait_scan=False, env={"TUNEHAND_DEVICE_CODE_TTL_S": "2"})
    try:
        desktop.get(srv.url + "/")
        click(desktop, wait_testid(desktop, "login-device-code"))
        wait_text(desktop, "device-code-user-code", lambda s: bool(re.fullmatch(r"\S{4,}", s)))
        wait_text(desktop, "login-error", "expired", timeout=30)
        assert wait_testid(desktop, "login-device-code").is_displayed()
        assert not testid(desktop, "connection-status").is_displayed()
    finally:
        srv.stop()


# --- browsing -------------------------------------------------------------------------


def test_browse_library(desktop: Any, web_server: ServerProc, user: str) -> None:
    web_login(desktop, web_server.url, user)
    click(desktop, testid(desktop, "nav-library"))
    wait_testid(desktop, "artist-row")
    artists = [r.text.split("\n")[0] for r in shown(desktop, "artist-row")]
    assert {"Ada Quartet", "Sigur Rós", "Tester"} <= set(artists), artists
    ada = next(r for r in shown(desktop, "artist-row") if r.text.startswith("Ada Quartet"))
    click(desktop, ada)
    album = wait_testid(desktop, "album-row")
    assert album.get_attribute("data-album-id")
    click(desktop, album)
    wait_testid(desktop, "track-row")
    got = [r.text.split("\n")[0] for r in shown(desktop, "track-row")]
    assert got == ["Difference", "Punched Cards", "Bernoulli"], got
    assert all(r.get_attribute("data-track-id") for r in shown(desktop, "track-row"))
    # Back goes to the artist's albums, then to the artists.
    back = wait_testid(desktop, "back")
    assert "Ada Quartet" in back.text
    click(desktop, back)
    wait_until(desktop, lambda d: shown(d, "album-row") and not shown(d, "track-row"))
    click(desktop, wait_testid(desktop, "back"))
    wait_until(desktop, lambda d: len(shown(d, "artist-row")) == len(artists))


def test_playlists_liked_and_history(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    web_login(desktop, web_server.url, user)
    # Like a track from its row: another device sees it liked.
    row = search_and_row(desktop, "long two", "Long Two")
    track_id = row.get_attribute("data-track-id")
    press(desktop, row, "track-like")
    wait_for(
        lambda: track_id in [t["id"] for t in json.loads(ctl_ok(other, "likes", "--json"))],
        "liked",
    )
    click(desktop, testid(desktop, "nav-liked"))
    wait_until(
        desktop,
        lambda d: [r.get_attribute("data-track-id") for r in shown(d, "track-row")] == [track_id],
    )
    # A playlist saved elsewhere, opened here.
    ids = [
        t["id"]
        for t in json.loads(ctl_ok(other, "search", "long", "--json"))
        if t["title"] in ("Long One", "Long Three")
    ]
    ctl_ok(other, "playlists", "save", "road trip", *ids)
    click(desktop, testid(desktop, "nav-playlists"))
    pl = wait_until(
        desktop,
        lambda d: next((r for r in shown(d, "playlist-row") if "road trip" in r.text), None),
    )
    click(desktop, pl)
    wait_until(
        desktop,
        lambda d: (
            sorted(r.text.split("\n")[0] for r in shown(d, "track-row"))
            == ["Long One", "Long Three"]
        ),
    )
    # History: what played here is listed.
    press(desktop, search_and_row(desktop, "long one", "Long One"), "track-play")
    wait_audio_advancing(desktop, 0.3)
    ctl_ok(other, "next")
    wait_for(lambda: json.loads(ctl_ok(other, "history", "--json")), "a history entry")
    click(desktop, testid(desktop, "nav-history"))
    wait_until(desktop, lambda d: any("Long One" in r.text for r in shown(d, "track-row")))


def test_search_as_you_type(desktop: Any, web_server: ServerProc, user: str) -> None:
    web_login(desktop, web_server.url, user)
    click(desktop, testid(desktop, "nav-search"))
    box = wait_testid(desktop, "search-input")
    box.send_keys("ros")  # one key at a time: a request each, the stale ones cancelled
    wait_until(
        desktop,
        lambda d: any(r.text.startswith("Sigur Rós") for r in shown(d, "artist-row")),
        message="typing 'ros' never listed Sigur Rós",
    )
    box.clear()
    box.send_keys("long tw")
    wait_until(
        desktop,
        lambda d: [r.text.split("\n")[0] for r in shown(d, "track-row")] == ["Long Two"],
        message="'long tw' never showed exactly Long Two",
    )
    # The answer to an older query never lands over the last one.
    assert not shown(desktop, "artist-row") or all(
        "Sigur" not in r.text for r in shown(desktop, "artist-row")
    )


# --- the queue ------------------------------------------------------------------------


def test_queue_edits_seen_by_another_device(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    web_login(desktop, web_server.url, user)
    for title in TONES:
        press(desktop, search_and_row(desktop, "long", title), "track-queue-add")
        wait_for(lambda t=title: t in titles(queue_of(other)), f"{title} in the queue")
    assert titles(queue_of(other)) == list(TONES)

    click(desktop, testid(desktop, "nav-queue"))
    wait_until(desktop, lambda d: len(testids(d, "queue-row")) == 3)
    # Down on the first: Long Two, Long One, Long Three.
    press_nth(desktop, "queue-row", 0, "queue-down")
    want = ["Long Two", "Long One", "Long Three"]
    wait_for(lambda: titles(queue_of(other)) == want, "moved down")
    wait_until(desktop, lambda d: [r.text.split("\n")[1] for r in testids(d, "queue-row")] == want)
    # Up on the last: Long Two, Long Three, Long One.
    press_nth(desktop, "queue-row", 2, "queue-up")
    want = ["Long Two", "Long Three", "Long One"]
    wait_for(lambda: titles(queue_of(other)) == want, "moved up")
    # Remove the middle one.
    wait_until(desktop, lambda d: [r.text.split("\n")[1] for r in testids(d, "queue-row")] == want)
    press_nth(desktop, "queue-row", 1, "queue-remove")
    want = ["Long Two", "Long One"]
    wait_for(lambda: titles(queue_of(other)) == want, "removed")
    # Click a row to play it (the tab is the only device online: it plays here).
    wait_until(desktop, lambda d: len(testids(d, "queue-row")) == 2)
    wait_until(
        desktop,
        lambda d: click(d, shown(d, "queue-row")[1].find_element("css selector", ".row-main")) or 1,
    )
    wait_for(lambda: queue_of(other)["current"] is not None, "a current entry")
    q = queue_of(other)
    current = next(e for e in q["entries"] if e["current"])
    assert current["track"]["title"] == "Long One", q
    wait_until(
        desktop,
        lambda d: "current" in (testids(d, "queue-row")[1].get_attribute("class") or ""),
        message="the playing row is not marked current",
    )
    # Play next from a track row: right after the current entry.
    press(desktop, search_and_row(desktop, "long", "Long Three"), "track-queue-next")
    want = ["Long Two", "Long One", "Long Three"]
    wait_for(lambda: titles(queue_of(other)) == want, "queued next")
    # Play next on a queue row moves it after the current one: Long One, Long Two, Long Three.
    click(desktop, testid(desktop, "nav-queue"))
    wait_until(desktop, lambda d: len(testids(d, "queue-row")) == 3)
    press_nth(desktop, "queue-row", 0, "queue-play-next")
    want = ["Long One", "Long Two", "Long Three"]
    wait_for(lambda: titles(queue_of(other)) == want, "moved to play next")


# --- playing in the tab ---------------------------------------------------------------


def test_play_in_the_browser(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    device = web_login(desktop, web_server.url, user)
    press(desktop, search_and_row(desktop, "long one", "Long One"), "track-play")
    wait_audio_advancing(desktop, 1.0)
    st = wait_for(lambda: (s := status(other))["playing"] and s, "the session plays")
    assert st["device"]["id"] == device, st
    assert st["track"]["title"] == "Long One", st
    wait_text(desktop, "now-title", "Long One")
    wait_text(desktop, "now-artist", "Tester")
    name = testid(desktop, "this-device-name").text
    wait_text(desktop, "now-device", name)
    # The position shown moves on, and the seek bar follows it.
    wait_text(desktop, "now-position", lambda s: s not in ("0:00", "0:01"), timeout=10)
    bar = testid(desktop, "seek-bar")
    assert bar.get_attribute("max") == "120000", bar.get_attribute("max")
    assert int(bar.get_attribute("value")) >= 2000
    # Pause from the page: the audio stops and the session says so.
    click(desktop, testid(desktop, "play-pause"))
    wait_js(desktop, "return document.getElementById('player').paused")
    wait_for(lambda: not status(other)["playing"], "paused")
    # The space key plays and pauses too (no field or button focused).
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    desktop.execute_script("document.activeElement.blur()")
    ActionChains(desktop).send_keys(Keys.SPACE).perform()
    wait_for(lambda: status(other)["playing"], "played by the space key")
    wait_audio_advancing(desktop, 0.3)
    ActionChains(desktop).send_keys(Keys.SPACE).perform()
    wait_js(desktop, "return document.getElementById('player').paused")
    wait_for(lambda: not status(other)["playing"], "paused by the space key")
    # Seek from another device while paused, then play from the page: it goes on there.
    ctl_ok(other, "seek", "1:00")
    wait_text(desktop, "now-position", "1:00")
    click(desktop, testid(desktop, "play-pause"))
    wait_audio_advancing(desktop, 0.5)
    assert audio_state(desktop)["currentTime"] >= 60.0
    # The seek bar seeks the session, and the tab plays on from there.
    desktop.execute_script(
        "arguments[0].value = '90000'; arguments[0].dispatchEvent(new Event('change'));",
        testid(desktop, "seek-bar"),
    )
    wait_for(lambda: status(other)["position_ms"] >= 90_000, "seeked to 1:30")
    wait_js(
        desktop,
        "const a = document.getElementById('player');return !a.paused && a.currentTime >= 90.3;",
    )
    wait_text(desktop, "now-position", lambda s: s.startswith("1:3"))
    # Volume from the page: the session's, and the audio element's.
    vol = testid(desktop, "volume")
    desktop.execute_script(
        "arguments[0].value = '40'; arguments[0].dispatchEvent(new Event('change'));", vol
    )
    wait_for(lambda: status(other)["volume"] == 40, "volume 40")
    wait_js(desktop, "return Math.abs(document.getElementById('player').volume - 0.4) < 0.01")
    # Next from the page: the tab plays the next entry.
    press(desktop, search_and_row(desktop, "long two", "Long Two"), "track-queue-add")
    wait_for(lambda: titles(queue_of(other)) == ["Long One", "Long Two"], "queued")
    click(desktop, testid(desktop, "next"))
    wait_text(desktop, "now-title", "Long Two")
    wait_js(
        desktop,
        "const a = document.getElementById('player');"
        "return !a.paused && a.currentTime > 0.3 && a.currentTime < 30;",
    )
    wait_for(lambda: (status(other).get("track") or {}).get("title") == "Long Two", "next")


def test_the_tab_is_a_web_device(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    """`web` in `ctl devices` and in the page's list, also once its channel is up."""
    device = web_login(desktop, web_server.url, user)
    click(desktop, testid(desktop, "nav-devices"))
    row = wait_until(
        desktop,
        lambda d: next(
            (r for r in shown(d, "device-row") if r.get_attribute("data-device-id") == device),
            None,
        ),
    )
    assert row.get_attribute("data-kind") == "web"
    assert "this tab" in row.text
    devices = json.loads(ctl_ok(other, "devices", "--json"))
    mine = next(d for d in devices if d["id"] == device)
    assert mine["online"] and mine["kind"] == "web", mine


def test_rename_this_tab(desktop: Any, web_server: ServerProc, user: str, other: DeviceDir) -> None:
    device = web_login(desktop, web_server.url, user)
    click(desktop, testid(desktop, "nav-devices"))
    row = wait_until(
        desktop,
        lambda d: next(
            (r for r in shown(d, "device-row") if r.get_attribute("data-device-id") == device),
            None,
        ),
    )
    press(desktop, row, "device-rename")
    box = wait_testid(desktop, "device-rename-input")
    box.clear()
    box.send_keys("kitchen tablet\n")
    wait_text(desktop, "this-device-name", "kitchen tablet")
    devices = json.loads(ctl_ok(other, "devices", "--json"))
    assert next(d for d in devices if d["id"] == device)["name"] == "kitchen tablet"


def test_phone_layout_with_touch(
    phone: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    device = web_login(phone, web_server.url, user, touch=True)
    size = phone.execute_script(
        "return [innerWidth, document.documentElement.scrollWidth, navigator.maxTouchPoints]"
    )
    assert size[0] == 375 and size[1] <= 375 and size[2] > 0, size
    # The nav is at the bottom, under now playing, with big targets.
    nav = testid(phone, "nav-queue").rect
    now = testid(phone, "play-pause").rect
    assert nav["y"] > now["y"], (nav, now)
    assert nav["height"] >= 44 and now["height"] >= 44, (nav, now)
    row = search_and_row(phone, "long two", "Long Two", touch=True)
    press(phone, row, "track-play", touch=True)
    wait_audio_advancing(phone, 0.5)
    wait_for(lambda: status(other)["device"]["id"] == device, "the phone plays")
    tap(phone, testid(phone, "nav-queue"))
    wait_until(
        phone,
        lambda d: any(
            "current" in (r.get_attribute("class") or "") for r in testids(d, "queue-row")
        ),
    )
    tap(phone, testid(phone, "play-pause"))
    wait_js(phone, "return document.getElementById('player').paused")
    wait_for(lambda: not status(other)["playing"], "paused by a tap")


def test_tap_to_play_when_the_browser_wants_a_gesture(
    browsers: Callable[..., Any], web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    driver = browsers(autoplay=False)
    device = web_login(driver, web_server.url, user)
    driver.get(web_server.url + "/")  # a fresh page: no gesture on it yet
    wait_text(driver, "connection-status", lambda s: s == "online")
    assert not driver.execute_script("return navigator.userActivation.hasBeenActive")
    r = ctl(other, "queue", "add", "--search", "long three")
    assert r.returncode == 0, r.stderr
    ctl_ok(other, "transfer", device)
    ctl_ok(other, "play")
    button = wait_testid(driver, "tap-to-play")
    assert "tap" in testid(driver, "notice").text.lower()
    assert audio_state(driver)["paused"]
    click(driver, button)
    wait_audio_advancing(driver, 0.5)
    wait_until(driver, lambda d: not testid(d, "tap-to-play").is_displayed())
    wait_for(lambda: (s := status(other))["playing"] and s["device"]["id"] == device, "plays")


# --- the page's security and the connection --------------------------------------------


def test_csp_holds_and_nothing_is_violated(desktop: Any, web_server: ServerProc, user: str) -> None:
    for path in ("/", "/app/js/main.js", "/app/app.css", "/sw.js", "/manifest.webmanifest"):
        r = httpx.get(web_server.url + path)
        assert r.status_code == 200, (path, r.status_code)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
        assert "default-src 'none'" in csp and "unsafe" not in csp, csp
    html = (STATIC / "index.html").read_text()
    assert " style=" not in html and "<style" not in html
    assert all(m.group(1) for m in re.finditer(r"<script([^>]*\bsrc=[^>]*)?>", html))
    web_login(desktop, web_server.url, user)
    for view in ("library", "search", "playlists", "liked", "history", "queue", "devices"):
        click(desktop, testid(desktop, f"nav-{view}"))
    press(desktop, search_and_row(desktop, "long", "Long One"), "track-play")
    wait_audio_advancing(desktop, 0.3)
    wait_js(desktop, "return document.querySelector('#now-art') !== null")
    log = browser_log(desktop)
    assert csp_violations(log) == [], log
    errors = [e for e in log if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_pwa_manifest_and_a_service_worker_that_caches_only_the_shell(
    desktop: Any, web_server: ServerProc, user: str
) -> None:
    import io

    from PIL import Image

    manifest = httpx.get(web_server.url + "/manifest.webmanifest").json()
    assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
    sizes = {}
    for icon in manifest["icons"]:
        r = httpx.get(web_server.url + icon["src"])
        assert r.status_code == 200, icon
        if icon["type"] == "image/png":
            sizes[icon["sizes"]] = Image.open(io.BytesIO(r.content)).size
    assert sizes == {"192x192": (192, 192), "512x512": (512, 512)}, sizes
    web_login(desktop, web_server.url, user)
    press(desktop, search_and_row(desktop, "long one", "Long One"), "track-play")
    wait_audio_advancing(desktop, 0.3)
    cached = desktop.execute_async_script(
        "const done = arguments[0];"
        "(async () => {"
        "  await navigator.serviceWorker.ready;"
        "  const out = [];"
        "  for (const k of await caches.keys())"
        "    for (const req of await (await caches.open(k)).keys())"
        "      out.push(new URL(req.url).pathname);"
        "  return out;"
        "})().then(done, (e) => done(String(e)));"
    )
    assert isinstance(cached, list) and "/app/js/main.js" in cached, cached
    assert not [p for p in cached if p.startswith("/v1/")], cached
    served = {"/", "/sw.js", "/manifest.webmanifest"} | {
        "/app/" + p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()
    }
    assert set(cached) <= served, set(cached) - served


def test_media_session_follows_the_track(desktop: Any, web_server: ServerProc, user: str) -> None:
    web_login(desktop, web_server.url, user)
    press(desktop, search_and_row(desktop, "long three", "Long Three"), "track-play")
    wait_audio_advancing(desktop, 0.3)
    meta = wait_js(
        desktop,
        "const m = navigator.mediaSession.metadata;"
        "return m && m.title === 'Long Three' && navigator.mediaSession.playbackState === 'playing'"
        " ? {title: m.title, artist: m.artist, album: m.album} : null;",
    )
    assert meta == {"title": "Long Three", "artist": "Tester", "album": "Long Tones"}, meta


_CAPTURE_MEDIA_HANDLERS = """
window.__mediaHandlers = {};
if (navigator.mediaSession) {
  const real = navigator.mediaSession.setActionHandler.bind(navigator.mediaSession);
  navigator.mediaSession.setActionHandler = (action, fn) => {
    window.__mediaHandlers[action] = fn;
    return real(action, fn);
  };
}
"""


def test_media_session_actions_control_the_session(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    """The lock screen's and a headset's buttons: the handlers the app gives the Media
    Session (captured as it registers them; a test cannot press the OS's buttons) pause,
    play, skip and seek the session, as another device sees it."""
    desktop.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _CAPTURE_MEDIA_HANDLERS}
    )
    web_login(desktop, web_server.url, user)
    registered = desktop.execute_script("return Object.keys(window.__mediaHandlers).sort();")
    assert registered == ["nexttrack", "pause", "play", "previoustrack", "seekto"], registered
    press(desktop, search_and_row(desktop, "long one", "Long One"), "track-play")
    press(desktop, search_and_row(desktop, "long two", "Long Two"), "track-queue-add")
    wait_for(lambda: titles(queue_of(other)) == ["Long One", "Long Two"], "queued")
    wait_audio_advancing(desktop, 0.3)

    def action(name: str, details: str = "{}") -> None:
        desktop.execute_script(f"window.__mediaHandlers[{name!r}]({details});")

    action("pause")
    wait_for(lambda: not status(other)["playing"], "paused by the pause button")
    wait_js(desktop, "return document.getElementById('player').paused")
    action("seekto", "{action: 'seekto', seekTime: 42.5}")
    wait_for(lambda: abs(status(other)["position_ms"] - 42_500) < 1_000, "seeked to 0:42")
    action("play")
    wait_for(lambda: status(other)["playing"], "played by the play button")
    wait_js(
        desktop,
        "const a = document.getElementById('player'); return !a.paused && a.currentTime >= 42;",
    )
    action("nexttrack")
    wait_for(lambda: (status(other).get("track") or {}).get("title") == "Long Two", "next")
    action("previoustrack")
    wait_for(lambda: (status(other).get("track") or {}).get("title") == "Long One", "previous")


def test_a_second_tab_takes_over_the_device(
    desktop: Any, web_server: ServerProc, user: str
) -> None:
    """Two tabs of one browser are one device: the newer one wins (4009), the older one
    says so, stops reconnecting and offers to take it back."""
    device = web_login(desktop, web_server.url, user)
    first = desktop.current_window_handle
    desktop.switch_to.new_window("tab")
    desktop.get(web_server.url + "/")
    wait_text(desktop, "connection-status", lambda s: s == "online")
    assert desktop.execute_script("return window.tunehand.deviceId") == device
    desktop.switch_to.window(first)
    wait_text(desktop, "connection-status", lambda s: s == "offline")
    wait_text(desktop, "notice", "Another tab")
    click(desktop, wait_until(desktop, lambda d: d.find_element("id", "reclaim")))
    wait_text(desktop, "connection-status", lambda s: s == "online")


def test_service_worker_lists_every_file_of_the_shell() -> None:
    """What the app needs offline is what sw.js caches: every script, style and icon
    (and nothing under /v1/)."""
    listed = set(re.findall(r"'(/[^']*)'", (STATIC / "sw.js").read_text()))
    files = {
        "/app/" + p.relative_to(STATIC).as_posix()
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in (".js", ".css", ".png", ".svg") and p.name != "sw.js"
    }
    assert files <= listed, files - listed
    assert {"/", "/manifest.webmanifest"} <= listed
    assert not [p for p in listed if p.startswith("/v1")], listed


def test_shell_is_small() -> None:
    """The app shell (every static file), gzipped, is far under the issue's 150 KB."""
    import gzip

    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in STATIC.rglob("*") if p.is_file())
    assert total < 150_000, total


def test_offline_shown_and_reconnects(
    desktop: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The server goes away: "offline"; a queue edit made meanwhile is said to wait, and
    is applied once when the tab is back online on the restarted server."""
    srv = launch(tmp_path_factory.mktemp("web-restart"))
    try:
        add_users(srv, ["restarter"])
        device = web_login(desktop, srv.url, "restarter")
        row = search_and_row(desktop, "crossroads", "Crossroads")
        srv.stop()
        wait_text(desktop, "connection-status", lambda s: s == "offline")
        press(desktop, row, "track-queue-add")
        wait_text(desktop, "notice", "when the server is back")
        srv = restart_server(srv)
        wait_text(desktop, "connection-status", lambda s: s == "online", timeout=40)
        assert desktop.execute_script("return window.tunehand.deviceId") == device
        click(desktop, testid(desktop, "nav-queue"))
        wait_until(desktop, lambda d: len(testids(d, "queue-row")) == 1)
        assert "Crossroads" in testids(desktop, "queue-row")[0].text
    finally:
        srv.stop()


def test_a_revoked_tab_shows_the_login_screen(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    device = web_login(desktop, web_server.url, user)
    ctl_ok(other, "revoke", device)
    wait_testid(desktop, "login-user")
    assert not testid(desktop, "connection-status").is_displayed()
    # Its refresh cookie is dead too: a reload stays on the login screen.
    desktop.get(web_server.url + "/")
    wait_testid(desktop, "login-user")


def test_a_pause_by_the_browser_is_reported(
    desktop: Any, web_server: ServerProc, user: str, other: DeviceDir
) -> None:
    """The browser pausing the audio by itself (a hidden tab on a phone, a headset
    unplugged; here: the element paused from outside the app) pauses the session at that
    position, and the page says so."""
    device = web_login(desktop, web_server.url, user)
    press(desktop, search_and_row(desktop, "long one", "Long One"), "track-play")
    wait_audio_advancing(desktop, 1.0)
    wait_for(lambda: (s := status(other))["playing"] and s["device"]["id"] == device, "plays")
    at = desktop.execute_script(
        "const a = document.getElementById('player'); a.pause(); return a.currentTime;"
    )
    wait_text(desktop, "notice", "paused")
    st = wait_for(lambda: (s := status(other)) and not s["playing"] and s, "paused")
    assert abs(st["position_ms"] - at * 1000) < 250, (st, at)
