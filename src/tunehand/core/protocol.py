"""The session channel's messages, both directions, as frozen dataclasses.

Every message is a JSON object with a `type`. The client's first message is `auth`;
the server answers `hello`. See DESIGN.md ("Channel protocol"). Decoding and encoding
live in `tunehand.wire`; this module only says what the messages are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tunehand.core.commands import Command, Report, ResultCode
from tunehand.core.model import DeviceInfo, SessionState

MAX_MESSAGE_BYTES = 256 * 1024
"""A channel message larger than this closes the connection with code 1009."""

CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_AUTH = 4001
CLOSE_EXPIRED = 4002
"""The access token the channel was opened (or last re-authenticated) with expired:
reconnect with a fresh one. A client that sends `auth` again before then never sees it."""
CLOSE_REVOKED = 4003
"""The device was revoked, its login logged out, or its account removed: log in again."""
CLOSE_REPLACED = 4009
"""A newer connection of the same device took over: stop playing and do not reconnect
(two connections of one device never play at once)."""
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_MANY_DEVICES = 4010
"""The account has as many devices online as the server allows (`serve --max-devices`)."""


@dataclass(frozen=True, slots=True)
class TrackView:
    """What a client shows of a track."""

    id: str
    title: str
    artist: str = ""
    album: str = ""
    album_artist: str = ""
    duration_ms: int = 0
    track_no: int | None = None
    disc_no: int | None = None
    year: int | None = None
    genre: str = ""
    url: str | None = None
    """A signed stream URL (library tracks) or the http(s) URL of a remote track."""
    album_id: str = ""
    art_url: str | None = None
    """A signed URL of the track's cover art (add `&size=N`), or None when it has none."""
    speed: float = 1.0
    """The speed the account plays this kind of item at (music or long-form; `ctl speed`)."""


# --- client to server -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceHello:
    id: str
    name: str
    capabilities: tuple[str, ...] = ()
    name_default: bool = False
    """`name` is a default the client made up (`HOST`, `HOST-mpd`), not one the user
    gave: the server makes it unique within the account (`HOST-2`, ...)."""


@dataclass(frozen=True, slots=True)
class Auth:
    device: DeviceHello
    token: str | None = None
    """May instead come in the upgrade request's Authorization header."""
    last_version: int | None = None
    type: Literal["auth"] = "auth"


@dataclass(frozen=True, slots=True)
class CommandMsg:
    command: Command
    type: Literal["command"] = "command"


@dataclass(frozen=True, slots=True)
class ReportMsg:
    report: Report
    type: Literal["report"] = "report"


@dataclass(frozen=True, slots=True)
class TimeRequest:
    t0: float
    """The client's monotonic clock, ms."""
    type: Literal["time"] = "time"


@dataclass(frozen=True, slots=True)
class Resync:
    last_version: int | None = None
    type: Literal["resync"] = "resync"


@dataclass(frozen=True, slots=True)
class Ping:
    type: Literal["ping"] = "ping"


@dataclass(frozen=True, slots=True)
class Ready:
    """The target of a transfer has the audio loaded and waiting at the asked position.

    `start_ms`: how long this device's output takes from its play call to audible
    sound (a browser's audio element: ~70 ms), so the switch is planned far enough
    ahead for it to start that early; 0 for a device that starts at once (mpv)."""

    transfer_id: str
    start_ms: int = 0
    type: Literal["ready"] = "ready"


@dataclass(frozen=True, slots=True)
class Failed:
    """The target of a transfer cannot play (the transfer is aborted)."""

    transfer_id: str
    message: str = ""
    type: Literal["failed"] = "failed"


ClientMessage = Auth | CommandMsg | ReportMsg | TimeRequest | Resync | Ping | Ready | Failed


# --- server to client -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateMsg:
    version: int
    state: SessionState
    track: TrackView | None = None
    """The current entry's track, so a status line needs no second request."""
    next_track: TrackView | None = None
    """The track of the entry after the current one in play order (for gapless prefetch)."""
    command_id: str | None = None
    """The command that made this state, so its sender stops replaying its prediction."""
    type: Literal["state"] = "state"


@dataclass(frozen=True, slots=True)
class Hello:
    device_id: str
    server_time_ms: int
    version: int
    state: StateMsg | None
    """None when the client said it is already at `version`."""
    devices: tuple[DeviceInfo, ...] = ()
    server_version: str = ""
    type: Literal["hello"] = "hello"


@dataclass(frozen=True, slots=True)
class DevicesMsg:
    """The account's devices: all of them, or with `patch` only those that changed (a
    device came, went or was renamed: put in place of the one with its id) and the ids
    of those `removed` (revoked). A join or leave is a patch, so what the account's
    devices receive grows with their number, not with its square."""

    devices: tuple[DeviceInfo, ...]
    patch: bool = False
    removed: tuple[str, ...] = ()
    type: Literal["devices"] = "devices"


@dataclass(frozen=True, slots=True)
class DirectiveMsg:
    """Something one device must do: `prepare` (load paused at `position_ms`, answer
    `ready`), `start` (play `entry_id` from `position_ms` at server time `at_ms`, holding
    `term`) or `stop` (stop at server time `at_ms`); `warm` (the predicted next device:
    load `entry_id` paused at `position_ms`, or seek there while paused; never play nor
    report) and `unwarm` (let that load go)."""

    action: Literal["prepare", "start", "stop", "warm", "unwarm"]
    term: int
    entry_id: str | None = None
    position_ms: int = 0
    at_ms: int = 0
    playing: bool = False
    track: TrackView | None = None
    transfer_id: str = ""
    type: Literal["directive"] = "directive"


@dataclass(frozen=True, slots=True)
class ResultMsg:
    command_id: str
    code: ResultCode
    message: str = ""
    version: int = 0
    type: Literal["result"] = "result"


@dataclass(frozen=True, slots=True)
class TimeReply:
    t0: float
    t1: int
    t2: int
    type: Literal["time"] = "time"


@dataclass(frozen=True, slots=True)
class ErrorMsg:
    code: str
    message: str
    type: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class Pong:
    server_time_ms: int
    type: Literal["pong"] = "pong"


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str
    message: str = ""
    type: Literal["bye"] = "bye"


ServerMessage = (
    Hello | StateMsg | DevicesMsg | DirectiveMsg | ResultMsg | TimeReply | ErrorMsg | Pong | Bye
)

CLIENT_TYPES: dict[str, type[Any]] = {
    "auth": Auth,
    "command": CommandMsg,
    "report": ReportMsg,
    "time": TimeRequest,
    "resync": Resync,
    "ping": Ping,
    "ready": Ready,
    "failed": Failed,
}
SERVER_TYPES: dict[str, type[Any]] = {
    "hello": Hello,
    "state": StateMsg,
    "devices": DevicesMsg,
    "directive": DirectiveMsg,
    "result": ResultMsg,
    "time": TimeReply,
    "error": ErrorMsg,
    "pong": Pong,
    "bye": Bye,
}
