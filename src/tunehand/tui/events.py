"""What the user is told when the session changes under them: pure, no Textual.

`transitions(prev, new)` names the moments worth a toast: playback moving to or away
from this terminal, and the server connection dropping or coming back.
"""

from __future__ import annotations

from tunehand.core import names
from tunehand.tui.backend import SessionSnapshot


def transitions(prev: SessionSnapshot | None, new: SessionSnapshot) -> list[tuple[str, str]]:
    """(text, severity) toasts for the change from `prev` to `new`."""
    out: list[tuple[str, str]] = []
    if prev is None:
        return out
    if prev.connected and not new.connected:
        out.append(("Connection to the server lost: reconnecting…", "warning"))
    elif not prev.connected and new.connected:
        out.append(("Connected to the server", "information"))
    was, now = prev.state.active_device, new.state.active_device
    if was != now:
        if now == new.device_id:
            out.append(("Playback moved here", "information"))
        elif was == new.device_id:
            name = names.line(new.device_name(now) or "") if now else None
            out.append(
                (f"Playback moved to {name}" if name else "Playback stopped here", "information")
            )
    return out
