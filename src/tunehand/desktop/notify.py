"""Which desktop notifications a stream of snapshots calls for (no I/O here).

`Notices.feed(snapshot)` returns the (summary, body) pairs to show: "Now playing X — Y on
DEVICE" when the current track changes, "Playback moved to DEVICE" when another device
takes playback over. The first connected snapshot is the baseline and shows nothing.
"""

from __future__ import annotations

import html

from tunehand.core import names
from tunehand.core.snapshot import Snapshot

APP_NAME = "tunehand"


class Notices:
    def __init__(self) -> None:
        self._baseline = False
        self._track: str | None = None
        self._device: str | None = None

    def feed(self, snap: Snapshot) -> list[tuple[str, str]]:
        if not snap.connected:
            return []
        track = snap.track
        track_id = snap.state.current if track is not None else None
        device = snap.state.active_device
        if not self._baseline:
            self._baseline = True
            self._track, self._device = track_id, device
            return []
        out: list[tuple[str, str]] = []
        where = snap.device_name(device) or "no device"
        if device is not None and self._device is not None and device != self._device:
            out.append(("Playback moved", f"Playback moved to {where}"))
        if track is not None and track_id != self._track and device is not None:
            artist = track.artist or "Unknown artist"
            out.append(("Now playing", f"Now playing {track.title} — {artist} on {where}"))
        self._track, self._device = track_id, device
        # The body may be markup (the spec's body-markup): names and titles are escaped.
        return [(names.line(s), html.escape(names.line(b), quote=False)) for s, b in out]
