"""What a controller publishes about the session: an immutable snapshot for listeners
(the TUI, `resume`, `receiver`, MPRIS, the MPD frontend)."""

from __future__ import annotations

from dataclasses import dataclass

from tunehand.core.model import DeviceInfo, SessionState
from tunehand.core.protocol import TrackView


@dataclass(frozen=True, slots=True)
class Snapshot:
    """`position_ms` is for `server_time_ms`; extrapolate with `state.position` for later
    times. `event` is a notice for the user that the state itself does not say (a refused
    command, a command kept while offline, a playback error)."""

    device_id: str
    connected: bool
    state: SessionState
    track: TrackView | None
    devices: tuple[DeviceInfo, ...]
    server_time_ms: int
    position_ms: int
    event: str = ""
    plays: bool = True
    """Whether this device can play (False for a remote only, e.g. libmpv missing)."""

    @property
    def active_here(self) -> bool:
        return self.state.active_device == self.device_id

    def device_name(self, device_id: str | None) -> str | None:
        for d in self.devices:
            if d.id == device_id:
                return d.name
        return device_id
