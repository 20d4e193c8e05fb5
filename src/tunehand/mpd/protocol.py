"""The pure MPD protocol pieces: argument parsing, errors as ACK lines, song and status
blocks, and which idle subsystems a session change touches. No I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tunehand.core.model import DeviceInfo, SessionState

GREETING = b"OK MPD 0.23.5\n"
MAX_LINE = 64 * 1024

ACK_ARG = 2
ACK_PASSWORD = 3
ACK_PERMISSION = 4
ACK_UNKNOWN = 5
ACK_NO_EXIST = 50
ACK_SYSTEM = 52
ACK_PLAYER_SYNC = 55
ACK_EXIST = 56

SUBSYSTEMS = (
    "player",
    "playlist",
    "mixer",
    "options",
    "output",
    "stored_playlist",
    "database",
    "update",
    "subscription",
    "message",
    "partition",
    "sticker",
    "neighbor",
    "mount",
)

Json = dict[str, Any]


class MpdError(Exception):
    """A command failed: answered with `ACK [code@index] {command} message`.

    It never leaves `tunehand.mpd`: the connection turns it into its ACK line (REST and
    session failures are mapped to it in `frontend`)."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        """The session's refusal code (`no_device`, `device_offline`...), when it was one."""


_HTTP_REQUEST = re.compile(
    r"(GET|POST|PUT|HEAD|OPTIONS|DELETE|PATCH|CONNECT|TRACE)[ \t]+\S+[ \t]+HTTP/\d(\.\d)?[ \t]*",
    re.IGNORECASE,
)
_HTTP_HEADER = re.compile(
    r"(host|origin|referer|user-agent|accept|accept-[a-z-]+|content-type|content-length|"
    r"content-encoding|transfer-encoding|connection|cookie|upgrade|cache-control|pragma|dnt|"
    r"priority|te|authorization|x-requested-with|sec-[a-z0-9-]+|upgrade-insecure-requests)"
    r"[ \t]*:.*",
    re.IGNORECASE,
)


def looks_like_http(line: str) -> bool:
    """An HTTP request line or a header line (a browser's cross-site POST, a proxy's
    probe): the connection must end before its body runs as MPD commands. No MPD
    command has these names, nor a colon after its name."""
    return bool(_HTTP_REQUEST.fullmatch(line) or _HTTP_HEADER.fullmatch(line))


def ack(code: int, index: int, command: str, message: str) -> str:
    return f"ACK [{code}@{index}] {{{command}}} {message}"


