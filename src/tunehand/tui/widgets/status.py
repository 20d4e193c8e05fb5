"""`StatusLine`: one line under a list that says what is going on, or what went wrong."""

from __future__ import annotations

from textual.widgets import Static

from tunehand.core import names


class StatusLine(Static):
    def __init__(self) -> None:
        super().__init__("", classes="status", markup=False)  # it shows names
        self.text = ""

    def say(self, text: str, error: bool = False) -> None:
        """Show `text` (hidden when empty); `error` shows it as a failure."""
        self.text = text
        self.update(names.shown(text))
        self.set_class(bool(text), "shown")
        self.set_class(error, "error")
