"""The REST API of a real `tunehand serve`: logins and tokens, every session command,
the library (search, browse, rescan), playlists, likes, history, remote tracks and streams.

The tests share one server per backend (`shared_server`: SQLite + the in-process bus,
then PostgreSQL + Redis) and make their own accounts; each test checks that the server
printed no traceback while it ran (`shared_server_log_clean`), so none depends on
another having run, or on the order. The rescan changes the library: it has a server
of its own. The helpers at the top
(accounts, an HTTP client, a websocket device) are shared with test_channel,
test_isolation and test_bad_input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import tunehand
from tests.audiogen import library_tracks, make_track
from tests.fixtures_server import ServerProc, assert_log_clean
from tunehand.core.commands import OPS
from tunehand.server import auth
from tunehand.server.db import accounts as qa
from tunehand.server.db.engine import default_url, open_engine
from tunehand.server.streams import STREAM_TTL_S, Signer

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

PASSWORD = "secret-pw"
TIMEOUT_S = 5.0
"""Deadline for any one awaited answer (a websocket message, a state change)."""

# The HTTP status the API answers for each command result code.
STATUS = {
    "ok": 200,
    "invalid": 422,
    "conflict": 409,
    "not_found": 404,
    "no_device": 409,
    "device_offline": 409,
    "stale_term": 409,
    "empty_queue": 409,
    "rate_limited": 429,
    "transfer_failed": 409,
    "forbidden": 403,
}

Json = dict[str, Any]


# --- helpers shared by the server test modules --------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_async(make: Callable[[], Any]) -> Any:
    """Run `make()` (a coroutine) to completion, also from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def db_url(srv: ServerProc) -> str:
    return srv.database or default_url(srv.data_dir)


_pw_hash: list[str] = []


def add_users(srv: ServerProc, *names: str) -> None:
    """Create accounts in the server's database with the code `tunehand admin add-user`
    runs, in this process: one admin process per user would cost a second each."""

    async def run() -> None:
        engine = open_engine(db_url(srv))
        try:
            if not _pw_hash:
                _pw_hash.append(await auth.hash_password(PASSWORD))
            pw_hash = _pw_hash[0]
            async with engine.begin() as conn:
                for name in names:
                    await qa.create_account(conn, name, pw_hash, now_ms())
        finally:
            await engine.dispose()

    run_async(run)


def check_answer(r: httpx.Response, out: Json, code: str) -> None:
    """A command's answer: its result code, the matching status, and for a refusal the
    error object every 4xx answer has."""
    assert out["result"]["code"] == code, r.text
    assert r.status_code == STATUS[code], r.text
    if code != "ok":
        assert out["error"] == {"code": code, "message": out["result"]["message"]}, r.text
    else:
        assert "error" not in out


