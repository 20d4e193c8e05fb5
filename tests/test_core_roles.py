"""The roles of a jam, decided in the pure core: what a guest may do, with and without
`guests_can_control`, and who added each entry. Every frontend gets these answers."""

from __future__ import annotations

from typing import Any

import pytest

from tunehand.core.commands import OPS, Command
from tunehand.core.model import SessionState
from tunehand.core.roles import GUEST_OPS, OWN_ENTRY_OPS
from tunehand.core.session import Context, apply

NOW = 1_000_000
DURATIONS = {f"t{i}": 180_000 for i in range(10)}


def ctx(user: str, role: str, control: bool = False) -> Context:
    return Context(NOW, DURATIONS, ("d1",), 0, None, user, role, control)  # type: ignore[arg-type]


def cmd(op: str, **fields: Any) -> Command:
    return Command(op, f"c-{op}-{len(fields)}", **fields)  # type: ignore[arg-type]


def shared_queue() -> SessionState:
    """The host added t0 and t1 (t0 plays on d1), the guest `gus` added t2."""
    s = apply(SessionState(), cmd("queue_add", track_ids=("t0", "t1")), ctx("hana", "host")).state
    s = apply(s, cmd("play", device_id="d1"), ctx("hana", "host")).state
    s = apply(s, cmd("queue_add", track_ids=("t2",)), ctx("gus", "guest")).state
    return s


def test_entries_say_who_added_them() -> None:
    s = shared_queue()
    assert [(e.track_id, e.added_by) for e in s.queue] == [
        ("t0", "hana"),
        ("t1", "hana"),
        ("t2", "gus"),
    ]
    nxt = apply(s, cmd("queue_next", track_ids=("t3",)), ctx("gus", "guest")).state
    assert nxt.queue[1].track_id == "t3" and nxt.queue[1].added_by == "gus"


# Each op with the fields it needs, naming the host's entry where it names one.
def host_entry_command(s: SessionState, op: str) -> Command:
    host_entry = s.queue[1].entry_id
    fields: dict[str, dict[str, Any]] = {
        "play": {},
        "seek": {"position_ms": 1000},
        "volume": {"value": 10},
        "shuffle": {"on": True},
        "repeat": {"mode": "all"},
        "queue_add": {"track_ids": ("t4",)},
        "queue_next": {"track_ids": ("t4",)},
        "queue_remove": {"entry_ids": (host_entry,)},
        "queue_move": {"entry_id": host_entry, "index": 0},
        "order_move": {"entry_id": host_entry, "index": 0},
        "queue_replace": {"track_ids": ("t4",), "if_version": s.version},
        "transfer": {"device_id": "d1"},
    }
    return cmd(op, **fields.get(op, {}))


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_guest_without_control_may_only_add(op: str) -> None:
    s = shared_queue()
    out = apply(s, host_entry_command(s, op), ctx("gus", "guest"))
    if op in GUEST_OPS:
        assert out.result.code == "ok", out.result
    else:
        assert out.result.code == "forbidden", out.result
        assert out.state == s and "\n" not in out.result.message
        assert "host" in out.result.message


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("role", ["host", "owner"])
def test_the_host_may_do_anything(op: str, role: str) -> None:
    s = shared_queue()
    out = apply(s, host_entry_command(s, op), ctx("hana", role))
    assert out.result.code != "forbidden", out.result


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_guest_with_control_is_refused_nothing(op: str) -> None:
    s = shared_queue()
    out = apply(s, host_entry_command(s, op), ctx("gus", "guest", control=True))
    assert out.result.code != "forbidden", out.result


@pytest.mark.parametrize("op", sorted(OWN_ENTRY_OPS))
def test_a_guest_may_move_and_remove_its_own_entries(op: str) -> None:
    s = shared_queue()
    own = s.queue[2].entry_id
    fields: dict[str, Any] = (
        {"entry_ids": (own,)} if op == "queue_remove" else {"entry_id": own, "index": 0}
    )
    out = apply(s, cmd(op, **fields), ctx("gus", "guest"))
    assert out.result.code == "ok", out.result
    # Another guest's entry is not its own.
    other = apply(s, cmd(op, **fields), ctx("gia", "guest"))
    assert other.result.code == "forbidden" and "added by gus" in other.result.message


def test_removing_own_and_others_at_once_is_refused_whole() -> None:
    s = shared_queue()
    both = (s.queue[1].entry_id, s.queue[2].entry_id)
    out = apply(s, cmd("queue_remove", entry_ids=both), ctx("gus", "guest"))
    assert out.result.code == "forbidden" and out.state == s
