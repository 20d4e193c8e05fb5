"""`python -m tests.screenshots_web OUTDIR`: the README's web app screenshots, from the running app.

Starts a real `tunehand serve` on the generated demo library (`tunehand.demo`, as
`tunehand demo` makes it; short tracks, so it takes seconds), adds the user `demo`,
and gives the account something to show: two playlists, a few liked tracks and a
queue. A headless Chromium at 1280x800 logs in through the login page and plays an
album in the tab (the `<audio>` element's currentTime advances: the screenshot shows
a session really playing there); a second one, emulating a 375x812 phone with touch,
logs in as another device of the account and shows the same session as a remote.
Writes OUTDIR/web-desktop.png (1280x800) and OUTDIR/web-phone.png (375x812).

Every wait is on the page (WebDriverWait on a DOM or JS condition) or on the server's
output; nothing sleeps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.device_helpers import DeviceDir, ctl_ok
from tests.fixtures_server import ServerProc, launch
from tests.web_helpers import (
    click,
    close_browser,
    open_browser,
    wait_audio_advancing,
    wait_js,
    wait_testid,
    wait_text,
    web_login,
)

DESKTOP = (1280, 800)
PHONE = (375, 812)
USER = "demo"
PASSWORD = "demo"
TRACKS = 36
TRACK_S = 45.0
"""Long enough to stay playing while both screenshots are made."""
DESK_NAME = "Work laptop"
"""The desktop tab, renamed (both tabs would be "Chromium on Linux")."""
NOTICE_GONE = (
    "const n = document.querySelector('[data-testid=\"notice\"]');"
    "return !n || n.hidden || getComputedStyle(n).display === 'none';"
)
"""A passing notice ("playback moved here") is not part of the picture."""


def _viewport(driver: Any, size: tuple[int, int], *, mobile: bool) -> None:
    """Make the page's viewport exactly `size` CSS pixels at scale 1 (so is the PNG)."""
    w, h = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": mobile},
    )


@contextmanager
def demo_server(root: Path) -> Iterator[ServerProc]:
    from tunehand.demo import make_demo_library

    music = make_demo_library(root / "music", tracks=TRACKS, seconds=TRACK_S)
    srv = launch(root, music=music)
    try:
        srv.add_user(USER, PASSWORD)
        yield srv
    finally:
        srv.stop()


def _login(dev: DeviceDir, url: str) -> None:
    r = subprocess.run(
        dev.login_cmd(url, USER),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=dev.env,
        timeout=60,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"login of {dev.name} failed: {r.stderr.strip()}")


def _seed(dev: DeviceDir) -> str:
    """Playlists, likes and a queue for the account; the album id to play."""
    from tunehand.demo import demo_tracks

    tracks: list[str] = []
    albums: list[str] = []
    for album in sorted({t.album for t in demo_tracks(TRACKS)}):
        found = json.loads(ctl_ok(dev, "search", album, "--json", "--limit", "50"))
        tracks += [t["id"] for t in found if t.get("album") == album]
        albums += [t["album_id"] for t in found if t.get("album") == album][:1]
    if not albums or len(tracks) < 15:
        raise RuntimeError(f"the demo library has {len(tracks)} tracks, expected {TRACKS}")
    ctl_ok(dev, "playlists", "save", "Morning coffee", *tracks[0:7])
    ctl_ok(dev, "playlists", "save", "Late night", *tracks[7:15])
    for t in tracks[::4]:
        ctl_ok(dev, "like", t)
    return albums[0]


def make(outdir: Path) -> tuple[Path, Path]:
    """Write both screenshots into `outdir`; returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    desktop_png, phone_png = outdir / "web-desktop.png", outdir / "web-phone.png"
    with tempfile.TemporaryDirectory(prefix="th-web-shots-") as tmp, demo_server(Path(tmp)) as srv:
        laptop = DeviceDir("laptop", Path(tmp) / "laptop")
        _login(laptop, srv.url)
        album = _seed(laptop)
        desktop = open_browser()
        phone = None
        try:
            _viewport(desktop, DESKTOP, mobile=False)
            tab = web_login(desktop, srv.url, USER, PASSWORD)
            ctl_ok(laptop, "devices", "rename", tab, DESK_NAME)
            wait_text(desktop, "this-device-name", DESK_NAME)
            ctl_ok(laptop, "play", "--album", album, "--device", tab)
            ctl_ok(laptop, "queue", "add", "--search", "Lanterns")
            wait_audio_advancing(desktop, by_s=1.0)
            wait_text(desktop, "now-title", lambda s: bool(s.strip()))
            click(desktop, wait_testid(desktop, "nav-queue"))
            wait_js(
                desktop,
                "return document.querySelectorAll('[data-testid=\"queue-row\"]').length > 1;",
            )
            wait_audio_advancing(desktop, by_s=0.5)  # the position shown has moved on
            wait_js(desktop, NOTICE_GONE, message="the notice never went away")
            desktop.save_screenshot(str(desktop_png))

            phone = open_browser(phone=True)
            _viewport(phone, PHONE, mobile=True)
            web_login(phone, srv.url, USER, PASSWORD)
            click(phone, wait_testid(phone, "nav-library"))
            wait_text(phone, "now-title", lambda s: bool(s.strip()))
            wait_js(
                phone,
                "return document.querySelectorAll("
                '\'[data-testid="artist-row"], [data-testid="album-row"]\').length > 0;',
            )
            wait_js(phone, NOTICE_GONE, message="the notice never went away")
            phone.save_screenshot(str(phone_png))
        finally:
            close_browser(desktop)
            if phone is not None:
                close_browser(phone)
    return desktop_png, phone_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots_web", description=__doc__)
    parser.add_argument(
        "outdir", type=Path, help="where to write web-desktop.png and web-phone.png"
    )
    args = parser.parse_args(argv)
    try:
        for path in make(args.outdir):
            print(f"wrote {path}")
    except Exception as exc:  # one clear line, never a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"screenshots_web: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
