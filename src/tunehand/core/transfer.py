"""Handoff in two phases, make-before-break (DESIGN.md, "Handoff").

`plan` decides how a transfer goes: an immediate activation (nothing plays, the
target already plays, `paused`, or the source is gone) or a prepared switch, where
the target first loads the track paused at the position predicted for server time
`switch_at_ms` and answers ready. `switch` then makes the new state and the two
directives (the source stops and the target starts at the same server instant, with
the new term). Pure: time comes in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tunehand.core.model import Position, SessionState, next_version
from tunehand.core.session import Directive

READY_TIMEOUT_MS = 3_000
LEAD_MS = 100
"""How far ahead the switch is planned: covers the target's load and both round trips
(on a LAN a prepare takes ~15 ms and a round trip a few; a later `ready` switches at
ready + LATE_LEAD_MS instead, and the target seeks to the position for that instant)."""
LATE_LEAD_MS = 40
"""When `ready` comes after the planned instant, switch this far after it instead."""
WARM_LEAD_MS = 15
"""A transfer to a warm device (loaded paused near the position already) switches this
far ahead: the start directive's delivery, and a short seek while paused."""
MAX_START_MS = 500
"""The most a target's own start delay (its `ready.start_ms`) moves the switch back."""


@dataclass(frozen=True, slots=True)
class Prepare:
    """Ask `target` to load `entry_id` paused at `position_ms` (for `switch_at_ms`)."""

    target: str
    source: str | None
    entry_id: str
    position_ms: int
    switch_at_ms: int


def plan(
    state: SessionState,
    target: str,
    source_online: bool,
    now_ms: int,
    *,
    paused: bool = False,
    lead_ms: int = LEAD_MS,
) -> Prepare | None:
    """A `Prepare` when the handoff needs one; None for an immediate activation."""
    cur = state.current_entry
    if (
        paused
        or cur is None
        or not state.position.playing
        or state.active_device is None
        or state.active_device == target
        or not source_online
    ):
        return None
    at = now_ms + lead_ms
    return Prepare(target, state.active_device, cur.entry_id, state.position_at(at), at)


def switch_time(
    p: Prepare, ready_at_ms: int, start_ms: int = 0, late_lead_ms: int = LATE_LEAD_MS
) -> int:
    """The planned instant, or a little after `ready` if that came too late for it.

    A target whose output needs `start_ms` from its play call to sound starts that
    early: the start directive must reach it at least `late_lead_ms` before then
    (LATE_LEAD_MS; WARM_LEAD_MS for a warm target, which only has to seek paused)."""
    start = min(max(start_ms, 0), MAX_START_MS)
    return max(p.switch_at_ms, ready_at_ms + late_lead_ms + start)


def switch(
    state: SessionState, p: Prepare, at_ms: int
) -> tuple[SessionState, tuple[Directive, ...]] | None:
    """The state after the switch at `at_ms`, and the stop/start directives.

    None when the session changed under the transfer so that it no longer applies
    (paused, another track, another device): the caller re-plans or gives up.
    """
    cur = state.current_entry
    if (
        cur is None
        or cur.entry_id != p.entry_id
        or state.active_device != p.source
        or not state.position.playing
    ):
        return None
    pos = state.position_at(at_ms)
    new = next_version(
        state,
        replace(
            state,
            active_device=p.target,
            term=state.term + 1,
            position=Position(pos, at_ms, True, 1.0),
        ),
    )
    directives = (
        Directive(p.source, "stop", new.term, p.entry_id, pos, at_ms, False)
        if p.source is not None
        else None,
        Directive(p.target, "start", new.term, p.entry_id, pos, at_ms, True),
    )
    return new, tuple(d for d in directives if d is not None)


def vanished_source_position(state: SessionState) -> SessionState:
    """The source is gone: hold the last known position, never extrapolated from it."""
    pos = state.position
    return replace(state, position=Position(pos.position_ms, pos.at_ms, pos.playing, 0.0))
