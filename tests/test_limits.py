"""What one client, network or account can make a real server do (issue 16, findings 6,
8 and 10): limits keyed on networks as well as addresses, counts that do not race, a
bound on password hashing, per-user throttling that strangers cannot turn against the
user, a cap on an account's online devices, rate limits on every channel message and
REST request, and quotas.

Clients talk from other loopback addresses (`local_address`): 127.0.N.x is network
127.0.N.0/24, so each test keeps to networks of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from argon2 import PasswordHasher
from websockets.asyncio.client import connect

from tests.fixtures_server import ServerProc, launch
from tests.test_api import (
    PASSWORD,
    TIMEOUT_S,
    Api,
    accounts,
    add_users,
    channel,
    db_url,
    expect_closed,
    run_async,
    unique,
    ws_url,
)
from tunehand.cli.watch import merged_devices
from tunehand.core.model import MAX_QUEUE
from tunehand.core.protocol import CLOSE_TOO_MANY_DEVICES
from tunehand.server.auth import NETWORK_FREE_FAILURES, USER_FREE_FAILURES
from tunehand.server.db import tables
from tunehand.server.db.engine import default_url, open_engine
from tunehand.server.db.migrate import alembic_config
from tunehand.server.db.tables import (
    device_codes,
    devices,
    likes,
    login_attempts,
    playlists,
    remote_tracks,
    tokens,
)
from tunehand.server.device_code import STARTS_PER_ADDRESS, STARTS_PER_NETWORK
from tunehand.server.limits import QUOTAS, network
from tunehand.server.services import REST_BURST
from tunehand.server.web import now_ms

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]


@pytest.fixture
def account(shared_server: ServerProc) -> Iterator[Callable[..., Api]]:
    with accounts(shared_server) as make:
        yield make


def _from(address: str, **kw: Any) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, timeout=60, **kw)


def online(a: Api) -> set[str]:
    return {d["id"] for d in a.ok("GET", "/v1/devices")["devices"] if d["online"]}


def _sql(srv: ServerProc, stmt: Any, rows: list[dict[str, Any]] | None = None) -> None:
    async def run() -> None:
        engine = open_engine(db_url(srv))
        try:
            async with engine.begin() as conn:
                await (conn.execute(stmt, rows) if rows is not None else conn.execute(stmt))
        finally:
            await engine.dispose()

    run_async(run)


def test_networks_are_slash_24_and_slash_64() -> None:
    assert network("198.51.100.77") == "198.51.100.0/24"
    assert network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network("::ffff:198.51.100.7") == "198.51.100.0/24"
    assert network("testclient") == "testclient"


def test_ctl_watch_merges_devices_patches() -> None:
    """`ctl watch` reads the channel itself: a patch changes only the devices it names."""
    full = {"devices": [{"id": "a", "online": False}, {"id": "b", "online": False}]}
    devices = merged_devices([], full)
    devices = merged_devices(devices, {"patch": True, "devices": [{"id": "b", "online": True}]})
    assert devices == [{"id": "a", "online": False}, {"id": "b", "online": True}]
    patch = {"patch": True, "devices": [{"id": "c", "online": True}], "removed": ["a"]}
    assert [d["id"] for d in merged_devices(devices, patch)] == ["b", "c"]


# --- device-code starts ---------------------------------------------------------------


async def test_parallel_device_code_starts_from_one_address_never_pass_the_limit(
    shared_server: ServerProc,
) -> None:
    """Finding 8: 34 of 60 parallel starts passed a limit of 20 (count, then insert)."""
    async with _from("127.0.11.1") as http:
        answers = await asyncio.gather(
            *(
                http.post(shared_server.url + "/v1/auth/device", json={"device_id": f"race{i}"})
                for i in range(3 * STARTS_PER_ADDRESS)
            )
        )
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == STARTS_PER_ADDRESS, statuses
    assert set(statuses) == {200, 429}, statuses


async def test_device_code_starts_are_limited_per_network(shared_server: ServerProc) -> None:
    """Finding 8: many addresses of one host filled the server-wide cap. Starts from
    every address of a /24 together get `STARTS_PER_NETWORK`; another network is not
    affected."""
    ok = 0
    last: httpx.Response | None = None
    for host in range(1, STARTS_PER_NETWORK // 10 + 3):
        async with _from(f"127.0.12.{host}") as http:
            for i in range(10):
                r = await http.post(
                    shared_server.url + "/v1/auth/device", json={"device_id": f"n{host}-{i}"}
                )
                assert r.status_code in (200, 429), r.text
                ok += r.status_code == 200
                last = r
    assert ok == STARTS_PER_NETWORK
    assert last is not None and last.status_code == 429
    assert "from this network" in last.json()["error"]["message"]
    assert 1 <= int(last.headers["Retry-After"]) <= 600
    async with _from("127.0.13.1") as http:
        r = await http.post(shared_server.url + "/v1/auth/device", json={"device_id": "other"})
        assert r.status_code == 200, r.text


# --- password logins ------------------------------------------------------------------


async def test_failures_from_many_addresses_of_a_network_meet_its_throttle(
    shared_server: ServerProc,
) -> None:
    """Each address has three free failures; the network they share has
    `NETWORK_FREE_FAILURES`, then all of its addresses wait (and the right password
    too, so nothing is learnt); another network is not affected."""
    user = unique("netthr")
    await asyncio.to_thread(add_users, shared_server, user)
    url = shared_server.url + "/v1/auth/login"
    statuses: list[int] = []
    host = 0
    while 429 not in statuses and host < 40:
        host += 1
        async with _from(f"127.0.14.{host}") as http:
            for i in range(2):
                body = {"user": unique("nobody"), "password": "bad", "device_id": f"x{i}"}
                statuses.append((await http.post(url, json=body)).status_code)
    # Not before: each address failed twice only. (Soon after: the delays only grow,
    # but a busy machine may take longer than the first ones between two requests.)
    assert statuses.index(429) >= NETWORK_FREE_FAILURES, statuses
    # The delay at once goes beyond what a slow machine takes between two requests.
    key = "net:127.0.14.0/24"
    row = {"key": key, "failures": NETWORK_FREE_FAILURES + 5, "last_ms": now_ms()}
    _sql(shared_server, sa.delete(login_attempts).where(login_attempts.c.key == key))
    _sql(shared_server, sa.insert(login_attempts), [row])
    body = {"user": user, "password": PASSWORD, "device_id": "netthr"}
    async with _from("127.0.14.200") as http:
        r = await http.post(url, json=body)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 30
    async with _from("127.0.15.1") as http:
        r = await http.post(url, json=body)
        assert r.status_code == 200, r.text


def test_strangers_cannot_lock_a_user_out_of_its_own_network(shared_server: ServerProc) -> None:
    """Finding 10. The user logged in from 127.0.16.1 before; strangers then fail as that
    user from other networks, past every delay the user would have met. Logins from
    the user's network still work; a new network meets the per-user bound."""
    user = unique("lockout")
    add_users(shared_server, user)
    url = shared_server.url + "/v1/auth/login"
    body = {"user": user, "password": PASSWORD, "device_id": unique("own")}

    async def login(address: str, password: str = PASSWORD) -> httpx.Response:
        async with _from(address) as http:
            return await http.post(url, json={**body, "password": password})

    assert run_async(lambda: login("127.0.16.1")).status_code == 200
    # Strangers on three networks: each gets its free failures, then waits.
    for net in (17, 18, 19):
        codes = [run_async(lambda n=net: login(f"127.0.{n}.9", "guess")).status_code]
        while codes[-1] != 429 and len(codes) < 12:
            codes.append(run_async(lambda n=net: login(f"127.0.{n}.9", "guess")).status_code)
        assert codes[:3] == [401] * 3 and codes[-1] == 429, codes
    # As if many more networks had failed: the per-user bound is past its free failures.
    row = {"key": f"user:{user}", "failures": USER_FREE_FAILURES + 6, "last_ms": now_ms()}
    _sql(shared_server, sa.delete(login_attempts).where(login_attempts.c.key == row["key"]))
    _sql(shared_server, sa.insert(login_attempts), [row])
    r = run_async(lambda: login("127.0.16.7"))  # another host of the user's own network
    assert r.status_code == 200, r.text
    r = run_async(lambda: login("127.0.20.1"))  # a network the user was never seen on
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1


