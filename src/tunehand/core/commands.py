"""What a client asks of the session (`Command`), what a device says (`Report`), and the answer.

Commands are flat, so one dataclass decodes every `command` message; `validate`
checks that the fields a given `op` needs are there and in range. A command carries
a client-made `command_id`: the server applies it once and answers a retry with the
original `Result`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from tunehand.core.model import MAX_QUEUE, REPEAT_MODES, Repeat

Op = Literal[
    "play",
    "pause",
    "toggle",
    "next",
    "prev",
    "seek",
    "volume",
    "shuffle",
    "repeat",
    "queue_add",
    "queue_next",
    "queue_remove",
    "queue_move",
    "order_move",
    "queue_clear",
    "queue_replace",
    "transfer",
]
OPS: frozenset[str] = frozenset(Op.__args__)  # type: ignore[attr-defined]

ResultCode = Literal[
    "ok",
    "invalid",
    "conflict",
    "not_found",
    "no_device",
    "device_offline",
    "stale_term",
    "empty_queue",
    "rate_limited",
    "unavailable",
    "transfer_failed",
    "forbidden",
]

MAX_ID_LEN = 64


@dataclass(frozen=True, slots=True)
class Command:
    """A user's intent. Which fields matter depends on `op` (see `validate`)."""

    op: Op
    command_id: str
    if_version: int | None = None
    track_ids: tuple[str, ...] = ()
    """play (insert after the current entry and play it; with `replace`, replace the queue),
    queue_add, queue_next, queue_replace."""
    replace: bool = False
    entry_id: str | None = None
    """play (jump to this entry), queue_move, order_move."""
    entry_ids: tuple[str, ...] = ()
    """queue_remove."""
    index: int | None = None
    """queue_move: the new index in the queue; order_move: the new index in the play order
    (the shuffle permutation while shuffle is on); play with track_ids and replace, and
    queue_replace: where to start."""
    position_ms: int | None = None
    """seek (absolute), play (start here), queue_replace (wait here, paused)."""
    delta_ms: int | None = None
    """seek (relative)."""
    value: int | None = None
    """volume (absolute, 0-100)."""
    delta: int | None = None
    """volume (relative)."""
    on: bool | None = None
    """shuffle."""
    mode: Repeat | None = None
    """repeat."""
    device_id: str | None = None
    """transfer: the target device; play: the device to play on when none is active."""
    paused: bool = False
    """transfer: arrive paused; play: land paused there (a device back from offline,
    paused: play and pause in one, so the session never plays in between)."""
    autoplay: bool = False
    """queue_add, play: the entries are autoplay's picks (their ids start with "a")."""


@dataclass(frozen=True, slots=True)
class Report:
    """Playback status from the device holding `{active_device, term}`.

    `event` is "progress" for a periodic or discontinuity report, "ended" when the
    entry played to its end, "error" when the entry could not be played (`message`
    says why), "meta" when the player learnt the entry's title or duration (`title`,
    `artist`, `album`, `duration_ms`: a radio's ICY title, a podcast file's tags).
    """

    term: int
    entry_id: str | None
    position_ms: int
    at_ms: int
    playing: bool
    rate: float
    event: Literal["progress", "ended", "error", "meta"] = "progress"
    message: str = ""
    version: int | None = None
    """The session version the device was following when it made the report. A progress
    report is the player doing what that state said; a newer state may say otherwise (a
    command the device had not seen yet), and the report must not undo it. None: the
    device's own doing, such as stopping as it quits (and reports of older clients)."""
    title: str = ""
    artist: str = ""
    album: str = ""
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    command_id: str
    code: ResultCode
    message: str = ""
    version: int = 0

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def validate(cmd: Command) -> str | None:
    """None when `cmd` is well formed, else one line naming the bad field."""
    if not cmd.command_id or len(cmd.command_id) > MAX_ID_LEN:
        return "command_id: must be 1 to 64 characters"
    for name, values in (("track_ids", cmd.track_ids), ("entry_ids", cmd.entry_ids)):
        if len(values) > MAX_QUEUE:
            return f"{name}: at most {MAX_QUEUE} at once"
        if not all(0 < len(v) <= 2048 for v in values):
            return f"{name}: every id must be 1 to 2048 characters"
    op = cmd.op
    if op not in OPS:
        return f"op: unknown operation {op!r}"
    if op == "seek" and (cmd.position_ms is None) == (cmd.delta_ms is None):
        return "seek: give exactly one of position_ms or delta_ms"
    if cmd.position_ms is not None and cmd.position_ms < 0:
        return "position_ms: must be >= 0"
    if op == "volume":
        if (cmd.value is None) == (cmd.delta is None):
            return "volume: give exactly one of value or delta"
        if cmd.value is not None and not 0 <= cmd.value <= 100:
            return "value: volume must be 0 to 100"
    if op == "shuffle" and cmd.on is None:
        return "on: shuffle needs on=true or on=false"
    if op == "repeat" and cmd.mode not in REPEAT_MODES:
        return "mode: repeat must be off, all or one"
    if op in ("queue_add", "queue_next", "queue_replace") and not cmd.track_ids:
        return f"track_ids: {op} needs at least one track"
    if op == "queue_replace" and cmd.if_version is None:
        return "if_version: queue_replace needs the version it replaces"
    if op == "queue_remove" and not cmd.entry_ids:
        return "entry_ids: queue_remove needs at least one entry"
    if op in ("queue_move", "order_move") and (cmd.entry_id is None or cmd.index is None):
        return f"{op}: needs entry_id and index"
    if op == "transfer" and not cmd.device_id:
        return "device_id: transfer needs a device"
    if cmd.index is not None and cmd.index < 0:
        return "index: must be >= 0"
    return None


def coalesce_replay(cmds: list[Command]) -> tuple[list[Command], list[Command]]:
    """Commands journaled offline, as they are replayed: each `play` directly followed by
    a `pause` goes as one `play` that lands paused (else the session would play between
    the two, on every device). Returns (what to send, the `pause`s folded in)."""
    out: list[Command] = []
    folded: list[Command] = []
    for c in cmds:
        prev = out[-1] if out else None
        if c.op == "pause" and prev is not None and prev.op == "play" and not prev.paused:
            out[-1] = replace(prev, paused=True)
            folded.append(c)
            continue
        out.append(c)
    return out, folded
