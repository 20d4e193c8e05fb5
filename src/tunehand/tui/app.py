"""The Textual app: screens, the session's snapshots, commands, toasts; and `run_tui`.

`TunehandApp` is built with an injected `Backend` (and the user's keys and theme).
It asks the backend who is logged in (the login screen when nobody is), runs the
session in a worker (`Backend.run`), turns each snapshot into a coalescing
`SnapshotChanged` message, hands it down to the main screen, and runs every
`SessionCommand` a widget posts in a worker, telling the user when one is refused.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tunehand.core import names
from tunehand.errors import AuthError
from tunehand.tui import keys
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Account, Backend, SessionSnapshot
from tunehand.tui.events import transitions
from tunehand.tui.hangup import exit_on_hangup
from tunehand.tui.messages import Notice, SessionCommand, SnapshotChanged
from tunehand.tui.screens.login import LoginScreen
from tunehand.tui.screens.main import MainScreen
from tunehand.tui.widgets.cover import ImageFactory, image_factory

LEAVE_TIMEOUT_S = 4.0


class TunehandApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tunehand"

    def __init__(
        self,
        backend: Backend,
        *,
        keys_config: Mapping[str, str] | None = None,
        theme: str | None = None,
        debounce_s: float = 0.25,
        tick_s: float = 0.25,
        cover: ImageFactory | None = None,
    ) -> None:
        """`cover` draws cover art (see `widgets.cover.image_factory`); None shows none."""
        super().__init__()
        self.backend = backend
        self.user_keymap, self._key_problems = keys.keymap_from_config(keys_config or {})
        self._theme_name = theme
        self._debounce_s = debounce_s
        self._tick_s = tick_s
        self._cover = cover
        self.snapshot: SessionSnapshot | None = None
        self.main: MainScreen | None = None
        self.sent: list[SessionCommand] = []
        """Every command the UI asked for, in order (what tests assert on)."""
        self.last_list: tuple[str, ...] = ()
        """The tracks of the last list this TUI played whole (replacing the queue): a
        queue of just these is not hand-built, and another list may replace it unasked."""

    # --- start --------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast is plain text: the names in it were chosen by other devices and
        may hold Textual markup (`[b]`, `[@click=...]`) or terminal escape codes."""
        super().notify(
            names.shown(message),
            title=names.line(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def on_mount(self) -> None:
        self.set_keymap(self.user_keymap)
        for problem in self._key_problems:
            self.notify(problem, severity="warning", timeout=10)
        if self._theme_name:
            if self._theme_name in self.available_themes:
                self.theme = self._theme_name
            else:
                names = ", ".join(sorted(self.available_themes))
                self.notify(
                    f"config.toml: theme {self._theme_name!r} is unknown; try one of {names}",
                    severity="warning",
                    timeout=10,
                )
        self.run_worker(self._start(), group="start", exit_on_error=False)

    async def _start(self) -> None:
        problem: list[str] = []
        account = await attempt(self.backend.account(), problem.append)
        if account is None:
            self.show_login(problem[0] if problem else "")
        else:
            self.open_main(account)

    def show_login(self, error: str = "") -> None:
        self.push_screen(LoginScreen(self.backend, error=error), callback=self._logged_in)

    def _logged_in(self, account: Account | None) -> None:
        if account is not None:
            self.open_main(account)

    def open_main(self, account: Account) -> None:
        self.main = MainScreen(
            self.backend,
            account,
            debounce_s=self._debounce_s,
            tick_s=self._tick_s,
            cover=self._cover,
        )
        self.push_screen(self.main)
        self.run_worker(self._session(), name="session", group="session", exit_on_error=False)

    async def _session(self) -> None:
        await self.backend.run(self._on_snapshot)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "session" or event.state != WorkerState.ERROR:
            return
        error = worker.error
        if isinstance(error, AuthError):
            if self.main is not None and self.screen is self.main:
                self.pop_screen()
            self.main = None
            self.show_login(str(error))
        else:
            self.notify(f"the session stopped: {error}", severity="error", timeout=30)

    # --- snapshots (messages up, attributes down) ---------------------------------

    def _on_snapshot(self, snap: SessionSnapshot) -> None:
        """Called by the backend on the event loop, maybe often: post and return."""
        self.post_message(SnapshotChanged(snap))
        if snap.event:
            self.post_message(Notice(snap.event))

    def on_snapshot_changed(self, message: SnapshotChanged) -> None:
        snap = message.snapshot
        for text, severity in transitions(self.snapshot, snap):
            self.notify(text, severity=severity)  # type: ignore[arg-type]
        self.snapshot = snap
        if self.main is not None:
            self.main.show(snap)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity="error" if message.error else "information")

    # --- commands -----------------------------------------------------------------

    def on_session_command(self, message: SessionCommand) -> None:
        message.stop()
        self.sent.append(message)
        fields = dict(message.fields)
        if message.op == "play" and fields.get("replace"):
            self.last_list = tuple(fields.get("track_ids", ()))
        snap = self.snapshot
        if (
            message.op == "play"
            and snap is not None
            and snap.state.active_device is None
            and snap.plays
        ):
            fields.setdefault("device_id", snap.device_id)  # a cold start plays here
        self.run_worker(
            self._command(message.op, fields, message.done), group="commands", exit_on_error=False
        )

    async def _command(self, op: str, fields: dict[str, Any], done: str = "") -> None:
        def failed(text: str) -> None:
            self.notify(text, severity="error")

        result = await attempt(self.backend.command(op, **fields), failed)
        if result is not None and not result.ok:
            failed(f"{op}: {result.message or result.code}")
        elif result is not None and done:
            self.notify(done)

    # --- palette and quitting -----------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for action in keys.ACTIONS:
            if action.scope == "main" and action.name != "quit":
                key = keys.key_label(keys.current_keys(action, self.user_keymap))
                yield SystemCommand(
                    action.description,
                    f"{action.name} · key {key}",
                    _runner(screen, action.name),
                )
        for action in keys.ACTIONS:
            if action.scope != "main":
                key = keys.key_label(keys.current_keys(action, self.user_keymap))
                yield SystemCommand(
                    f"{keys.SCOPES[action.scope]}: {action.description}",
                    f"{action.name} · key {key}",
                    _focused_runner(screen, action.name),
                )

    async def action_quit(self) -> None:
        """Leave the session paused at the exact position (if it plays here), then exit."""
        problems: list[str] = []
        try:
            await asyncio.wait_for(attempt(self.backend.close(), problems.append), LEAVE_TIMEOUT_S)
        except TimeoutError:  # leaving is best effort: never keep the user from quitting
            problems.append("the server did not answer in time")
        self.exit(message=f"tunehand: could not leave cleanly: {problems[0]}" if problems else None)


def _runner(screen: Screen[Any], name: str) -> Any:
    async def run() -> None:
        await screen.run_action(name)

    return run


def _focused_runner(screen: Screen[Any], name: str) -> Any:
    """Run a pane's action on the pane that holds the focus (or tell why not)."""

    async def run() -> None:
        node = screen.focused
        while node is not None:
            if hasattr(node, f"action_{name}"):
                await node.run_action(name)
                return
            node = node.parent  # type: ignore[assignment]
        screen.notify(f"{name}: move to a list where it applies first", severity="warning")

    return run


def run_tui(args: argparse.Namespace) -> int:
    """`tunehand` with no subcommand: open the app on this device's config dir."""
    from tunehand.tui.backend_live import LiveBackend

    backend, settings = LiveBackend.from_args(args)
    cover = image_factory(settings.cover_art)  # asks the terminal: before the app runs
    app = TunehandApp(backend, keys_config=settings.keys, theme=settings.theme, cover=cover)
    with exit_on_hangup(app):
        app.run()
    return 0
