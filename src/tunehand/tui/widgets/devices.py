"""The devices panel: every device of the account, online or offline, the active one marked.

Enter pushes playback to the selected device; the screen's pull key brings it here.
The rows are the snapshot's devices: online first, then by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tunehand.core import names
from tunehand.core.model import DeviceInfo
from tunehand.tui import keys
from tunehand.tui.backend import SessionSnapshot
from tunehand.tui.messages import SessionCommand
from tunehand.tui.widgets.status import StatusLine
from tunehand.tui.widgets.table import Column, Table


class DevicesPanel(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("devices")

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)
        self.snapshot: SessionSnapshot | None = None
        self.title = Static("Devices", classes="crumb", markup=False)
        self.status = StatusLine()
        self.table: Table[DeviceInfo] = Table(
            (Column("", 1), Column("Device", flex=3), Column("", 7)),
            self._cells,
            marked=self._is_active,
            empty="no devices yet",
        )

    def compose(self) -> ComposeResult:
        yield self.title
        yield self.table
        yield self.status

    def show(self, snap: SessionSnapshot) -> None:
        self.snapshot = snap
        rows = sorted(snap.devices, key=lambda d: (not d.online, d.name.casefold(), d.id))
        selected = self.selected
        cursor = None
        if selected is not None:
            cursor = next((i for i, d in enumerate(rows) if d.id == selected.id), None)
        self.table.set_rows(rows, cursor=cursor)
        active = snap.device_name(snap.state.active_device)
        if not active:
            self.title.update("Devices · none active")
        else:
            doing = "playing" if snap.state.position.playing else "paused"
            self.title.update(names.line(f"Devices · {doing} on {active}"))

    @property
    def selected(self) -> DeviceInfo | None:
        return self.table.current

    def _is_active(self, d: DeviceInfo) -> bool:
        return self.snapshot is not None and d.id == self.snapshot.state.active_device

    def _cells(self, d: DeviceInfo) -> Sequence[str]:
        here = self.snapshot is not None and d.id == self.snapshot.device_id
        mark = "▶" if self._is_active(d) else ("●" if d.online else "○")
        name = f"{d.name} (this terminal)" if here else d.name
        return (mark, name, "online" if d.online else "offline")

    def on_table_activated(self, event: Table.Activated) -> None:
        event.stop()
        self.action_transfer()

    def action_transfer(self) -> None:
        d = self.selected
        if d is None:
            return
        if not d.online:
            self.status.say(f"{d.name} is offline: start `tunehand receiver` there", True)
            return
        self.status.say("")
        self.post_message(SessionCommand("transfer", device_id=d.id))