def parse_line(line: str) -> list[str]:
    """Split a request line into the command and its arguments (double quotes and
    backslash escapes as MPD has them); MpdError when a quote is left open."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            i += 1
            continue
        if c == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise MpdError(ACK_ARG, "Missing closing '\"'")
                c = line[i]
                if c == "\\" and i + 1 < n:
                    buf.append(line[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                buf.append(c)
                i += 1
            out.append("".join(buf))
        else:
            j = i
            while j < n and line[j] not in " \t":
                j += 1
            out.append(line[i:j])
            i = j
    return out


def to_int(value: str, what: str = "integer") -> int:
    try:
        return int(value)
    except ValueError:
        raise MpdError(ACK_ARG, f"Integer expected: {value}") from None


def to_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise MpdError(ACK_ARG, f"Number expected: {value}") from None


def to_bool(value: str) -> bool:
    if value not in ("0", "1"):
        raise MpdError(ACK_ARG, f"Boolean (0/1) expected: {value}")
    return value == "1"


def parse_range(value: str, length: int) -> range:
    """`POS` or `START:END` (END may be empty) as a range of queue positions."""
    if ":" in value:
        a, _, b = value.partition(":")
        start = to_int(a)
        end = to_int(b) if b else length
    else:
        start = to_int(value)
        end = start + 1
    if start < 0 or end < start or start >= length or end > length:
        raise MpdError(ACK_ARG, "Bad song index")
    return range(start, end)


# --- songs --------------------------------------------------------------------------

TAGS: tuple[tuple[str, str], ...] = (
    ("Title", "title"),
    ("Artist", "artist"),
    ("Album", "album"),
    ("AlbumArtist", "album_artist"),
    ("Track", "track_no"),
    ("Disc", "disc_no"),
    ("Date", "year"),
    ("Genre", "genre"),
)
TAG_FIELDS = {tag.casefold(): key for tag, key in TAGS} | {"file": "id"}


def tag_value(track: Mapping[str, Any], tag: str) -> str:
    """The value of an MPD tag (case-insensitive name) of a track; "" when it has none."""
    key = TAG_FIELDS.get(tag.casefold())
    if key is None:
        raise MpdError(ACK_ARG, f"Unknown tag type: {tag}")
    value = track.get(key)
    return "" if value is None else str(value)


def song_lines(
    track: Mapping[str, Any],
    pos: int | None = None,
    song_id: int | None = None,
    added_by: str = "",
) -> list[str]:
    """A song's lines; `added_by`: who added the queue entry (in a jam), as `AddedBy`."""
    lines = [f"file: {track['id']}"]
    for tag, key in TAGS:
        value = track.get(key)
        if value not in (None, ""):
            lines.append(f"{tag}: {value}")
    ms = int(track.get("duration_ms") or 0)
    if ms:
        lines += [f"Time: {round(ms / 1000)}", f"duration: {ms / 1000:.3f}"]
    if added_by:
        lines.append(f"AddedBy: {added_by}")
    if pos is not None:
        lines.append(f"Pos: {pos}")
    if song_id is not None:
        lines.append(f"Id: {song_id}")
    return lines


# --- status -------------------------------------------------------------------------


def player_state(st: SessionState) -> str:
    if st.current_entry is None:
        return "stop"
    return "play" if st.position.playing else "pause"


def status_lines(
    st: SessionState, now_ms: int, song_id: Callable[[str], int], duration_ms: int
) -> list[str]:
    lines = [
        f"volume: {st.volume}",
        f"repeat: {int(st.repeat != 'off')}",
        f"random: {int(st.shuffle)}",
        f"single: {int(st.repeat == 'one')}",
        "consume: 0",
        f"playlist: {st.version}",
        f"playlistlength: {len(st.queue)}",
        f"state: {player_state(st)}",
    ]
    ids = [e.entry_id for e in st.queue]
    cur = st.current_entry
    if cur is not None:
        elapsed = st.position.at(now_ms, duration_ms)
        lines += [
            f"song: {ids.index(cur.entry_id)}",
            f"songid: {song_id(cur.entry_id)}",
            f"time: {elapsed // 1000}:{round(duration_ms / 1000)}",
            f"elapsed: {elapsed / 1000:.3f}",
            f"duration: {duration_ms / 1000:.3f}",
        ]
    nxt = st.next_entry_id()
    if nxt is not None and nxt in ids:
        lines += [f"nextsong: {ids.index(nxt)}", f"nextsongid: {song_id(nxt)}"]
    return lines


# --- idle ---------------------------------------------------------------------------


def _device_key(devices: tuple[DeviceInfo, ...]) -> tuple[tuple[str, str, bool], ...]:
    return tuple((d.id, d.name, d.online) for d in devices)


def changed_subsystems(
    old: SessionState,
    new: SessionState,
    old_devices: tuple[DeviceInfo, ...],
    new_devices: tuple[DeviceInfo, ...],
) -> set[str]:
    """The idle subsystems a change from `old` to `new` wakes."""
    out: set[str] = set()
    if (old.current, old.position, old.stream) != (new.current, new.position, new.stream):
        out.add("player")  # a stream's new title too, as MPD says tags from a stream
    if old.queue != new.queue:
        out.add("playlist")
    if old.volume != new.volume:
        out.add("mixer")
    if (old.shuffle, old.repeat) != (new.shuffle, new.repeat):
        out.add("options")
    if old.active_device != new.active_device or _device_key(old_devices) != _device_key(
        new_devices
    ):
        out.add("output")
    return out
