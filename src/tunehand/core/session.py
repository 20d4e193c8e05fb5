"""Applying commands, device reports and device loss to a `SessionState`.

Pure functions: time (`now_ms`), randomness (`seed`), track durations and the set of
online devices come in through `Context`. The server runs them inside a transaction
that compares and sets `version`; clients run the same functions to predict a
command's result before the server's answer arrives.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from tunehand.core import names
from tunehand.core.commands import Command, Report, Result, ResultCode, validate
from tunehand.core.model import (
    MAX_QUEUE,
    Entry,
    PlayFailure,
    Position,
    SessionState,
    StreamInfo,
    next_version,
)
from tunehand.core.roles import Role, refusal

PREV_RESTARTS_AFTER_MS = 3_000
REANCHOR_TOLERANCE_MS = 4
"""A report this close to the session's line is not a new anchor. Devices report when
their audible position is DRIFT_MS (core/position.py) off it, each at its own step's
exact time, so this only spares observers a state for what they cannot hear."""
RATE_TOLERANCE = 0.0005


@dataclass(frozen=True, slots=True)
class Context:
    now_ms: int
    """Server time."""
    durations: Mapping[str, int] = field(default_factory=dict)
    """Duration (ms, 0 when unknown) of every track the command names."""
    online_devices: Sequence[str] = ()
    seed: int = 0
    """Randomness for shuffle, chosen by the caller."""
    sender: str | None = None
    """The device that sent the command, when it came over the channel."""
    user: str = ""
    """The user name of the account that sent the command (a new entry's `added_by`)."""
    role: Role = "owner"
    """What the sender is to this session: its `owner` (no jam), a jam's `host` or a
    `guest` (see `tunehand.core.roles`)."""
    guests_can_control: bool = False
    """In a jam: whether guests may control playback like the host."""


@dataclass(frozen=True, slots=True)
class Directive:
    """Something one device must do now (the state alone does not say it)."""

    device_id: str
    action: Literal["start", "stop"]
    term: int
    entry_id: str | None = None
    position_ms: int = 0
    at_ms: int = 0
    playing: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    state: SessionState
    result: Result
    directives: tuple[Directive, ...] = ()

    @property
    def changed(self) -> bool:
        return self.result.ok and self.result.version != 0


class Refused(Exception):
    """Internal: a command that cannot be applied to this state."""

    def __init__(self, code: ResultCode, message: str) -> None:
        super().__init__(message)
        self.code: ResultCode = code
        self.message = message


def apply(state: SessionState, cmd: Command, ctx: Context) -> Outcome:
    """Apply `cmd`; on success the new state has `version + 1`, else the state is unchanged."""
    problem = validate(cmd)
    if problem is not None:
        return _refuse(state, cmd, "invalid", problem)
    if cmd.if_version is not None and cmd.if_version != state.version:
        return _refuse(
            state, cmd, "conflict", f"the session changed (version {state.version}); reload"
        )
    why = refusal(state, cmd, ctx.role, ctx.user, ctx.guests_can_control)
    if why is not None:
        return _refuse(state, cmd, "forbidden", why)
    try:
        new, directives = _HANDLERS[cmd.op](state, cmd, ctx)
    except Refused as exc:
        return _refuse(state, cmd, exc.code, exc.message)
    new = next_version(state, new)
    return Outcome(new, Result(cmd.command_id, "ok", "", new.version), directives)


def apply_report(
    state: SessionState, device_id: str, report: Report, ctx: Context
) -> tuple[SessionState, ResultCode]:
    """Take a playback report from a device. Only `{active_device, term}` may report."""
    if device_id != state.active_device or report.term != state.term:
        return state, "stale_term"
    if report.entry_id is not None and state.entry(report.entry_id) is None:
        return state, "not_found"
    if report.entry_id is not None and report.entry_id != state.current:
        # Sent before the device saw a newer state (next, a jump, a removal, a repeated
        # `ended`): that state stands, and the device follows it when it arrives.
        return state, "conflict"
    if report.event == "ended":
        new = _advance(state, ctx.now_ms, natural=True, from_entry=report.entry_id)
        return next_version(state, new), "ok"
    if report.event == "error":
        new = _advance(state, ctx.now_ms, natural=False, from_entry=report.entry_id)
        failed = state.entry(report.entry_id or state.current)
        if failed is not None:
            message = names.clean(report.message, MAX_TEXT) or "cannot play it"
            failure = PlayFailure(failed.entry_id, failed.track_id, message, ctx.now_ms)
            new = replace(new, failure=failure)
        return next_version(state, new), "ok"
    if report.event == "meta":
        return _stream_info(state, report)
    current = report.entry_id if report.entry_id is not None else state.current
    anchor = Position(report.position_ms, report.at_ms, report.playing, report.rate)
    old = state.position
    if (
        current == state.current
        and old.playing == anchor.playing
        and abs(old.rate - anchor.rate) < RATE_TOLERANCE
        and abs(state.position_at(report.at_ms) - report.position_ms) <= REANCHOR_TOLERANCE_MS
    ):
        return state, "ok"
    if report.version is not None and report.version < state.anchored:
        # Made before the device saw the state that last set the position (a play, pause
        # or seek was in flight): that state stands, and the device, once it follows it,
        # reports again.
        return state, "conflict"
    return next_version(state, replace(state, current=current, position=anchor)), "ok"


MAX_TEXT = 300
"""A reported title, artist, album or error message is cut to this many characters."""


def _stream_info(state: SessionState, report: Report) -> tuple[SessionState, ResultCode]:
    """The playing device learnt the current entry's title or duration (ICY metadata,
    tags): kept in the session, so every device shows it."""
    if state.current is None or report.entry_id not in (None, state.current):
        return state, "conflict"
    info = StreamInfo(
        state.current,
        names.clean(report.title, MAX_TEXT),
        names.clean(report.artist, MAX_TEXT),
        names.clean(report.album, MAX_TEXT),
        max(0, min(report.duration_ms, 2**40)),
    )
    if info == state.stream:
        return state, "ok"
    return next_version(state, replace(state, stream=info)), "ok"


def device_lost(state: SessionState, device_id: str, lost_at_ms: int) -> SessionState | None:
    """The active device vanished: pause at its position extrapolated to the loss.

    Returns None when `device_id` was not the active device (nothing changes).
    """
    if state.active_device != device_id:
        return None
    pos = state.position_at(lost_at_ms)
    new = replace(
        state,
        active_device=None,
        term=state.term + 1,
        position=Position(pos, lost_at_ms, False, 0.0),
    )
    return next_version(state, new)


# --- handlers ---------------------------------------------------------------------

Handled = tuple[SessionState, tuple[Directive, ...]]


def _refuse(state: SessionState, cmd: Command, code: ResultCode, message: str) -> Outcome:
    return Outcome(state, Result(cmd.command_id, code, message, 0))


def _paused_at(state: SessionState, now_ms: int) -> Position:
    return Position(state.position_at(now_ms), now_ms, False, 0.0)


def _starting(position_ms: int, now_ms: int) -> Position:
    """Playing, but not audible until the device reports: observers hold the clock."""
    return Position(position_ms, now_ms, True, 0.0)


def _paused_there(position_ms: int, now_ms: int) -> Position:
    """`play` with `paused`: at that entry and place, not playing (a device back from
    offline where it was paused: one command, so the session never plays meanwhile)."""
    return Position(position_ms, now_ms, False, 0.0)


def _need_device(state: SessionState, cmd: Command, ctx: Context) -> tuple[SessionState, bool]:
    """Make sure a device is active, picking one when that is unambiguous."""
    if state.active_device is not None:
        return state, False
    online = list(ctx.online_devices)
    if cmd.device_id is not None:
        if cmd.device_id not in online:
            raise Refused("device_offline", f"device {cmd.device_id} is not online")
        pick = cmd.device_id
    elif len(online) == 1:
        pick = online[0]
    elif not online:
        raise Refused("no_device", "no device is online: start `tunehand receiver` or `resume`")
    else:
        raise Refused("no_device", "no device is active; choose one of: " + ", ".join(online))
    return replace(state, active_device=pick, term=state.term + 1), True


def _start_directive(state: SessionState, ctx: Context) -> tuple[Directive, ...]:
    if state.active_device is None:
        return ()
    return (
        Directive(
            state.active_device,
            "start",
            state.term,
            state.current,
            state.position.position_ms,
            ctx.now_ms,
            state.position.playing,
        ),
    )


AUTOPLAY_PREFIX = "a"
"""Entry ids of autoplay's picks start with it (others with "e")."""


def is_autoplay(entry_id: str) -> bool:
    return entry_id.startswith(AUTOPLAY_PREFIX)


def _new_entries(state: SessionState, cmd: Command, ctx: Context) -> tuple[Entry, ...]:
    v = state.version + 1
    kind = AUTOPLAY_PREFIX if cmd.autoplay else "e"
    return tuple(
        Entry(f"{kind}{v}.{i}", tid, max(0, int(ctx.durations.get(tid, 0))), ctx.user)
        for i, tid in enumerate(cmd.track_ids)
    )


def _check_room(state: SessionState, adding: int) -> None:
    if len(state.queue) + adding > MAX_QUEUE:
        raise Refused("invalid", f"the queue holds at most {MAX_QUEUE} entries")


def _play(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    state, activated = _need_device(state, cmd, ctx)
    start_ms = cmd.position_ms or 0
    land = _paused_there if cmd.paused else _starting
    if cmd.track_ids:
        entries = _new_entries(state, cmd, ctx)
        if cmd.replace:
            queue = entries
            first = entries[min(cmd.index or 0, len(entries) - 1)].entry_id
            state = replace(state, queue=queue, current=first, order=())
            if state.shuffle:
                state = _reshuffle(state, ctx.seed)
        else:
            _check_room(state, len(entries))
            state = _insert_after_current(state, entries)
            first = entries[0].entry_id
            state = replace(state, current=first)
        state = replace(state, position=land(start_ms, ctx.now_ms))
    elif cmd.entry_id is not None:
        if state.entry(cmd.entry_id) is None:
            raise Refused("not_found", f"no entry {cmd.entry_id} in the queue")
        state = replace(state, current=cmd.entry_id, position=land(start_ms, ctx.now_ms))
    else:
        if not state.queue:
            raise Refused("empty_queue", "the queue is empty: add tracks first")
        if state.current_entry is None:
            state = replace(state, current=state.play_order()[0])
            pos = start_ms
        else:
            pos = cmd.position_ms if cmd.position_ms is not None else state.position_at(ctx.now_ms)
        as_asked = state.position.playing != cmd.paused  # playing, or paused when asked so
        if as_asked and cmd.position_ms is None and not activated:
            return state, ()
        state = replace(state, position=land(pos, ctx.now_ms))
    return state, _start_directive(state, ctx) if activated else ()


def _pause(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    if not state.position.playing:
        return state, ()
    return replace(state, position=_paused_at(state, ctx.now_ms)), ()


def _toggle(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    if state.position.playing:
        return _pause(state, cmd, ctx)
    return _play(state, replace(cmd, op="play"), ctx)


def _next(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    if not state.queue:
        raise Refused("empty_queue", "the queue is empty")
    return _advance(state, ctx.now_ms, natural=False, from_entry=None), ()


def _prev(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    if not state.queue:
        raise Refused("empty_queue", "the queue is empty")
    playing = state.position.playing
    if state.position_at(ctx.now_ms) > PREV_RESTARTS_AFTER_MS or state.current is None:
        target = state.current or state.play_order()[0]
    else:
        order = state.play_order()
        i = order.index(state.current) if state.current in order else 0
        if i > 0:
            target = order[i - 1]
        elif state.repeat == "all":
            target = order[-1]
        else:
            target = order[0]
    pos = _starting(0, ctx.now_ms) if playing else Position(0, ctx.now_ms, False, 0.0)
    return replace(state, current=target, position=pos), ()


def _seek(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    cur = state.current_entry
    if cur is None:
        raise Refused("empty_queue", "nothing to seek in")
    if cmd.position_ms is not None:
        target = cmd.position_ms
    else:
        target = state.position_at(ctx.now_ms) + (cmd.delta_ms or 0)
    target = max(0, target)
    if cur.duration_ms > 0:
        target = min(target, cur.duration_ms)
    playing = state.position.playing
    pos = _starting(target, ctx.now_ms) if playing else Position(target, ctx.now_ms, False, 0.0)
    return replace(state, position=pos), ()


def _volume(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    level = cmd.value if cmd.value is not None else state.volume + (cmd.delta or 0)
    return replace(state, volume=max(0, min(100, level))), ()


def _shuffle(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    if cmd.on:
        return _reshuffle(replace(state, shuffle=True), ctx.seed), ()
    return replace(state, shuffle=False, order=()), ()


def _reshuffle(state: SessionState, seed: int) -> SessionState:
    """A new permutation with the current entry first, so shuffling never jumps."""
    ids = [e.entry_id for e in state.queue if e.entry_id != state.current]
    random.Random(seed).shuffle(ids)
    if state.current is not None and state.entry(state.current) is not None:
        ids.insert(0, state.current)
    return replace(state, order=tuple(ids))


def _repeat(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    assert cmd.mode is not None
    return replace(state, repeat=cmd.mode), ()


def _insert_after_current(state: SessionState, entries: tuple[Entry, ...]) -> SessionState:
    queue = list(state.queue)
    i = next((k for k, e in enumerate(queue) if e.entry_id == state.current), -1)
    queue[i + 1 : i + 1] = entries
    new_ids = [e.entry_id for e in entries]
    order = list(state.order)
    if state.shuffle:
        j = order.index(state.current) if state.current in order else -1
        order[j + 1 : j + 1] = new_ids
    return replace(state, queue=tuple(queue), order=tuple(order))


def _queue_add(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    entries = _new_entries(state, cmd, ctx)
    _check_room(state, len(entries))
    order = state.order + tuple(e.entry_id for e in entries) if state.shuffle else ()
    return replace(state, queue=state.queue + entries, order=order), ()


def _queue_next(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    entries = _new_entries(state, cmd, ctx)
    _check_room(state, len(entries))
    return _insert_after_current(state, entries), ()


def _queue_remove(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    gone = set(cmd.entry_ids)
    missing = gone - {e.entry_id for e in state.queue}
    if missing:
        raise Refused("not_found", "no such entry: " + ", ".join(sorted(missing)))
    new = state
    if state.current in gone:
        # Move on to the next surviving entry in play order; stop if there is none.
        order = state.play_order()
        i = order.index(state.current) if state.current in order else 0
        after = [x for x in order[i + 1 :] if x not in gone]
        if not after and state.repeat == "all":
            after = [x for x in order[:i] if x not in gone]  # wrap, as `next` does
        nxt = after[0] if after else None
        pos = state.position
        if nxt is None:
            pos = Position(0, ctx.now_ms, False, 0.0)
        else:
            pos = _starting(0, ctx.now_ms) if pos.playing else Position(0, ctx.now_ms, False, 0.0)
        new = replace(new, current=nxt, position=pos)
    queue = tuple(e for e in state.queue if e.entry_id not in gone)
    order = tuple(x for x in state.order if x not in gone)
    return replace(new, queue=queue, order=order), ()


def _queue_move(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    assert cmd.entry_id is not None and cmd.index is not None
    entry = state.entry(cmd.entry_id)
    if entry is None:
        raise Refused("not_found", f"no entry {cmd.entry_id} in the queue")
    queue = [e for e in state.queue if e.entry_id != cmd.entry_id]
    queue.insert(min(cmd.index, len(queue)), entry)
    return replace(state, queue=tuple(queue)), ()


def _order_move(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    """Move an entry within the play order: the shuffle permutation while shuffle is on
    (the stored queue keeps its order), else the queue itself (as `queue_move`)."""
    if not (state.shuffle and state.order):
        return _queue_move(state, cmd, ctx)
    assert cmd.entry_id is not None and cmd.index is not None
    if cmd.entry_id not in state.order:
        raise Refused("not_found", f"no entry {cmd.entry_id} in the queue")
    order = [x for x in state.order if x != cmd.entry_id]
    order.insert(min(cmd.index, len(order)), cmd.entry_id)
    return replace(state, order=tuple(order)), ()


def _queue_clear(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    return replace(
        state, queue=(), order=(), current=None, position=Position(0, ctx.now_ms, False, 0.0)
    ), ()


def _queue_replace(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    entries = _new_entries(state, cmd, ctx)
    if len(entries) > MAX_QUEUE:
        raise Refused("invalid", f"the queue holds at most {MAX_QUEUE} entries")
    first = entries[min(cmd.index or 0, len(entries) - 1)].entry_id
    new = replace(state, queue=entries, current=first, order=())
    new = replace(new, position=Position(cmd.position_ms or 0, ctx.now_ms, False, 0.0))
    if new.shuffle:
        new = _reshuffle(new, ctx.seed)
    return new, ()


def _transfer(state: SessionState, cmd: Command, ctx: Context) -> Handled:
    target = cmd.device_id
    assert target is not None
    if target not in ctx.online_devices:
        raise Refused("device_offline", f"device {target} is not online")
    old = state.active_device
    if old is not None and old not in ctx.online_devices:
        # The source is gone: its last report is the last known position; never
        # extrapolate from that stale anchor.
        pos_ms = state.position.position_ms
    else:
        pos_ms = state.position_at(ctx.now_ms)
    playing = state.position.playing and not cmd.paused
    new = replace(
        state,
        active_device=target,
        term=state.term + 1,
        position=_starting(pos_ms, ctx.now_ms) if playing else Position(pos_ms, ctx.now_ms),
    )
    directives: list[Directive] = []
    if old is not None and old != target:
        directives.append(Directive(old, "stop", new.term, at_ms=ctx.now_ms))
    directives.extend(_start_directive(new, ctx))
    return new, tuple(directives)


def _advance(
    state: SessionState, now_ms: int, *, natural: bool, from_entry: str | None
) -> SessionState:
    """Move to the next entry in play order, per repeat; stop at the end of the queue."""
    order = state.play_order()
    if not order:
        return replace(state, current=None, position=Position(0, now_ms, False, 0.0))
    cur = from_entry if from_entry is not None else state.current
    playing = state.position.playing or natural
    if natural and state.repeat == "one" and cur in order:
        return replace(state, current=cur, position=_starting(0, now_ms))
    i = order.index(cur) if cur in order else -1
    if i + 1 < len(order):
        target = order[i + 1]
    elif state.repeat != "off":
        target = order[0]
    else:
        # End of the queue: stay on the last entry, stopped at its start.
        return replace(state, current=order[-1], position=Position(0, now_ms, False, 0.0))
    pos = _starting(0, now_ms) if playing else Position(0, now_ms, False, 0.0)
    return replace(state, current=target, position=pos)


_HANDLERS = {
    "play": _play,
    "pause": _pause,
    "toggle": _toggle,
    "next": _next,
    "prev": _prev,
    "seek": _seek,
    "volume": _volume,
    "shuffle": _shuffle,
    "repeat": _repeat,
    "queue_add": _queue_add,
    "queue_next": _queue_next,
    "queue_remove": _queue_remove,
    "queue_move": _queue_move,
    "order_move": _order_move,
    "queue_clear": _queue_clear,
    "queue_replace": _queue_replace,
    "transfer": _transfer,
}
