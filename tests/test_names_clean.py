"""Names other clients chose, on a real server: device names (login, the channel's
`auth`, device-code start) and playlist names are kept without control, bidi or format
characters; `ctl` prints them without escape codes; the TUI and desktop notifications
show them as plain text (markup in a name is shown, never run).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.cli_helpers import NO_KEYRING, PASSWORD, Device, client_env
from tests.fixtures_server import ServerProc
from tests.test_api import Api, add_users, all_tracks, unique
from tests.test_tui_support import main_screen, notices, running, seeded, settle
from tunehand.core import names
from tunehand.core.model import DeviceInfo
from tunehand.tui.backend_fake import FakeBackend

pytestmark = pytest.mark.every_backend

# An escape sequence that retitles a terminal, one that clears it, a bidi override, a
# zero-width space, a line break that would forge a line, and Textual/Rich markup.
HOSTILE = "[b]bold[/b] [/nope]\x1b]0;owned\x07\x1b[2J\u202egnp.exe\u200b\r\nnext\x85line"
CLEANED = "[b]bold[/b] [/nope]]0;owned[2Jgnp.exe  next line"
PATH_HOSTILE = "[b]x[/b]\x1b]0;t\x07\x1b[2J\u202ey\u200bz\tw"


def test_clean_drops_controls_and_keeps_letters() -> None:
    assert names.clean(HOSTILE) == CLEANED
    assert names.clean("  Küche — 台所 🎵  ") == "Küche — 台所 🎵"
    assert names.clean("\u202e\u2066\u200d\x00\x7f\x9b") == ""
    assert names.clean("x" * 300) == "x" * 128 and names.clean("ab", 1) == "a"
    assert names.shown("one\x1b[31m\nt\two") == "one[31m\nt wo"


def devices_named(api: Api) -> dict[str, str]:
    r = api.get("/v1/devices")
    assert r.status_code == 200, r.text
    return {d["id"]: d["name"] for d in r.json()["devices"]}


def test_device_names_are_cleaned_at_login_and_on_the_channel(shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("nm")
    add_users(srv, user)
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": user, "password": PASSWORD, "device_id": unique("d"), "device_name": HOSTILE},
    )
    assert r.status_code == 200, r.text
    api = Api(srv, user, r.json())
    try:
        assert devices_named(api)[api.device_id] == CLEANED
        # A name of nothing but control characters falls back to the device id.
        r = httpx.post(
            srv.url + "/v1/auth/login",
            json={
                "user": user,
                "password": PASSWORD,
                "device_id": "dctl",
                "device_name": "\x1b\x07",
            },
        )
        assert r.status_code == 200, r.text
        assert devices_named(api)["dctl"] == "dctl"

        # The channel's `auth` names the device too.
        asyncio.run(_raw_auth(srv, api.token, api.device_id, HOSTILE))
        assert devices_named(api)[api.device_id] == CLEANED
    finally:
        api.close()


async def _raw_auth(srv: ServerProc, token: str, device_id: str, name: str) -> None:
    from websockets.asyncio.client import connect

    from tests.test_api import ws_url
    from tunehand import wire

    async with connect(ws_url(srv)) as ws:
        msg = {"type": "auth", "token": token, "device": {"id": device_id, "name": name}}
        await ws.send(wire.encode(msg).decode())
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello


def test_playlist_names_are_cleaned(shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("pl")
    add_users(srv, user)
    api = Api(srv, user, srv.login(user, PASSWORD))
    try:
        track = all_tracks(api)[0]["id"]
        # (A line break in a path matches no route: 404 before any handler.)
        hostile, cleaned = PATH_HOSTILE, names.clean(PATH_HOSTILE)
        assert cleaned == "[b]x[/b]]0;t[2Jyz w"
        r = api.put(f"/v1/playlists/{quote(hostile, safe='')}", json={"track_ids": [track]})
        assert r.status_code == 200, r.text
        r = api.get("/v1/playlists")
        assert [p["name"] for p in r.json()["playlists"]] == [cleaned]
        r = api.get(f"/v1/playlists/{quote(cleaned, safe='')}")
        assert r.status_code == 200 and r.json()["name"] == cleaned, r.text
        r = api.http.patch(
            f"/v1/playlists/{quote(cleaned, safe='')}", json={"name": "\u202eRenamed\x1b[0m"}
        )
        assert r.status_code == 200, r.text
        r = api.get("/v1/playlists")
        assert [p["name"] for p in r.json()["playlists"]] == ["Renamed[0m"]
        r = api.put(
            f"/v1/playlists/{quote(chr(0x1B) + chr(0x202E), safe='')}", json={"track_ids": []}
        )
        assert r.status_code == 422, r.text
        r = api.http.patch("/v1/playlists/Renamed%5B0m", json={"name": "\u200b\u2066"})
        assert r.status_code == 422, r.text
    finally:
        api.close()


@pytest.mark.sqlite_only
def test_ctl_prints_names_without_escape_codes(tmp_path: Path, shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("ctln")
    add_users(srv, user)
    dev = Device(tmp_path / "me", client_env(NO_KEYRING, tmp_path / "me"))
    assert dev.login(srv.url, user, PASSWORD, "--insecure-token-file").returncode == 0
    # Stored before names were cleaned (or by an older server): the output filters too.
    asyncio.run(_store_raw_device_name(srv, dev.device_id(), HOSTILE))
    out = dev.ctl("devices", "--all")
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out, repr(out)
    assert "[b]bold[/b] [/nope]]0;owned[2Jgnp.exe" in out, out
    assert len(out.strip().splitlines()) == 1, out
    listed = dev.json("ctl", "devices", "--all")  # --json keeps the name (JSON escapes it)
    assert listed[0]["name"] == HOSTILE


async def _store_raw_device_name(srv: ServerProc, device_id: str, name: str) -> None:
    import sqlalchemy as sa

    from tests.test_api import db_url
    from tunehand.server.db.engine import open_engine
    from tunehand.server.db.tables import devices

    engine = open_engine(db_url(srv))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(devices).where(devices.c.id == device_id).values(name=name)
            )
    finally:
        await engine.dispose()


def test_desktop_notifications_escape_names() -> None:
    from tunehand.desktop.notify import Notices

    fake = seeded(FakeBackend(devices=_devices()))
    notices = Notices()
    assert notices.feed(fake.snapshot()) == []
    fake.apply("transfer", device_id="dhostile")
    shown = notices.feed(fake.snapshot())
    assert shown and shown[0][0] == "Playback moved", shown
    body = shown[0][1]
    assert "\x1b" not in body and "\u202e" not in body and "<" not in body, body
    assert body == f"Playback moved to {CLEANED} &lt;i&gt;&amp;", body


def _devices() -> tuple[DeviceInfo, ...]:
    here = DeviceInfo("dthis0000000000000000", "this terminal", True, 0, "127.0.0.1", ("play",))
    bad = DeviceInfo("dhostile", HOSTILE + " <i>&", True, 0, "192.0.2.66", ("play",))
    return (here, bad)


async def test_the_tui_shows_names_as_text_not_markup() -> None:
    async with running(seeded(FakeBackend(devices=_devices())), toasts=True) as (app, pilot, fake):
        screen = main_screen(app)
        await pilot.press("d")
        await settle(pilot)
        rows = screen.devices.table.rows
        assert rows[0].id == "dhostile"
        await pilot.press("enter")  # push playback to the device with the hostile name
        await settle(pilot)
        assert fake.state.active_device == "dhostile"
        title = str(screen.devices.title.render())
        assert title == f"Devices · playing on {CLEANED} <i>&", title
        assert any(n == f"Playback moved to {CLEANED} <i>&" for n in notices(app)), notices(app)
        drawn = app.export_screenshot()
        assert "\x1b" not in drawn and "[/nope]" in drawn.replace("&#160;", " ")


def test_remote_track_titles_are_cleaned(shared_server: ServerProc) -> None:
    srv = shared_server
    user = unique("rt")
    add_users(srv, user)
    api = Api(srv, user, srv.login(user, PASSWORD))
    try:
        url = "https://radio.example/" + unique("s")
        r = api.post("/v1/tracks/remote", json={"url": url, "title": HOSTILE})
        assert r.status_code == 200, r.text
        view = api.get(f"/v1/tracks/{r.json()['id']}").json()
        assert view["title"] == CLEANED and view["url"] == url, view
    finally:
        api.close()