class Api:
    """One logged-in device of an account, talking HTTP."""

    def __init__(self, srv: ServerProc, name: str, tokens: Json) -> None:
        self.srv = srv
        self.name = name
        self.tokens = tokens
        self.http = httpx.Client(base_url=srv.url, headers=self.headers, timeout=30)

    @property
    def token(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def device_id(self) -> str:
        return str(self.tokens["device_id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.put(path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Json:
        r = self.http.request(method, path, **kw)
        assert r.status_code == 200, r.text
        out: Json = r.json()
        return out

    def cmd(self, op: str, code: str = "ok", **fields: Any) -> Json:
        """Send one command; check its result code (and the matching status); return the answer."""
        body = {"op": op, "command_id": unique("c"), **fields}
        r = self.post("/v1/session/commands", json=body)
        out: Json = r.json()
        check_answer(r, out, code)
        return out

    def state(self) -> Json:
        st: Json = self.ok("GET", "/v1/session")["state"]
        return st

    def close(self) -> None:
        self.http.close()


def new_account(srv: ServerProc, prefix: str = "u") -> Api:
    name = unique(prefix)
    add_users(srv, name)
    return Api(srv, name, srv.login(name))


@contextlib.contextmanager
def accounts(srv: ServerProc) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(prefix: str = "u") -> Api:
        api = new_account(srv, prefix)
        made.append(api)
        return api

    try:
        yield make
    finally:
        for api in made:
            api.close()


def ws_url(srv: ServerProc) -> str:
    return srv.url.replace("http://", "ws://", 1) + "/v1/channel"


class Chan:
    """One websocket device. `wait` skips messages it was not asked for (kept in `seen`)."""

    def __init__(self, ws: ClientConnection, device_id: str) -> None:
        self.ws = ws
        self.device_id = device_id
        self.hello: Json = {}
        self.seen: list[Json] = []
        self.unread: list[Json] = []
        """Received while `command` waited for its result: read again first."""

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self, timeout: float = TIMEOUT_S) -> Json:
        if self.unread:
            return self.unread.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg: Json = json.loads(raw)
        self.seen.append(msg)
        return msg

    async def wait(
        self, type_: str, pred: Callable[[Json], bool] = lambda m: True, timeout: float = TIMEOUT_S
    ) -> Json:
        """The next message of `type_` that satisfies `pred`, within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg.get("type") == type_ and pred(msg):
                    return msg

    async def command(self, op: str, **fields: Any) -> Json:
        """Send a command over the channel; return its `result` message. What the command
        fanned out may come before its result (through Redis it often does): that is
        left unread, for the next `wait`."""
        cid = str(fields.pop("command_id", None) or unique("w"))
        await self.send(type="command", command={"op": op, "command_id": cid, **fields})
        before: list[Json] = []
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                msg = await self.recv()
                if msg.get("type") == "result" and msg["command_id"] == cid:
                    self.unread[:0] = before
                    return msg
                before.append(msg)

    async def barrier(self) -> list[Json]:
        """Ping and collect everything that arrives before the pong (and is unread)."""
        start = len(self.seen) - len(self.unread)
        await self.send(type="ping")
        await self.wait("pong")
        return self.seen[start:-1]


_device_tokens: dict[tuple[str, str, str], str] = {}


async def device_token(url: str, token: str, device_id: str) -> str:
    """An access token of `device_id` in the account of `token` (logged in once and kept);
    `token` itself when it is that device's, or when it is refused (for the server to
    refuse it again on the channel)."""
    key = (url, token, device_id)
    if key in _device_tokens:
        return _device_tokens[key]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 200 or r.json()["device_id"] == device_id:
            return token
        body = {
            "user": r.json()["user"],
            "password": PASSWORD,
            "device_id": device_id,
            "device_name": device_id,
        }
        r = await http.post("/v1/auth/login", json=body)
        if r.status_code != 200:
            return token
        _device_tokens[key] = out = str(r.json()["access_token"])
        return out


def device_token_sync(url: str, token: str, device_id: str) -> str:
    """`device_token`, from anywhere."""
    out: str = run_async(lambda: device_token(url, token, device_id))
    return out


@contextlib.asynccontextmanager
async def channel(
    srv: ServerProc,
    token: str | None,
    *,
    device_id: str | None = None,
    capabilities: tuple[str, ...] = (),
    last_version: int | None = None,
    header: bool = False,
    bound: bool = True,
    **connect_kw: Any,
) -> AsyncIterator[Chan]:
    """A device connected and authenticated (token in the first message or the header).

    A channel is bound to its token's device: for another `device_id` than the token's,
    that device of the token's account logs in first (password PASSWORD) and its token
    is used. `bound=False` sends `token` as it is."""
    device_id = device_id or unique("dev")
    if bound and token is not None:
        token = await device_token(srv.url, token, device_id)
    headers = {"Authorization": f"Bearer {token}"} if header else {}
    async with connect(ws_url(srv), additional_headers=headers, **connect_kw) as ws:
        ch = Chan(ws, device_id)
        msg: Json = {
            "type": "auth",
            "device": {"id": device_id, "name": device_id, "capabilities": list(capabilities)},
        }
        if token is not None and not header:
            msg["token"] = token
        if last_version is not None:
            msg["last_version"] = last_version
        await ch.send(**msg)
        ch.hello = await ch.recv()
        assert ch.hello["type"] == "hello", ch.hello
        yield ch


async def acmd(http: httpx.AsyncClient, op: str, code: str = "ok", **fields: Any) -> Json:
    """`Api.cmd` for async tests."""
    body = {"op": op, "command_id": unique("c"), **fields}
    r = await http.post("/v1/session/commands", json=body)
    out: Json = r.json()
    check_answer(r, out, code)
    return out


def async_http(api: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api.srv.url, headers=api.headers, timeout=30)


def all_tracks(api: Api) -> list[Json]:
    """Every library track, album by album."""
    out: list[Json] = []
    for album in api.ok("GET", "/v1/albums")["albums"]:
        out += api.ok("GET", f"/v1/albums/{album['id']}/tracks")["tracks"]
    return out


async def expect_closed(ws: ClientConnection, timeout: float = TIMEOUT_S) -> int:
    """Read until the server closes the connection; return its close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    code = ws.close_code
    assert code is not None
    return code


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def account(shared_server: ServerProc) -> Iterator[Callable[..., Api]]:
    """Factory: a new account on the module's server, logged in over HTTP."""
    with accounts(shared_server) as make:
        yield make


@pytest.fixture(scope="module")
def tracks(shared_server: ServerProc) -> list[Json]:
    """Every track of the shared server's library, as the API shows them."""
    api = new_account(shared_server, "lib")
    try:
        return all_tracks(api)
    finally:
        api.close()


def by_title(tracks: list[Json], title: str) -> Json:
    return next(t for t in tracks if t["title"] == title)


def entry_tracks(state: Json) -> list[str]:
    return [e["track_id"] for e in state["queue"]]


def entry_ids(state: Json) -> list[str]:
    return [e["entry_id"] for e in state["queue"]]


# --- health, logins, tokens ---------------------------------------------------------


def test_health(shared_server: ServerProc) -> None:
    before = now_ms()
    r = httpx.get(shared_server.url + "/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["server"] == "tunehand"
    assert body["version"] == tunehand.__version__
    assert before - 1000 <= body["server_time_ms"] <= now_ms() + 1000


def test_login_answers_tokens_for_the_device(shared_server: ServerProc) -> None:
    name = unique("login")
    add_users(shared_server, name)
    r = httpx.post(
        shared_server.url + "/v1/auth/login",
        json={"user": name, "password": PASSWORD, "device_id": "dev-one", "device_name": "Desk"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["access_token"].startswith("tha_")
    assert body["refresh_token"].startswith("thr_")
    assert body["expires_in"] > 0
    assert (body["device_id"], body["user"]) == ("dev-one", name)
    h = {"Authorization": f"Bearer {body['access_token']}"}
    who = httpx.get(shared_server.url + "/v1/auth/whoami", headers=h).json()
    assert who == {"user": name, "device_id": "dev-one"}
    devices = httpx.get(shared_server.url + "/v1/devices", headers=h).json()["devices"]
    assert [(d["id"], d["name"]) for d in devices] == [("dev-one", "Desk")]
    # The refresh token is not an access token.
    h = {"Authorization": f"Bearer {body['refresh_token']}"}
    assert httpx.get(shared_server.url + "/v1/auth/whoami", headers=h).status_code == 401


def _client_from(address: str) -> httpx.Client:
    """HTTP from another loopback address: login throttling is also per address, so a
    test that fails logins on purpose must not slow down everybody's logins."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_wrong_password_and_unknown_user_are_refused_alike(shared_server: ServerProc) -> None:
    name = unique("pw")
    add_users(shared_server, name)
    url = shared_server.url + "/v1/auth/login"
    with _client_from("127.0.0.3") as http:
        wrong = http.post(url, json={"user": name, "password": "nope", "device_id": "d1"})
        unknown = http.post(
            url, json={"user": unique("ghost"), "password": PASSWORD, "device_id": "d1"}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json()
        assert wrong.json()["error"]["code"] == "unauthorized"
        ok = http.post(url, json={"user": name, "password": PASSWORD, "device_id": "d1"})
        assert ok.status_code == 200, ok.text


def test_login_is_throttled_after_three_failures(shared_server: ServerProc) -> None:
    name = unique("thr")
    add_users(shared_server, name)
    url = shared_server.url + "/v1/auth/login"
    with _client_from("127.0.0.2") as http:
        for _ in range(3):
            r = http.post(url, json={"user": name, "password": "bad", "device_id": "d1"})
            assert r.status_code == 401, r.text
        # Now even the right password waits.
        r = http.post(url, json={"user": name, "password": PASSWORD, "device_id": "d1"})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 2
    # The throttle is per user name too: another address gets the same answer ...
    with _client_from("127.0.0.4") as http:
        r = http.post(url, json={"user": name, "password": PASSWORD, "device_id": "d1"})
        assert r.status_code == 429, r.text
    # ... but other users are not locked out.
    other = unique("thr")
    add_users(shared_server, other)
    assert shared_server.login(other)["access_token"]


def test_parallel_failed_logins_never_fail_the_server(shared_server: ServerProc) -> None:
    name = unique("par")
    add_users(shared_server, name)

    async def run() -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.5")
        async with httpx.AsyncClient(transport=transport, timeout=30) as http:
            rs = await asyncio.gather(
                *(
                    http.post(
                        shared_server.url + "/v1/auth/login",
                        json={"user": name, "password": f"bad{i}", "device_id": "d1"},
                    )
                    for i in range(8)
                )
            )
        return [r.status_code for r in rs]

    codes = run_async(run)
    # Wrong passwords are refused, and once the free attempts are counted the rest are
    # throttled: never a 500, and never all eight checked.
    assert set(codes) == {401, 429}, codes
    assert 1 <= codes.count(401) <= auth.FREE_FAILURES + 2, codes
    assert_log_clean(shared_server)


def test_concurrent_identical_writes_all_succeed(shared_server: ServerProc) -> None:
    """Double clicks and retries: the same write sent 8 times at once is done once."""
    with accounts(shared_server) as make:
        a = make()
        tid = all_tracks(a)[0]["id"]

        async def run() -> list[httpx.Response]:
            async with async_http(a) as http:
                return list(
                    await asyncio.gather(
                        *(
                            http.put("/v1/playlists/twice", json={"track_ids": [tid]})
                            for _ in range(8)
                        ),
                        *(http.put(f"/v1/likes/{tid}") for _ in range(8)),
                        *(
                            http.post("/v1/tracks/remote", json={"url": "http://r.example/1"})
                            for _ in range(8)
                        ),
                    )
                )

        answers = asyncio.run(run())
        assert [r.status_code for r in answers] == [200] * 24, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers[16:]}) == 1
        assert [p["name"] for p in a.ok("GET", "/v1/playlists")["playlists"]] == ["twice"]
        assert [t["id"] for t in a.ok("GET", "/v1/likes")["tracks"]] == [tid]
    assert_log_clean(shared_server)


def test_refresh_rotates_and_reuse_revokes_the_family(shared_server: ServerProc) -> None:
    name = unique("ref")
    add_users(shared_server, name)
    first = shared_server.login(name)
    url = shared_server.url

    def refresh(token: str) -> httpx.Response:
        return httpx.post(url + "/v1/auth/refresh", json={"refresh_token": token})

    def whoami(access: str) -> int:
        h = {"Authorization": f"Bearer {access}"}
        return httpx.get(url + "/v1/auth/whoami", headers=h).status_code

    r = refresh(first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["device_id"] == first["device_id"]
    assert whoami(second["access_token"]) == 200
    r = refresh(second["refresh_token"])  # the new refresh token works
    assert r.status_code == 200, r.text
    third = r.json()
    assert whoami(third["access_token"]) == 200
    # Someone replays the first refresh token: refused, and the whole login is revoked.
    r = refresh(first["refresh_token"])
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert whoami(third["access_token"]) == 401
    assert refresh(third["refresh_token"]).status_code == 401
    # Another device of the same account is not affected.
    other = shared_server.login(name)
    assert whoami(other["access_token"]) == 200
    assert refresh("thr_" + secrets.token_urlsafe(32)).status_code == 401


def test_logout_revokes_access_and_refresh(account: Callable[..., Api]) -> None:
    a = account()
    assert a.ok("POST", "/v1/auth/logout") == {"ok": True}
    r = a.get("/v1/auth/whoami")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(
        a.srv.url + "/v1/auth/refresh", json={"refresh_token": a.tokens["refresh_token"]}
    )
    assert r.status_code == 401


def test_revoking_a_device_logs_it_out(account: Callable[..., Api]) -> None:
    a = account()
    b = Api(a.srv, a.name, a.srv.login(a.name))
    try:
        ids = {d["id"] for d in a.ok("GET", "/v1/devices")["devices"]}
        assert ids == {a.device_id, b.device_id}
        assert a.ok("DELETE", f"/v1/devices/{b.device_id}") == {"ok": True}
        assert b.get("/v1/session").status_code == 401
        ids = {d["id"] for d in a.ok("GET", "/v1/devices")["devices"]}
        assert ids == {a.device_id}
        assert a.delete("/v1/devices/no-such-device").status_code == 404
    finally:
        b.close()


# --- the session ----------------------------------------------------------------------


def test_session_has_state_track_devices_and_server_time(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    body = a.ok("GET", "/v1/session")
    assert set(body) == {"state", "track", "devices", "server_time_ms", "jam", "chapters"}
    assert body["jam"] is None  # in no jam
    assert body["chapters"] == []  # nothing plays (the current track's chapter marks)
    st = body["state"]
    assert st["version"] == 0
    assert (st["queue"], st["current"], st["active_device"], st["term"]) == ([], None, None, 0)
    assert (st["volume"], st["shuffle"], st["repeat"], st["order"]) == (100, False, "off", [])
    assert st["position"]["playing"] is False
    assert body["track"] is None
    assert [(d["id"], d["online"]) for d in body["devices"]] == [(a.device_id, False)]
    assert abs(body["server_time_ms"] - now_ms()) < 5000
    a.cmd("queue_add", track_ids=[tracks[0]["id"]])
    a.cmd("next")
    body = a.ok("GET", "/v1/session")
    assert body["state"]["version"] == 2
    assert body["track"]["id"] == tracks[0]["id"]
    assert body["track"]["title"] == tracks[0]["title"]


def test_every_command_op_is_covered() -> None:
    """The tests below exercise these ops; a new op must get a test here."""
    covered = {
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
    }
    assert covered == OPS


def test_order_move_moves_in_the_play_order(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    t = [tr["id"] for tr in tracks[:4]]
    st = a.cmd("queue_add", track_ids=t)["state"]
    stored = entry_ids(st)
    st = a.cmd("order_move", entry_id=stored[3], index=0)["state"]  # unshuffled: the queue
    assert entry_ids(st) == [stored[3], *stored[:3]]
    stored = entry_ids(st)
    st = a.cmd("shuffle", on=True)["state"]
    order = a.ok("GET", "/v1/session/queue")["order"]
    assert sorted(order) == sorted(stored)
    st = a.cmd("order_move", entry_id=order[0], index=3)["state"]
    q = a.ok("GET", "/v1/session/queue")
    assert q["order"] == [*order[1:], order[0]]
    assert [x["entry_id"] for x in q["entries"]] == stored  # the queue keeps its order
    a.cmd("order_move", "not_found", entry_id="e999.0", index=0)
    a.cmd("order_move", "invalid", entry_id=stored[0])


def test_queue_edits_name_entries(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    t = [tr["id"] for tr in tracks[:5]]
    st = a.cmd("queue_add", track_ids=t[:3])["state"]
    assert entry_tracks(st) == t[:3]
    e = entry_ids(st)
    assert len(set(e)) == 3
    assert (st["current"], st["version"]) == (None, 1)
    assert [q["duration_ms"] for q in st["queue"]] == [tr["duration_ms"] for tr in tracks[:3]]

    st = a.cmd("next")["state"]
    assert st["current"] == e[0]

    st = a.cmd("queue_next", track_ids=[t[3]])["state"]
    assert entry_tracks(st) == [t[0], t[3], t[1], t[2]]
    e3 = entry_ids(st)[1]
    assert e3 not in e

    st = a.cmd("queue_remove", entry_ids=[e[1]])["state"]
    assert entry_tracks(st) == [t[0], t[3], t[2]]

    st = a.cmd("queue_move", entry_id=e[2], index=0)["state"]
    assert entry_tracks(st) == [t[2], t[0], t[3]]
    assert st["current"] == e[0]

    q = a.ok("GET", "/v1/session/queue")
    assert q["version"] == st["version"]
    assert q["order"] == entry_ids(st)
    assert [(x["track_id"], x["current"]) for x in q["entries"]] == [
        (t[2], False),
        (t[0], True),
        (t[3], False),
    ]
    assert [x["track"]["title"] for x in q["entries"]] == [
        tracks[2]["title"],
        tracks[0]["title"],
        tracks[3]["title"],
    ]

    # Removing the current entry moves on to the next one in play order.
    st = a.cmd("queue_remove", entry_ids=[e[0]])["state"]
    assert st["current"] == e3
    a.cmd("queue_remove", "not_found", entry_ids=["e999.0"])
    a.cmd("queue_move", "not_found", entry_id="e999.0", index=0)
    a.cmd("queue_add", "not_found", track_ids=["tnosuchtrack"])

    st = a.cmd("queue_clear")["state"]
    assert (st["queue"], st["current"]) == ([], None)
    a.cmd("next", "empty_queue")

    st = a.cmd("queue_replace", if_version=st["version"], track_ids=[t[4], t[0]])["state"]
    assert entry_tracks(st) == [t[4], t[0]]
    assert st["current"] == st["queue"][0]["entry_id"]
    a.cmd("queue_replace", "invalid", track_ids=[t[0]])  # if_version is required


def test_stale_if_version_is_refused_with_the_current_state(shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        a = make()
        tid = all_tracks(a)[0]["id"]
        st = a.cmd("queue_add", track_ids=[tid, tid])["state"]
        stale = st["version"]
        st = a.cmd("volume", value=50)["state"]
        out = a.cmd("queue_replace", "conflict", if_version=stale, track_ids=[tid])
        assert out["state"] == st
        assert out["result"]["version"] == 0
        assert a.state() == st
        # Any command may carry if_version.
        a.cmd("volume", "conflict", if_version=stale, value=10)
        assert a.cmd("volume", if_version=st["version"], value=10)["state"]["volume"] == 10


def test_concurrent_commands_are_each_applied_once_in_version_order(
    shared_server: ServerProc,
) -> None:
    n = 16

    async def run(a: Api) -> list[Json]:
        async with async_http(a) as http:
            return list(await asyncio.gather(*(acmd(http, "volume", delta=-1) for _ in range(n))))

    with accounts(shared_server) as make:
        a = make()
        answers = asyncio.run(run(a))
        versions = sorted(x["result"]["version"] for x in answers)
        assert versions == list(range(1, n + 1))
        final = a.state()
        assert (final["version"], final["volume"]) == (n, 100 - n)


def test_a_repeated_command_id_is_applied_once(shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        a = make()
        tid = all_tracks(a)[0]["id"]
        body = {"op": "volume", "command_id": "same-id", "delta": -10}
        first = a.post("/v1/session/commands", json=body)
        again = a.post("/v1/session/commands", json=body)
        assert first.status_code == again.status_code == 200
        assert again.json()["result"] == first.json()["result"]
        assert first.json()["result"]["version"] == 1
        assert (again.json()["state"]["volume"], again.json()["state"]["version"]) == (90, 1)
        # A refused command keeps its first answer too, even once it would succeed.
        refused = {"op": "next", "command_id": "next-id"}
        r1 = a.post("/v1/session/commands", json=refused)
        assert r1.json()["result"]["code"] == "empty_queue"
        a.cmd("queue_add", track_ids=[tid])
        r2 = a.post("/v1/session/commands", json=refused)
        assert (r2.status_code, r2.json()["result"]) == (r1.status_code, r1.json()["result"])
        assert r2.json()["state"]["current"] is None
        # Command ids are per account: another account's "same-id" is its own command.
        b = make()
        assert b.post("/v1/session/commands", json=body).json()["state"]["volume"] == 90
        assert a.state()["volume"] == 90


def test_shuffle_keeps_the_current_entry_first(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    ids = [t["id"] for t in tracks[:10]]
    st = a.cmd("queue_replace", if_version=0, track_ids=ids)["state"]
    a.cmd("next")
    st = a.cmd("next")["state"]
    current = st["current"]
    assert current == entry_ids(st)[2]
    st = a.cmd("shuffle", on=True)["state"]
    assert st["shuffle"] is True
    assert st["current"] == current
    assert st["order"][0] == current
    assert sorted(st["order"]) == sorted(entry_ids(st))
    assert entry_ids(a.state()) == entry_ids(st)  # the queue itself is not reordered
    assert a.ok("GET", "/v1/session/queue")["order"] == st["order"]
    # next follows the permutation; a new entry goes to the end of the play order.
    assert a.cmd("next")["state"]["current"] == st["order"][1]
    st = a.cmd("queue_add", track_ids=[ids[0]])["state"]
    assert st["order"][-1] == st["queue"][-1]["entry_id"]
    st = a.cmd("shuffle", on=False)["state"]
    assert (st["shuffle"], st["order"]) == (False, [])
    a.cmd("shuffle", "invalid")


def test_repeat_modes_decide_the_end_of_the_queue(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    st = a.cmd("queue_replace", if_version=0, track_ids=[tracks[0]["id"], tracks[1]["id"]])["state"]
    first, last = entry_ids(st)
    assert a.cmd("next")["state"]["current"] == last
    st = a.cmd("next")["state"]  # repeat off: stay on the last entry, stopped at its start
    assert (st["current"], st["position"]["position_ms"]) == (last, 0)
    assert st["position"]["playing"] is False
    for mode in ("all", "one", "off"):
        assert a.cmd("repeat", mode=mode)["state"]["repeat"] == mode
    a.cmd("repeat", mode="all")
    assert a.cmd("next")["state"]["current"] == first  # wraps around
    assert a.cmd("prev")["state"]["current"] == last  # and back
    a.cmd("repeat", "invalid")


def test_volume_absolute_and_relative_is_clamped(account: Callable[..., Api]) -> None:
    a = account()
    assert a.cmd("volume", value=30)["state"]["volume"] == 30
    assert a.cmd("volume", delta=15)["state"]["volume"] == 45
    assert a.cmd("volume", delta=500)["state"]["volume"] == 100
    assert a.cmd("volume", delta=-1000)["state"]["volume"] == 0
    assert a.cmd("volume", value=0)["state"]["volume"] == 0
    a.cmd("volume", "invalid", value=101)
    a.cmd("volume", "invalid", value=-1)
    a.cmd("volume", "invalid", value=10, delta=1)
    assert a.state()["volume"] == 0


def test_seek_is_clamped_to_the_track(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    a.cmd("seek", "empty_queue", position_ms=10)
    tr = tracks[0]
    dur = tr["duration_ms"]
    assert dur > 500
    a.cmd("queue_add", track_ids=[tr["id"]])
    a.cmd("next")

    def pos(**fields: Any) -> int:
        st = a.cmd("seek", **fields)["state"]
        assert st["position"]["playing"] is False
        return int(st["position"]["position_ms"])

    assert pos(position_ms=400) == 400
    assert pos(delta_ms=50) == 450
    assert pos(delta_ms=-100) == 350
    assert pos(delta_ms=10**7) == dur
    assert pos(delta_ms=-(10**7)) == 0
    assert pos(position_ms=10**9) == dur
    a.cmd("seek", "invalid", position_ms=-5)
    a.cmd("seek", "invalid")
    a.cmd("seek", "invalid", position_ms=5, delta_ms=5)


def _remote(a: Api, url: str, title: str = "") -> str:
    rid = a.ok("POST", "/v1/tracks/remote", json={"url": url, "title": title})["id"]
    assert isinstance(rid, str)
    return rid


def test_prev_restarts_the_track_after_three_seconds(account: Callable[..., Api]) -> None:
    a = account()
    # Remote streams have no known duration, so a position past 3 s is possible.
    r1 = _remote(a, "http://radio.example/one.mp3")
    r2 = _remote(a, "http://radio.example/two.mp3")
    st = a.cmd("queue_replace", if_version=0, track_ids=[r1, r2])["state"]
    first, second = entry_ids(st)
    a.cmd("next")
    a.cmd("seek", position_ms=3_500)
    st = a.cmd("prev")["state"]  # past 3 s: restart the same entry
    assert (st["current"], st["position"]["position_ms"]) == (second, 0)
    a.cmd("seek", position_ms=2_500)
    st = a.cmd("prev")["state"]  # within 3 s: the previous entry
    assert (st["current"], st["position"]["position_ms"]) == (first, 0)
    st = a.cmd("prev")["state"]  # at the first entry with repeat off: stay
    assert st["current"] == first
    a.cmd("queue_clear")
    a.cmd("prev", "empty_queue")


def test_play_with_no_player_online_is_no_device(account: Callable[..., Api]) -> None:
    a = account()
    out = a.cmd("play", "no_device")
    assert out["state"]["active_device"] is None
    assert out["state"]["version"] == 0


async def test_play_needs_exactly_one_online_player(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    async with async_http(a) as http:
        await acmd(http, "queue_add", track_ids=[tracks[0]["id"]])
        async with channel(a.srv, a.token):  # online, but a remote control, not a player
            await acmd(http, "play", "no_device")
            async with (
                channel(a.srv, a.token, capabilities=("play",)) as p1,
                channel(a.srv, a.token, capabilities=("play",)) as p2,
            ):
                out = await acmd(http, "play", "no_device")  # two players: which one?
                assert p1.device_id in out["result"]["message"]
                assert p2.device_id in out["result"]["message"]
                await acmd(http, "play", "device_offline", device_id=a.device_id)
                await acmd(http, "play", "not_found", device_id="no-such-device")
                st = (await acmd(http, "play", device_id=p2.device_id))["state"]
                assert st["active_device"] == p2.device_id


async def test_play_activates_the_only_player_and_directs_it_to_start(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    t1, t2 = tracks[0], tracks[1]
    async with (
        async_http(a) as http,
        channel(a.srv, a.token, capabilities=("play",)) as player,
    ):
        await acmd(http, "queue_add", track_ids=[t1["id"], t2["id"]])
        out = await acmd(http, "play")
        st = out["state"]
        assert st["active_device"] == player.device_id
        assert st["term"] == 1
        assert st["current"] == st["queue"][0]["entry_id"]
        assert st["position"]["playing"] is True
        assert st["position"]["rate"] == 0  # not audible until the player reports
        assert out["track"]["id"] == t1["id"]
        d = await player.wait("directive")
        assert d["action"] == "start"
        assert (d["term"], d["entry_id"], d["playing"]) == (st["term"], st["current"], True)
        assert d["track"]["id"] == t1["id"]
        assert d["track"]["url"].startswith(f"/v1/stream/{t1['id']}?")
        # play TRACK inserts after the current entry and plays it; the queue is kept.
        st = (await acmd(http, "play", track_ids=[t2["id"]]))["state"]
        assert entry_tracks(st) == [t1["id"], t2["id"], t2["id"]]
        assert st["current"] == st["queue"][1]["entry_id"]
        assert (st["active_device"], st["term"]) == (player.device_id, 1)
        # play with replace replaces the queue and starts at `index`.
        st = (await acmd(http, "play", track_ids=[t1["id"], t2["id"]], replace=True, index=1))[
            "state"
        ]
        assert entry_tracks(st) == [t1["id"], t2["id"]]
        assert st["current"] == st["queue"][1]["entry_id"]
        # play an entry by id, from a position.
        first = st["queue"][0]["entry_id"]
        st = (await acmd(http, "play", entry_id=first, position_ms=250))["state"]
        assert (st["current"], st["position"]["position_ms"]) == (first, 250)
        await acmd(http, "play", "not_found", entry_id="e999.9")


async def test_pause_toggle_and_transfer(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    async with (
        async_http(a) as http,
        channel(a.srv, a.token, capabilities=("play",)) as p1,
        channel(a.srv, a.token, capabilities=("play",)) as p2,
    ):
        await acmd(http, "queue_add", track_ids=[tracks[0]["id"]])
        st = (await acmd(http, "play", device_id=p1.device_id))["state"]
        start = await p1.wait("directive")
        assert (start["action"], start["term"]) == ("start", st["term"])

        st = (await acmd(http, "pause"))["state"]
        assert (st["position"]["playing"], st["position"]["rate"]) == (False, 0)
        assert st["active_device"] == p1.device_id
        assert (await acmd(http, "toggle"))["state"]["position"]["playing"] is True
        assert (await acmd(http, "toggle"))["state"]["position"]["playing"] is False
        await acmd(http, "toggle")

        term = st["term"]
        # Handing off playing audio: the target prepares and says ready, then both switch.
        moving = asyncio.create_task(acmd(http, "transfer", device_id=p2.device_id))
        prep = await p2.wait("directive")
        assert (prep["action"], prep["term"], prep["entry_id"]) == ("prepare", term, st["current"])
        assert prep["track"]["id"] == tracks[0]["id"]
        await p2.send(type="ready", transfer_id=prep["transfer_id"])
        st = (await moving)["state"]
        assert (st["active_device"], st["term"]) == (p2.device_id, term + 1)
        assert st["position"]["playing"] is True
        stop = await p1.wait("directive")
        assert (stop["action"], stop["term"]) == ("stop", term + 1)
        go = await p2.wait("directive")
        assert (go["action"], go["term"], go["entry_id"]) == ("start", term + 1, st["current"])
        # A target that cannot play aborts the handoff: the source keeps playing.
        moving = asyncio.create_task(
            acmd(http, "transfer", "transfer_failed", device_id=p1.device_id)
        )
        prep = await p1.wait("directive", lambda m: m["action"] == "prepare")
        await p1.send(type="failed", transfer_id=prep["transfer_id"], message="no audio output")
        out = await moving
        assert "no audio output" in out["result"]["message"]
        kept = out["state"]
        assert (kept["active_device"], kept["term"]) == (p2.device_id, term + 1)
        assert kept["position"]["playing"] is True
        # Arriving paused.
        st = (await acmd(http, "transfer", device_id=p1.device_id, paused=True))["state"]
        assert (st["active_device"], st["position"]["playing"]) == (p1.device_id, False)
        go = await p1.wait("directive", lambda m: m["action"] == "start")
        assert go["playing"] is False

        await acmd(http, "transfer", "device_offline", device_id=a.device_id)
        await acmd(http, "transfer", "not_found", device_id="no-such-device")
        await acmd(http, "transfer", "invalid")


async def test_an_audible_start_enters_the_history(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a = account()
    tr = tracks[2]
    async with (
        async_http(a) as http,
        channel(a.srv, a.token, capabilities=("play",)) as player,
    ):
        await acmd(http, "queue_add", track_ids=[tr["id"]])
        st = (await acmd(http, "play"))["state"]
        start = await player.wait("directive")
        assert (await http.get("/v1/history")).json() == {"history": []}  # not audible yet
        report = {
            "term": start["term"],
            "entry_id": start["entry_id"],
            "position_ms": 0,
            "at_ms": start["at_ms"],
            "playing": True,
            "rate": 1.0,
        }
        await player.send(type="report", report=report)
        heard = await player.wait("state", lambda m: m["version"] > st["version"])
        assert heard["state"]["position"]["rate"] == 1.0
        hist = (await http.get("/v1/history")).json()["history"]
        assert len(hist) == 1
        assert (hist[0]["track_id"], hist[0]["device_id"]) == (tr["id"], player.device_id)
        assert hist[0]["track"]["title"] == tr["title"]
        assert abs(hist[0]["played_ms"] - now_ms()) < 60_000
        r = await http.get("/v1/history", params={"limit": "1"})
        assert len(r.json()["history"]) == 1


# --- the library ----------------------------------------------------------------------


def _titles(found: list[Json]) -> list[str]:
    return [t["title"] for t in found]


def test_search_is_accent_insensitive_prefix_only_and_ranked(
    account: Callable[..., Api],
) -> None:
    a = account()

    def search(q: str, **params: Any) -> list[Json]:
        found: list[Json] = a.ok("GET", "/v1/search", params={"q": q, **params})["tracks"]
        return found

    sigur = {s.title for s in library_tracks() if s.artist == "Sigur Rós"}
    found = search("ros")
    assert {t["artist"] for t in found} == {"Sigur Rós"}
    assert set(_titles(found)) == sigur
    assert {t["id"] for t in search("RÓS")} == {t["id"] for t in found}
    assert set(_titles(search("agaetis"))) == sigur  # "Ágætis", folded
    assert not any(t["artist"] == "Sigur Rós" for t in search("gur"))  # prefix only
    assert search("zzzzqx") == []
    # A title word beats an album word: "Open Road" first, then the rest of the album.
    road = search("road")
    assert road[0]["title"] == "Open Road"
    assert {t["album"] for t in road} == {"Roads Compilation"}
    assert len(search("road", limit=1)) == 1
    assert search("svefn englar")[0]["title"] == "Svefn-g-englar"
    for t in found:
        assert t["url"].startswith(f"/v1/stream/{t['id']}?exp=")


def test_browse_artists_albums_tracks(account: Callable[..., Api]) -> None:
    a = account()
    artists = {x["key"]: x for x in a.ok("GET", "/v1/artists")["artists"]}
    assert artists["sigur ros"] == {
        "key": "sigur ros",
        "name": "Sigur Rós",
        "albums": 1,
        "tracks": 3,
    }
    assert artists["various artists"]["name"] == "Various Artists"
    albums = a.ok("GET", "/v1/artists/sigur ros/albums")["albums"]
    assert [(x["title"], x["artist"], x["year"], x["tracks"]) for x in albums] == [
        ("Ágætis byrjun", "Sigur Rós", 1999, 3)
    ]
    found = a.ok("GET", f"/v1/albums/{albums[0]['id']}/tracks")["tracks"]
    assert _titles(found) == ["Svefn-g-englar", "Starálfur", "Flugufrelsarinn"]
    assert [t["track_no"] for t in found] == [1, 2, 3]
    all_albums = {x["title"] for x in a.ok("GET", "/v1/albums")["albums"]}
    assert {"Ágætis byrjun", "First Light", "Analytical Engines", "Roads Compilation"} <= all_albums
    assert a.get("/v1/artists/nobody at all/albums").status_code == 404
    assert a.get("/v1/albums/anosuchalbum/tracks").status_code == 404


def test_track_details(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    tr = by_title(tracks, "Svefn-g-englar")
    view = a.ok("GET", f"/v1/tracks/{tr['id']}")
    spec = next(s for s in library_tracks() if s.title == "Svefn-g-englar")
    assert (view["title"], view["artist"], view["album"]) == (spec.title, spec.artist, spec.album)
    assert (view["year"], view["genre"], view["track_no"]) == (spec.year, spec.genre, 1)
    assert abs(view["duration_ms"] - spec.duration_s * 1000) < 100
    assert view["url"].startswith(f"/v1/stream/{tr['id']}?exp=")
    r = a.get("/v1/tracks/tnosuchtrack")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_search_with_groups_finds_artists_albums_and_the_accounts_playlists(
    account: Callable[..., Api], tracks: list[Json]
) -> None:
    a, b = account(), account()
    a.ok("PUT", "/v1/playlists/Ágætis mix", json={"track_ids": [tracks[0]["id"]]})
    a.ok("PUT", "/v1/playlists/Other", json={"track_ids": []})
    b.ok("PUT", "/v1/playlists/agaetis of b", json={"track_ids": []})
    every_artist = {x["name"]: x for x in a.ok("GET", "/v1/artists")["artists"]}
    every_album = {x["title"]: x for x in a.ok("GET", "/v1/albums")["albums"]}

    def search(q: str) -> Json:
        got: Json = a.ok("GET", "/v1/search", params={"q": q, "groups": "1"})
        return got

    got = search("agaetis")
    assert got["artists"] == []  # an album word, not the artist's name
    assert got["albums"] == [every_album["Ágætis byrjun"]]
    assert got["playlists"] == [{"name": "Ágætis mix", "tracks": 1}]  # never B's
    assert {t["album"] for t in got["tracks"]} == {"Ágætis byrjun"}
    got = search("ros")
    assert got["artists"] == [every_artist["Sigur Rós"]]
    assert got["albums"] == [every_album["Ágætis byrjun"]]  # its artist matches
    assert got["playlists"] == []
    got = search("various road")
    assert got["artists"] == []
    assert got["albums"] == [every_album["Roads Compilation"]]
    assert search("various")["artists"] == [every_artist["Various Artists"]]
    assert search("zzzzqx") == {"tracks": [], "artists": [], "albums": [], "playlists": []}
    # Without groups=1 the answer is the tracks alone, as before.
    assert set(a.ok("GET", "/v1/search", params={"q": "ros"})) == {"tracks"}


def test_playlists_crud(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    t1, t2 = tracks[0]["id"], tracks[1]["id"]
    name = "Road Trip ✓"
    assert a.ok("GET", "/v1/playlists") == {"playlists": []}
    assert a.ok("PUT", f"/v1/playlists/{name}", json={"track_ids": [t1, t2, t1]}) == {"ok": True}
    lists = a.ok("GET", "/v1/playlists")["playlists"]
    assert [(p["name"], p["tracks"]) for p in lists] == [(name, 3)]
    got = a.ok("GET", f"/v1/playlists/{name}")
    assert (got["name"], got["track_ids"]) == (name, [t1, t2, t1])
    assert [t["id"] for t in got["tracks"]] == [t1, t2, t1]
    a.ok("PUT", f"/v1/playlists/{name}", json={"track_ids": [t2]})
    assert a.ok("GET", f"/v1/playlists/{name}")["track_ids"] == [t2]
    r = a.put(f"/v1/playlists/{name}", json={"track_ids": [t1, "tnosuchtrack"]})
    assert r.status_code == 404
    assert a.ok("GET", f"/v1/playlists/{name}")["track_ids"] == [t2]  # unchanged
    a.ok("PUT", "/v1/playlists/Empty", json={"track_ids": []})
    assert [p["name"] for p in a.ok("GET", "/v1/playlists")["playlists"]] == ["Empty", name]
    assert a.ok("DELETE", f"/v1/playlists/{name}") == {"ok": True}
    assert a.get(f"/v1/playlists/{name}").status_code == 404
    assert a.delete(f"/v1/playlists/{name}").status_code == 404
    assert [p["name"] for p in a.ok("GET", "/v1/playlists")["playlists"]] == ["Empty"]


def test_playlist_rename(account: Callable[..., Api], tracks: list[Json]) -> None:
    a, b = account(), account()
    t1, t2 = tracks[0]["id"], tracks[1]["id"]
    a.ok("PUT", "/v1/playlists/Old name", json={"track_ids": [t2, t1]})
    a.ok("PUT", "/v1/playlists/Other", json={"track_ids": [t1]})
    b.ok("PUT", "/v1/playlists/Old name", json={"track_ids": [t1]})
    assert a.ok("PATCH", "/v1/playlists/Old name", json={"name": "New ✓ / name"}) == {"ok": True}
    names = [p["name"] for p in a.ok("GET", "/v1/playlists")["playlists"]]
    assert names == ["New ✓ / name", "Other"]
    got = a.ok("GET", "/v1/playlists/New ✓ %2F name")
    assert got["track_ids"] == [t2, t1]  # the tracks and their order go along
    assert a.get("/v1/playlists/Old name").status_code == 404
    # B's playlist of the same old name is B's own: untouched.
    assert b.ok("GET", "/v1/playlists/Old name")["track_ids"] == [t1]
    r = a.http.request("PATCH", "/v1/playlists/Other", json={"name": "New ✓ / name"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "conflict")
    r = a.http.request("PATCH", "/v1/playlists/Gone", json={"name": "Whatever"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    for bad in ("", "   ", "x" * 201):
        r = a.http.request("PATCH", "/v1/playlists/Other", json={"name": bad})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid"), bad
    assert a.ok("PATCH", "/v1/playlists/Other", json={"name": "Other"}) == {"ok": True}
    assert [p["name"] for p in a.ok("GET", "/v1/playlists")["playlists"]] == names


def test_likes(account: Callable[..., Api], tracks: list[Json]) -> None:
    a = account()
    t1, t2 = tracks[0]["id"], tracks[1]["id"]
    assert a.ok("GET", "/v1/likes") == {"tracks": []}
    a.ok("PUT", f"/v1/likes/{t1}")
    a.ok("PUT", f"/v1/likes/{t2}")
    a.ok("PUT", f"/v1/likes/{t1}")  # liking twice is one like
    liked = a.ok("GET", "/v1/likes")["tracks"]
    assert sorted(t["id"] for t in liked) == sorted([t1, t2])
    a.ok("DELETE", f"/v1/likes/{t1}")
    assert [t["id"] for t in a.ok("GET", "/v1/likes")["tracks"]] == [t2]
    assert a.put("/v1/likes/tnosuchtrack").status_code == 404
    rid = _remote(a, "https://podcast.example/ep1.mp3", "Episode 1")
    a.ok("PUT", f"/v1/likes/{rid}")
    assert rid in {t["id"] for t in a.ok("GET", "/v1/likes")["tracks"]}


def test_remote_tracks_play_from_their_url(account: Callable[..., Api]) -> None:
    a = account()
    url = "https://radio.example/live.ogg"
    rid = _remote(a, url, "Live Radio")
    assert rid.startswith("r")
    assert _remote(a, url, "Live Radio") == rid  # the same URL is the same track
    other = _remote(a, "https://radio.example/other.ogg")
    assert other != rid
    view = a.ok("GET", f"/v1/tracks/{rid}")
    assert (view["id"], view["title"], view["url"]) == (rid, "Live Radio", url)
    assert a.ok("GET", f"/v1/tracks/{other}")["title"] == "https://radio.example/other.ogg"
    a.cmd("queue_add", track_ids=[rid])
    st = a.cmd("next")["state"]
    assert st["queue"][0]["duration_ms"] == 0
    body = a.ok("GET", "/v1/session")
    assert (body["track"]["id"], body["track"]["url"]) == (rid, url)
    entries = a.ok("GET", "/v1/session/queue")["entries"]
    assert entries[0]["track"]["url"] == url
    for bad in ("ftp://radio.example/x", "radio.example/x", "http://" + "x" * 2000):
        r = a.post("/v1/tracks/remote", json={"url": bad})
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "invalid"


# --- streams --------------------------------------------------------------------------


def _signer(srv: ServerProc) -> Signer:
    return Signer((srv.data_dir / "signing.key").read_bytes().strip())


def bind_path(signer: Signer, path: str, device_id: str) -> str:
    """A signed link `path` bound to `device_id`, as the server gives it to that device."""
    sig = httpx.URL(path).params["sig"]
    return path + f"&d={device_id}&k={signer.device_mac(device_id, sig)}"


def test_stream_serves_the_file_by_signed_url(
    shared_server: ServerProc, tracks: list[Json]
) -> None:
    specs = library_tracks()[:4]
    assert {s.fmt for s in specs} == {"flac", "mp3", "ogg", "wav"}
    mime = {"flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}
    for spec in specs:
        data = (shared_server.music / spec.relpath).read_bytes()
        url = shared_server.url + by_title(tracks, spec.title)["url"]
        r = httpx.get(url)  # no Authorization: the signature is the credential
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == mime[spec.fmt]
        assert r.headers["etag"]
        assert r.content == data
    head = httpx.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) == len(data)


def test_stream_ranges(shared_server: ServerProc, tracks: list[Json]) -> None:
    spec = library_tracks()[0]
    data = (shared_server.music / spec.relpath).read_bytes()
    url = shared_server.url + by_title(tracks, spec.title)["url"]
    r = httpx.get(url, headers={"Range": "bytes=10-109"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 10-109/{len(data)}"
    assert r.content == data[10:110]
    r = httpx.get(url, headers={"Range": "bytes=-16"})
    assert (r.status_code, r.content) == (206, data[-16:])
    r = httpx.get(url, headers={"Range": f"bytes={len(data) + 100}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"


def test_stream_refuses_forged_and_expired_links(
    shared_server: ServerProc, tracks: list[Json]
) -> None:
    tr = tracks[0]
    base = shared_server.url + f"/v1/stream/{tr['id']}"
    url = httpx.URL(shared_server.url + tr["url"])
    exp, sig = url.params["exp"], url.params["sig"]
    dev, mac = url.params["d"], url.params["k"]

    def get(**params: str | int) -> httpx.Response:
        return httpx.get(base, params=params)

    assert get(exp=exp, sig=sig, d=dev, k=mac).status_code == 200
    # Bound to its device: without the binding, or with another device's, refused.
    assert get(exp=exp, sig=sig).status_code == 403
    assert get(exp=exp, sig=sig, d="d" + dev, k=mac).status_code == 403
    forged = ("A" if sig[0] != "A" else "B") + sig[1:]
    for r in (
        get(exp=exp, sig=forged),
        get(exp=int(exp) + 3600, sig=sig),  # a longer life, same signature
        get(exp=exp),
        get(sig=sig),
        get(),
        # Digits that str.isdigit() takes and int() refuses: a refusal, never a 500.
        get(exp="²", sig=sig),
        get(exp=exp + "²", sig=sig),
        httpx.get(
            shared_server.url + f"/v1/stream/{tracks[1]['id']}", params={"exp": exp, "sig": sig}
        ),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    # Correctly signed, but expired: refused. Signed with the same key and still valid: served.
    signer = _signer(shared_server)
    now_s = int(time.time())
    expired = bind_path(signer, signer.path(tr["id"], now_s - STREAM_TTL_S - 10), dev)
    assert httpx.get(shared_server.url + expired).status_code == 403
    fresh = bind_path(signer, signer.path(tr["id"], now_s, ttl_s=60), dev)
    assert httpx.get(shared_server.url + fresh).status_code == 200
    # The same for cover art.
    art = next(t["art_url"] for t in tracks if t["art_url"])
    art_url = httpx.URL(art if art.startswith("http") else shared_server.url + art)
    for bad in ("²", art_url.params["exp"] + "²"):
        r = httpx.get(art_url.copy_merge_params({"exp": bad}))
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    assert "Traceback" not in "\n".join(shared_server.log)


# --- rescan (on a server of its own: it changes the library) --------------------------


def test_rescan_adds_new_files_and_keeps_ids(start_server: Callable[..., ServerProc]) -> None:
    srv = start_server()
    with accounts(srv) as make:
        a = make()
        tracks = all_tracks(a)
        assert a.ok("GET", "/v1/search", params={"q": "quokka"})["tracks"] == []
        make_track(
            a.srv.music / "Quokka Club" / "Fresh",
            "01 Quokka Dance",
            "ogg",
            title="Quokka Dance",
            artist="Quokka Club",
            album="Fresh",
            duration_s=1.0,
        )
        r = a.post("/v1/library/rescan")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scanning"] is False
        assert body["summary"]["tracks"] == len(tracks) + 1
        assert (body["summary"]["changed"], body["summary"]["removed"]) == (1, 0)
        found = a.ok("GET", "/v1/search", params={"q": "quokka"})["tracks"]
        assert [(t["title"], t["artist"]) for t in found] == [("Quokka Dance", "Quokka Club")]
        after = all_tracks(a)
        assert {t["id"] for t in after} == {t["id"] for t in tracks} | {found[0]["id"]}
        for t in tracks[:3]:
            assert a.ok("GET", f"/v1/tracks/{t['id']}")["title"] == t["title"]
    assert_log_clean(srv)
