"""The TUI's one seam to the outside world: the `Backend` protocol and the data it speaks.

The TUI never does I/O. Everything it shows comes through a `Backend`: library and
account data (async methods), the session (a `SessionSnapshot` pushed to a callback
by `run`), and every session command (`command`, `pull`). `backend_live` implements it
on the device agent and the REST client; `backend_fake` in memory, for tests and
screenshots. Failures are `tunehand.errors.TunehandError`s whose text is one line for
the user; the TUI shows it in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunehand.core.commands import Result
from tunehand.core.lyrics import Lyrics
from tunehand.core.protocol import TrackView
from tunehand.core.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Account:
    server: str
    user: str


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    """A device-code login waiting for approval: what to show the user."""

    server: str
    user_code: str
    verification_uri: str
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class Artist:
    key: str
    name: str
    albums: int = 0
    tracks: int = 0


@dataclass(frozen=True, slots=True)
class Album:
    id: str
    title: str
    artist: str = ""
    year: int | None = None
    tracks: int = 0


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    name: str
    tracks: int = 0


@dataclass(frozen=True, slots=True)
class SearchResults:
    """What a search found: tracks, and the artists, albums and playlists that match."""

    tracks: list[TrackView]
    artists: list[Artist] = field(default_factory=list)
    albums: list[Album] = field(default_factory=list)
    playlists: list[PlaylistInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Played:
    """One row of the listening history."""

    track_id: str
    track: TrackView | None
    played_ms: int
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class InProgress:
    """A long-form item started and not finished (an episode, an audiobook, a long
    track): where the account left it."""

    id: str
    title: str
    kind: str
    position_ms: int
    duration_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ChapterMark:
    """A chapter of the playing file: where it starts."""

    title: str
    start_ms: int


@dataclass(frozen=True, slots=True)
class QueueItem:
    entry_id: str
    track_id: str
    track: TrackView | None


@dataclass(frozen=True, slots=True)
class JamInfo:
    """The jam the account is in: its host, members (host first) and invite code."""

    host: str
    members: tuple[str, ...]
    code: str
    guests_can_control: bool = False


SessionSnapshot = Snapshot
"""What the session looks like now, as the controller publishes it."""


SnapshotSink = Callable[[SessionSnapshot], None]


class Backend(Protocol):
    """What the TUI needs from the world. Every method may raise `TunehandError`."""

    @property
    def default_server(self) -> str:
        """The server URL to offer on the login screen ("" when none is configured)."""
        ...

    async def account(self) -> Account | None:
        """Who is logged in on this device, or None."""
        ...

    async def login(self, server: str, user: str, password: str) -> Account: ...

    async def token_store_problem(self) -> str | None:
        """Why a login could not be kept here (no OS keyring), or None when it can."""
        ...

    def use_token_file(self) -> str:
        """Keep the next login's tokens in a 0600 file instead (the user opted in); the
        file's path, for the warning."""
        ...

    async def start_device_login(self, server: str) -> DeviceLogin:
        """Ask `server` for a device code (RFC 8628) to show on the login screen."""
        ...

    async def finish_device_login(self, pending: DeviceLogin) -> Account:
        """Wait until the code is approved elsewhere, then keep the tokens.

        Raises `AuthError` when it is denied or expires; cancel to give up.
        """
        ...

    async def run(self, on_snapshot: SnapshotSink) -> None:
        """Run the session (connect, reconnect, play) until cancelled.

        `on_snapshot` is called on the event loop on every change; it may fire often.
        Raises `AuthError` when the server refuses this device's login.
        """
        ...

    def server_now(self) -> int:
        """The server's clock, ms (to extrapolate the position)."""
        ...

    async def search(self, query: str, limit: int = 200) -> SearchResults:
        """Up to `limit` tracks (best first), and a few artists, albums and playlists."""
        ...

    async def artists(self) -> list[Artist]: ...

    async def albums(self, artist_key: str) -> list[Album]: ...

    async def album_tracks(self, album_id: str) -> list[TrackView]: ...

    async def playlists(self) -> list[PlaylistInfo]: ...

    async def playlist(self, name: str) -> list[TrackView]: ...

    async def likes(self) -> list[TrackView]: ...

    async def set_like(self, track_id: str, liked: bool) -> None:
        """Like a track (add it to the liked tracks) or unlike it."""
        ...

    async def save_playlist(self, name: str, track_ids: list[str]) -> None:
        """Create or replace the playlist `name` with these tracks, in this order."""
        ...

    async def rename_playlist(self, name: str, new_name: str) -> None:
        """Rename the playlist `name` (its tracks and order kept); an existing `new_name`
        is refused, never overwritten."""
        ...

    async def delete_playlist(self, name: str) -> None: ...

    async def history(self) -> list[Played]: ...

    async def queue(self) -> list[QueueItem]: ...

    async def jam(self) -> JamInfo | None:
        """The jam the account is in, or None."""
        ...

    async def jam_start(self) -> JamInfo:
        """Share the account's session (or the jam it hosts already)."""
        ...

    async def jam_join(self, code: str) -> JamInfo:
        """Put the account's devices on the jam with `code`."""
        ...

    async def jam_leave(self) -> str:
        """Leave the jam (its host ends it); the line to tell the user."""
        ...

    async def chapters(self, track_id: str) -> list[ChapterMark]:
        """The chapter marks of `track_id` while it is the session's current track (none
        otherwise, or when its file has none)."""
        ...

    async def in_progress(self) -> list[InProgress]:
        """What the account has in progress, most recently heard first (`ctl continue`)."""
        ...

    async def art(self, url: str, size: int) -> bytes | None:
        """The picture at a track's `art_url`, about `size` pixels square; None when the
        server has none (gone, broken) or cannot be reached: the TUI then shows no cover."""
        ...

    async def lyrics(self, track_id: str) -> Lyrics | None:
        """A track's lyrics (synced or plain lines), or None when it has none."""
        ...

    async def command(self, op: str, **fields: Any) -> Result:
        """A session command (ops and fields: `tunehand.core.commands`)."""
        ...

    async def pull(self) -> Result:
        """Move playback to this terminal."""
        ...

    async def close(self) -> None:
        """Leave: if this terminal plays, the session stays paused at the exact position."""
        ...
