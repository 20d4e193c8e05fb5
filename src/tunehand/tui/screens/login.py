"""The login screen: server URL, user, password, or a device code. Errors show in
place, under the form.

The password goes to the backend and nowhere else; the backend keeps the tokens
(the OS keyring). Where the machine has no OS keyring, the screen says so and offers the
plain 0600 token file (`--insecure-token-file` of `tunehand login`), unticked.
"Log in with a code" asks the server for a device code (RFC 8628),
shows it with how to approve it (`tunehand ctl approve CODE` on a logged-in device,
or the server's approval page), and waits; Escape gives up. On success the screen is
dismissed with the `Account`.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Static

from tunehand.core import names
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Account, Backend, DeviceLogin

TOKEN_FILE_LABEL = (
    "Keep the tokens in a plain file instead (insecure: anyone who can read it can use "  # noqa: S105
    "this account)"
)
CODE_GROUP = "code-login"
"""The worker group of a device-code login: it waits (for minutes) until approved."""


class LoginScreen(Screen[Account]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "code_login", "Log in with a code", show=False),
        Binding("escape", "cancel_code", "Cancel the code login", show=False),
    ]

    def __init__(self, backend: Backend, *, error: str = "") -> None:
        super().__init__(id="login")
        self.backend = backend
        self.error = error
        self.pending: DeviceLogin | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Static("tunehand · log in", id="login-title")
            yield Input(self.backend.default_server, placeholder="http://HOST:8440", id="server")
            yield Input(placeholder="user", id="user")
            yield Input(placeholder="password", password=True, id="password")
            yield Button("Log in", variant="primary", id="login-button")
            yield Button("Log in with a code from another device (ctrl+o)", id="code-button")
            yield Static("", id="device-code")
            yield Static("", id="keyring-problem")
            yield Checkbox(TOKEN_FILE_LABEL, id="token-file")
            yield Static(names.shown(self.error), id="login-error", markup=False)

    def on_mount(self) -> None:
        first = "#user" if self.backend.default_server else "#server"
        self.query_one(first, Input).focus()
        self.query_one("#token-file", Checkbox).display = False
        self.query_one("#keyring-problem", Static).display = False
        self.run_worker(self._check_token_store(), group="token-store")

    async def _check_token_store(self) -> None:
        """No OS keyring here: say so, and offer the plain token file (with its warning)."""
        problem = await attempt(self.backend.token_store_problem(), self.show_error)
        if problem:
            note = self.query_one("#keyring-problem", Static)
            note.update(problem)
            note.display = True
            self.query_one("#token-file", Checkbox).display = True

    def _opted_into_file(self) -> None:
        box = self.query_one("#token-file", Checkbox)
        if box.display and box.value:
            path = self.backend.use_token_file()
            self.notify(f"the tokens go to the plain file {path} (mode 0600)", severity="warning")

    def show_error(self, text: str) -> None:
        self.query_one("#login-error", Static).update(names.shown(text))

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

    @on(Button.Pressed, "#code-button")
    def _code_pressed(self) -> None:
        self.action_code_login()

    def _busy(self, busy: bool) -> None:
        for button in self.query(Button):
            button.disabled = busy

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
        self._opted_into_file()
        self.show_error("logging in…")
        self._busy(True)
        self.run_worker(self._login(server, user, password), group="login", exclusive=True)

    async def _login(self, server: str, user: str, password: str) -> None:
        account = await attempt(self.backend.login(server, user, password), self.show_error)
        self._busy(False)
        if account is not None:
            self.dismiss(account)

    # --- device code ----------------------------------------------------------------

    def action_code_login(self) -> None:
        if self.pending is not None:
            return
        server = self.query_one("#server", Input).value.strip()
        if not server:
            self.show_error("give the server URL")
            return
        self._opted_into_file()
        self.show_error("asking the server for a code…")
        self._busy(True)
        self.run_worker(self._code_login(server), group=CODE_GROUP, exclusive=True)

    async def _code_login(self, server: str) -> None:
        pending = await attempt(self.backend.start_device_login(server), self.show_error)
        if pending is None:
            self._busy(False)
            return
        self.pending = pending
        self.show_error("")
        minutes = max(1, pending.expires_in_s // 60)
        self.query_one("#device-code", Static).update(
            Text.assemble(
                "Your code: ",
                (pending.user_code, "bold"),
                "\n\nOn a logged-in device run\n  ",
                (f"tunehand ctl approve {pending.user_code}", "bold"),
                f"\nor open {pending.verification_uri} and enter the code.\n\n",
                f"Waiting for approval (expires in {minutes} min) · Escape cancels",
            )
        )
        self.add_class("code-waiting")
        account = await attempt(self.backend.finish_device_login(pending), self.show_error)
        self._end_code()
        if account is not None:
            self.dismiss(account)

    def action_cancel_code(self) -> None:
        if self.pending is None:
            return
        self.workers.cancel_group(self, CODE_GROUP)
        self._end_code()
        self.show_error("code login cancelled")

    def _end_code(self) -> None:
        self.pending = None
        self.remove_class("code-waiting")
        self.query_one("#device-code", Static).update("")
        self._busy(False)