async def test_a_login_flood_from_one_network_leaves_others_logins_alone(
    shared_server: ServerProc,
) -> None:
    """Finding 8: hashing from many addresses was unbounded and others' logins failed
    with 503. A network holds only a few hashing slots (then 429 at once, with
    Retry-After), so a user elsewhere logs in meanwhile. The flood logs in to its own
    account (right passwords: no throttle delay stops it)."""
    flood_user, user = unique("flood"), unique("victim")
    await asyncio.to_thread(add_users, shared_server, flood_user, user)
    url = shared_server.url + "/v1/auth/login"

    async def flood(host: int) -> httpx.Response:
        async with _from(f"127.0.21.{host}") as http:
            body = {"user": flood_user, "password": PASSWORD, "device_id": f"flood{host}"}
            return await http.post(url, json=body)

    async def victim() -> httpx.Response:
        await asyncio.sleep(0)  # (let the flood go first)
        async with _from("127.0.22.1") as http:
            body = {"user": user, "password": PASSWORD, "device_id": "victim"}
            return await http.post(url, json=body)

    *flooded, mine = await asyncio.gather(*(flood(h) for h in range(1, 41)), victim())
    assert mine.status_code == 200, mine.text
    statuses = [r.status_code for r in flooded]
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in flooded if r.status_code == 429]
    assert refused, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)


