"""The session channel (`/v1/channel`) of a real server, driven by real websocket clients.

Every wait is on a message with a deadline (`Chan.wait`); "nothing else arrived" is
checked with a ping/pong barrier (`Chan.barrier`). Each test checks that the server
printed no traceback while it ran (`shared_server_log_clean`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest
from websockets.asyncio.client import connect

import tunehand
from tests.fixtures_server import ServerProc
from tests.test_api import (
    TIMEOUT_S,
    Api,
    Chan,
    Json,
    accounts,
    acmd,
    all_tracks,
    async_http,
    channel,
    expect_closed,
    now_ms,
    ws_url,
)

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]


@pytest.fixture
def account(shared_server: ServerProc) -> Iterator[Callable[..., Api]]:
    with accounts(shared_server) as make:
        yield make


@pytest.fixture(scope="module")
def module_account(shared_server: ServerProc) -> Iterator[Api]:
    """One account for the tests that do not depend on (or change) the session."""
    with accounts(shared_server) as make:
        yield make("chan")


@pytest.fixture(scope="module")
def track_ids(module_account: Api) -> list[str]:
    return [t["id"] for t in all_tracks(module_account)]


# --- hello ----------------------------------------------------------------------------


async def test_auth_first_message_answers_hello(account: Callable[..., Api]) -> None:
    a = account()
    async with channel(a.srv, a.token, device_id="kitchen", capabilities=("play",)) as ch:
        h = ch.hello
        assert h["device_id"] == "kitchen"
        assert abs(h["server_time_ms"] - now_ms()) < 5000
        assert h["version"] == 0
        assert h["server_version"] == tunehand.__version__
        assert h["state"]["type"] == "state"
        assert h["state"]["version"] == 0
        assert h["state"]["state"]["queue"] == []
        assert h["state"]["state"]["volume"] == 100
        online = {d["id"]: d["online"] for d in h["devices"]}
        assert online == {"kitchen": True, a.device_id: False}


async def test_token_in_the_authorization_header_works_too(account: Callable[..., Api]) -> None:
    a = account()
    async with channel(a.srv, a.token, header=True) as ch:
        assert ch.hello["device_id"] == ch.device_id
        result = await ch.command("volume", value=42)
        assert (result["code"], result["version"]) == ("ok", 1)


# --- state fan-out, results, presence -------------------------------------------------


async def test_state_goes_to_every_device_and_the_result_to_the_sender(
    account: Callable[..., Api],
) -> None:
    a = account()
    async with channel(a.srv, a.token) as one, channel(a.srv, a.token) as two:
        result = await one.command("volume", value=40)
        assert result["code"] == "ok"
        version = result["version"]
        for ch in (one, two):
            st = await ch.wait("state", lambda m: m["version"] == version)
            assert st["state"]["volume"] == 40
            assert st["state"]["version"] == version
        assert not [m for m in await two.barrier() if m["type"] == "result"]
        assert not [m for m in two.seen if m["type"] == "result"]
        # A REST command reaches the channels the same way.
        async with async_http(a) as http:
            out = await acmd(http, "repeat", mode="all")
        for ch in (one, two):
            st = await ch.wait("state", lambda m: m["version"] == out["state"]["version"])
            assert st["state"]["repeat"] == "all"


async def test_a_replayed_command_gets_its_first_result(account: Callable[..., Api]) -> None:
    a = account()
    body = {"op": "volume", "command_id": "journal-1", "delta": -5}
    rest = a.post("/v1/session/commands", json=body).json()["result"]
    async with channel(a.srv, a.token) as ch:
        await ch.send(type="command", command=body)
        again = await ch.wait("result", lambda m: m["command_id"] == "journal-1")
        assert (again["code"], again["version"]) == (rest["code"], rest["version"])
        assert not [m for m in await ch.barrier() if m["type"] == "state"]
    assert a.state()["volume"] == 95


async def test_devices_are_announced_when_they_come_and_go(account: Callable[..., Api]) -> None:
    a = account()

    def online(m: Json) -> dict[str, bool]:
        return {d["id"]: d["online"] for d in m["devices"]}

    async with channel(a.srv, a.token, device_id="den") as den:
        async with channel(a.srv, a.token, device_id="porch") as porch:
            # A join or leave is a patch of that device alone (see test_limits).
            came = await den.wait("devices", lambda m: online(m).get("porch") is True)
            assert came["patch"] is True and online(came) == {"porch": True}
            assert online(porch.hello)["den"] is True
        gone = await den.wait("devices", lambda m: online(m).get("porch") is False)
        assert gone["patch"] is True and online(gone) == {"porch": False}
        assert {d["id"] for d in a.ok("GET", "/v1/devices")["devices"]} >= {"den", "porch"}


async def test_revoking_a_device_closes_its_channel(account: Callable[..., Api]) -> None:
    a = account()
    async with channel(a.srv, a.token, device_id="old-laptop") as ch:
        await ch.barrier()
        assert a.ok("DELETE", "/v1/devices/old-laptop") == {"ok": True}
        assert await expect_closed(ch.ws) == 4003
    # The revoked device id cannot come back on this account's other token.
    async with connect(ws_url(a.srv)) as ws:
        auth = {"type": "auth", "token": a.token, "device": {"id": "old-laptop", "name": "x"}}
        await ws.send(json.dumps(auth))
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert (err["type"], err["code"]) == ("error", "unauthorized")
        assert await expect_closed(ws) == 4001


# --- time, ping, resync, reconnect ----------------------------------------------------


async def test_time_request_echoes_t0_with_server_times(module_account: Api) -> None:
    async with channel(module_account.srv, module_account.token) as ch:
        before = now_ms()
        await ch.send(type="time", t0=123456.75)
        reply = await ch.wait("time")
        assert reply["t0"] == 123456.75
        assert before - 1000 <= reply["t1"] <= reply["t2"] <= now_ms() + 1000


async def test_ping_answers_pong(module_account: Api) -> None:
    async with channel(module_account.srv, module_account.token) as ch:
        await ch.send(type="ping")
        pong = await ch.wait("pong")
        assert abs(pong["server_time_ms"] - now_ms()) < 5000


async def test_resync_sends_the_full_state(account: Callable[..., Api]) -> None:
    a = account()
    a.cmd("volume", value=33)
    a.cmd("repeat", mode="one")
    async with channel(a.srv, a.token, last_version=2) as ch:
        assert ch.hello["state"] is None
        await ch.barrier()
        await ch.send(type="resync", last_version=0)
        st = await ch.wait("state")
        assert st["version"] == 2
        assert (st["state"]["volume"], st["state"]["repeat"]) == (33, "one")


async def test_reconnect_sends_the_state_only_when_the_client_is_behind(
    account: Callable[..., Api], track_ids: list[str]
) -> None:
    a = account()
    a.cmd("queue_add", track_ids=track_ids[:2])
    a.cmd("next")
    st = a.state()
    assert st["version"] == 2
    async with channel(a.srv, a.token, last_version=2) as ch:
        assert (ch.hello["version"], ch.hello["state"]) == (2, None)
    for behind in (None, 0, 1, 99):
        async with channel(a.srv, a.token, last_version=behind) as ch:
            full = ch.hello["state"]
            assert full["version"] == 2
            assert full["state"] == st
            assert full["track"]["id"] == track_ids[0]


# --- bad messages ---------------------------------------------------------------------

MALFORMED: list[tuple[str | bytes, str]] = [
    ("not json", "malformed JSON"),
    (b"\x00\xff\xfe", "malformed JSON"),
    (b'{"type": "ping", "x": "\xff\xfe"}', "UTF-8"),
    ("[" * 100_000, "nested"),
    ("[1, 2]", "JSON object"),
    ('"ping"', "JSON object"),
    ('{"no_type": 1}', "type"),
    ('{"type": 5}', "type"),
    ('{"type": "explode"}', "explode"),
    ('{"type": "time", "t0": "soon"}', "$.t0"),
    ('{"type": "time"}', "t0"),
    ('{"type": "command"}', "command"),
    ('{"type": "command", "command": {"op": "fly", "command_id": "x"}}', "$.command.op"),
    (
        '{"type": "command", "command": {"op": "volume", "command_id": "x", "value": "loud"}}',
        "$.command.value",
    ),
    ('{"type": "command", "command": {"op": "volume"}}', "command_id"),
    ('{"type": "report", "report": {"term": "one"}}', "$.report"),
    ('{"type": "resync", "last_version": "new"}', "$.last_version"),
    ('{"type": "auth", "device": {"id": "x", "name": "x"}}', "already authenticated"),
    ('{"type": "command", "command": {"op": "pause", "command_id": "c\\u0000"}}', "NUL"),
    (b'{"type": "command", "command": {"op": "pause", "command_id": "c\\u0000"}}', "NUL"),
]


@pytest.mark.parametrize(("raw", "needle"), MALFORMED)
async def test_a_bad_message_gets_an_error_and_the_connection_stays(
    module_account: Api, raw: str | bytes, needle: str
) -> None:
    async with channel(module_account.srv, module_account.token) as ch:
        await ch.barrier()
        await ch.ws.send(raw)
        err = await ch.wait("error")
        assert err["code"] == "invalid"
        assert needle in err["message"]
        assert "Traceback" not in err["message"]
        await ch.send(type="ping")
        assert (await ch.wait("pong"))["type"] == "pong"


async def test_a_command_refused_by_the_core_gets_a_result(module_account: Api) -> None:
    async with channel(module_account.srv, module_account.token) as ch:
        res = await ch.command("volume", value=500)
        assert (res["code"], res["version"]) == ("invalid", 0)
        assert "volume" in res["message"]


FIRST_MESSAGES: list[tuple[str, int]] = [
    ('{"type": "ping"}', 1008),
    ("not json", 1008),
    ('{"type": "auth", "device": {"id": "", "name": "x"}}', 1008),
    ('{"type": "auth", "device": {"id": "' + "x" * 65 + '", "name": "x"}}', 1008),
    ('{"type": "auth", "device": {"id": "d", "name": "x"}}', 4001),  # no token anywhere
    ('{"type": "auth", "token": "tha_forged", "device": {"id": "d", "name": "x"}}', 4001),
    ('{"type": "auth", "token": "", "device": {"id": "d", "name": "x"}}', 4001),
]


@pytest.mark.parametrize(("first", "close_code"), FIRST_MESSAGES)
async def test_the_first_message_must_authenticate(
    shared_server: ServerProc, first: str, close_code: int
) -> None:
    async with connect(ws_url(shared_server)) as ws:
        await ws.send(first)
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert err["type"] == "error"
        assert err["code"] == ("unauthorized" if close_code == 4001 else "invalid")
        assert await expect_closed(ws) == close_code


async def test_a_message_over_256_kib_closes_the_connection(module_account: Api) -> None:
    srv = module_account.srv
    async with channel(srv, module_account.token) as ch:
        # Just under the limit is fine (unknown fields are ignored) ...
        await ch.send(type="ping", pad="x" * (250 * 1024))
        await ch.wait("pong")
        # ... just over it is not.
        await ch.send(type="ping", pad="x" * (256 * 1024))
        assert await expect_closed(ch.ws) == 1009
    async with connect(ws_url(srv)) as ws:  # also as the first message
        await ws.send(json.dumps({"type": "auth", "pad": "x" * (300 * 1024)}))
        assert await expect_closed(ws) == 1009


# --- playback: terms, device loss -----------------------------------------------------


async def _start_playing(
    player: Chan, track_ids: list[str], position_ms: int = 0
) -> tuple[Json, Json]:
    """Queue the tracks, play them on `player` and report audible playback from there.

    Returns the start directive and the state after the report.
    """
    await player.command("queue_replace", track_ids=track_ids, if_version=0)
    res = await player.command("play")
    assert res["code"] == "ok", res
    start = await player.wait("directive", lambda m: m["action"] == "start")
    report = {
        "term": start["term"],
        "entry_id": start["entry_id"],
        "position_ms": position_ms,
        "at_ms": now_ms(),
        "playing": True,
        "rate": 1.0,
    }
    await player.send(type="report", report=report)
    st = await player.wait("state", lambda m: m["state"]["position"]["rate"] == 1.0)
    return start, st


async def test_a_report_with_a_stale_term_is_refused(
    account: Callable[..., Api], track_ids: list[str]
) -> None:
    a = account()
    async with (
        channel(a.srv, a.token, capabilities=("play",)) as player,
        channel(a.srv, a.token) as other,
    ):
        start, st = await _start_playing(player, track_ids[:1])
        term = start["term"]
        assert st["state"]["term"] == term
        stale = {
            "term": term - 1,
            "entry_id": start["entry_id"],
            "position_ms": 5,
            "at_ms": now_ms(),
            "playing": False,
            "rate": 0.0,
        }
        await player.send(type="report", report=stale)
        err = await player.wait("error")
        assert err["code"] == "stale_term"
        # The right term from a device that is not the active one: refused too.
        await other.send(type="report", report={**stale, "term": term})
        assert (await other.wait("error"))["code"] == "stale_term"
        assert a.state()["version"] == st["version"]
        # The active device with the right term is heard.
        await player.send(type="report", report={**stale, "term": term})
        paused = await player.wait("state", lambda m: m["version"] > st["version"])
        assert paused["state"]["position"]["playing"] is False
        assert not [m for m in await player.barrier() if m["type"] == "error"]


async def test_a_report_refused_as_out_of_date_is_answered_with_the_state(
    account: Callable[..., Api], track_ids: list[str]
) -> None:
    """A report made before a newer state (a seek on another device) is refused, and the
    device gets that state again with the refusal, in case its fan-out never came."""
    a = account()
    async with (
        channel(a.srv, a.token, capabilities=("play",)) as player,
        channel(a.srv, a.token) as other,
    ):
        start, st = await _start_playing(player, track_ids[:1])
        res = await other.command("seek", position_ms=700)  # the test tracks are 1 s long
        assert res["code"] == "ok"
        await player.wait("state", lambda m: m["version"] == res["version"])
        late = {
            "term": start["term"],
            "entry_id": start["entry_id"],
            "position_ms": 100,
            "at_ms": now_ms(),
            "playing": True,
            "rate": 1.0,
            "version": st["version"],
        }
        await player.send(type="report", report=late)
        again = await player.wait("state", lambda m: m["version"] == res["version"])
        assert again["state"]["position"]["position_ms"] == 700
        assert a.state()["version"] == res["version"]


async def test_losing_the_active_device_pauses_the_session_where_it_was(
    account: Callable[..., Api], track_ids: list[str]
) -> None:
    a = account()
    async with channel(a.srv, a.token) as watcher:
        async with channel(a.srv, a.token, capabilities=("play",)) as player:
            start, st = await _start_playing(player, track_ids[:1], position_ms=300)
            await watcher.wait("state", lambda m: m["version"] == st["version"])
        lost = await watcher.wait("state", lambda m: m["version"] > st["version"])
        s = lost["state"]
        assert s["active_device"] is None
        assert s["position"]["playing"] is False
        assert s["position"]["rate"] == 0
        assert s["term"] == start["term"] + 1
        duration = s["queue"][0]["duration_ms"]
        assert 300 <= s["position"]["position_ms"] <= duration
        assert s["current"] == start["entry_id"]
        gone = await watcher.wait(
            "devices",
            lambda m: any(d["id"] == player.device_id and not d["online"] for d in m["devices"]),
        )
        assert gone["type"] == "devices"
        assert a.state() == s


async def test_flooding_commands_is_rate_limited(account: Callable[..., Api]) -> None:
    a = account()
    n = 300
    async with channel(a.srv, a.token, max_queue=None) as ch:
        for i in range(n):
            cmd = {"op": "volume", "command_id": f"flood-{i}", "value": i % 100}
            await ch.send(type="command", command=cmd)
        codes: dict[str, str] = {}
        async with asyncio.timeout(60):
            while len(codes) < n:
                m = await ch.wait("result")
                codes[m["command_id"]] = m["code"]
        counts = {c: list(codes.values()).count(c) for c in set(codes.values())}
        assert set(counts) == {"ok", "rate_limited"}, counts
        assert counts["ok"] >= 100  # the burst always gets through
        assert counts["rate_limited"] >= 1
        assert a.state()["version"] == counts["ok"]
        await ch.send(type="ping")
        await ch.wait("pong")
