"""Selenium helpers for the web app's tests: Debian's Chromium, headless, driven by its
chromedriver, against a real `tunehand serve`.

- `open_browser(phone=..., autoplay=...)` starts a driver: desktop (1280x900) or phone
  (375x812, mobile metrics and touch emulated through CDP). `autoplay=True` passes
  `--autoplay-policy=no-user-gesture-required`; without it `play()` without a gesture is
  refused (NotAllowedError), which is how "tap to play" is tested.
- `browsers` (fixture): a factory of drivers, all quit at teardown; `desktop` and `phone`
  (fixtures): one started driver each (autoplay allowed).
- `web_login(driver, url, user)`: logs in through the page (user + password), waits until
  the channel is online and returns the tab's device id.
- `testid`, `wait_testid`, `wait_text`, `wait_js`, `wait_until`: waits on DOM conditions
  with WebDriverWait (never a sleep).
- `tap(driver, el)`: a real touch tap (CDP Input.dispatchTouchEvent at the element's
  centre), for the phone tests.
- `browser_log(driver)`, `csp_violations(driver)`: the console log (chromium's
  `goog:loggingPrefs`) and what of it is a Content-Security-Policy violation.

The fixtures are loaded for every test module (a plugin in tests/conftest.py).
Each test gets a fresh browser profile (a temp dir), so no login or device id leaks
between tests.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 20.0
DESKTOP = (1280, 900)
PHONE = (375, 812)


def require_chromium() -> None:
    """Skip (with the reason) when Debian's chromium or chromium-driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian chromium, chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed")


def open_browser(*, phone: bool = False, autoplay: bool = True) -> Any:
    """A started headless Chromium driver (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="th-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    if autoplay:
        opts.add_argument("--autoplay-policy=no-user-gesture-required")
    w, h = PHONE if phone else DESKTOP
    opts.add_argument(f"--window-size={w},{h}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver._th_profile = profile  # removed by close_browser
    if phone:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": w, "height": h, "deviceScaleFactor": 2, "mobile": True},
        )
        driver.execute_cdp_cmd(
            "Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5}
        )
    driver.set_script_timeout(WAIT_S)
    return driver


def close_browser(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        profile = getattr(driver, "_th_profile", None)
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browsers() -> Iterator[Callable[..., Any]]:
    """Factory: `browsers(phone=False, autoplay=True)` -> a started driver; all are quit
    at teardown."""
    require_chromium()
    started: list[Any] = []

    def start(*, phone: bool = False, autoplay: bool = True) -> Any:
        d = open_browser(phone=phone, autoplay=autoplay)
        started.append(d)
        return d

    yield start
    for d in started:
        close_browser(d)


@pytest.fixture
def desktop(browsers: Callable[..., Any]) -> Any:
    """A desktop-size headless Chromium (autoplay allowed)."""
    return browsers()


@pytest.fixture
def phone(browsers: Callable[..., Any]) -> Any:
    """A 375x812 headless Chromium with touch emulation (autoplay allowed)."""
    return browsers(phone=True)


# --- finding and waiting -------------------------------------------------------------


def sel(testid: str) -> str:
    return f'[data-testid="{testid}"]'


def testid(driver: Any, name: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, sel(name))


def testids(scope: Any, name: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(scope.find_elements(By.CSS_SELECTOR, sel(name)))


def shown(scope: Any, name: str) -> list[Any]:
    """The displayed elements with data-testid=`name` (the other sections keep theirs in
    the DOM, hidden)."""
    return [e for e in testids(scope, name) if e.is_displayed()]


# Helpers, not tests (pytest would collect them by their names where they are imported).
testid.__test__ = False  # type: ignore[attr-defined]
testids.__test__ = False  # type: ignore[attr-defined]


def wait_until(
    driver: Any, cond: Callable[[Any], Any], timeout: float = WAIT_S, message: str = ""
) -> Any:
    """WebDriverWait on `cond(driver)` (truthy value returned); fails with `message`."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(cond, message or f"condition not met in {timeout:g} s")


