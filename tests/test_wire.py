"""`tunehand.wire`: every channel message round-trips, and anything malformed is one
`ProtocolError` line naming the problem (the field path for a wrong field)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunehand import wire
from tunehand.core.commands import Command, Report
from tunehand.core.model import DeviceInfo, Entry, Position, SessionState
from tunehand.core.protocol import (
    CLIENT_TYPES,
    SERVER_TYPES,
    Auth,
    Bye,
    CommandMsg,
    DeviceHello,
    DevicesMsg,
    DirectiveMsg,
    ErrorMsg,
    Failed,
    Hello,
    Ping,
    Pong,
    Ready,
    ReportMsg,
    ResultMsg,
    Resync,
    StateMsg,
    TimeReply,
    TimeRequest,
    TrackView,
)
from tunehand.errors import ProtocolError, TunehandError

TRACK = TrackView(
    id="t1",
    title="Blue in Green",
    artist="Miles Davis",
    album="Kind of Blue",
    album_artist="Miles Davis",
    duration_ms=337_000,
    track_no=3,
    disc_no=1,
    year=1959,
    genre="Jazz",
    url="/v1/stream/t1?exp=1&sig=abc",
)
NEXT_TRACK = TrackView("t2", "So What")
STATE = SessionState(
    version=42,
    queue=(Entry("e1.0", "t1", 337_000), Entry("e1.1", "https://radio.example/x", 0)),
    current="e1.0",
    position=Position(12_345, 1_700_000_000_000, True, 1.0),
    volume=73,
    shuffle=True,
    order=("e1.0", "e1.1"),
    repeat="one",
    active_device="d1",
    term=9,
)
DEVICES = (
    DeviceInfo("d1", "desk", True, 1_700_000_000_000, "10.0.0.2", ("play", "control")),
    DeviceInfo("d2", "kitchen"),
)
COMMAND = Command(
    op="play",
    command_id="c-1",
    if_version=41,
    track_ids=("t1", "t2"),
    replace=True,
    entry_id="e1.0",
    entry_ids=("e1.1",),
    index=1,
    position_ms=5_000,
    delta_ms=-250,
    value=30,
    delta=-5,
    on=True,
    mode="all",
    device_id="d2",
    paused=True,
)
REPORT = Report(9, "e1.0", 12_400, 1_700_000_000_055, True, 1.25, "ended", "bye")

CLIENT_SAMPLES: dict[str, list[Any]] = {
    "auth": [
        Auth(DeviceHello("d1", "desk", ("play",)), "tok", 41),
        Auth(DeviceHello("d1", "desk")),
    ],
    "command": [CommandMsg(COMMAND), CommandMsg(Command("pause", "c-2"))],
    "report": [ReportMsg(REPORT), ReportMsg(Report(1, None, 0, 0, False, 0.0))],
    "time": [TimeRequest(123_456.75)],
    "resync": [Resync(41), Resync()],
    "ping": [Ping()],
    "ready": [Ready("x1")],
    "failed": [Failed("x1", "no audio device"), Failed("x2")],
}
SERVER_SAMPLES: dict[str, list[Any]] = {
    "hello": [
        Hello("d1", 1_700_000_000_000, 42, StateMsg(42, STATE, TRACK), DEVICES, "0.1.0"),
        Hello("d1", 1, 42, None),
    ],
    "state": [
        StateMsg(42, STATE, TRACK, NEXT_TRACK),
        StateMsg(0, SessionState()),
    ],
    "devices": [DevicesMsg(DEVICES), DevicesMsg(())],
    "directive": [
        DirectiveMsg("start", 9, "e1.0", 12_345, 1_700_000_000_500, True, TRACK, "x1"),
        DirectiveMsg("stop", 9),
        DirectiveMsg("prepare", 8, "e1.0", 1, 2, False, NEXT_TRACK, "x2"),
    ],
    "result": [ResultMsg("c-1", "conflict", "the session changed", 0), ResultMsg("c-2", "ok")],
    "time": [TimeReply(123_456.75, 1_700_000_000_000, 1_700_000_000_001)],
    "error": [ErrorMsg("invalid", "type: unknown message type 'x'")],
    "pong": [Pong(1_700_000_000_000)],
    "bye": [Bye("revoked", "this device was signed out"), Bye("restart")],
}


def test_every_message_type_has_samples() -> None:
    assert set(CLIENT_SAMPLES) == set(CLIENT_TYPES)
    assert set(SERVER_SAMPLES) == set(SERVER_TYPES)
    for table, samples in ((CLIENT_TYPES, CLIENT_SAMPLES), (SERVER_TYPES, SERVER_SAMPLES)):
        for kind, msgs in samples.items():
            assert all(type(m) is table[kind] for m in msgs), kind


@pytest.mark.parametrize(
    "msg", [m for ms in CLIENT_SAMPLES.values() for m in ms], ids=lambda m: type(m).__name__
)
def test_client_messages_round_trip(msg: Any) -> None:
    data = wire.encode(msg)
    assert json.loads(data)["type"] == msg.type
    assert wire.decode_client(data) == msg
    assert wire.decode_client(data.decode()) == msg


@pytest.mark.parametrize(
    "msg", [m for ms in SERVER_SAMPLES.values() for m in ms], ids=lambda m: type(m).__name__
)
def test_server_messages_round_trip(msg: Any) -> None:
    data = wire.encode(msg)
    assert json.loads(data)["type"] == msg.type
    assert wire.decode_server(data) == msg


def test_a_decoded_state_is_the_same_frozen_value() -> None:
    decoded = wire.decode_server(wire.encode(StateMsg(42, STATE)))
    assert isinstance(decoded, StateMsg)
    assert isinstance(decoded.state.queue, tuple)
    assert isinstance(decoded.state.queue[0], Entry)
    assert decoded.state.play_order() == STATE.play_order()
    assert hash(decoded.state) == hash(STATE)


def test_time_is_a_client_and_a_server_type() -> None:
    assert isinstance(wire.decode_client(b'{"type":"time","t0":1.5}'), TimeRequest)
    reply = b'{"type":"time","t0":1.5,"t1":2,"t2":3}'
    assert isinstance(wire.decode_server(reply), TimeReply)


def test_unknown_fields_are_ignored() -> None:
    """A newer peer may add fields; an older one reads what it knows."""
    data = b'{"type":"ping","future":1}'
    assert wire.decode_client(data) == Ping()


def test_decode_and_convert_take_any_dataclass() -> None:
    assert wire.decode(b'{"op":"pause","command_id":"x"}', Command) == Command("pause", "x")
    built = wire.to_builtins(COMMAND)
    assert list(built["track_ids"]) == ["t1", "t2"]
    assert wire.convert(built, Command) == COMMAND


# --- malformed input -----------------------------------------------------------------------


def error(data: bytes | str, decode: Any = wire.decode_client) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    text = str(info.value)
    assert "\n" not in text
    assert isinstance(info.value, TunehandError)
    return text


@pytest.mark.parametrize("data", [b"{", b"", b"{'type': 'ping'}", b"\xff\xfe", "nope"])
def test_malformed_json(data: bytes | str) -> None:
    assert error(data).startswith("malformed JSON")
    assert error(data, wire.decode_server).startswith("malformed JSON")


@pytest.mark.parametrize("data", [b"[]", b'["ping"]', b"3", b'"ping"', b"null", b"true"])
def test_not_an_object(data: bytes) -> None:
    assert error(data) == "a message must be a JSON object"


@pytest.mark.parametrize("data", [b"{}", b'{"type":null}', b'{"type":3}', b'{"type":["ping"]}'])
def test_missing_or_non_string_type(data: bytes) -> None:
    assert error(data).startswith("type:")


def test_unknown_type_is_named_and_truncated() -> None:
    assert error(b'{"type":"dance"}') == "type: unknown message type 'dance'"
    long = "x" * 500
    text = error(json.dumps({"type": long}))
    assert "x" * 40 in text and "x" * 41 not in text


def test_a_type_of_the_other_direction_is_unknown() -> None:
    assert "unknown message type 'hello'" in error(b'{"type":"hello"}')
    assert "unknown message type 'command'" in error(b'{"type":"command"}', wire.decode_server)


def cmd_json(**command: Any) -> str:
    return json.dumps({"type": "command", "command": {"op": "volume", "command_id": "c"} | command})


@pytest.mark.parametrize(
    ("data", "path", "decode"),
    [
        (cmd_json(value="loud"), "$.command.value", wire.decode_client),
        (cmd_json(value=True), "$.command.value", wire.decode_client),
        (cmd_json(value=1.5), "$.command.value", wire.decode_client),
        (cmd_json(op="dance"), "$.command.op", wire.decode_client),
        (cmd_json(mode="sometimes"), "$.command.mode", wire.decode_client),
        (cmd_json(on=1), "$.command.on", wire.decode_client),
        (cmd_json(track_ids="t1"), "$.command.track_ids", wire.decode_client),
        (cmd_json(track_ids=["t1", 2]), "$.command.track_ids[1]", wire.decode_client),
        (cmd_json(command_id=None), "$.command.command_id", wire.decode_client),
        (json.dumps({"type": "command", "command": "play"}), "$.command", wire.decode_client),
        (
            json.dumps({"type": "report", "report": {"term": "9"}}),
            "$.report.term",
            wire.decode_client,
        ),
        (
            json.dumps(
                {
                    "type": "report",
                    "report": {
                        "term": 1,
                        "entry_id": None,
                        "position_ms": 0,
                        "at_ms": 0,
                        "playing": True,
                        "rate": 1.0,
                        "event": "paused",
                    },
                }
            ),
            "$.report.event",
            wire.decode_client,
        ),
        (json.dumps({"type": "time", "t0": "now"}), "$.t0", wire.decode_client),
        (
            json.dumps({"type": "auth", "device": {"id": "d1", "name": 3}}),
            "$.device.name",
            wire.decode_client,
        ),
        (json.dumps({"type": "ready", "transfer_id": 1}), "$.transfer_id", wire.decode_client),
        (
            json.dumps({"type": "pong", "server_time_ms": "1"}),
            "$.server_time_ms",
            wire.decode_server,
        ),
        (
            json.dumps({"type": "directive", "action": "explode", "term": 1}),
            "$.action",
            wire.decode_server,
        ),
        (
            json.dumps({"type": "result", "command_id": "c", "code": "maybe"}),
            "$.code",
            wire.decode_server,
        ),
    ],
)
def test_a_wrong_field_is_named_by_its_path(data: str, path: str, decode: Any) -> None:
    text = error(data, decode)
    assert text.endswith(f"at `{path}`"), text


def test_a_wrong_field_deep_in_a_state_is_named_by_its_path() -> None:
    raw = json.loads(wire.encode(Hello("d1", 1, 42, StateMsg(42, STATE))))
    raw["state"]["state"]["queue"][1]["duration_ms"] = "long"
    text = error(json.dumps(raw), wire.decode_server)
    assert text.endswith("at `$.state.state.queue[1].duration_ms`"), text
    raw["state"]["state"]["queue"][1]["duration_ms"] = 0
    raw["state"]["state"]["repeat"] = "twice"
    assert error(json.dumps(raw), wire.decode_server).endswith("at `$.state.state.repeat`")


@pytest.mark.parametrize(
    ("data", "missing", "where"),
    [
        (b'{"type":"command"}', "command", "$"),
        (b'{"type":"command","command":{"op":"play"}}', "command_id", "$.command"),
        (b'{"type":"auth"}', "device", "$"),
        (b'{"type":"time"}', "t0", "$"),
        (b'{"type":"ready"}', "transfer_id", "$"),
    ],
)
def test_a_missing_field_is_named(data: bytes, missing: str, where: str) -> None:
    text = error(data)
    assert f"missing required field `{missing}`" in text
    if where != "$":  # msgspec names no path for the top level
        assert text.endswith(f"at `{where}`"), text