# --- devices ----------------------------------------------------------------------------


async def test_an_account_has_at_most_max_devices_online(
    start_server: Callable[..., ServerProc],
) -> None:
    """Finding 6: 2,000 channels of one account were accepted. With `--max-devices 3`
    the fourth device is refused with close code 4010 and a reason; other accounts are
    not affected; once a device leaves, a new one gets in."""
    srv = start_server(extra_args=("--max-devices", "3"), wait_scan=False)
    with accounts(srv) as make:
        a, b = make("cap"), make("capb")

        def token(device: str) -> str:
            return str(srv.login(a.name, device_id=device)["access_token"])

        tokens = {d: await asyncio.to_thread(token, d) for d in ("c1", "c2", "c3", "c4")}
        async with (
            channel(srv, tokens["c1"], device_id="c1") as one,
            channel(srv, tokens["c2"], device_id="c2"),
            channel(srv, tokens["c3"], device_id="c3"),
            channel(srv, b.token, device_id=b.device_id),
        ):
            async with connect(ws_url(srv)) as ws:
                device = {"id": "c4", "name": "c4"}
                await ws.send(json.dumps({"type": "auth", "token": tokens["c4"], "device": device}))
                refusal = json.loads(await ws.recv())
                assert refusal["type"] == "error" and refusal["code"] == "too_many_devices"
                assert "3 per account" in refusal["message"]
                assert await expect_closed(ws) == CLOSE_TOO_MANY_DEVICES
            await one.ws.close()
            async with asyncio.timeout(TIMEOUT_S):
                while "c1" in online(a):
                    await asyncio.sleep(0.05)  # (polling the condition, with a deadline)
            async with channel(srv, tokens["c4"], device_id="c4") as four:
                assert four.hello["device_id"] == "c4"


