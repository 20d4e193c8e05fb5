"""The pure session core: every command, validation, reports, device loss, and invariants.

No I/O, no clock: time, seeds and the set of online devices go in through `Context`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunehand.core.commands import MAX_ID_LEN, Command, Report, coalesce_replay, validate
from tunehand.core.model import (
    MAX_QUEUE,
    Entry,
    PlayFailure,
    Position,
    SessionState,
    StreamInfo,
)
from tunehand.core.session import (
    PREV_RESTARTS_AFTER_MS,
    REANCHOR_TOLERANCE_MS,
    Context,
    Directive,
    Outcome,
    apply,
    apply_report,
    device_lost,
)

NOW = 1_000_000
DUR = 180_000
DURATIONS = {f"t{i}": DUR for i in range(50)} | {"radio": 0, "odd": -5}


def ctx(
    now: int = NOW, online: tuple[str, ...] = ("d1",), seed: int = 0, sender: str | None = None
) -> Context:
    return Context(now, DURATIONS, online, seed, sender)


def cmd(op: str, **fields: Any) -> Command:
    return Command(op, fields.pop("command_id", f"c-{op}"), **fields)  # type: ignore[arg-type]


def make(
    n: int = 4,
    current: int | None = 0,
    *,
    playing: bool = False,
    position_ms: int = 0,
    at_ms: int = NOW,
    rate: float | None = None,
    active: str | None = "d1",
    term: int = 1,
    version: int = 10,
    **kw: Any,
) -> SessionState:
    """A queue e0..e{n-1} (tracks t0.., 180 s each), anchored at `at_ms`."""
    queue = tuple(Entry(f"e{i}", f"t{i}", DUR) for i in range(n))
    if rate is None:
        rate = 1.0 if playing else 0.0
    return SessionState(
        version=version,
        queue=queue,
        current=None if current is None else f"e{current}",
        position=Position(position_ms, at_ms, playing, rate),
        active_device=active,
        term=term,
        **kw,
    )


def ok(state: SessionState, command: Command, c: Context | None = None) -> Outcome:
    out = apply(state, command, c or ctx())
    assert out.result.code == "ok", out.result
    assert out.state.version == state.version + 1
    assert out.result.version == out.state.version
    assert out.changed
    return out


def refused(state: SessionState, command: Command, code: str, c: Context | None = None) -> str:
    out = apply(state, command, c or ctx())
    assert out.result.code == code, out.result
    assert out.state is state
    assert out.result.version == 0
    assert not out.changed
    assert out.directives == ()
    return out.result.message


def ids(state: SessionState) -> list[str]:
    return [e.entry_id for e in state.queue]


def starting(position_ms: int, at_ms: int = NOW) -> Position:
    """Playing but not yet audible: the clock holds until the device reports."""
    return Position(position_ms, at_ms, True, 0.0)


def stopped(position_ms: int, at_ms: int = NOW) -> Position:
    return Position(position_ms, at_ms, False, 0.0)


# --- play ---------------------------------------------------------------------------


class TestPlay:
    def test_resume_from_pause_keeps_the_position_and_holds_the_clock(self) -> None:
        s = make(position_ms=42_000, at_ms=NOW - 5_000)
        out = ok(s, cmd("play"))
        assert out.state.current == "e0"
        assert out.state.position == starting(42_000)
        assert out.directives == ()  # the active device follows the state

    def test_resume_while_playing_changes_nothing_but_the_version(self) -> None:
        s = make(playing=True, position_ms=1_000, at_ms=NOW - 2_000)
        out = ok(s, cmd("play"))
        assert replace(out.state, version=s.version) == s

    def test_resume_with_position_restarts_there(self) -> None:
        s = make(playing=True, position_ms=1_000, at_ms=NOW - 2_000)
        out = ok(s, cmd("play", position_ms=30_000))
        assert out.state.position == starting(30_000)

    def test_resume_with_nothing_current_starts_the_first_entry_in_play_order(self) -> None:
        out = ok(make(current=None), cmd("play", position_ms=5_000))
        assert out.state.current == "e0"
        assert out.state.position == starting(5_000)
        shuffled = make(current=None, shuffle=True, order=("e2", "e0", "e3", "e1"))
        assert ok(shuffled, cmd("play")).state.current == "e2"

    def test_resume_with_an_empty_queue_is_refused(self) -> None:
        msg = refused(make(n=0, current=None), cmd("play"), "empty_queue")
        assert "empty" in msg

    def test_track_ids_are_inserted_after_current_and_the_first_plays(self) -> None:
        s = make(current=1, position_ms=9_000)
        out = ok(s, cmd("play", track_ids=("t7", "radio")))
        new = [e.entry_id for e in out.state.queue[2:4]]
        assert ids(out.state) == ["e0", "e1", *new, "e2", "e3"]
        assert out.state.current == new[0]
        assert out.state.position == starting(0)
        assert [(e.track_id, e.duration_ms) for e in out.state.queue[2:4]] == [
            ("t7", DUR),
            ("radio", 0),
        ]

    def test_track_ids_with_nothing_current_go_to_the_front(self) -> None:
        out = ok(make(current=None), cmd("play", track_ids=("t9",)))
        assert out.state.queue[0].track_id == "t9"
        assert out.state.current == out.state.queue[0].entry_id

    def test_track_ids_with_position_start_there(self) -> None:
        out = ok(make(), cmd("play", track_ids=("t9",), position_ms=12_000))
        assert out.state.position == starting(12_000)

    def test_replace_with_index_replaces_the_queue_and_starts_there(self) -> None:
        s = make(shuffle=False)
        out = ok(s, cmd("play", track_ids=("t5", "t6", "t7"), replace=True, index=1))
        assert [e.track_id for e in out.state.queue] == ["t5", "t6", "t7"]
        assert out.state.current == out.state.queue[1].entry_id
        assert out.state.order == ()
        assert out.state.position == starting(0)

    def test_replace_index_past_the_end_starts_the_last_entry(self) -> None:
        out = ok(make(), cmd("play", track_ids=("t5", "t6"), replace=True, index=9))
        assert out.state.current == out.state.queue[-1].entry_id

    def test_replace_while_shuffled_reshuffles_with_the_started_entry_first(self) -> None:
        s = make(shuffle=True, order=("e1", "e0", "e2", "e3"))
        tracks = tuple(f"t{i}" for i in range(10, 18))
        out = ok(s, cmd("play", track_ids=tracks, replace=True, index=3))
        st_ = out.state
        assert st_.order[0] == st_.current == st_.queue[3].entry_id
        assert sorted(st_.order) == sorted(ids(st_))

    def test_play_entry_jumps_to_it(self) -> None:
        out = ok(make(current=0, position_ms=50_000), cmd("play", entry_id="e2"))
        assert out.state.current == "e2"
        assert out.state.position == starting(0)
        out = ok(make(), cmd("play", entry_id="e3", position_ms=7_000))
        assert out.state.position == starting(7_000)

    def test_play_paused_lands_at_the_entry_and_place_without_playing(self) -> None:
        """A device back from offline, paused there: one command, never playing."""
        s = make(playing=True, position_ms=5_000, at_ms=NOW - 1_000)
        out = ok(s, cmd("play", entry_id="e2", position_ms=61_000, paused=True))
        assert out.state.current == "e2"
        assert out.state.position == stopped(61_000)
        assert out.directives == ()

    def test_play_paused_activates_a_device_with_a_paused_start(self) -> None:
        s = make(active=None, position_ms=3_000)
        out = ok(s, cmd("play", entry_id="e1", position_ms=9_000, device_id="d1", paused=True))
        assert out.state.position == stopped(9_000) and out.state.active_device == "d1"
        [d] = out.directives
        assert d.action == "start" and d.entry_id == "e1" and d.position_ms == 9_000
        assert d.playing is False

    def test_plain_play_paused_pauses_a_playing_session_and_keeps_a_paused_one(self) -> None:
        s = make(playing=True, position_ms=10_000, at_ms=NOW - 2_000)
        assert ok(s, cmd("play", paused=True)).state.position == stopped(12_000)
        paused = make(position_ms=7_000, at_ms=NOW - 3_000)
        out = ok(paused, cmd("play", paused=True))  # only the version moves, as for play
        assert out.state.position == paused.position

    def test_play_unknown_entry_is_refused(self) -> None:
        assert "e9" in refused(make(), cmd("play", entry_id="e9"), "not_found")


class TestDeviceChoice:
    def test_no_device_online_is_refused(self) -> None:
        s = make(active=None)
        msg = refused(s, cmd("play"), "no_device", ctx(online=()))
        assert "receiver" in msg or "resume" in msg

    def test_the_only_online_device_is_chosen_and_told_to_start(self) -> None:
        s = make(active=None, term=4, position_ms=3_000)
        out = ok(s, cmd("play"), ctx(online=("box",)))
        assert out.state.active_device == "box"
        assert out.state.term == 5
        assert out.directives == (Directive("box", "start", 5, "e0", 3_000, NOW, True),)

    def test_several_online_devices_are_named(self) -> None:
        s = make(active=None)
        msg = refused(s, cmd("play"), "no_device", ctx(online=("kitchen", "desk")))
        assert "kitchen" in msg and "desk" in msg

    def test_device_id_chooses_among_several(self) -> None:
        s = make(active=None, term=2)
        out = ok(s, cmd("play", device_id="desk"), ctx(online=("kitchen", "desk")))
        assert out.state.active_device == "desk"
        assert out.state.term == 3
        assert [d.device_id for d in out.directives] == ["desk"]

    def test_device_id_that_is_offline_is_refused(self) -> None:
        s = make(active=None)
        msg = refused(s, cmd("play", device_id="attic"), "device_offline", ctx(online=("desk",)))
        assert "attic" in msg

    def test_an_active_device_is_kept_whatever_device_id_says(self) -> None:
        out = ok(make(active="d1"), cmd("play", device_id="desk"), ctx(online=("desk", "d1")))
        assert out.state.active_device == "d1"
        assert out.state.term == 1
        assert out.directives == ()

    def test_activation_of_an_already_playing_session_still_starts_the_device(self) -> None:
        s = make(active=None, playing=True, rate=0.0, position_ms=8_000)
        out = ok(s, cmd("play"), ctx(online=("box",)))
        assert out.directives[0].action == "start"
        assert out.directives[0].position_ms == 8_000


class TestPauseToggle:
    def test_pause_freezes_the_extrapolated_position(self) -> None:
        s = make(playing=True, position_ms=10_000, at_ms=NOW - 2_500)
        out = ok(s, cmd("pause"))
        assert out.state.position == stopped(12_500)

    def test_pause_while_starting_does_not_run_the_clock(self) -> None:
        s = make(playing=True, rate=0.0, position_ms=10_000, at_ms=NOW - 2_500)
        assert ok(s, cmd("pause")).state.position == stopped(10_000)

    def test_pause_when_paused_changes_nothing_but_the_version(self) -> None:
        s = make(position_ms=5_000)
        assert replace(ok(s, cmd("pause")).state, version=s.version) == s

    def test_toggle_both_ways(self) -> None:
        playing = make(playing=True, position_ms=1_000, at_ms=NOW - 1_000)
        paused = ok(playing, cmd("toggle")).state
        assert paused.position == stopped(2_000)
        resumed = ok(paused, cmd("toggle"), ctx(now=NOW + 60_000)).state
        assert resumed.position == starting(2_000, NOW + 60_000)

    def test_toggle_with_no_device_is_refused_like_play(self) -> None:
        refused(make(active=None), cmd("toggle"), "no_device", ctx(online=()))


# --- next / prev ----------------------------------------------------------------------


class TestNextPrev:
    def test_next_plays_the_following_entry_from_its_start(self) -> None:
        out = ok(make(current=1, playing=True, position_ms=9_000), cmd("next"))
        assert out.state.current == "e2"
        assert out.state.position == starting(0)

    def test_next_while_paused_stays_paused(self) -> None:
        out = ok(make(current=1, position_ms=9_000), cmd("next"))
        assert out.state.current == "e2"
        assert out.state.position == stopped(0)

    def test_next_at_the_end_with_repeat_off_stops_on_the_last_entry(self) -> None:
        out = ok(make(current=3, playing=True, position_ms=9_000), cmd("next"))
        assert out.state.current == "e3"
        assert out.state.position == stopped(0)

    def test_next_at_the_end_with_repeat_all_wraps(self) -> None:
        out = ok(make(current=3, playing=True, repeat="all"), cmd("next"))
        assert out.state.current == "e0"
        assert out.state.position == starting(0)

    def test_next_with_repeat_one_still_moves_on(self) -> None:
        assert ok(make(current=1, repeat="one"), cmd("next")).state.current == "e2"
        assert ok(make(current=3, repeat="one"), cmd("next")).state.current == "e0"

    def test_next_with_nothing_current_starts_the_first(self) -> None:
        assert ok(make(current=None), cmd("next")).state.current == "e0"

    def test_next_follows_the_shuffle_order(self) -> None:
        s = make(current=2, shuffle=True, order=("e2", "e0", "e3", "e1"))
        assert ok(s, cmd("next")).state.current == "e0"
        last = make(current=1, shuffle=True, order=("e2", "e0", "e3", "e1"), repeat="all")
        assert ok(last, cmd("next")).state.current == "e2"

    def test_next_and_prev_on_an_empty_queue_are_refused(self) -> None:
        refused(make(n=0, current=None), cmd("next"), "empty_queue")
        refused(make(n=0, current=None), cmd("prev"), "empty_queue")

    def test_prev_within_three_seconds_goes_back(self) -> None:
        s = make(current=2, playing=True, position_ms=1_000, at_ms=NOW - 1_000)
        out = ok(s, cmd("prev"))
        assert out.state.current == "e1"
        assert out.state.position == starting(0)

    def test_prev_after_three_seconds_restarts_the_current_entry(self) -> None:
        s = make(current=2, playing=True, position_ms=1_000, at_ms=NOW - 2_001)
        out = ok(s, cmd("prev"))
        assert out.state.current == "e2"
        assert out.state.position == starting(0)

    def test_prev_at_exactly_three_seconds_still_goes_back(self) -> None:
        s = make(current=2, position_ms=PREV_RESTARTS_AFTER_MS)
        assert ok(s, cmd("prev")).state.current == "e1"

    def test_prev_while_paused_stays_paused(self) -> None:
        out = ok(make(current=2, position_ms=100_000), cmd("prev"))
        assert out.state.current == "e2"
        assert out.state.position == stopped(0)

    def test_prev_on_the_first_entry(self) -> None:
        assert ok(make(current=0), cmd("prev")).state.current == "e0"
        assert ok(make(current=0, repeat="one"), cmd("prev")).state.current == "e0"
        assert ok(make(current=0, repeat="all"), cmd("prev")).state.current == "e3"

    def test_prev_follows_the_shuffle_order(self) -> None:
        s = make(current=3, shuffle=True, order=("e2", "e0", "e3", "e1"))
        assert ok(s, cmd("prev")).state.current == "e0"

    def test_prev_with_nothing_current_picks_the_first(self) -> None:
        assert ok(make(current=None), cmd("prev")).state.current == "e0"


# --- seek / volume ----------------------------------------------------------------------


class TestSeek:
    @pytest.mark.parametrize(
        ("position_ms", "expected"), [(0, 0), (60_000, 60_000), (DUR, DUR), (DUR + 1, DUR)]
    )
    def test_absolute_is_clamped_to_the_duration(self, position_ms: int, expected: int) -> None:
        out = ok(make(position_ms=5_000), cmd("seek", position_ms=position_ms))
        assert out.state.position == stopped(expected)

    @pytest.mark.parametrize(
        ("delta_ms", "expected"),
        [(10_000, 25_000), (-10_000, 5_000), (-20_000, 0), (DUR, DUR)],
    )
    def test_relative_is_from_the_extrapolated_position_and_clamped(
        self, delta_ms: int, expected: int
    ) -> None:
        s = make(playing=True, position_ms=10_000, at_ms=NOW - 5_000)
        out = ok(s, cmd("seek", delta_ms=delta_ms))
        assert out.state.position == starting(expected)

    def test_unknown_duration_has_no_upper_bound(self) -> None:
        s = replace(make(), queue=(Entry("e0", "radio", 0),))
        assert ok(s, cmd("seek", position_ms=10**9)).state.position.position_ms == 10**9

    def test_nothing_current_is_refused(self) -> None:
        refused(make(current=None), cmd("seek", position_ms=1), "empty_queue")


class TestVolume:
    @pytest.mark.parametrize(("value", "expected"), [(0, 0), (37, 37), (100, 100)])
    def test_absolute(self, value: int, expected: int) -> None:
        assert ok(make(volume=50), cmd("volume", value=value)).state.volume == expected

    @pytest.mark.parametrize(
        ("start", "delta", "expected"), [(50, 10, 60), (95, 10, 100), (5, -10, 0), (50, -500, 0)]
    )
    def test_relative_is_clamped(self, start: int, delta: int, expected: int) -> None:
        assert ok(make(volume=start), cmd("volume", delta=delta)).state.volume == expected

    def test_needs_no_device_and_no_queue(self) -> None:
        s = SessionState()
        assert ok(s, cmd("volume", value=3), ctx(online=())).state.volume == 3


# --- shuffle / repeat ---------------------------------------------------------------------


class TestShuffle:
    def test_permutation_is_deterministic_for_a_seed(self) -> None:
        s = make(n=12, current=5)
        a = ok(s, cmd("shuffle", on=True), ctx(seed=42)).state.order
        b = ok(s, cmd("shuffle", on=True), ctx(seed=42)).state.order
        c = ok(s, cmd("shuffle", on=True), ctx(seed=43)).state.order
        assert a == b
        assert a != c

    @pytest.mark.parametrize("seed", range(5))
    def test_current_first_then_every_other_entry_once(self, seed: int) -> None:
        s = make(n=12, current=5)
        out = ok(s, cmd("shuffle", on=True), ctx(seed=seed))
        assert out.state.shuffle
        assert out.state.order[0] == "e5"
        assert sorted(out.state.order) == sorted(ids(s))
        assert out.state.current == "e5"  # shuffling never jumps
        assert out.state.play_order() == out.state.order

    def test_with_nothing_current_it_is_a_full_permutation(self) -> None:
        out = ok(make(n=6, current=None), cmd("shuffle", on=True), ctx(seed=1))
        assert sorted(out.state.order) == sorted(ids(out.state))

    def test_on_again_reshuffles(self) -> None:
        s = ok(make(n=12, current=0), cmd("shuffle", on=True), ctx(seed=1)).state
        again = ok(s, cmd("shuffle", on=True), ctx(seed=2)).state
        assert again.order != s.order
        assert again.order[0] == "e0"

    def test_off_clears_the_order(self) -> None:
        s = ok(make(n=6), cmd("shuffle", on=True), ctx(seed=1)).state
        off = ok(s, cmd("shuffle", on=False)).state
        assert not off.shuffle
        assert off.order == ()
        assert off.play_order() == tuple(ids(off))

    def test_on_with_an_empty_queue_then_adding_keeps_a_full_order(self) -> None:
        s = ok(SessionState(), cmd("shuffle", on=True)).state
        s = ok(s, cmd("queue_next", track_ids=("t1",))).state
        s = ok(s, cmd("queue_add", track_ids=("t2",))).state
        s = ok(s, cmd("play", track_ids=("t3",)), ctx(online=("d1",))).state
        assert sorted(s.order) == sorted(ids(s))


class TestRepeat:
    @pytest.mark.parametrize("mode", ["off", "all", "one"])
    def test_sets_the_mode(self, mode: str) -> None:
        assert ok(make(repeat="off"), cmd("repeat", mode=mode)).state.repeat == mode


# --- queue edits ------------------------------------------------------------------------


class TestQueueAddNext:
    def test_add_appends_with_durations_from_the_context(self) -> None:
        out = ok(make(n=2), cmd("queue_add", track_ids=("t9", "radio", "odd", "unknown")))
        added = out.state.queue[2:]
        assert [e.track_id for e in added] == ["t9", "radio", "odd", "unknown"]
        assert [e.duration_ms for e in added] == [DUR, 0, 0, 0]
        assert out.state.current == "e0"  # adding never changes what plays
        assert out.state.order == ()

    def test_add_while_shuffled_appends_to_the_order(self) -> None:
        s = make(n=3, shuffle=True, order=("e0", "e2", "e1"))
        out = ok(s, cmd("queue_add", track_ids=("t9",)))
        new = out.state.queue[-1].entry_id
        assert out.state.order == ("e0", "e2", "e1", new)

    def test_next_inserts_right_after_current(self) -> None:
        out = ok(make(n=4, current=1), cmd("queue_next", track_ids=("t8", "t9")))
        assert [e.track_id for e in out.state.queue] == ["t0", "t1", "t8", "t9", "t2", "t3"]
        assert out.state.current == "e1"
        assert out.state.position == make().position

    def test_next_with_nothing_current_inserts_at_the_front(self) -> None:
        out = ok(make(n=2, current=None), cmd("queue_next", track_ids=("t9",)))
        assert [e.track_id for e in out.state.queue] == ["t9", "t0", "t1"]

    def test_next_while_shuffled_plays_after_current_in_the_order(self) -> None:
        s = make(n=4, current=3, shuffle=True, order=("e1", "e3", "e0", "e2"))
        out = ok(s, cmd("queue_next", track_ids=("t8", "t9")))
        a, b = (e.entry_id for e in out.state.queue[4:6])
        assert out.state.order == ("e1", "e3", a, b, "e0", "e2")
        assert ok(out.state, cmd("next")).state.current == a

    def test_entry_ids_are_unique_across_insertions(self) -> None:
        s = SessionState()
        seen: list[str] = []
        c = ctx()
        for i, command in enumerate(
            [
                cmd("queue_add", track_ids=("t1", "t2")),
                cmd("queue_next", track_ids=("t1",)),
                cmd("play", track_ids=("t1", "t1")),
                cmd("queue_remove", entry_ids=("e1.0",)),
                cmd("queue_add", track_ids=("t3",)),
                cmd("play", track_ids=("t1",), replace=True),
                cmd("queue_clear"),
                cmd("queue_add", track_ids=("t1", "t1", "t1")),
            ]
        ):
            s = ok(s, command, replace(c, now_ms=NOW + i)).state
            seen.extend(e.entry_id for e in s.queue if e.entry_id not in seen)
        s = ok(s, cmd("queue_replace", track_ids=("t1", "t2"), if_version=s.version)).state
        seen.extend(ids(s))
        assert len(seen) == len(set(seen)) == 12

    @pytest.mark.parametrize(
        "command",
        [
            cmd("queue_add", track_ids=("t1",)),
            cmd("queue_next", track_ids=("t1",)),
            cmd("play", track_ids=("t1",)),
        ],
    )
    def test_the_queue_is_bounded(self, command: Command) -> None:
        full = make(n=MAX_QUEUE)
        assert str(MAX_QUEUE) in refused(full, command, "invalid")
        ok(make(n=MAX_QUEUE - 1), command)

    def test_a_full_replace_fits(self) -> None:
        tracks = ("t1",) * MAX_QUEUE
        out = ok(make(n=MAX_QUEUE), cmd("play", track_ids=tracks, replace=True))
        assert len(out.state.queue) == MAX_QUEUE
        too_many = cmd("queue_replace", track_ids=(*tracks, "t2"), if_version=10)
        assert "track_ids" in refused(make(), too_many, "invalid")


class TestQueueRemove:
    def test_removing_other_entries_keeps_current(self) -> None:
        s = make(n=5, current=2, playing=True, position_ms=7_000, at_ms=NOW - 1)
        out = ok(s, cmd("queue_remove", entry_ids=("e0", "e4")))
        assert ids(out.state) == ["e1", "e2", "e3"]
        assert out.state.current == "e2"
        assert out.state.position == s.position

    def test_removing_current_moves_to_the_next_surviving_entry(self) -> None:
        s = make(n=5, current=1, playing=True, position_ms=7_000)
        out = ok(s, cmd("queue_remove", entry_ids=("e1", "e2")))
        assert ids(out.state) == ["e0", "e3", "e4"]
        assert out.state.current == "e3"
        assert out.state.position == starting(0)

    def test_removing_current_while_paused_stays_paused(self) -> None:
        out = ok(make(n=3, current=0, position_ms=7_000), cmd("queue_remove", entry_ids=("e0",)))
        assert out.state.current == "e1"
        assert out.state.position == stopped(0)

    def test_removing_current_and_everything_after_it_stops(self) -> None:
        s = make(n=4, current=2, playing=True)
        out = ok(s, cmd("queue_remove", entry_ids=("e2", "e3")))
        assert ids(out.state) == ["e0", "e1"]
        assert out.state.current is None
        assert out.state.position == stopped(0)

    def test_removing_the_last_entry_with_repeat_all_wraps(self) -> None:
        s = make(n=4, current=2, playing=True, repeat="all")
        out = ok(s, cmd("queue_remove", entry_ids=("e2", "e3")))
        assert out.state.current == "e0"
        assert out.state.position == starting(0)

    def test_removing_current_follows_the_shuffle_order(self) -> None:
        s = make(n=4, current=3, shuffle=True, order=("e2", "e3", "e0", "e1"), playing=True)
        out = ok(s, cmd("queue_remove", entry_ids=("e3", "e0")))
        assert out.state.current == "e1"
        assert out.state.order == ("e2", "e1")

    def test_unknown_entry_refuses_the_whole_command(self) -> None:
        msg = refused(make(), cmd("queue_remove", entry_ids=("e1", "zz", "aa")), "not_found")
        assert "aa, zz" in msg

    def test_removing_everything_empties_the_queue(self) -> None:
        out = ok(make(n=2), cmd("queue_remove", entry_ids=("e0", "e1")))
        assert out.state.queue == ()
        assert out.state.current is None


class TestQueueMove:
    @pytest.mark.parametrize(
        ("entry", "index", "expected"),
        [
            ("e0", 2, ["e1", "e2", "e0", "e3"]),
            ("e3", 0, ["e3", "e0", "e1", "e2"]),
            ("e1", 1, ["e0", "e1", "e2", "e3"]),
            ("e0", 99, ["e1", "e2", "e3", "e0"]),
        ],
    )
    def test_moves_by_entry_id(self, entry: str, index: int, expected: list[str]) -> None:
        out = ok(make(current=1), cmd("queue_move", entry_id=entry, index=index))
        assert ids(out.state) == expected
        assert out.state.current == "e1"

    def test_unknown_entry_is_refused(self) -> None:
        refused(make(), cmd("queue_move", entry_id="zz", index=0), "not_found")

    def test_the_shuffle_order_is_untouched(self) -> None:
        s = make(shuffle=True, order=("e2", "e0", "e3", "e1"))
        out = ok(s, cmd("queue_move", entry_id="e3", index=0))
        assert out.state.order == s.order


class TestOrderMove:
    def test_with_shuffle_it_moves_in_the_play_order_only(self) -> None:
        s = make(current=2, shuffle=True, order=("e2", "e0", "e3", "e1"))
        out = ok(s, cmd("order_move", entry_id="e1", index=1))
        assert out.state.order == ("e2", "e1", "e0", "e3")
        assert ids(out.state) == ids(s)
        assert out.state.current == "e2"
        assert out.state.next_entry_id() == "e1"

    def test_an_index_past_the_end_moves_to_the_end(self) -> None:
        s = make(shuffle=True, order=("e2", "e0", "e3", "e1"))
        out = ok(s, cmd("order_move", entry_id="e2", index=99))
        assert out.state.order == ("e0", "e3", "e1", "e2")

    def test_without_shuffle_it_is_a_queue_move(self) -> None:
        s = make(current=1)
        out = ok(s, cmd("order_move", entry_id="e3", index=0))
        assert ids(out.state) == ["e3", "e0", "e1", "e2"]
        assert out.state.order == ()

    @pytest.mark.parametrize("shuffle", [True, False])
    def test_unknown_entry_is_refused(self, shuffle: bool) -> None:
        order = ("e2", "e0", "e3", "e1") if shuffle else ()
        s = make(shuffle=shuffle, order=order)
        refused(s, cmd("order_move", entry_id="zz", index=0), "not_found")


class TestQueueClearReplace:
    def test_clear_empties_and_stops(self) -> None:
        s = make(playing=True, shuffle=True, order=("e1", "e0", "e2", "e3"))
        out = ok(s, cmd("queue_clear"))
        assert (out.state.queue, out.state.order, out.state.current) == ((), (), None)
        assert out.state.position == stopped(0)
        assert out.state.shuffle  # the mode stays, only the order goes
        assert out.state.active_device == "d1"

    def test_replace_needs_if_version(self) -> None:
        msg = refused(make(), cmd("queue_replace", track_ids=("t1",)), "invalid")
        assert msg.startswith("if_version")

    def test_replace_with_a_stale_version_is_a_conflict(self) -> None:
        s = make(version=10)
        msg = refused(s, cmd("queue_replace", track_ids=("t1",), if_version=9), "conflict")
        assert "10" in msg

    def test_replace_sets_the_queue_and_waits_at_its_start(self) -> None:
        s = make(version=10, playing=True, position_ms=5_000)
        out = ok(s, cmd("queue_replace", track_ids=("t5", "t6"), if_version=10))
        assert [e.track_id for e in out.state.queue] == ["t5", "t6"]
        assert out.state.current == out.state.queue[0].entry_id
        assert out.state.position == stopped(0)
        assert out.state.order == ()

    def test_replace_can_wait_at_an_entry_and_position(self) -> None:
        """As a Subsonic app's savePlayQueue: its queue, its current entry, its position."""
        s = make(version=10, playing=True, position_ms=5_000)
        replace_ = cmd(
            "queue_replace",
            track_ids=("t5", "t6", "t7"),
            if_version=10,
            index=1,
            position_ms=83_000,
        )
        out = ok(s, replace_)
        assert out.state.current == out.state.queue[1].entry_id
        assert out.state.position == stopped(83_000)
        past_end = cmd("queue_replace", track_ids=("t5",), if_version=11, index=4)
        assert (
            ok(out.state, past_end).state.current == ok(out.state, past_end).state.queue[0].entry_id
        )

    def test_replace_while_shuffled_reshuffles(self) -> None:
        s = make(version=10, shuffle=True, order=("e1", "e0", "e2", "e3"))
        tracks = tuple(f"t{i}" for i in range(10))
        out = ok(s, cmd("queue_replace", track_ids=tracks, if_version=10), ctx(seed=3))
        assert out.state.order[0] == out.state.current
        assert sorted(out.state.order) == sorted(ids(out.state))