def wait_testid(driver: Any, name: str, timeout: float = WAIT_S) -> Any:
    """Wait until an element with data-testid=`name` is displayed; return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return wait_until(
        driver,
        ec.visibility_of_element_located((By.CSS_SELECTOR, sel(name))),
        timeout,
        f"no visible [data-testid={name}] in {timeout:g} s",
    )


def wait_text(
    driver: Any, name: str, pred: str | Callable[[str], bool], timeout: float = WAIT_S
) -> str:
    """Wait until the text of data-testid=`name` contains `pred` (or satisfies it)."""
    test: Callable[[str], bool] = (lambda s: pred in s) if isinstance(pred, str) else pred
    last: list[str] = [""]

    def cond(d: Any) -> str | None:
        els = testids(d, name)
        if not els:
            return None
        last[0] = els[0].text
        return last[0] if test(last[0]) else None

    try:
        out: str = wait_until(driver, cond, timeout)
    except Exception as exc:
        raise AssertionError(f"[data-testid={name}] text {last[0]!r}: not {pred!r}") from exc
    return out


def wait_js(driver: Any, script: str, timeout: float = WAIT_S, message: str = "") -> Any:
    """Wait until the JS expression `script` (the body of a function: `return ...`) is
    truthy; returns its value."""
    return wait_until(
        driver,
        lambda d: d.execute_script(script),
        timeout,
        message or f"JS condition never held in {timeout:g} s: {script}",
    )


def audio_state(driver: Any) -> dict[str, Any]:
    """The page's <audio id="player">: currentTime (s), paused, src set or not."""
    out: dict[str, Any] = driver.execute_script(
        "const a = document.getElementById('player');"
        "return {currentTime: a.currentTime, paused: a.paused, src: !!a.currentSrc,"
        " readyState: a.readyState};"
    )
    return out


def wait_audio_advancing(driver: Any, by_s: float = 0.5, timeout: float = WAIT_S) -> float:
    """Wait until the audio element plays and its currentTime moved on by `by_s`."""
    start = wait_js(
        driver,
        "const a = document.getElementById('player');"
        "return (!a.paused && a.currentTime > 0) ? a.currentTime : null;",
        timeout,
        "the <audio> element never started playing",
    )
    end: float = wait_js(
        driver,
        "const a = document.getElementById('player');"
        f"return (!a.paused && a.currentTime >= {float(start) + by_s}) ? a.currentTime : null;",
        timeout,
        "the <audio> element's currentTime does not advance",
    )
    return end


# --- acting --------------------------------------------------------------------------


def click(driver: Any, el: Any) -> None:
    """Scroll `el` into view and click it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    el.click()


def tap(driver: Any, el: Any) -> None:
    """A touch tap on `el`'s centre (touchStart + touchEnd through CDP): a real gesture,
    as a finger on a phone gives (the page sees pointer type touch and a click)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    r = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {x: r.left + r.width / 2, y: r.top + r.height / 2};",
        el,
    )
    point = {"x": r["x"], "y": r["y"], "radiusX": 4, "radiusY": 4, "force": 1, "id": 1}
    driver.execute_cdp_cmd(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]}
    )
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def type_into(el: Any, text: str) -> None:
    el.clear()
    el.send_keys(text)


def web_login(
    driver: Any, url: str, user: str, password: str = "secret-pw", *, touch: bool = False
) -> str:
    """Open the app at `url`, log in with user and password, wait until the tab is
    online; returns the tab's device id."""
    driver.get(url + "/")
    type_into(wait_testid(driver, "login-user"), user)
    type_into(testid(driver, "login-password"), password)
    button = testid(driver, "login-submit")
    if touch:
        tap(driver, button)
    else:
        click(driver, button)
    wait_text(driver, "connection-status", lambda s: s.strip() == "online")
    device: str = wait_js(driver, "return window.tunehand && window.tunehand.deviceId;")
    return device


def browser_log(driver: Any) -> list[dict[str, Any]]:
    """The console entries since the last call (chromium clears what it hands out)."""
    out: list[dict[str, Any]] = driver.get_log("browser")
    return out


def csp_violations(entries: list[dict[str, Any]]) -> list[str]:
    """The messages of `entries` that report a Content-Security-Policy violation."""
    return [
        e["message"]
        for e in entries
        if "Content Security Policy" in e.get("message", "")
        or "Content-Security-Policy" in e.get("message", "")
    ]
