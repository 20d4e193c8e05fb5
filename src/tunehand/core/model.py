"""The session's data: queue entries, the position anchor and the whole session state.

Pure data, shared by the client and the server. Every value is immutable; a change
makes a new `SessionState` with `version` one higher (see `tunehand.core.session`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from tunehand.core.clock import extrapolate

Repeat = Literal["off", "all", "one"]
REPEAT_MODES: tuple[Repeat, ...] = ("off", "all", "one")

MAX_QUEUE = 10_000
"""A queue longer than this is refused: it bounds every state message."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One queue entry. `entry_id` is unique per insertion, so edits name entries."""

    entry_id: str
    track_id: str
    duration_ms: int = 0
    """0 when unknown (an internet radio stream); caps position extrapolation."""
    added_by: str = ""
    """The user name of the account that added it (in a jam, one of several)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where playback is: `position_ms` at server time `at_ms`, moving at `rate`.

    `rate` is 0 while nothing is audible (paused, loading, seeking, buffering), so
    observers never run the clock ahead of the speaker.
    """

    position_ms: int = 0
    at_ms: int = 0
    playing: bool = False
    rate: float = 0.0

    def at(self, now_ms: int, duration_ms: int = 0) -> int:
        """The position at server time `now_ms`, capped at the track's duration."""
        return extrapolate(
            self.position_ms, self.at_ms, self.playing, self.rate, now_ms, duration_ms
        )


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the playing device learnt of entry `entry_id` while playing it (an internet
    radio's ICY title, a podcast file's tags and duration): shown in place of the stored
    title, live as the station changes it."""

    entry_id: str
    title: str = ""
    artist: str = ""
    album: str = ""
    duration_ms: int = 0
    """0 when unknown (a live stream)."""


@dataclass(frozen=True, slots=True)
class PlayFailure:
    """The last entry a device could not play (a dead URL, a file that is not audio):
    the session moved past it, and says so instead of skipping in silence."""

    entry_id: str
    track_id: str
    message: str
    at_ms: int
    """Server time of the failure."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """The authoritative session of one account, as the server stores and sends it."""

    version: int = 0
    queue: tuple[Entry, ...] = ()
    current: str | None = None
    position: Position = field(default_factory=Position)
    volume: int = 100
    shuffle: bool = False
    order: tuple[str, ...] = ()
    """The play order as entry ids: the stored shuffle permutation, empty when not shuffled."""
    repeat: Repeat = "off"
    active_device: str | None = None
    term: int = 0
    """Fencing number for the right to play; increases on every activation or transfer."""
    anchored: int = 0
    """The version that last set `current` or `position` (a play, pause, seek, jump or a
    device's report): a report made while following an older one is out of date."""
    stream: StreamInfo | None = None
    """The playing device's live metadata of a stream; it applies to `stream.entry_id` only."""
    failure: PlayFailure | None = None

    def entry(self, entry_id: str | None) -> Entry | None:
        if entry_id is None:
            return None
        for e in self.queue:
            if e.entry_id == entry_id:
                return e
        return None

    @property
    def current_entry(self) -> Entry | None:
        return self.entry(self.current)

    def play_order(self) -> tuple[str, ...]:
        """Entry ids in the order they play: the shuffle permutation or the queue order."""
        if self.shuffle and self.order:
            return self.order
        return tuple(e.entry_id for e in self.queue)

    def next_entry_id(self) -> str | None:
        """The entry that plays after the current one (what a device prefetches)."""
        order = self.play_order()
        if self.current not in order or self.repeat == "one":
            return None
        i = order.index(self.current)
        if i + 1 < len(order):
            return order[i + 1]
        return order[0] if self.repeat == "all" else None

    def position_at(self, now_ms: int) -> int:
        cur = self.current_entry
        return self.position.at(now_ms, cur.duration_ms if cur else 0)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device of the account, as the server lists it."""

    id: str
    name: str
    online: bool = False
    last_seen_ms: int = 0
    address: str = ""
    capabilities: tuple[str, ...] = ()
    kind: str = "terminal"
    """`web` for a browser tab, `terminal` for the rest."""
    warm: bool = False
    """The server keeps this device loaded paused for the transfer it predicts next."""


def next_version(old: SessionState, new: SessionState) -> SessionState:
    """`new` as the version after `old`; `anchored` moves along when the playback position
    (or the current entry) changed."""
    v = old.version + 1
    moved = new.position != old.position or new.current != old.current
    return replace(new, version=v, anchored=v if moved else old.anchored)
