"""The `Player` protocol and the events a player hands to the event loop.

A player plays one queue entry at a time (named by a `tag`, the entry id) and may
hold the next one prefetched for a gapless advance. Its events are frozen values
delivered on the event loop, never on the audio library's own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Ready:
    """`tag` is loaded and seeked: audio is decoded and waiting (or playing, if not paused)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Advanced:
    """The prefetched next entry `tag` took over, with no gap."""

    tag: str
    previous: str | None


@dataclass(frozen=True, slots=True)
class Ended:
    """`tag` played to its end and nothing was prefetched after it."""

    tag: str


@dataclass(frozen=True, slots=True)
class Failed:
    """`tag` could not be played (unreadable file, 404, the network dropped)."""

    tag: str
    message: str


@dataclass(frozen=True, slots=True)
class Meta:
    """What the player learnt of `tag` while playing it: its title (tags, or a radio's
    ICY title, which changes as the station plays on), artist, album and duration (0
    when unknown, as for a live stream)."""

    tag: str
    title: str = ""
    artist: str = ""
    album: str = ""
    duration_ms: int = 0


PlayerEvent = Ready | Advanced | Ended | Failed | Meta
EventSink = Callable[[PlayerEvent], None]


class Player(Protocol):
    def load(
        self, tag: str, url: str, *, position_ms: int, paused: bool, offset: bool = False
    ) -> None: ...
    def set_next(self, tag: str | None, url: str | None) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def seek(self, position_ms: int) -> None: ...
    def stop(self) -> None: ...
    def set_volume(self, level: int) -> None: ...
    def set_speed(self, speed: float) -> None:
        """Play at `speed` (1.0 normal), keeping the pitch."""
        ...

    def position_ms(self) -> int | None: ...
    def position_sample(self) -> tuple[int, float] | None:
        """(position in ms, time.monotonic() in s when exactly that was audible), or None
        while it is not known (loading, seeking, just resumed)."""
        ...

    def waiting(self) -> bool:
        """Not paused, yet not playing: waiting for data (a stream that stalled)."""
        ...

    def playing_tag(self) -> str | None: ...
    def retag(self, old: str, new: str) -> None:
        """What is loaded as `old` is `new` from now on (the same file, untouched: an
        entry that got another id from the server)."""
        ...

    def paused(self) -> bool: ...
    def close(self) -> None: ...
