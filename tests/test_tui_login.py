"""The login screen: shown when nobody is logged in; errors in place, never a crash."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Static

from tests.test_tui_support import running, settle, wait_until
from tunehand.errors import AuthError, KeyringError, ServerUnreachable
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.screens.login import LoginScreen
from tunehand.tui.screens.main import MainScreen


def error_text(app: object) -> str:
    screen = app.screen  # type: ignore[attr-defined]
    return str(screen.query_one("#login-error", Static).render())


async def fill(pilot: Any, user: str, password: str) -> None:
    """Fill the form, press the button and wait for the answer (an error or the main screen)."""
    app = pilot.app
    app.screen.query_one("#user", Input).value = user
    app.screen.query_one("#password", Input).value = password
    app.screen.query_one("#login-error", Static).update("")
    app.screen.query_one("#password", Input).focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(app.screen, LoginScreen) or error_text(app))
    await wait_until(
        pilot,
        lambda: error_text(app) != "logging in…" if isinstance(app.screen, LoginScreen) else True,
    )
    await settle(pilot)


async def test_not_logged_in_shows_the_login_form_with_the_configured_server() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, _pilot, fake):
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#server", Input).value == fake.default_server
        assert app.focused is app.screen.query_one("#user", Input)
        assert ("run", {}) not in fake.calls


async def test_wrong_password_is_shown_in_place_and_a_retry_logs_in() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await fill(pilot, "demo", "nope")
        assert isinstance(app.screen, LoginScreen)
        assert "wrong user name or password" in error_text(app)
        await fill(pilot, "demo", "demo")
        assert isinstance(app.screen, MainScreen)
        assert ("login", {"server": fake.default_server, "user": "demo"}) in fake.calls
        assert ("run", {}) in fake.calls
        assert app.screen.sub_title == "demo @ http://127.0.0.1:8440"


async def test_missing_fields_and_server_errors_are_told_in_place() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await fill(pilot, "", "")
        assert error_text(app) == "give the user and the password"
        assert not any(c[0] == "login" for c in fake.calls)
        fake.fail_next("login", ServerUnreachable("cannot reach the server at http://x: refused"))
        await fill(pilot, "demo", "demo")
        assert "cannot reach the server" in error_text(app)
        fake.fail_next("login", RuntimeError("boom"))
        await fill(pilot, "demo", "demo")
        assert error_text(app) == "unexpected error: RuntimeError: boom"
        assert isinstance(app.screen, LoginScreen)


async def test_enter_moves_through_the_fields_then_logs_in() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, _fake):
        await pilot.press(*"demo", "enter")
        assert app.focused is app.screen.query_one("#password", Input)
        await pilot.press(*"demo", "enter")
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)


async def test_a_keyring_failure_is_shown_on_the_login_screen() -> None:
    fake = FakeBackend()
    fake.fail_next("account", KeyringError("the OS keyring is locked"))
    async with running(fake) as (app, _pilot, _fake):
        assert isinstance(app.screen, LoginScreen)
        assert "the OS keyring is locked" in error_text(app)


async def test_a_refused_session_goes_back_to_login_with_the_reason() -> None:
    fake = FakeBackend()
    fake.fail_next("run", AuthError("this device was revoked: log in again"))
    async with running(fake) as (app, pilot, _fake):
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert "revoked" in error_text(app)


def code_text(app: object) -> str:
    screen = app.screen  # type: ignore[attr-defined]
    return str(screen.query_one("#device-code", Static).render())


async def test_code_login_shows_the_code_and_an_approval_opens_the_main_screen() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: "WDJB-MJHT" in code_text(app))
        shown = code_text(app)
        assert "WDJB-MJHT" in shown
        assert "tunehand ctl approve WDJB-MJHT" in shown
        assert fake.default_server + "/approve" in shown
        assert app.screen.has_class("code-waiting")
        assert not app.screen.query_one("#password", Input).display
        fake.answer_device_login("alice")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.screen.sub_title == f"alice @ {fake.default_server}"
        assert ("start_device_login", {"server": fake.default_server}) in fake.calls
        assert ("run", {}) in fake.calls


async def test_a_denied_code_is_told_in_place_and_the_form_comes_back() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await pilot.click("#code-button")
        await wait_until(pilot, lambda: fake.device_login_waiting)
        fake.answer_device_login(None)
        await wait_until(pilot, lambda: "denied" in error_text(app))
        assert isinstance(app.screen, LoginScreen)
        assert not app.screen.has_class("code-waiting")
        assert code_text(app) == ""
        assert app.screen.query_one("#password", Input).display
        await fill(pilot, "demo", "demo")
        assert isinstance(app.screen, MainScreen)


async def test_escape_cancels_a_waiting_code_login() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: fake.device_login_waiting)
        await pilot.press("escape")
        await wait_until(pilot, lambda: error_text(app) == "code login cancelled")
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.pending is None
        assert not app.screen.has_class("code-waiting")
        assert not app.screen.query_one("#code-button").disabled


async def test_code_login_errors_are_shown_in_place() -> None:
    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        app.screen.query_one("#server", Input).value = ""
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert error_text(app) == "give the server URL"
        app.screen.query_one("#server", Input).value = "http://127.0.0.1:1"
        fake.fail_next(
            "start_device_login", ServerUnreachable("cannot reach the server at http://127.0.0.1:1")
        )
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: "cannot reach" in error_text(app))
        assert not fake.device_login_waiting
        assert not app.screen.query_one("#code-button").disabled


# --- no OS keyring: the file store, offered with its warning --------------------------

NO_KEYRING_LINE = "no OS keyring available: start gnome-keyring"


async def test_without_a_keyring_the_login_screen_offers_the_token_file() -> None:
    from textual.widgets import Checkbox

    fake = FakeBackend(logged_in=False)
    fake.keyring_missing = NO_KEYRING_LINE
    async with running(fake) as (app, pilot, fake):
        box = app.screen.query_one("#token-file", Checkbox)
        await wait_until(pilot, lambda: box.display)
        problem = str(app.screen.query_one("#keyring-problem", Static).render())
        assert problem == NO_KEYRING_LINE
        assert box.value is False and "insecure" in str(box.label)
        # Not ticked: the login fails and says why, in place.
        await fill(pilot, "demo", "demo")
        assert isinstance(app.screen, LoginScreen)
        assert NO_KEYRING_LINE in error_text(app)
        assert ("use_token_file", {}) not in fake.calls
        # Ticked: the tokens go to the file, and the user is told where.
        box.value = True
        await fill(pilot, "demo", "demo")
        assert isinstance(app.screen, MainScreen)
        assert fake.token_file and ("use_token_file", {}) in fake.calls
        assert any("/fake/config/tokens.json" in str(n.message) for n in app._notifications)


async def test_with_a_keyring_the_token_file_is_not_offered() -> None:
    from textual.widgets import Checkbox

    async with running(FakeBackend(logged_in=False)) as (app, pilot, fake):
        await wait_until(pilot, lambda: ("token_store_problem", {}) in fake.calls)
        await settle(pilot)
        assert app.screen.query_one("#token-file", Checkbox).display is False
        assert str(app.screen.query_one("#keyring-problem", Static).render()) == ""
