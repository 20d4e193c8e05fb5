"""Handoff, make-before-break (`tunehand.core.transfer`), alone and through the in-memory
room of `tests.core_pair`, which drives it as the server does.

The transfer's states: planned (or an immediate activation), prepare sent, then ready
(switch at one instant with a new term), failed, or no answer within 3 s (abort: the
source keeps playing). Around them: the source vanishing, the session changing under
the transfer, and late, repeated or misaddressed answers.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core_pair import Client, Pair, connect
from tunehand.core.commands import Report, Result
from tunehand.core.model import Entry, Position, SessionState
from tunehand.core.protocol import DirectiveMsg
from tunehand.core.session import Directive
from tunehand.core.transfer import (
    LATE_LEAD_MS,
    LEAD_MS,
    MAX_START_MS,
    READY_TIMEOUT_MS,
    Prepare,
    plan,
    switch,
    switch_time,
    vanished_source_position,
)

NOW = 1_000_000
DUR = 180_000


def playing(
    *,
    position_ms: int = 10_000,
    at_ms: int = NOW - 2_000,
    active: str | None = "src",
    term: int = 5,
    version: int = 20,
    play: bool = True,
    current: str | None = "e0",
) -> SessionState:
    queue = (Entry("e0", "t0", DUR), Entry("e1", "t1", DUR))
    return SessionState(
        version=version,
        queue=queue,
        current=current,
        position=Position(position_ms, at_ms, play, 1.0 if play else 0.0),
        active_device=active,
        term=term,
        anchored=version,
    )


# --- plan: prepared switch or immediate activation ------------------------------------------


def test_plan_prepares_the_target_at_the_position_for_the_switch_instant() -> None:
    s = playing()
    p = plan(s, "dst", True, NOW)
    assert p == Prepare("dst", "src", "e0", 12_000 + LEAD_MS, NOW + LEAD_MS)
    assert p.position_ms == s.position_at(p.switch_at_ms)


def test_plan_takes_another_lead() -> None:
    p = plan(playing(), "dst", True, NOW, lead_ms=250)
    assert p is not None and (p.switch_at_ms, p.position_ms) == (NOW + 250, 12_250)


def test_plan_caps_the_prepared_position_at_the_track_end() -> None:
    p = plan(playing(position_ms=DUR - 10), "dst", True, NOW)
    assert p is not None and p.position_ms == DUR


@pytest.mark.parametrize(
    ("why", "state", "target", "source_online", "kw"),
    [
        ("paused on request", playing(), "dst", True, {"paused": True}),
        ("nothing plays", playing(play=False), "dst", True, {}),
        ("no current entry", playing(current=None), "dst", True, {}),
        ("a current entry no longer queued", playing(current="gone"), "dst", True, {}),
        ("no active device", playing(active=None), "dst", True, {}),
        ("the target already plays", playing(), "src", True, {}),
        ("the source is gone", playing(), "dst", False, {}),
    ],
)
def test_plan_is_an_immediate_activation(
    why: str, state: SessionState, target: str, source_online: bool, kw: dict[str, Any]
) -> None:
    assert plan(state, target, source_online, NOW, **kw) is None, why


# --- switch_time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready_at", "at"),
    [
        (NOW, NOW + LEAD_MS),  # ready at once
        (NOW + LEAD_MS - LATE_LEAD_MS, NOW + LEAD_MS),  # just in time
        (NOW + LEAD_MS - LATE_LEAD_MS + 1, NOW + LEAD_MS + 1),  # too late for the plan
        (NOW + 2_500, NOW + 2_500 + LATE_LEAD_MS),  # much later
    ],
)
def test_switch_time_is_the_plan_or_a_little_after_a_late_ready(ready_at: int, at: int) -> None:
    p = Prepare("dst", "src", "e0", 12_100, NOW + LEAD_MS)
    assert switch_time(p, ready_at) == at


@pytest.mark.parametrize(
    ("ready_at", "start_ms", "at"),
    [
        (NOW, 0, NOW + LEAD_MS),  # a device that starts at once: the plan
        (NOW, LEAD_MS - LATE_LEAD_MS, NOW + LEAD_MS),  # its delay fits in the plan
        (NOW, 75, NOW + LATE_LEAD_MS + 75),  # a tab's ~75 ms: the switch moves back
        (NOW + 2_500, 75, NOW + 2_500 + LATE_LEAD_MS + 75),  # a late ready, the same
        (NOW, -5, NOW + LEAD_MS),  # nonsense is no delay
        (NOW, 10**9, NOW + LATE_LEAD_MS + MAX_START_MS),  # and a huge one is capped
    ],
)
def test_a_target_with_a_start_delay_gets_the_start_directive_that_much_earlier(
    ready_at: int, start_ms: int, at: int
) -> None:
    """A target whose output takes `start_ms` to sound calls play() that early: the
    switch is planned so that its start directive can reach it before then."""
    p = Prepare("dst", "src", "e0", 12_100, NOW + LEAD_MS)
    assert switch_time(p, ready_at, start_ms) == at


# --- switch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", [NOW + LEAD_MS, NOW + 777])
def test_switch_moves_playback_at_one_instant_with_a_new_term(at: int) -> None:
    s = playing()
    p = plan(s, "dst", True, NOW)
    assert p is not None
    done = switch(s, p, at)
    assert done is not None
    new, directives = done
    pos = s.position_at(at)
    assert new == replace(
        s,
        version=21,
        anchored=21,
        active_device="dst",
        term=6,
        position=Position(pos, at, True, 1.0),
    )
    assert directives == (
        Directive("src", "stop", 6, "e0", pos, at, False),
        Directive("dst", "start", 6, "e0", pos, at, True),
    )


def test_switch_follows_a_seek_or_volume_made_while_preparing() -> None:
    s = playing()
    p = plan(s, "dst", True, NOW)
    assert p is not None
    moved = replace(s, version=21, volume=40, position=Position(90_000, NOW + 50, True, 1.0))
    done = switch(moved, p, NOW + LEAD_MS)
    assert done is not None
    new, (stop, start) = done
    assert (new.volume, new.term, new.version) == (40, 6, 22)
    assert start.position_ms == stop.position_ms == 90_050


def test_switch_without_a_source_only_starts_the_target() -> None:
    s = playing(active=None)
    done = switch(s, Prepare("dst", None, "e0", 0, NOW), NOW)
    assert done is not None
    assert [(d.device_id, d.action) for d in done[1]] == [("dst", "start")]


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("paused", {"position": Position(12_000, NOW, False, 0.0)}),
        ("another track", {"current": "e1"}),
        ("another device plays", {"active_device": "other", "term": 6}),
        ("the source vanished", {"active_device": None, "term": 6}),
        ("the queue was cleared", {"queue": (), "current": None}),
    ],
)
def test_switch_gives_up_when_the_session_changed_under_it(
    why: str, change: dict[str, Any]
) -> None:
    s = playing()
    p = plan(s, "dst", True, NOW)
    assert p is not None
    assert switch(replace(s, version=21, **change), p, NOW + LEAD_MS) is None, why


def test_a_repeated_switch_does_nothing() -> None:
    s = playing()
    p = plan(s, "dst", True, NOW)
    assert p is not None
    done = switch(s, p, NOW + LEAD_MS)
    assert done is not None
    assert switch(done[0], p, NOW + LEAD_MS + 5) is None


def test_vanished_source_position_holds_the_last_known_position() -> None:
    s = playing()
    held = vanished_source_position(s)
    assert held.position == Position(10_000, NOW - 2_000, True, 0.0)
    assert held.position_at(NOW + 60_000) == 10_000
    assert (held.version, held.active_device, held.term) == (s.version, "src", s.term)


# --- through the room ---------------------------------------------------------------------------


def started(*devices: str, position_ms: int = 4_000) -> Pair:
    """`a` plays t1 (of t1, t2), reported at `position_ms` a moment ago; all have the state."""
    pair = connect(*devices)
    a = pair.a
    a.send("queue_add", track_ids=("t1", "t2"))
    a.send("play", device_id="a")
    pair.flush()
    state = pair.room.state
    assert (state.active_device, state.term, state.position.playing) == ("a", 1, True)
    pair.room.report("a", Report(1, state.current, position_ms, pair.room.now_ms, True, 1.0))
    pair.room.advance(1_000)
    pair.flush()
    a.directives.clear()
    a.results.clear()
    return pair


def result(c: Client, command_id: str) -> Result:
    [res] = [r for r in c.results if r.command_id == command_id]
    return res


def only_prepare(c: Client) -> DirectiveMsg:
    [p] = c.directives
    assert p.action == "prepare"
    return p


def test_ready_switches_both_devices_at_the_planned_instant() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    before = room.state
    cmd = a.send("transfer", device_id="b")
    assert a.shown().active_device == "b"  # predicted at once
    pair.flush()
    p = only_prepare(b)
    assert (p.term, p.entry_id, p.playing) == (1, before.current, True)
    assert (p.at_ms, p.position_ms) == (room.now_ms + LEAD_MS, 5_000 + LEAD_MS)
    assert room.state == before  # nothing moves until the target is ready
    assert a.directives == [] and a.results == []
    room.advance(15)
    b.answer()
    assert not room.transfers
    new = room.state
    assert (new.active_device, new.term, new.version) == ("b", 2, before.version + 1)
    assert new.position == Position(p.position_ms, p.at_ms, True, 1.0)
    pair.flush()
    [stop] = a.directives
    start = b.directives[-1]
    assert (stop.action, stop.term, stop.at_ms, stop.playing) == ("stop", 2, p.at_ms, False)
    assert (start.action, start.term, start.at_ms, start.playing) == ("start", 2, p.at_ms, True)
    assert start.position_ms == p.position_ms
    assert result(a, cmd.command_id) == Result(cmd.command_id, "ok", "", new.version)
    assert pair.converged()
    # the new term fences the old device
    late = Report(1, new.current, 5_200, room.now_ms, True, 1.0)
    assert room.report("a", late) == "stale_term"


def test_a_late_ready_switches_a_little_after_it_where_playback_has_got_to() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    a.send("transfer", device_id="b")
    pair.flush()
    p = only_prepare(b)
    room.advance(1_800)
    b.answer()
    pair.flush()
    start = b.directives[-1]
    assert start.at_ms == room.now_ms + LATE_LEAD_MS > p.at_ms
    assert start.position_ms == 5_000 + 1_800 + LATE_LEAD_MS
    assert a.directives[-1].at_ms == start.at_ms


def test_a_ready_with_a_start_delay_switches_later_where_playback_has_got_to() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    a.send("transfer", device_id="b")
    pair.flush()
    p = only_prepare(b)
    room.advance(30)
    b.answer(start_ms=80)
    pair.flush()
    start = b.directives[-1]
    assert start.at_ms == room.now_ms + LATE_LEAD_MS + 80 > p.at_ms
    assert start.position_ms == 5_000 + 30 + LATE_LEAD_MS + 80
    assert a.directives[-1].at_ms == start.at_ms  # the source stops at that instant too


def test_failed_aborts_and_the_source_keeps_playing() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    before = room.state
    cmd = a.send("transfer", device_id="b")
    pair.flush()
    b.answer(ok=False, message="no audio output")
    pair.flush()
    assert room.state == before
    assert not room.transfers
    res = result(a, cmd.command_id)
    assert res.code == "transfer_failed"
    assert res.message == "transfer aborted (no audio output); playback stays where it was"
    assert a.directives == []  # the source was never told to stop
    only_prepare(b)  # and the target never to start
    # a's prediction is rolled back and the refusal is there to show
    assert a.shown().active_device == "a" and a.shown().position.playing
    assert [r.command_id for r in a.mirror.refused] == [cmd.command_id]
    assert pair.converged()


def test_failed_without_a_reason_says_the_device_cannot_play_it() -> None:
    pair = started("a", "b")
    cmd = pair.a.send("transfer", device_id="b")
    pair.flush()
    pair.b.answer(ok=False)
    pair.flush()
    assert "(cannot play it)" in result(pair.a, cmd.command_id).message


def test_no_answer_within_3_s_aborts_and_the_source_keeps_playing() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    before = room.state
    cmd = a.send("transfer", device_id="b")
    pair.flush()
    only_prepare(b)
    room.advance(READY_TIMEOUT_MS - 1)
    assert room.transfers and room.state == before
    room.advance(1)
    assert not room.transfers
    pair.flush()
    res = result(a, cmd.command_id)
    assert res.code == "transfer_failed" and "not ready within 3 s" in res.message
    assert room.state == before and room.state.position.playing
    assert a.directives == []
    # the answer that comes after the abort changes nothing
    b.answer()
    pair.flush()
    assert room.state == before
    assert len([r for r in a.results if r.command_id == cmd.command_id]) == 1


def test_a_repeated_ready_switches_once() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    cmd = a.send("transfer", device_id="b")
    pair.flush()
    b.answer()
    after = room.state
    b.answer()
    b.answer(ok=False)
    pair.flush()
    assert room.state == after and after.term == 2
    assert [d.action for d in a.directives] == ["stop"]
    assert [d.action for d in b.directives] == ["prepare", "start"]
    assert len([r for r in a.results if r.command_id == cmd.command_id]) == 1


def test_an_answer_from_another_device_or_for_another_transfer_is_ignored() -> None:
    pair = started("a", "b", "c")
    a, b, c, room = pair.a, pair.b, pair.c, pair.room
    before = room.state
    a.send("transfer", device_id="b")
    pair.flush()
    tid = only_prepare(b).transfer_id
    c.answer(transfer_id=tid)
    a.answer(ok=False, transfer_id=tid)
    b.answer(transfer_id="x-unknown")
    assert room.state == before and set(room.transfers) == {tid}
    b.answer()
    assert room.state.active_device == "b"


def test_a_retried_transfer_command_is_answered_once_it_is_done() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    cmd = a.send("transfer", device_id="b")
    pair.flush()
    b.answer()
    pair.flush()
    after = room.state
    a.send_command(cmd)
    pair.flush()
    assert room.state == after
    assert [d.action for d in b.directives] == ["prepare", "start"]
    assert [r.code for r in a.results if r.command_id == cmd.command_id] == ["ok", "ok"]


def test_the_source_vanishing_while_the_target_prepares() -> None:
    """The session is paused where the source was lost; the ready target then takes it
    over paused (a plain activation), with one term for the loss and one for it."""
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    cmd = a.send("transfer", device_id="b")
    a.transmit()
    room.advance(300)
    room.disconnect("a")
    lost = room.state
    assert (lost.active_device, lost.term, lost.position.playing) == (None, 2, False)
    assert lost.position.position_ms == 5_300
    b.receive()
    b.answer()
    b.receive()
    new = room.state
    assert (new.active_device, new.term, new.position.playing) == ("b", 3, False)
    assert new.position.position_ms == 5_300
    start = b.directives[-1]
    assert (start.action, start.term, start.playing, start.position_ms) == (
        "start",
        3,
        False,
        5_300,
    )
    assert room.results[cmd.command_id].ok
    assert a.directives == []


def test_the_target_vanishing_while_it_prepares_aborts_after_3_s() -> None:
    pair = started("a", "b")
    a, room = pair.a, pair.room
    before = room.state
    cmd = a.send("transfer", device_id="b")
    pair.flush()
    room.disconnect("b")
    room.advance(READY_TIMEOUT_MS)
    a.receive()
    assert result(a, cmd.command_id).code == "transfer_failed"
    assert room.state == before


@pytest.mark.parametrize(
    ("op", "fields", "playing", "entry"),
    [
        ("pause", {}, False, 0),
        ("next", {}, True, 1),
    ],
)
def test_the_session_changing_while_preparing_is_applied_plainly_on_ready(
    op: str, fields: dict[str, Any], playing: bool, entry: int
) -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    a.send("transfer", device_id="b")
    pair.flush()
    a.send(op, **fields)
    pair.flush()
    changed = room.state
    b.answer()
    pair.flush()
    new = room.state
    assert (new.active_device, new.term, new.position.playing) == ("b", 2, playing)
    assert new.current == changed.queue[entry].entry_id
    start = b.directives[-1]
    assert (start.action, start.term, start.entry_id, start.playing) == (
        "start",
        2,
        new.current,
        playing,
    )
    assert [(d.action, d.term) for d in a.directives] == [("stop", 2)]
    assert pair.converged()


def test_a_seek_while_preparing_is_kept_by_the_switch() -> None:
    pair = started("a", "b")
    a, b, room = pair.a, pair.b, pair.room
    a.send("transfer", device_id="b")
    pair.flush()
    a.send("seek", position_ms=60_000)
    pair.flush()
    b.answer()
    pair.flush()
    start = b.directives[-1]
    assert start.action == "start"
    assert start.position_ms == 60_000 + (start.at_ms - room.state.position.at_ms)
    assert start.position_ms == room.state.position.position_ms
    assert start.at_ms == room.now_ms + LEAD_MS  # the instant the prepare planned


@pytest.mark.parametrize(
    ("why", "setup", "fields"),
    [
        ("paused on request", None, {"paused": True}),
        ("nothing plays", "pause", {}),
        ("the source is offline", "drop_source", {}),
    ],
)
def test_immediate_activations_need_no_prepare(
    why: str, setup: str | None, fields: dict[str, Any]
) -> None:
    pair = started("a", "b", "c")
    b, c, room = pair.b, pair.c, pair.room
    if setup == "pause":
        pair.a.send("pause")
        pair.flush()
    elif setup == "drop_source":
        # the room lost a without noticing yet (its channel is not closed)
        del room.clients["a"]
        pair.clients.remove(pair.a)
    before = room.state
    cmd = c.send("transfer", device_id="b", **fields)
    c.transmit()
    assert not room.transfers, why
    assert room.state.active_device == "b" and room.state.term == before.term + 1
    assert room.results[cmd.command_id].ok
    pair.flush()
    assert [d.action for d in b.directives] == ["start"]


def test_to_an_offline_device_is_refused() -> None:
    pair = started("a", "b")
    cmd = pair.a.send("transfer", device_id="nowhere")
    pair.flush()
    assert result(pair.a, cmd.command_id).code == "device_offline"
    assert not pair.b.directives


# --- property: any schedule of answers, losses and commands --------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 2_000)),
        st.tuples(st.sampled_from(["ready", "failed", "ready_again", "lose_a", "lose_b"])),
        st.tuples(st.just("cmd"), st.sampled_from(["pause", "play", "next", "seek", "volume"])),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, database=None)
@given(steps=STEPS, deliver_early=st.booleans())
def test_any_schedule_keeps_one_player_per_term_and_one_answer(
    steps: list[tuple[Any, ...]], deliver_early: bool
) -> None:
    pair = started("a", "b", "c")
    a, b, c, room = pair.a, pair.b, pair.c, pair.room
    everyone = [a, b, c]
    first = room.state
    cmd = c.send("transfer", device_id="b")
    c.transmit()
    if deliver_early:
        pair.flush()
    for step in steps:
        kind = step[0]
        if kind == "advance":
            room.advance(step[1])
        elif kind in ("ready", "failed", "ready_again") and "b" in room.clients:
            b.receive()
            if b.prepares():
                b.answer(ok=kind != "failed")
                if kind == "ready_again":
                    b.answer()
        elif kind == "lose_a" and "a" in room.clients:
            room.disconnect("a")
            pair.clients.remove(a)
        elif kind == "lose_b" and "b" in room.clients:
            room.disconnect("b")
            pair.clients.remove(b)
        elif kind == "cmd":
            fields: dict[str, Any] = {"seek": {"position_ms": 30_000}, "volume": {"value": 50}}
            c.send(step[1], **fields.get(step[1], {}))
            c.transmit()
    room.advance(READY_TIMEOUT_MS)  # whatever was left waiting is aborted now
    pair.flush()

    assert not room.transfers
    assert pair.converged()
    # exactly one answer to the transfer, whatever happened
    [res] = [r for r in c.results if r.command_id == cmd.command_id]
    assert res == room.results[cmd.command_id]
    # terms never go back, and the playing device only changes with a new term
    states = [room.history[v] for v in sorted(room.history) if v >= first.version]
    for old, new in itertools.pairwise(states):
        assert new.term >= old.term
        if new.active_device != old.active_device:
            assert new.term == old.term + 1
            # playback goes on from where it was at the switch, never jumps
            if new.position.playing and old.active_device is not None:
                assert new.position.position_ms == old.position_at(new.position.at_ms)
    # no two devices were ever told to play under the same term
    starts = [
        (d.term, cl.device_id) for cl in everyone for d in cl.directives if d.action == "start"
    ]
    assert len({t for t, _ in starts}) == len(starts)
    # a stop and a start of one switch name the same term and instant
    stops = {(d.term, d.at_ms) for d in a.directives if d.action == "stop"}
    for d in b.directives:
        if d.action == "start" and d.term in {t for t, _ in stops}:
            assert (d.term, d.at_ms) in stops
    if res.code == "transfer_failed":
        # an abort leaves playback where it was: b never got to play
        assert all(s.active_device != "b" for s in states)
        assert not [d for d in b.directives if d.action == "start"]
    else:
        assert res.ok
        assert any(s.active_device == "b" for s in states)