# --- transfer -----------------------------------------------------------------------------


class TestTransfer:
    ONLINE = ("old", "new", "idle")

    def test_moves_playback_with_a_new_term_stop_and_start(self) -> None:
        s = make(active="old", term=7, playing=True, position_ms=10_000, at_ms=NOW - 3_000)
        out = ok(s, cmd("transfer", device_id="new"), ctx(online=self.ONLINE))
        assert out.state.active_device == "new"
        assert out.state.term == 8
        assert out.state.position == starting(13_000)
        assert out.directives == (
            Directive("old", "stop", 8, at_ms=NOW),
            Directive("new", "start", 8, "e0", 13_000, NOW, True),
        )

    def test_paused_arrives_paused(self) -> None:
        s = make(active="old", playing=True, position_ms=10_000, at_ms=NOW - 3_000)
        out = ok(s, cmd("transfer", device_id="new", paused=True), ctx(online=self.ONLINE))
        assert out.state.position == stopped(13_000)
        assert out.directives[-1] == Directive("new", "start", 2, "e0", 13_000, NOW, False)

    def test_a_paused_session_stays_paused(self) -> None:
        s = make(active="old", position_ms=10_000)
        out = ok(s, cmd("transfer", device_id="new"), ctx(online=self.ONLINE))
        assert not out.state.position.playing
        assert out.directives[-1].playing is False

    def test_position_is_capped_at_the_duration(self) -> None:
        s = make(active="old", playing=True, position_ms=DUR - 1_000, at_ms=NOW - 60_000)
        out = ok(s, cmd("transfer", device_id="new"), ctx(online=self.ONLINE))
        assert out.state.position.position_ms == DUR

    def test_offline_target_is_refused(self) -> None:
        s = make(active="old")
        msg = refused(
            s, cmd("transfer", device_id="gone"), "device_offline", ctx(online=self.ONLINE)
        )
        assert "gone" in msg

    def test_from_no_active_device_only_starts(self) -> None:
        s = make(active=None, term=3)
        out = ok(s, cmd("transfer", device_id="new"), ctx(online=self.ONLINE))
        assert out.state.term == 4
        assert [d.action for d in out.directives] == ["start"]

    def test_to_the_active_device_bumps_the_term_and_restarts_it(self) -> None:
        s = make(active="old", term=3)
        out = ok(s, cmd("transfer", device_id="old"), ctx(online=self.ONLINE))
        assert out.state.term == 4
        assert [(d.device_id, d.action) for d in out.directives] == [("old", "start")]