async def test_a_join_sends_every_device_one_small_patch(account: Callable[..., Api]) -> None:
    """Finding 6: every join sent the full device list to every channel (500 joins
    pushed 6.2 GB). Now a join or leave sends one device: what the first device hears
    per join does not grow with the number of devices."""
    a = account("patch")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(channel(a.srv, token(a, "p0"), device_id="p0"))
        sizes = []
        for i in range(1, 25):
            ch = channel(a.srv, token(a, f"p{i}"), device_id=f"p{i}")
            await stack.enter_async_context(ch)
            came = await first.wait("devices", lambda m, i=i: _ids(m) == [f"p{i}"])
            assert came["patch"] is True and came["devices"][0]["online"] is True
            sizes.append(len(json.dumps(came)))
        assert max(sizes) <= min(sizes) + 8, sizes  # (ids of two digits)
    async with (
        channel(a.srv, a.token, device_id="watcher") as w,
        channel(a.srv, a.token, device_id="leaver") as leaver,
    ):
        await w.wait("devices", lambda m: _ids(m) == ["leaver"])
        await leaver.ws.close()
        gone = await w.wait("devices", lambda m: _ids(m) == ["leaver"])
        assert gone["patch"] is True and gone["devices"][0]["online"] is False


def token(a: Api, device_id: str) -> str:
    """An access token of `a`'s account for a device of its own."""
    return str(a.srv.login(a.name, device_id=device_id)["access_token"])


def _ids(m: dict[str, Any]) -> list[str]:
    return [d["id"] for d in m["devices"]]


def test_device_rows_have_a_quota(shared_server: ServerProc) -> None:
    """Finding 6: no quota on device rows. Past `QUOTAS.devices` a login with a new
    device id is refused with 409 `quota`; the devices it has log in again."""
    user = unique("rows")
    add_users(shared_server, user)
    first = shared_server.login(user, device_id=unique("first"))

    async def account_id() -> int:
        engine = open_engine(db_url(shared_server))
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(devices.c.account_id).where(devices.c.id == first["device_id"])
                    )
                ).one()
        finally:
            await engine.dispose()
        return int(row.account_id)

    acct = run_async(account_id)
    rows = [
        {"id": unique("row"), "account_id": acct, "name": "r", "last_seen_ms": 0, "address": ""}
        for _ in range(QUOTAS.devices - 1)
    ]
    _sql(shared_server, sa.insert(devices), rows)
    body = {"user": user, "password": PASSWORD, "device_id": unique("new")}

    async def post(b: dict[str, Any]) -> httpx.Response:
        async with _from("127.0.23.1") as http:
            return await http.post(shared_server.url + "/v1/auth/login", json=b)

    r = run_async(lambda: post(body))
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "quota"
    assert "revoke" in r.json()["error"]["message"]
    again = run_async(lambda: post({**body, "device_id": first["device_id"]}))
    assert again.status_code == 200, again.text


# --- rate limits ------------------------------------------------------------------------


async def test_every_channel_message_type_is_rate_limited(account: Callable[..., Api]) -> None:
    """Finding 6: `resync`, `ready` and `failed` skipped the rate limit. A burst of each
    past the bucket gets `rate_limited` errors, and the connection stays up."""
    a = account("chanrate")
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("resync", {}),
        ("ready", {"transfer_id": "t"}),
        ("failed", {"transfer_id": "t", "message": "no"}),
        ("time", {"t0": 1.0}),
        ("ping", {}),
    ]
    for kind, extra in kinds:
        async with channel(a.srv, a.token) as ch:
            for _ in range(300):
                await ch.send(type=kind, **extra)
            err = await ch.wait("error", lambda m: m["code"] == "rate_limited")
            assert kind in err["message"]
            # Still answered once the bucket fills again.
            async with asyncio.timeout(TIMEOUT_S):
                while True:
                    await ch.send(type="time", t0=2.0)
                    msg = await ch.recv()
                    if msg["type"] == "time" and msg.get("t0") == 2.0:
                        break


