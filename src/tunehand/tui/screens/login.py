"""The login screen: server URL, user, password. Errors show in place, under the form.

The password goes to the backend and nowhere else; the backend keeps the tokens
(the OS keyring). On success the screen is dismissed with the `Account`.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Static

from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Account, Backend


class LoginScreen(Screen[Account]):
    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(self, backend: Backend, *, error: str = "") -> None:
        super().__init__(id="login")
        self.backend = backend
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Static("tunehand · log in", id="login-title")
            yield Input(self.backend.default_server, placeholder="http://HOST:8440", id="server")
            yield Input(placeholder="user", id="user")
            yield Input(placeholder="password", password=True, id="password")
            yield Button("Log in", variant="primary", id="login-button")
            yield Static(self.error, id="login-error")

    def on_mount(self) -> None:
        first = "#user" if self.backend.default_server else "#server"
        self.query_one(first, Input).focus()

    def show_error(self, text: str) -> None:
        self.query_one("#login-error", Static).update(text)

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        order = ["server", "user", "password"]
        i = order.index(event.input.id or "server")
        if i < 2 and not self.query_one(f"#{order[i + 1]}", Input).value:
            self.query_one(f"#{order[i + 1]}", Input).focus()
        else:
            self.submit()

    @on(Button.Pressed, "#login-button")
    def _pressed(self) -> None:
        self.submit()

    def submit(self) -> None:
        server = self.query_one("#server", Input).value.strip()
        user = self.query_one("#user", Input).value.strip()
        password = self.query_one("#password", Input).value
        missing = [
            n for n, v in (("server URL", server), ("user", user), ("password", password)) if not v
        ]
        if missing:
            self.show_error("give the " + " and the ".join(missing))
            return
        self.show_error("logging in…")
        self.query_one("#login-button", Button).disabled = True
        self.run_worker(self._login(server, user, password), group="login", exclusive=True)

    async def _login(self, server: str, user: str, password: str) -> None:
        account = await attempt(self.backend.login(server, user, password), self.show_error)
        self.query_one("#login-button", Button).disabled = False
        if account is not None:
            self.dismiss(account)
