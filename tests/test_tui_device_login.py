"""End to end: the TUI's "log in with a code" on `LiveBackend`, against a real server,
approved from another logged-in device, with the tokens landing in the real keyring
(gnome-keyring on a private D-Bus session bus).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from textual.widgets import Input, Static

from tests.device_helpers import wait_app
from tests.fixtures_server import ServerProc
from tests.test_api import Api, add_users, unique
from tunehand.client.credentials import KeyringStore

CODE_RE = re.compile(r"Your code: ([A-Z]{4}-[A-Z]{4})")


async def test_tui_code_login_approved_elsewhere_keeps_tokens_in_the_keyring(
    shared_server: ServerProc, keyring_env: dict[str, str], tmp_path: Path
) -> None:
    from tunehand.cli.main import build_parser
    from tunehand.tui.app import TunehandApp
    from tunehand.tui.backend_live import LiveBackend
    from tunehand.tui.screens.login import LoginScreen
    from tunehand.tui.screens.main import MainScreen

    srv = shared_server
    user = unique("tuicode")
    await asyncio.to_thread(add_users, srv, user)
    approver = Api(srv, user, await asyncio.to_thread(srv.login, user))
    cdir = tmp_path / "term"
    cdir.mkdir()
    (cdir / "config.toml").write_text('[mpv_options]\nao = "null"\n', encoding="utf-8")
    args = build_parser().parse_args(["--config-dir", str(cdir)])
    backend, settings = LiveBackend.from_args(args)
    app = TunehandApp(backend, keys_config=settings.keys, theme=settings.theme)

    def shown(selector: str) -> str:
        return str(app.screen.query_one(selector, Static).render())

    async with app.run_test(size=(120, 34)) as pilot:
        await wait_app(pilot, "the login screen", lambda: isinstance(app.screen, LoginScreen))
        app.screen.query_one("#server", Input).value = srv.url
        await pilot.press("ctrl+o")
        await wait_app(pilot, "a code on screen", lambda: CODE_RE.search(shown("#device-code")))
        text = shown("#device-code")
        match = CODE_RE.search(text)
        assert match is not None
        code = match.group(1)
        assert f"tunehand ctl approve {code}" in text and f"{srv.url}/approve" in text, text

        answer = await asyncio.to_thread(
            approver.post, "/v1/auth/device/approve", json={"user_code": code, "approve": True}
        )
        assert answer.status_code == 200, answer.text
        await wait_app(pilot, "the main screen", lambda: isinstance(app.screen, MainScreen))
        # The new tokens work: the session connects with them.
        await wait_app(
            pilot,
            "connected to the session",
            lambda: app.snapshot is not None and app.snapshot.connected,
        )
        assert app.screen.sub_title == f"{user} @ {srv.url}"
        # With those tokens the live backend likes tracks and saves playlists on the server.
        tracks = (await backend.search("a")).tracks
        assert len(tracks) >= 2
        await backend.set_like(tracks[0].id, True)
        assert [t.id for t in await backend.likes()] == [tracks[0].id]
        await backend.set_like(tracks[0].id, False)
        assert await backend.likes() == []
        await backend.save_playlist("From the TUI", [t.id for t in tracks[:2]])
        assert [t.id for t in await backend.playlist("From the TUI")] == [t.id for t in tracks[:2]]

    creds = await asyncio.to_thread(KeyringStore(cdir).load)
    assert creds is not None and creds.user == user and creds.server == srv.url
    assert not list(cdir.glob("tokens*")), "no plain token file"
    whoami = await asyncio.to_thread(
        httpx.get,
        srv.url + "/v1/auth/whoami",
        headers={"Authorization": f"Bearer {creds.access_token}"},
    )
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["user"] == user, whoami.text