async def test_rest_requests_are_rate_limited_per_account(
    start_server: Callable[..., ServerProc],
) -> None:
    """Finding 6: REST commands skipped the rate limit. Every authenticated request takes
    from the account's bucket; past it the answer is 429 with Retry-After, commands
    included; another account is not affected. (The bucket refills at 1 a second here,
    so nothing refills it while the test looks.)"""
    srv = start_server(env={"TUNEHAND_REST_PER_S": "1"}, wait_scan=False)
    with accounts(srv) as make:
        a, b = make("restrate"), make("restrate")
        async with httpx.AsyncClient(base_url=srv.url, headers=a.headers, timeout=60) as http:
            answers: list[httpx.Response] = []
            for _ in range(int(REST_BURST) // 10 + 2):  # (10 at a time: few connections)
                answers += await asyncio.gather(*(http.get("/v1/auth/whoami") for _ in range(10)))
            body = {"op": "volume", "value": 50, "command_id": unique("r")}
            command = await http.post("/v1/session/commands", json=body)
        statuses = [r.status_code for r in answers]
        assert set(statuses) == {200, 429}, statuses
        assert REST_BURST <= statuses.count(200) <= REST_BURST + 10, statuses
        for r in (next(r for r in answers if r.status_code == 429), command):
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "rate_limited"
            assert int(r.headers["Retry-After"]) >= 1
        assert b.get("/v1/devices").status_code == 200


# --- quotas -----------------------------------------------------------------------------


def _account_id(srv: ServerProc, device_id: str) -> int:
    async def run() -> int:
        engine = open_engine(db_url(srv))
        try:
            async with engine.connect() as conn:
                stmt = sa.select(devices.c.account_id).where(devices.c.id == device_id)
                return int((await conn.execute(stmt)).scalar_one())
        finally:
            await engine.dispose()

    out: int = run_async(run)
    return out


def test_playlists_likes_and_remote_tracks_have_quotas(account: Callable[..., Api]) -> None:
    """Finding 6: no quotas on playlists or likes. The account's rows are filled to the
    quota in its database; one more is refused with 409 `quota` and a line saying what
    to do, while changing what exists still works."""
    a = account("quota")
    srv = a.srv
    acct = _account_id(srv, a.device_id)
    track = a.ok("GET", "/v1/albums")["albums"][0]
    tid = a.ok("GET", f"/v1/albums/{track['id']}/tracks")["tracks"][0]["id"]
    assert a.put("/v1/playlists/kept", json={"track_ids": [tid]}).status_code == 200
    assert a.put(f"/v1/likes/{tid}").status_code == 200
    lists = [
        {"account_id": acct, "name": f"p{i}", "track_ids": "[]", "updated_ms": 0}
        for i in range(QUOTAS.playlists - 1)
    ]
    _sql(srv, sa.insert(playlists), lists)
    liked = [
        {"account_id": acct, "track_id": f"t{i}", "created_ms": 0} for i in range(QUOTAS.likes - 1)
    ]
    _sql(srv, sa.insert(likes), liked)
    remote = [
        {"id": f"r{acct}-{i}", "account_id": acct, "url": "http://x/", "title": ""}
        for i in range(QUOTAS.remote_tracks)
    ]
    _sql(srv, sa.insert(remote_tracks), remote)
    refusals = [
        a.put("/v1/playlists/one-more", json={"track_ids": [tid]}),
        a.put(f"/v1/likes/{_other_track(a, tid)}"),
        a.post("/v1/tracks/remote", json={"url": "http://example.org/a.ogg"}),
    ]
    for r, what in zip(refusals, ("delete some", "unlike some", "remote tracks"), strict=True):
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "quota"
        assert what in r.json()["error"]["message"]
    # What exists can still change.
    assert a.put("/v1/playlists/kept", json={"track_ids": [tid, tid]}).status_code == 200
    assert a.put(f"/v1/likes/{tid}").status_code == 200


def _other_track(a: Api, tid: str) -> str:
    for album in a.ok("GET", "/v1/albums")["albums"]:
        for t in a.ok("GET", f"/v1/albums/{album['id']}/tracks")["tracks"]:
            if t["id"] != tid:
                return str(t["id"])
    raise AssertionError("the library has one track")


# --- the purge --------------------------------------------------------------------------


def test_expired_tokens_codes_and_stale_device_rows_are_purged(
    start_server: Callable[..., ServerProc],
) -> None:
    """Finding 6: expired tokens, codes and device rows were never purged. With a purge
    every second, what expired goes; what is live stays."""
    srv = start_server(env={"TUNEHAND_PURGE_INTERVAL_S": "1"}, wait_scan=False)
    user = unique("purge")
    add_users(srv, user)
    live = srv.login(user)
    acct = _account_id(srv, live["device_id"])
    now = now_ms()
    day = 24 * 3600 * 1000

    def token(h: str, expires: int, device: str) -> dict[str, Any]:
        return {
            "hash": h,
            "kind": "access",
            "account_id": acct,
            "device_id": device,
            "family": "f",
            "expires_ms": expires,
            "used_ms": None,
            "revoked": False,
        }

    def code(h: str, expires: int) -> dict[str, Any]:
        return {
            "code_hash": h,
            "user_code": h.upper()[:8],
            "device_id": h,
            "device_name": h,
            "created_ms": 0,
            "expires_ms": expires,
            "interval_s": 5,
            "last_poll_ms": None,
            "status": "pending",
            "account_id": None,
        }

    def device(i: str, seen: int, revoked: bool) -> dict[str, Any]:
        return {
            "id": i,
            "account_id": acct,
            "name": i,
            "last_seen_ms": seen,
            "address": "",
            "revoked": revoked,
        }

    _sql(srv, sa.insert(tokens), [token("gone", now - 1, "old"), token("kept", now + day, "new")])
    _sql(srv, sa.insert(device_codes), [code("goneaaaa", now - day), code("keptaaaa", now + day)])
    _sql(
        srv,
        sa.insert(devices),
        [
            device("revoked", now, True),
            device("old", 0, False),  # unseen for long, no live token
            device("new", 0, False),  # unseen for long, but holds a live token
            device("recent", now, False),
        ],
    )
    _sql(
        srv,
        sa.insert(login_attempts),
        [
            {"key": "purge-old", "failures": 3, "last_ms": now - 2 * day},
            {"key": "purge-new", "failures": 3, "last_ms": now},
        ],
    )

    def left() -> tuple[set[str], set[str], set[str], set[str]]:
        async def run() -> tuple[set[str], set[str], set[str], set[str]]:
            engine = open_engine(db_url(srv))
            try:
                async with engine.connect() as conn:

                    async def col(c: Any, where: Any) -> set[str]:
                        return {r[0] for r in await conn.execute(sa.select(c).where(where))}

                    return (
                        await col(tokens.c.hash, tokens.c.account_id == acct),
                        await col(device_codes.c.code_hash, sa.true()),
                        await col(devices.c.id, devices.c.account_id == acct),
                        await col(login_attempts.c.key, login_attempts.c.key.like("purge-%")),
                    )
            finally:
                await engine.dispose()

        out: tuple[set[str], set[str], set[str], set[str]] = run_async(run)
        return out

    deadline = time.monotonic() + 30
    while "gone" in left()[0] and time.monotonic() < deadline:
        time.sleep(0.1)  # (polling the condition, with a deadline)
    toks, codes, devs, attempts = left()
    assert "gone" not in toks and "kept" in toks
    assert codes == {"keptaaaa"}
    assert devs == {"new", "recent", live["device_id"]}
    assert attempts == {"purge-new"}
    assert srv.login(user, device_id=live["device_id"])["access_token"]


# --- the queue's storage ----------------------------------------------------------------


def test_a_small_command_on_a_long_queue_does_not_rewrite_the_queue(
    backend: Any, account: Callable[..., Api]
) -> None:
    """Finding 6: a 10,000-entry queue turned each small command into a ~770 KB write.
    The queue has a column of its own, written only when it changes. On PostgreSQL a
    value that large lives in the table's TOAST relation, which grows by the value's
    size at every rewrite: after 20 changes of volume and repeat it has not grown; one
    change of the queue does make it grow (the measure works)."""
    if backend.name != "postgres":
        pytest.skip("measured through PostgreSQL's TOAST relation")
    a = account("longq")
    tid = a.ok("GET", "/v1/albums")["albums"][0]["id"]
    track = a.ok("GET", f"/v1/albums/{tid}/tracks")["tracks"][0]["id"]
    a.cmd("queue_add", track_ids=[track] * MAX_QUEUE)

    def toast_bytes() -> int:
        async def run() -> int:
            engine = open_engine(db_url(a.srv))
            try:
                async with engine.connect() as conn:
                    size = await conn.execute(
                        sa.text(
                            "SELECT pg_relation_size(reltoastrelid) FROM pg_class"
                            " WHERE relname = 'sessions'"
                        )
                    )
                    return int(size.scalar_one())
            finally:
                await engine.dispose()

        out: int = run_async(run)
        return out

    before = toast_bytes()
    assert before > 20_000  # the queue is there (compressed)
    for i in range(10):
        a.cmd("volume", value=50 + i)
        a.cmd("repeat", mode=("all", "one", "off")[i % 3])
    assert toast_bytes() == before
    a.cmd("queue_remove", entry_ids=[a.state()["queue"][0]["entry_id"]])
    assert toast_bytes() > before


def test_the_queue_migration_keeps_existing_sessions(
    tmp_path_factory: pytest.TempPathFactory, backend: Any
) -> None:
    """Migration 0006 moves each stored session's queue and order to their own column: a
    session written by the previous schema (queue inside `state`) is the same session
    after a real server migrated it, and commands go on from it."""
    store = backend.store()
    root = tmp_path_factory.mktemp("migrate")
    (root / "data").mkdir(mode=0o700)
    url = store.database or default_url(root / "data")
    user = unique("migrated")
    queue = [{"entry_id": f"e{i}", "track_id": f"t{i}", "duration_ms": 1000} for i in range(50)]
    old_state = {
        "version": 7,
        "queue": queue,
        "current": "e3",
        "volume": 33,
        "shuffle": True,
        "order": [e["entry_id"] for e in reversed(queue)],
        "repeat": "all",
    }

    async def prepare() -> None:
        engine = open_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0003"))
                pw = PasswordHasher().hash(PASSWORD)
                res = await conn.execute(
                    sa.insert(tables.accounts).values(name=user, password_hash=pw, created_ms=0)
                )
                acct = res.inserted_primary_key[0]
                await conn.execute(
                    sa.text("INSERT INTO sessions (account_id, version, state) VALUES (:a, 7, :s)"),
                    {"a": acct, "s": json.dumps(old_state)},
                )
        finally:
            await engine.dispose()

    run_async(prepare)
    srv = launch(root, store=store, wait_scan=False)
    try:
        a = Api(srv, user, srv.login(user))
        st = a.state()
        assert st["version"] == 7
        assert [e["entry_id"] for e in st["queue"]] == [e["entry_id"] for e in queue]
        assert st["order"] == old_state["order"]
        assert (st["current"], st["volume"], st["repeat"]) == ("e3", 33, "all")
        assert a.cmd("volume", value=40)["state"]["queue"] == st["queue"]
        assert a.state()["order"] == old_state["order"]
        a.close()
    finally:
        srv.stop()
