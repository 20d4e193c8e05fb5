"""Who may do what to a session: the roles of a jam, decided here for every frontend.

A jam is a host's session opened to other accounts. The host (and an account on its
own session, the `owner`) may do anything. A `guest` may add to the queue (`queue_add`,
`queue_next`) and remove or move the entries it added itself; playback control (play,
pause, skip, seek, volume, shuffle, repeat, clearing or replacing the queue, moving or
removing others' entries, transfer) only when the host lets guests control. Pure: the
server gives the role in the command's `Context`, and ctl, the TUI, MPD, MPRIS and the
web app all get the same answer.
"""

from __future__ import annotations

from typing import Literal

from tunehand.core.commands import Command
from tunehand.core.model import SessionState

Role = Literal["owner", "host", "guest"]
ROLES: tuple[Role, ...] = ("owner", "host", "guest")

GUEST_OPS = frozenset({"queue_add", "queue_next"})
"""What every guest may do."""
OWN_ENTRY_OPS = frozenset({"queue_remove", "queue_move", "order_move"})
"""What a guest may do to the entries it added."""

_WHAT = {
    "play": "start playback",
    "pause": "pause",
    "toggle": "pause or play",
    "next": "skip",
    "prev": "skip back",
    "seek": "seek",
    "volume": "change the volume",
    "shuffle": "shuffle",
    "repeat": "change repeat",
    "queue_clear": "clear the queue",
    "queue_replace": "replace the queue",
    "transfer": "move playback to another device",
}


def refusal(
    state: SessionState, cmd: Command, role: Role, user: str, guests_can_control: bool
) -> str | None:
    """None when `role` may apply `cmd` to `state`, else the one line that says why not."""
    if role != "guest" or guests_can_control or cmd.op in GUEST_OPS:
        return None
    if cmd.op in OWN_ENTRY_OPS:
        named = cmd.entry_ids if cmd.op == "queue_remove" else (cmd.entry_id or "",)
        for entry_id in named:
            entry = state.entry(entry_id)
            if entry is not None and entry.added_by != user:
                added = entry.added_by or "the host"
                return (
                    f"guests may only move or remove their own entries ({entry_id} was"
                    f" added by {added}); the host can let guests control the jam"
                )
        return None
    what = _WHAT.get(cmd.op, cmd.op)
    return (
        f"only the host may {what} in this jam: guests add to the queue (the host can"
        " let guests control it with `ctl jam set --guests-can-control on`)"
    )