# --- validate -------------------------------------------------------------------------------

LONG = "x" * (MAX_ID_LEN + 1)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (cmd("pause", command_id=""), "command_id"),
        (cmd("pause", command_id=LONG), "command_id"),
        (cmd("queue_add", track_ids=("t",) * (MAX_QUEUE + 1)), "track_ids"),
        (cmd("queue_add", track_ids=("t1", "")), "track_ids"),
        (cmd("queue_add", track_ids=("x" * 2049,)), "track_ids"),
        (cmd("queue_remove", entry_ids=("e",) * (MAX_QUEUE + 1)), "entry_ids"),
        (cmd("queue_remove", entry_ids=("",)), "entry_ids"),
        (cmd("dance"), "op"),
        (cmd("seek"), "position_ms"),
        (cmd("seek", position_ms=1, delta_ms=1), "delta_ms"),
        (cmd("seek", position_ms=-1), "position_ms"),
        (cmd("play", position_ms=-1), "position_ms"),
        (cmd("volume"), "value"),
        (cmd("volume", value=1, delta=1), "delta"),
        (cmd("volume", value=101), "value"),
        (cmd("volume", value=-1), "value"),
        (cmd("shuffle"), "on"),
        (cmd("repeat"), "mode"),
        (cmd("repeat", mode="sometimes"), "mode"),
        (cmd("queue_add"), "track_ids"),
        (cmd("queue_next"), "track_ids"),
        (cmd("queue_replace", if_version=1), "track_ids"),
        (cmd("queue_replace", track_ids=("t1",)), "if_version"),
        (cmd("queue_remove"), "entry_ids"),
        (cmd("queue_move", index=1), "entry_id"),
        (cmd("queue_move", entry_id="e1"), "index"),
        (cmd("transfer"), "device_id"),
        (cmd("transfer", device_id=""), "device_id"),
        (cmd("queue_move", entry_id="e1", index=-1), "index"),
        (cmd("order_move", entry_id="e1"), "index"),
        (cmd("play", track_ids=("t1",), replace=True, index=-1), "index"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_validate_names_the_bad_field(command: Command, field: str) -> None:
    problem = validate(command)
    assert problem is not None
    assert field in problem
    assert "\n" not in problem
    out = apply(make(), command, ctx())
    assert out.result.code == "invalid"
    assert out.result.message == problem


@pytest.mark.parametrize(
    "command",
    [
        cmd("play"),
        cmd("seek", delta_ms=-5_000),
        cmd("volume", delta=-300),
        cmd("shuffle", on=False),
        cmd("repeat", mode="one"),
        cmd("queue_move", entry_id="e1", index=0),
        cmd("pause", command_id="x" * MAX_ID_LEN),
        cmd("queue_add", track_ids=("x" * 2048,)),
    ],
)
def test_validate_accepts_well_formed_commands(command: Command) -> None:
    assert validate(command) is None


def test_if_version_is_checked_for_any_command() -> None:
    s = make(version=10)
    refused(s, cmd("volume", value=5, if_version=9), "conflict")
    refused(s, cmd("volume", value=5, if_version=11), "conflict")
    assert ok(s, cmd("volume", value=5, if_version=10)).state.volume == 5


def test_version_moves_by_one_per_applied_command_and_not_for_refused_ones() -> None:
    s = SessionState()
    c = ctx()
    plan: list[tuple[Command, bool]] = [
        (cmd("queue_add", track_ids=("t1", "t2", "t3")), True),
        (cmd("seek", position_ms=1), False),  # nothing current
        (cmd("play"), True),
        (cmd("play"), True),  # already playing: still a change of version
        (cmd("play", entry_id="nope"), False),
        (cmd("volume", value=200), False),
        (cmd("pause"), True),
        (cmd("pause"), True),
        (cmd("queue_replace", track_ids=("t1",), if_version=0), False),
        (cmd("transfer", device_id="elsewhere"), False),
        (cmd("next"), True),
    ]
    for i, (command, applies) in enumerate(plan):
        before = s.version
        out = apply(s, command, c)
        assert out.result.ok is applies, (i, out.result)
        assert out.state.version == before + (1 if applies else 0)
        s = out.state
    assert s.version == sum(applies for _, applies in plan)


# --- position -------------------------------------------------------------------------------


class TestPositionAt:
    def test_paused_does_not_move(self) -> None:
        assert Position(5_000, 0, False, 1.0).at(60_000) == 5_000

    def test_playing_at_rate_zero_does_not_move(self) -> None:
        assert Position(5_000, 0, True, 0.0).at(60_000) == 5_000

    def test_playing_moves_with_the_rate(self) -> None:
        assert Position(5_000, 1_000, True, 1.0).at(3_500) == 7_500
        assert Position(5_000, 1_000, True, 0.5).at(3_000) == 6_000

    def test_is_capped_at_the_duration(self) -> None:
        assert Position(5_000, 0, True, 1.0).at(10**9, duration_ms=180_000) == 180_000
        assert Position(200_000, 0, False, 0.0).at(0, duration_ms=180_000) == 180_000

    def test_unknown_duration_is_not_capped(self) -> None:
        assert Position(5_000, 0, True, 1.0).at(10**9, duration_ms=0) == 10**9 + 5_000

    def test_never_runs_backwards_or_below_zero(self) -> None:
        assert Position(5_000, 10_000, True, 1.0).at(2_000) == 5_000
        assert Position(-300, 0, False, 0.0).at(0) == 0
        assert Position(0, 0, True, -1.0).at(10_000) == 0

    def test_session_position_uses_the_current_entry_duration(self) -> None:
        s = make(playing=True, position_ms=DUR - 10, at_ms=0)
        assert s.position_at(NOW) == DUR
        assert make(current=None, playing=True, at_ms=0).position_at(NOW) == NOW


# --- device reports ---------------------------------------------------------------------------


def report(**kw: Any) -> Report:
    base: dict[str, Any] = {
        "term": 1,
        "entry_id": "e0",
        "position_ms": 0,
        "at_ms": NOW,
        "playing": True,
        "rate": 1.0,
    }
    return Report(**(base | kw))


class TestApplyReport:
    def test_a_stale_term_is_refused(self) -> None:
        s = make(term=5)
        assert apply_report(s, "d1", report(term=4), ctx()) == (s, "stale_term")
        assert apply_report(s, "d1", report(term=6), ctx()) == (s, "stale_term")

    def test_a_device_that_is_not_active_is_refused(self) -> None:
        s = make(active="d1", term=1)
        assert apply_report(s, "d2", report(), ctx()) == (s, "stale_term")
        none = make(active=None, term=1)
        assert apply_report(none, "d1", report(), ctx()) == (none, "stale_term")

    def test_an_unknown_entry_is_refused(self) -> None:
        s = make()
        assert apply_report(s, "d1", report(entry_id="zz"), ctx()) == (s, "not_found")

    def test_the_first_audible_report_re_anchors(self) -> None:
        s = make(playing=True, rate=0.0, position_ms=30_000, at_ms=NOW - 500)
        new, code = apply_report(s, "d1", report(position_ms=30_000, at_ms=NOW), ctx())
        assert code == "ok"
        assert new.version == s.version + 1
        assert new.position == Position(30_000, NOW, True, 1.0)

    @pytest.mark.parametrize("off_by", [0, 1, -3, REANCHOR_TOLERANCE_MS, -REANCHOR_TOLERANCE_MS])
    def test_within_tolerance_keeps_the_anchor(self, off_by: int) -> None:
        s = make(playing=True, position_ms=30_000, at_ms=NOW - 10_000)
        rep = report(position_ms=40_000 + off_by, at_ms=NOW)
        assert apply_report(s, "d1", rep, ctx()) == (s, "ok")

    @pytest.mark.parametrize(
        "off_by", [REANCHOR_TOLERANCE_MS + 1, -REANCHOR_TOLERANCE_MS - 1, 5_000]
    )
    def test_beyond_tolerance_re_anchors(self, off_by: int) -> None:
        s = make(playing=True, position_ms=30_000, at_ms=NOW - 10_000)
        rep = report(position_ms=40_000 + off_by, at_ms=NOW)
        new, code = apply_report(s, "d1", rep, ctx())
        assert code == "ok"
        assert new.version == s.version + 1
        assert new.position == Position(40_000 + off_by, NOW, True, 1.0)

    def test_a_change_of_play_state_re_anchors_even_at_the_same_position(self) -> None:
        s = make(playing=True, position_ms=30_000, at_ms=NOW)
        paused, _ = apply_report(
            s, "d1", report(position_ms=30_000, playing=False, rate=0.0), ctx()
        )
        assert paused.position == Position(30_000, NOW, False, 0.0)
        underrun, _ = apply_report(s, "d1", report(position_ms=30_000, rate=0.0), ctx())
        assert underrun.position == Position(30_000, NOW, True, 0.0)
        assert paused.version == underrun.version == s.version + 1

    def test_ended_advances(self) -> None:
        s = make(current=1, playing=True, position_ms=DUR - 100, at_ms=NOW - 100)
        new, code = apply_report(s, "d1", report(entry_id="e1", event="ended"), ctx())
        assert code == "ok"
        assert new.current == "e2"
        assert new.position == starting(0)
        assert new.version == s.version + 1

    def test_ended_with_repeat_one_replays(self) -> None:
        s = make(current=1, playing=True, repeat="one")
        new, _ = apply_report(s, "d1", report(entry_id="e1", event="ended"), ctx())
        assert new.current == "e1"
        assert new.position == starting(0)

    def test_ended_at_the_end_of_the_queue(self) -> None:
        s = make(current=3, playing=True)
        new, _ = apply_report(s, "d1", report(entry_id="e3", event="ended"), ctx())
        assert (new.current, new.position) == ("e3", stopped(0))
        wraps = replace(s, repeat="all")
        new, _ = apply_report(wraps, "d1", report(entry_id="e3", event="ended"), ctx())
        assert (new.current, new.position) == ("e0", starting(0))

    @pytest.mark.parametrize("repeat", ["off", "one"])
    def test_error_skips(self, repeat: str) -> None:
        s = make(current=1, playing=True, repeat=repeat)
        rep = report(entry_id="e1", event="error", message="decoder failed")
        new, code = apply_report(s, "d1", rep, ctx())
        assert code == "ok"
        assert new.current == "e2"
        # Not in silence: the session says what it skipped, and why.
        assert new.failure == PlayFailure("e1", s.queue[1].track_id, "decoder failed", NOW)

    def test_meta_keeps_the_stream_info_of_the_current_entry(self) -> None:
        s = make(current=1, playing=True, position_ms=5_000, at_ms=NOW - 1_000)
        rep = report(entry_id="e1", event="meta", title="Song\x1b[2J One", duration_ms=90_000)
        new, code = apply_report(s, "d1", rep, ctx())
        assert code == "ok" and new.version == s.version + 1
        assert new.stream == StreamInfo("e1", "Song[2J One", "", "", 90_000)
        assert (new.position, new.current, new.anchored) == (s.position, s.current, s.anchored)
        # The same again changes nothing; a new title is a new version.
        assert apply_report(new, "d1", rep, ctx()) == (new, "ok")
        newer, _ = apply_report(new, "d1", replace(rep, title="Song Two"), ctx())
        assert newer.stream is not None and newer.stream.title == "Song Two"
        assert newer.version == new.version + 1
        # Only the device that plays may say it, and only of the current entry.
        assert apply_report(new, "d2", replace(rep, title="x"), ctx()) == (new, "stale_term")
        assert apply_report(new, "d1", replace(rep, entry_id="e2"), ctx())[1] == "conflict"
        long = apply_report(s, "d1", replace(rep, title="t" * 5000), ctx())[0].stream
        assert long is not None and len(long.title) == 300

    def test_a_report_for_an_entry_no_longer_current_does_not_undo_a_command(self) -> None:
        """The device's report was in flight while the user pressed next: next stands."""
        s = make(current=1, playing=True, position_ms=60_000, at_ms=NOW - 5_000)
        s = ok(s, cmd("next")).state
        assert s.current == "e2"
        late = report(entry_id="e1", position_ms=65_000, at_ms=NOW - 10)
        new, _ = apply_report(s, "d1", late, ctx())
        assert new == s
        late_end = report(entry_id="e1", event="ended", at_ms=NOW - 10)
        jumped = ok(s, cmd("play", entry_id="e0")).state
        new, _ = apply_report(jumped, "d1", late_end, ctx())
        assert new == jumped

    def test_a_report_made_before_a_play_does_not_pause_it(self) -> None:
        """The device loaded paused (the state it had said so) and reported that while
        its own `play` was in flight: the play stands, the device follows it."""
        s = make(current=1, position_ms=1_548, at_ms=NOW - 50)
        played = ok(s, cmd("play")).state
        late = report(entry_id="e1", position_ms=1_548, playing=False, rate=0.0, version=10)
        assert apply_report(played, "d1", late, ctx()) == (played, "conflict")
        # Once the device has that state, what it reports is taken.
        heard, code = apply_report(
            played, "d1", replace(late, playing=True, rate=1.0, version=11), ctx()
        )
        assert code == "ok" and heard.position == Position(1_548, NOW, True, 1.0)

    def test_a_report_made_before_a_pause_does_not_resume(self) -> None:
        s = make(current=1, playing=True, position_ms=30_000, at_ms=NOW - 1_000)
        paused = ok(s, cmd("pause")).state
        late = report(entry_id="e1", position_ms=31_000, version=10)
        assert apply_report(paused, "d1", late, ctx()) == (paused, "conflict")

    def test_an_older_report_that_agrees_on_playing_is_taken(self) -> None:
        """Only an undone play or pause is refused: a report made before an unrelated
        change (the volume) still says when the audio became audible."""
        s = make(current=1, playing=True, rate=0.0, position_ms=30_000, at_ms=NOW - 500)
        louder = ok(s, cmd("volume", value=70)).state
        new, code = apply_report(
            louder, "d1", report(entry_id="e1", position_ms=30_000, version=10), ctx()
        )
        assert code == "ok" and new.position == Position(30_000, NOW, True, 1.0)

    def test_a_report_made_before_a_seek_does_not_undo_it(self) -> None:
        """The device's periodic report was in flight while another device seeked: the
        seek stands, and what the device reports once it follows it is taken."""
        s = make(current=1, playing=True, position_ms=30_000, at_ms=NOW - 1_000)
        sought = ok(s, cmd("seek", position_ms=120_000)).state
        assert sought.anchored == sought.version
        late = report(entry_id="e1", position_ms=31_000, version=s.version)
        assert apply_report(sought, "d1", late, ctx()) == (sought, "conflict")
        heard, code = apply_report(
            sought, "d1", replace(late, position_ms=120_000, version=sought.version), ctx()
        )
        assert code == "ok" and heard.position == Position(120_000, NOW, True, 1.0)
        assert heard.anchored == heard.version == sought.version + 1

    def test_only_a_change_of_position_or_entry_moves_the_anchor_version(self) -> None:
        s = make(current=1, playing=True, position_ms=30_000, at_ms=NOW - 1_000, anchored=7)
        assert ok(s, cmd("volume", value=70)).state.anchored == 7
        assert ok(s, cmd("repeat", mode="all")).state.anchored == 7
        for moved in (cmd("pause"), cmd("next"), cmd("seek", delta_ms=5_000)):
            new = ok(s, moved).state
            assert new.anchored == new.version == s.version + 1
        lost = device_lost(s, "d1", NOW)
        assert lost is not None and lost.anchored == lost.version

    def test_the_devices_own_stop_is_not_fenced_by_version(self) -> None:
        """`leave` reports without a version: the device stops whatever it last saw."""
        s = make(current=1, playing=True, position_ms=30_000, at_ms=NOW - 1_000)
        louder = ok(s, cmd("volume", value=70)).state
        rep = report(entry_id="e1", position_ms=31_000, playing=False, rate=0.0)
        new, code = apply_report(louder, "d1", rep, ctx())
        assert code == "ok" and new.position == Position(31_000, NOW, False, 0.0)

    def test_a_repeated_ended_report_advances_once(self) -> None:
        s = make(current=0, playing=True)
        once, _ = apply_report(s, "d1", report(entry_id="e0", event="ended"), ctx())
        later = replace(once, position=Position(20_000, NOW + 20_000, True, 1.0))
        twice, _ = apply_report(later, "d1", report(entry_id="e0", event="ended"), ctx())
        assert twice == later

    def test_a_report_without_entry_applies_to_the_current_one(self) -> None:
        s = make(current=2, playing=True, rate=0.0, position_ms=0)
        new, _ = apply_report(s, "d1", report(entry_id=None, position_ms=0), ctx())
        assert new.current == "e2"
        assert new.position.rate == 1.0


class TestDeviceLost:
    def test_pauses_at_the_position_extrapolated_to_the_loss(self) -> None:
        s = make(active="d1", term=4, playing=True, position_ms=10_000, at_ms=NOW)
        new = device_lost(s, "d1", NOW + 7_000)
        assert new is not None
        assert new.position == Position(17_000, NOW + 7_000, False, 0.0)
        assert new.active_device is None
        assert new.term == 5
        assert new.version == s.version + 1
        assert (new.queue, new.current) == (s.queue, s.current)

    def test_a_device_that_was_not_yet_audible_keeps_its_position(self) -> None:
        s = make(playing=True, rate=0.0, position_ms=10_000, at_ms=NOW)
        new = device_lost(s, "d1", NOW + 7_000)
        assert new is not None and new.position.position_ms == 10_000

    def test_extrapolation_is_capped_at_the_duration(self) -> None:
        s = make(playing=True, position_ms=DUR - 1_000, at_ms=NOW)
        new = device_lost(s, "d1", NOW + 60_000)
        assert new is not None and new.position.position_ms == DUR

    def test_not_the_active_device_changes_nothing(self) -> None:
        assert device_lost(make(active="d1"), "d2", NOW) is None
        assert device_lost(make(active=None), "d1", NOW) is None

    def test_the_old_term_is_fenced_off(self) -> None:
        s = make(active="d1", term=4)
        new = device_lost(s, "d1", NOW)
        assert new is not None
        assert apply_report(new, "d1", report(term=4), ctx())[1] == "stale_term"


# --- properties -------------------------------------------------------------------------------

DEVICES = ("d1", "d2", "d3")
TRACKS = ("t1", "t2", "t3", "radio")


@st.composite
def commands(draw: st.DrawFn, state: SessionState, n: int) -> Command:
    """Any command, usually well formed, naming mostly entries that exist."""
    known = [e.entry_id for e in state.queue] or ["e-none"]
    entry = st.one_of(st.sampled_from(known), st.just("e-gone"))
    tracks = st.lists(st.sampled_from(TRACKS), min_size=1, max_size=4).map(tuple)
    small = st.integers(-5_000, 250_000)
    op = draw(
        st.sampled_from(
            [
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
        )
    )
    cid = f"p{n}"
    stale = draw(st.integers(0, 9)) == 0
    fields: dict[str, Any] = {}
    if op == "play":
        kind = draw(st.sampled_from(["resume", "tracks", "replace", "entry"]))
        if kind in ("tracks", "replace"):
            fields["track_ids"] = draw(tracks)
            fields["replace"] = kind == "replace"
            fields["index"] = draw(st.none() | st.integers(0, 5))
        elif kind == "entry":
            fields["entry_id"] = draw(entry)
        fields["position_ms"] = draw(st.none() | st.integers(0, 250_000))
        fields["device_id"] = draw(st.none() | st.sampled_from(DEVICES))
    elif op == "seek":
        if draw(st.booleans()):
            fields["position_ms"] = draw(st.integers(0, 250_000))
        else:
            fields["delta_ms"] = draw(small)
    elif op == "volume":
        if draw(st.booleans()):
            fields["value"] = draw(st.integers(0, 100))
        else:
            fields["delta"] = draw(st.integers(-150, 150))
    elif op == "shuffle":
        fields["on"] = draw(st.booleans())
    elif op == "repeat":
        fields["mode"] = draw(st.sampled_from(["off", "all", "one"]))
    elif op in ("queue_add", "queue_next"):
        fields["track_ids"] = draw(tracks)
    elif op == "queue_replace":
        fields["track_ids"] = draw(tracks)
        fields["if_version"] = state.version - 1 if stale else state.version
    elif op == "queue_remove":
        fields["entry_ids"] = tuple(draw(st.lists(entry, min_size=1, max_size=3)))
    elif op in ("queue_move", "order_move"):
        fields["entry_id"] = draw(entry)
        fields["index"] = draw(st.integers(0, 8))
    elif op == "transfer":
        fields["device_id"] = draw(st.sampled_from(DEVICES))
        fields["paused"] = draw(st.booleans())
    return Command(op, cid, **fields)  # type: ignore[arg-type]


def check_invariants(s: SessionState, now_ms: int, online: tuple[str, ...]) -> None:
    queue_ids = ids(s)
    assert len(queue_ids) == len(set(queue_ids)) <= MAX_QUEUE
    assert s.current is None or s.current in queue_ids
    if s.shuffle:
        assert sorted(s.order) == sorted(queue_ids)
        if s.current is not None:
            assert s.current in s.order
    else:
        assert s.order == ()
    assert sorted(s.play_order()) == sorted(queue_ids)
    assert 0 <= s.volume <= 100
    assert s.repeat in ("off", "all", "one")
    pos = s.position_at(now_ms)
    assert pos >= 0
    cur = s.current_entry
    if cur is not None and cur.duration_ms > 0:
        assert pos <= cur.duration_ms


PROPERTY = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(st.data())
def test_any_command_sequence_keeps_the_invariants(data: st.DataObject) -> None:
    s = SessionState()
    now = NOW
    applied = 0
    term = s.term
    for n in range(data.draw(st.integers(1, 25), label="length")):
        now += data.draw(st.integers(0, 20_000), label="elapsed")
        online = tuple(data.draw(st.lists(st.sampled_from(DEVICES), unique=True), label="online"))
        c = Context(now, DURATIONS, online, data.draw(st.integers(0, 2**32)), None)
        command = data.draw(commands(s, n), label="command")
        out = apply(s, command, c)
        if out.result.ok:
            applied += 1
            assert out.state.version == s.version + 1 == out.result.version
            assert out.state.term >= term
            if out.state.term != s.term:
                assert out.state.active_device in online
        else:
            assert out.state is s
        s = out.state
        term = s.term
        assert s.version == applied
        check_invariants(s, now, online)


@PROPERTY
@given(st.data())
def test_commands_reports_and_device_loss_keep_the_invariants(data: st.DataObject) -> None:
    s = SessionState()
    now = NOW
    for n in range(data.draw(st.integers(1, 25), label="length")):
        now += data.draw(st.integers(0, 20_000), label="elapsed")
        online = DEVICES
        c = Context(now, DURATIONS, online, n, None)
        before = s
        what = data.draw(st.sampled_from(["command", "command", "report", "lost"]), label="what")
        if what == "command":
            s = apply(s, data.draw(commands(s, n), label="command"), c).state
        elif what == "report":
            device = data.draw(st.sampled_from((s.active_device or "d1", "d2")), label="device")
            entries = [None, *ids(s)]
            rep = Report(
                term=data.draw(st.sampled_from((s.term, s.term - 1)), label="term"),
                entry_id=data.draw(st.sampled_from(entries), label="entry"),
                position_ms=data.draw(st.integers(0, 250_000), label="position"),
                at_ms=now - data.draw(st.integers(0, 500), label="lag"),
                playing=data.draw(st.booleans(), label="playing"),
                rate=data.draw(st.sampled_from((0.0, 1.0)), label="rate"),
                event=data.draw(st.sampled_from(("progress", "ended", "error")), label="event"),
                version=data.draw(
                    st.sampled_from((None, s.version, s.version - 1, s.anchored - 1)),
                    label="version",
                ),
            )
            s, code = apply_report(s, device, rep, c)
            if code != "ok":
                assert s is before
        else:
            device = data.draw(st.sampled_from(DEVICES), label="lost")
            lost = device_lost(s, device, now)
            if lost is None:
                assert device != s.active_device
            else:
                assert lost.active_device is None and lost.term == s.term + 1
                assert not lost.position.playing
                s = lost
        assert s.version in (before.version, before.version + 1)
        assert s.term >= before.term
        moved = s.position != before.position or s.current != before.current
        assert s.anchored == (s.version if moved else before.anchored) <= s.version
        check_invariants(s, now, online)


# --- replaying a journal --------------------------------------------------------------


def test_a_replayed_play_then_pause_goes_as_one_paused_play() -> None:
    journal = [
        cmd("queue_add", command_id="a", track_ids=("t1",)),
        cmd("play", command_id="p", entry_id="e1", position_ms=4_000),
        cmd("pause", command_id="z"),
        cmd("volume", command_id="v", value=40),
        cmd("pause", command_id="z2"),  # no play right before it: sent as it is
    ]
    sending, folded = coalesce_replay(journal)
    assert [c.command_id for c in sending] == ["a", "p", "v", "z2"]
    assert sending[1] == replace(journal[1], paused=True)
    assert [c.command_id for c in folded] == ["z"]
    # Applied, the session goes from playing straight to paused at the entry's place.
    s = make(playing=True, position_ms=1_000, at_ms=NOW - 500)
    out = ok(s, sending[1])
    assert out.state.current == "e1" and out.state.position == stopped(4_000)
    assert coalesce_replay([journal[2]]) == ([journal[2]], [])
