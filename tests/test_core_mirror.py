"""The client's `Mirror`, alone and joined to an in-memory room (`tests.core_pair`).

Deliveries are explicit, so these tests reorder, drop and duplicate messages on the
links and check that every mirror ends on the room's state, in `version` order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core_pair import Client, connect
from tunehand.core.commands import Command, Report, Result
from tunehand.core.mirror import Mirror
from tunehand.core.model import DeviceInfo, Entry, Position, SessionState
from tunehand.core.protocol import DevicesMsg, Hello, ResultMsg, StateMsg, TrackView
from tunehand.core.session import Context
from tunehand.core.transfer import LEAD_MS

NOW = 1_000_000
CTX = Context(NOW, {"t1": 1_000, "t2": 2_000}, ("d1",))


def state(version: int, **kw: Any) -> SessionState:
    return SessionState(version=version, **kw)


def msg(s: SessionState, track: TrackView | None = None) -> StateMsg:
    return StateMsg(s.version, s, track)


def volume(cid: str, **kw: Any) -> Command:
    return Command("volume", cid, **kw)


def queued(version: int = 5, n: int = 4) -> SessionState:
    queue = tuple(Entry(f"e{i}", f"t{i}", 180_000) for i in range(n))
    return SessionState(version=version, queue=queue, current="e0", active_device="d1", term=1)


# --- the mirror alone ---------------------------------------------------------------------


class TestStates:
    def test_takes_newer_and_drops_older_or_equal_versions(self) -> None:
        m = Mirror()
        track = TrackView("t1", "One")
        assert m.on_state(msg(state(3, volume=30), track))
        assert (m.version, m.state.volume, m.track) == (3, 30, track)
        assert not m.on_state(msg(state(3, volume=99)))
        assert not m.on_state(msg(state(2, volume=20)))
        assert (m.version, m.state.volume, m.track) == (3, 30, track)
        assert m.on_state(msg(state(7, volume=70)))
        assert (m.version, m.state.volume, m.track) == (7, 70, None)

    def test_hello_with_state_is_taken_even_when_older(self) -> None:
        m = Mirror()
        m.on_state(msg(state(9)))
        devices = (DeviceInfo("d1", "desk", online=True),)
        m.on_hello(Hello("d1", NOW, 4, msg(state(4, volume=4)), devices))
        assert (m.version, m.state.volume, m.devices) == (4, 4, devices)

    def test_hello_without_state_keeps_ours(self) -> None:
        m = Mirror()
        m.on_state(msg(state(9, volume=9)))
        m.on_hello(Hello("d1", NOW, 9, None, (DeviceInfo("d2", "box"),)))
        assert (m.version, m.state.volume) == (9, 9)
        assert [d.id for d in m.devices] == ["d2"]

    def test_devices(self) -> None:
        m = Mirror()
        m.on_devices(DevicesMsg((DeviceInfo("a", "A"), DeviceInfo("b", "B"))))
        assert [d.id for d in m.devices] == ["a", "b"]


class TestPredictions:
    def test_predict_applies_the_command_once(self) -> None:
        m = Mirror(state(4, volume=50))
        out = m.predict(volume("c1", delta=10), CTX)
        assert out.result.ok
        assert out.state.volume == 60
        assert out.state.version == 5
        assert m.shown(CTX) == out.state
        assert [c.command_id for c in m.pending] == ["c1"]

    def test_predict_of_a_versioned_replace_is_not_a_conflict_with_itself(self) -> None:
        m = Mirror(queued(version=5))
        out = m.predict(Command("queue_replace", "c1", if_version=5, track_ids=("t1",)), CTX)
        assert out.result.ok, out.result
        assert [e.track_id for e in m.shown(CTX).queue] == ["t1"]

    def test_predictions_stack_in_order(self) -> None:
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", value=10), CTX)
        out = m.predict(volume("c2", delta=5), CTX)
        assert out.state.volume == 15
        assert m.shown(CTX).volume == 15
        assert m.shown(CTX).version == 6

    def test_predictions_are_replayed_over_newer_server_state(self) -> None:
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", delta=10), CTX)
        m.on_state(msg(state(5, volume=20, repeat="all")))  # someone else's change
        shown = m.shown(CTX)
        assert (shown.volume, shown.repeat, shown.version) == (30, "all", 6)

    def test_a_prediction_that_no_longer_applies_is_not_shown(self) -> None:
        m = Mirror(queued(version=5))
        m.predict(Command("queue_replace", "c1", if_version=5, track_ids=("t1",)), CTX)
        m.on_state(msg(replace(queued(version=6), volume=7)))
        assert m.shown(CTX) == m.state  # the server will refuse it: show that now

    def test_a_refused_command_rolls_back_visibly(self) -> None:
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", value=90), CTX)
        assert m.shown(CTX).volume == 90
        refusal = Result("c1", "rate_limited", "slow down")
        m.on_result(refusal)
        assert m.shown(CTX) == m.state
        assert m.pending == []
        assert m.refused == [refusal]

    def test_a_result_after_its_state_clears_the_prediction(self) -> None:
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", delta=10), CTX)
        m.predict(volume("c2", value=1), CTX)
        m.on_state(msg(state(5, volume=60)))
        m.on_result(Result("c1", "ok", "", 5))
        assert [c.command_id for c in m.pending] == ["c2"]
        assert m.shown(CTX).volume == 1
        assert m.refused == []

    def test_a_result_before_its_state_keeps_the_prediction_until_the_state(self) -> None:
        """No flicker: the prediction stays until the state with its version arrives."""
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", delta=10), CTX)
        m.on_result(Result("c1", "ok", "", 5))
        assert m.shown(CTX).volume == 60
        m.on_state(msg(state(5, volume=60)))
        assert m.pending == []
        assert m.shown(CTX) == m.state

    def test_a_confirmed_command_is_cleared_by_any_state_at_or_past_its_version(self) -> None:
        m = Mirror(state(4, volume=50))
        m.predict(volume("c1", delta=10), CTX)
        m.on_result(Result("c1", "ok", "", 5))
        m.on_state(msg(state(8, volume=3)))  # version 5 never came on its own
        assert m.pending == []
        assert m.shown(CTX).volume == 3

    def test_a_result_for_no_pending_command_is_harmless(self) -> None:
        m = Mirror(state(4))
        m.on_result(Result("other", "ok", "", 3))
        m.on_result(Result("other", "ok", "", 9))
        m.on_state(msg(state(9)))
        assert m.pending == [] and m.refused == []


# --- pairs: a room and its mirrors --------------------------------------------------------


def test_a_command_from_a_reaches_b_with_the_same_version() -> None:
    pair = connect("a", "b")
    cmd = pair.a.send("volume", value=33)
    assert pair.a.shown().volume == 33  # optimistic
    assert pair.b.shown().volume == 100
    pair.a.transmit()
    [b_state] = pair.b.states_waiting()
    pair.flush()
    [res] = pair.a.results
    assert (res.command_id, res.code) == (cmd.command_id, "ok")
    assert b_state.version == res.version == pair.room.state.version == 1
    assert pair.b.mirror.state == pair.a.mirror.state == pair.room.state
    assert pair.a.mirror.pending == []
    assert pair.b.results == []


def test_a_duplicated_command_is_applied_once_and_answered_alike() -> None:
    pair = connect("a", "b")
    pair.a.send("volume", delta=-10)
    pair.a.outbox.append(pair.a.outbox[0])  # the link delivers it twice
    pair.a.transmit()
    pair.flush()
    assert pair.room.state.volume == 90
    assert pair.room.state.version == 1
    assert len(pair.room.applied) == 1
    first, second = pair.a.results
    assert first == second
    assert len([m for m in pair.b.results]) == 0
    assert pair.converged()


def test_a_retry_after_a_lost_answer_gets_the_original_result() -> None:
    pair = connect("a", "b")
    cmd = pair.a.send("queue_add", track_ids=("t1", "t2"))
    pair.a.transmit()
    pair.a.inbox.clear()  # the answer and the state are lost on the way
    pair.a.send_command(cmd)  # the client retries with the same command_id
    pair.a.transmit()
    pair.a.receive()
    [res] = pair.a.results
    assert res.ok and res.version == 1
    assert len(pair.room.state.queue) == 2
    assert pair.a.mirror.version == 0  # it has seen no state yet: resync
    pair.room.resync("a")
    pair.flush()
    assert pair.converged()
    assert pair.a.mirror.pending == []
    assert len(pair.a.shown().queue) == 2


def test_states_out_of_order_converge_to_the_newest() -> None:
    pair = connect("a", "b")
    for v in (10, 20, 30, 40):
        pair.a.send("volume", value=v)
    pair.a.transmit()
    waiting = pair.b.states_waiting()
    assert [m.version for m in waiting] == [1, 2, 3, 4]
    pair.b.inbox.clear()
    pair.b.inbox.extend([waiting[2], waiting[0], waiting[3], waiting[3], waiting[1]])
    seen = []
    while pair.b.inbox:
        pair.b.receive(1)
        seen.append(pair.b.mirror.version)
    assert seen == [3, 3, 4, 4, 4]
    assert pair.b.mirror.state == pair.room.state
    assert pair.b.mirror.state.volume == 40


def test_concurrent_queue_edits_by_entry_id_both_apply() -> None:
    pair = connect("a", "b", state=queued(version=5))
    pair.a.send("queue_remove", entry_ids=("e1",))
    pair.b.send("queue_move", entry_id="e3", index=0)
    pair.b.send("queue_add", track_ids=("t9",))
    pair.a.send("queue_next", track_ids=("t8",))
    # Each client predicted on version 5; the room applies them in arrival order.
    pair.a.transmit(1)
    pair.b.transmit()
    pair.a.transmit()
    pair.flush()
    assert all(r.ok for r in pair.a.results + pair.b.results)
    tracks = [e.track_id for e in pair.room.state.queue]
    assert tracks == ["t3", "t0", "t8", "t2", "t9"]
    assert pair.room.state.version == 9
    assert pair.converged()
    assert pair.a.shown() == pair.b.shown() == pair.room.state


def test_a_stale_queue_replace_is_refused_and_the_client_keeps_the_server_state() -> None:
    pair = connect("a", "b", state=queued(version=5))
    pair.b.send("queue_add", track_ids=("t9",))
    pair.a.send("queue_replace", track_ids=("t1",), if_version=5)
    assert [e.track_id for e in pair.a.shown().queue] == ["t1"]  # predicted
    pair.b.transmit()
    pair.a.transmit()
    pair.flush()
    [res] = pair.a.results
    assert res.code == "conflict"
    assert "6" in res.message
    assert pair.a.mirror.refused == [res]
    assert pair.a.mirror.pending == []
    assert pair.a.shown() == pair.room.state
    assert [e.track_id for e in pair.a.shown().queue] == ["t0", "t1", "t2", "t3", "t9"]


def test_result_before_state_never_hides_the_prediction() -> None:
    pair = connect("a", "b")
    pair.a.send("volume", delta=-30)
    pair.a.transmit()
    state_msg, result_msg = pair.a.inbox
    assert isinstance(state_msg, StateMsg) and isinstance(result_msg, ResultMsg)
    pair.a.inbox.rotate(1)  # the result overtakes the state
    pair.a.receive(1)
    assert pair.a.shown().volume == 70
    pair.a.receive()
    assert pair.a.shown() == pair.room.state
    assert pair.a.mirror.pending == []


def test_state_before_result_does_not_apply_the_command_twice() -> None:
    pair = connect("a", "b")
    pair.a.send("volume", delta=-30)
    pair.a.transmit()
    pair.a.receive(1)  # the state, not yet the result
    assert pair.a.shown().volume == 70


def test_transfer_fences_the_old_device() -> None:
    pair = connect("a", "b")
    a, b = pair.a, pair.b
    a.send("queue_add", track_ids=("t1", "t2"))
    a.send("play", device_id="a")
    pair.flush()
    assert pair.room.state.active_device == "a"
    [start] = a.directives
    assert (start.action, start.term) == ("start", 1)
    entry = pair.room.state.current
    pair.room.report("a", Report(1, entry, 0, pair.room.now_ms, True, 1.0))
    pair.room.advance(4_000)
    b.send("transfer", device_id="b")
    pair.flush()
    [prepare] = b.directives  # make-before-break: b loads first (tests/test_core_transfer.py)
    b.answer()
    pair.flush()
    assert [(d.action, d.term) for d in a.directives[1:]] == [("stop", 2)]
    [_, b_start] = b.directives
    assert (b_start.action, b_start.term, b_start.position_ms) == ("start", 2, prepare.position_ms)
    assert b_start.position_ms == 4_000 + LEAD_MS
    assert b_start.entry_id == entry
    # a did not hear the stop yet: its report with the old term is refused
    late = Report(1, entry, 4_100, pair.room.now_ms, True, 1.0)
    assert pair.room.report("a", late) == "stale_term"
    assert pair.room.report("b", replace(late, term=2)) == "ok"
    pair.flush()
    assert pair.converged()


def test_losing_the_playing_device_leaves_the_others_a_paused_session() -> None:
    pair = connect("a", "b", "c")
    pair.a.send("queue_add", track_ids=("t1",))
    pair.a.send("play", device_id="a")
    pair.flush()
    pair.room.report("a", Report(1, pair.room.state.current, 0, pair.room.now_ms, True, 1.0))
    pair.room.advance(9_000)
    pair.room.disconnect("a")
    pair.clients.remove(pair.a)
    pair.flush()
    for c in pair.clients:
        assert c.mirror.state.active_device is None
        assert c.mirror.state.position == Position(9_000, pair.room.now_ms, False, 0.0)
    assert pair.converged()


def test_three_clients_editing_at_once_converge() -> None:
    pair = connect("a", "b", "c", state=queued(version=2, n=3))
    pair.a.send("volume", delta=-5)
    pair.b.send("queue_remove", entry_ids=("e0",))
    pair.c.send("shuffle", on=True)
    pair.b.send("repeat", mode="all")
    pair.c.send("volume", delta=-5)
    pair.c.transmit(1)
    pair.a.transmit()
    pair.b.transmit()
    pair.c.transmit()
    for c in reversed(pair.clients):
        c.inbox.reverse()
    pair.flush()
    s = pair.room.state
    assert (s.version, s.volume, s.repeat, s.shuffle) == (7, 90, "all", True)
    assert sorted(s.order) == ["e1", "e2"]
    assert pair.converged()
    assert all(c.mirror.pending == [] for c in pair.clients)


# --- property: any delivery schedule converges ----------------------------------------------


def _some_command(data: st.DataObject, client: Client) -> tuple[str, dict[str, Any]]:
    shown = client.shown()
    entries = [e.entry_id for e in shown.queue] or ["e0"]
    op = data.draw(
        st.sampled_from(["volume", "add", "remove", "move", "next", "shuffle", "replace"])
    )
    if op == "volume":
        return "volume", {"delta": data.draw(st.integers(-30, 30))}
    if op == "add":
        return "queue_add", {"track_ids": (data.draw(st.sampled_from(["t1", "t2", "t3"])),)}
    if op == "remove":
        return "queue_remove", {"entry_ids": (data.draw(st.sampled_from(entries)),)}
    if op == "move":
        return "queue_move", {"entry_id": data.draw(st.sampled_from(entries)), "index": 0}
    if op == "shuffle":
        return "shuffle", {"on": data.draw(st.booleans())}
    if op == "replace":
        return "queue_replace", {"track_ids": ("t1", "t2"), "if_version": client.mirror.version}
    return "next", {}


@settings(max_examples=100, deadline=None, database=None)
@given(st.data())
def test_any_delivery_schedule_converges(data: st.DataObject) -> None:
    pair = connect("a", "b", "c", state=queued(version=3))
    sent = 0
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        client = data.draw(st.sampled_from(pair.clients), label="client")
        before = client.mirror.version
        action = data.draw(
            st.sampled_from(["send", "transmit", "deliver", "duplicate", "drop_state"]),
            label="action",
        )
        if action == "send":
            op, fields = _some_command(data, client)
            client.send(op, **fields)
            sent += 1
        elif action == "transmit":
            client.transmit(data.draw(st.integers(1, 3), label="count"))
        elif client.inbox:
            i = data.draw(st.integers(0, len(client.inbox) - 1), label="index")
            if action == "deliver":
                m = client.inbox[i]
                del client.inbox[i]
                client.deliver(m)
            elif action == "duplicate":
                client.inbox.insert(i, client.inbox[i])
            elif isinstance(client.inbox[i], StateMsg):
                del client.inbox[i]
        assert client.mirror.version >= before
        for c in pair.clients:
            assert pair.room.history[c.mirror.version] == c.mirror.state
    for c in pair.clients:
        c.transmit()
        pair.room.resync(c.device_id)
    pair.flush()
    assert pair.converged()
    assert all(c.mirror.pending == [] and c.mirror.confirmed == {} for c in pair.clients)
    results = [r for c in pair.clients for r in c.results]
    assert len({r.command_id for r in results}) == sent
    assert pair.room.state.version == 3 + sum(
        r.ok for r in {r.command_id: r for r in results}.values()
    )
    assert all(c.shown() == pair.room.state for c in pair.clients)


def test_a_devices_patch_changes_only_the_devices_it_names() -> None:
    """A join, leave or revocation comes as a patch of one device (issue 16: a full list
    per join to every device grew with the square of the devices)."""
    m = Mirror()
    m.on_devices(DevicesMsg((DeviceInfo("a", "A"), DeviceInfo("b", "B"), DeviceInfo("c", "C"))))
    m.on_devices(DevicesMsg((DeviceInfo("b", "B", online=True),), patch=True))
    assert [(d.id, d.online) for d in m.devices] == [("a", False), ("b", True), ("c", False)]
    m.on_devices(DevicesMsg((DeviceInfo("d", "D", online=True),), patch=True, removed=("a",)))
    assert [d.id for d in m.devices] == ["b", "c", "d"]
    m.on_devices(DevicesMsg((), patch=True, removed=("zz",)))  # unknown: nothing changes
    assert [d.id for d in m.devices] == ["b", "c", "d"]
    m.on_devices(DevicesMsg((DeviceInfo("x", "X"),)))  # a full list replaces everything
    assert [d.id for d in m.devices] == ["x"]
