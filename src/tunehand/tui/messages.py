"""Messages that go up from widgets and from the controller to the app."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tunehand.tui.backend import SessionSnapshot


class SnapshotChanged(Message):
    """The session changed. Fires often; a newer one replaces one still queued."""

    def __init__(self, snapshot: SessionSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotChanged)


class SessionCommand(Message):
    """A widget asks for a session command (ops and fields: `tunehand.core.commands`).

    `done` is a toast to show once the session has applied it (e.g. "Added X to the queue").
    """

    def __init__(self, op: str, *, done: str = "", **fields: Any) -> None:
        super().__init__()
        self.op = op
        self.done = done
        self.fields = fields


class Notice(Message):
    """Something to tell the user in a toast."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text = text
        self.error = error


class GoTo(Message):
    """Show an artist or an album in the library, or a playlist (a search result)."""

    def __init__(self, kind: str, item: Any) -> None:
        super().__init__()
        self.kind = kind
        self.item = item
