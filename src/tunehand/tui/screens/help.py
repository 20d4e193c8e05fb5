"""The help screen: every key, grouped by where it works, as the keymap has it now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.table import Table as RichTable
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tunehand.tui import keys


def help_table(keymap: Mapping[str, str], scopes: tuple[str, ...]) -> RichTable:
    table = RichTable(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
    table.add_column("key", style="bold", no_wrap=True, min_width=10)
    table.add_column("action", ratio=1)
    for scope in scopes:
        table.add_row(f"[b u]{keys.SCOPES[scope]}[/]", "")
        for a in keys.ACTIONS:
            if a.scope == scope:
                table.add_row(keys.key_label(keys.current_keys(a, keymap)), a.description)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", show=True),
    ]

    def __init__(self, keymap: Mapping[str, str] | None = None) -> None:
        super().__init__(id="help")
        self.keymap = keymap or {}

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static("tunehand keys", id="help-title")
            with Horizontal(id="help-columns"):
                yield Static(help_table(self.keymap, ("main", "devices")), classes="help-keys")
                yield Static(
                    help_table(self.keymap, ("tracks", "playlists", "queue")),
                    classes="help-keys",
                )
            yield Static('keys can be changed in config.toml: [keys] next = "j"', id="help-foot")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
