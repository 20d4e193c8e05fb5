"""Accounts are isolated: a generated matrix over every REST route, and the channel.

The routes are the ones the server's own application serves and the channel messages
the ones its decoder reads (`tests/route_table.py`), so a new route or message is
covered as soon as it exists, and a test here fails naming one nobody classified. Every
token route must answer 401 to a missing, malformed, forged, expired or revoked token;
every signed route 403 to a missing, forged or expired signature, whatever token comes
along; and account B's token must never show or change account A's session, devices,
playlists, likes, history or remote tracks, over HTTP or the channel. The library is
server-wide by design; stream and art URLs carry no account, only a signature.

The read-only tests share one `world` (account A with data of every kind, account B);
a test that changes A's session or devices builds a world of its own (`own_world`), so
each test stands alone, in any order. Each test checks that the server printed no
traceback while it ran (`shared_server_log_clean`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.fixtures_server import Backend, ServerProc, launch
from tests.route_table import (
    MESSAGES,
    ROUTES,
    SERVED,
    SERVER_MESSAGES,
    SUBSONIC,
    classification_problems,
    endpoints,
    params_of,
    served_endpoints,
)
from tests.test_api import (
    TIMEOUT_S,
    Api,
    Json,
    accounts,
    add_users,
    all_tracks,
    channel,
    db_url,
    expect_closed,
    now_ms,
    run_async,
    unique,
    ws_url,
)
from tunehand.core.protocol import CLIENT_TYPES
from tunehand.server import auth
from tunehand.server.db import accounts as qa
from tunehand.server.db.engine import open_engine
from tunehand.server.services import Settings
from tunehand.server.streams import Signer

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

PUBLIC = endpoints("public")
SUBSONIC_ROUTES = endpoints("subsonic")
PROTECTED = endpoints("token")
SIGNED = endpoints("signed")


@dataclass(frozen=True)
class AppPassword:
    name: str
    password: str
    device_id: str


def make_app_password(who: Api, name: str) -> AppPassword:
    made = who.ok("POST", "/v1/app-passwords", json={"name": name})
    return AppPassword(made["name"], made["password"], made["device_id"])


_networks = itertools.count()


def from_fresh_network() -> httpx.Client:
    """A client whose requests come from a loopback address of a /24 no other request
    used (127.100.0.7, 127.100.1.7, ...): the Subsonic matrices fail credentials on
    purpose, hundreds of times, and failures are throttled per address and network as
    logins are. Linux answers all of 127.0.0.0/8 on the loopback interface."""
    n = next(_networks)
    address = f"127.{100 + n // 250}.{n % 250}.7"
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def subsonic_params(user: str, password: str) -> dict[str, str]:
    salt = secrets.token_hex(6)
    token = hashlib.md5((password + salt).encode(), usedforsecurity=False).hexdigest()
    return {"u": user, "t": token, "s": salt, "v": "1.16.1", "c": "isolation", "f": "json"}


def subsonic_call(srv: ServerProc, user: str, password: str, method: str, **extra: str) -> Json:
    params = {**subsonic_params(user, password), **extra}
    r = httpx.get(f"{srv.url}/rest/{method}", params=params)
    out: Json = r.json()["subsonic-response"]
    assert out["status"] == "ok", out
    return out


@dataclass
class World:
    """Account A with data of every kind, account B with its own, and bad tokens."""

    srv: ServerProc
    a: Api
    b: Api
    a_player: str
    a_playlist: str
    a_remote: str
    a_remote_url: str
    a_remote_title: str
    a_term: int
    a_entry: str
    library_track: str
    album_id: str
    art_id: str
    expired_token: str
    revoked_token: str
    a_app: AppPassword
    a_revoked_app: AppPassword
    b_app: AppPassword
    a_playlist_sid: str
    a_jam_code: str = ""
    markers: list[str] = field(default_factory=list)

    def path(self, method: str, path: str) -> str:
        """Fill a route's path parameters with ids that belong to account A (or, for the
        server's library, that exist)."""
        values = {
            "device_id": self.a.device_id,
            "name": self.a_playlist,
            "track_id": self.a_remote,
            "artist": "sigur ros",
            "album": self.album_id,
            "art_id": self.art_id,
            "path": "app.css",  # a file of the web app, the same for everyone
            "method": "ping",
            "podcast_id": "p" + "0" * 20,  # A has none here: see test_podcasts
        }
        if path == "/v1/stream/{track_id}":
            values["track_id"] = self.library_track
        if path == "/v1/app-passwords/{name}":
            values["name"] = self.a_app.name
        for param in params_of(path):
            assert param in values, f"{path}: give World.path an id for {{{param}}}"
        return path.format(**values)

    def signer(self) -> Signer:
        return Signer((self.srv.data_dir / "signing.key").read_bytes().strip())

    def signed(self, template: str, expires_s: int, value: str = "") -> dict[str, str]:
        """The query that signs `template`'s path (or one for `value`) until `expires_s`."""
        value = value or self.path("GET", template).rsplit("/", 1)[1]
        if template == "/v1/art/{art_id}":
            sig = self.signer().art_signature(value, expires_s)
        else:
            sig = self.signer().signature(value, expires_s)
        # Bound to A's device, as the server binds the links it gives a device.
        mac = self.signer().device_mac(self.a.device_id, sig)
        return {"exp": str(expires_s), "sig": sig, "d": self.a.device_id, "k": mac}

    def body(self, method: str, template: str) -> Json | None:
        """A well-formed body that, for B, names A's things where it can."""
        bodies: dict[tuple[str, str], Json] = {
            ("POST", "/v1/session/commands"): {
                "op": "queue_add",
                "command_id": unique("iso"),
                "track_ids": [self.a_remote],
            },
            ("PUT", "/v1/playlists/{name}"): {"track_ids": [self.a_remote]},
            ("POST", "/v1/library/rescan/tracks"): {"track_ids": [self.a_remote]},
            ("PATCH", "/v1/playlists/{name}"): {"name": "taken-by-b"},
            ("PATCH", "/v1/devices/{device_id}"): {"name": "taken-by-b"},
            ("POST", "/v1/auth/web/login"): {"user": "x", "password": "y"},
            ("POST", "/v1/auth/web/device/token"): {"device_code": "x"},
            ("POST", "/v1/tracks/remote"): {"url": "http://b.example/" + unique("s")},
            ("POST", "/v1/podcasts"): {"url": "http://127.0.0.1:9/" + unique("feed")},
            ("PUT", "/v1/listening/speed"): {"speed": 1.25, "kind": "music"},
            ("PUT", "/v1/listening/sleep"): {"mode": "off"},
            ("POST", "/v1/app-passwords"): {"name": unique("b-app")},
            ("PUT", "/v1/scrobble/listenbrainz"): {"token": ""},  # refused before any ask
            ("POST", "/v1/scrobble/lastfm/finish"): {"token": "x"},
            ("PUT", "/v1/autoplay"): {"on": False},
            ("POST", "/v1/radio"): {"track_ids": [self.a_remote]},
            ("POST", "/v1/auth/login"): {"user": "x", "password": "y", "device_id": "z"},
            ("POST", "/v1/auth/refresh"): {"refresh_token": "thr_x"},
            ("POST", "/v1/auth/device/approve"): {"user_code": "BCDF-GHJK"},
            ("POST", "/v1/auth/device/review"): {"user_code": "BCDF-GHJK"},
            ("POST", "/v1/jam"): {"guests_can_control": True},
            ("PATCH", "/v1/jam"): {"guests_can_control": True},
            ("POST", "/v1/jam/join"): {"code": "BCDF-GHJK"},  # never A's: a wrong code
            ("POST", "/v1/jam/kick"): {"user": self.a.name},
        }
        return bodies.get((method, template))

    def call(self, method: str, template: str, headers: dict[str, str]) -> httpx.Response:
        params = {"q": "ros"} if template == "/v1/search" else None
        return httpx.request(
            method,
            self.srv.url + self.path(method, template),
            json=self.body(method, template),
            params=params,
            headers=headers,
            timeout=30,
        )


def _signed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("/v1/stream/", "/v1/art/"))


def _strip(obj: Any) -> Any:
    """Drop what changes on its own: times, online flags, and the expiry and signature of
    signed stream and art links (art links move to the next hour's bucket on their own)."""
    if isinstance(obj, dict):
        return {
            k: (v.split("?", 1)[0] if _signed(v) else _strip(v))
            for k, v in obj.items()
            if k not in ("server_time_ms", "last_seen_ms", "online", "address")
        }
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    return obj


def snapshot(who: Api, playlist: str | None = None, remote: str | None = None) -> Json:
    """Everything an account owns, as it sees it."""
    snap: Json = {
        "session": who.ok("GET", "/v1/session"),
        "queue": who.ok("GET", "/v1/session/queue"),
        "devices": who.ok("GET", "/v1/devices"),
        "playlists": who.ok("GET", "/v1/playlists"),
        "likes": who.ok("GET", "/v1/likes"),
        "history": who.ok("GET", "/v1/history"),
        "app_passwords": who.ok("GET", "/v1/app-passwords"),
    }
    if playlist is not None:
        snap["playlist"] = who.ok("GET", f"/v1/playlists/{playlist}")
    if remote is not None:
        snap["remote"] = who.ok("GET", f"/v1/tracks/{remote}")
    out: Json = _strip(snap)
    return out


def mint_token(srv: ServerProc, user: str, device_id: str, expires_ms: int) -> str:
    """An access token stored the way the server stores them, with a chosen expiry."""

    async def run() -> str:
        engine = open_engine(db_url(srv))
        try:
            async with engine.begin() as conn:
                acct = await qa.account_by_name(conn, user)
                assert acct is not None
                token = "tha_" + secrets.token_urlsafe(32)
                row = qa.TokenRow(
                    auth.token_hash(token),
                    "access",
                    acct.id,
                    device_id,
                    "minted-" + secrets.token_hex(4),
                    expires_ms,
                    None,
                    False,
                )
                await qa.insert_token(conn, row)
                return token
        finally:
            await engine.dispose()

    out: str = run_async(run)
    return out


async def _play_and_be_heard(a: Api, player_id: str) -> tuple[int, str]:
    """Make A's history non-empty: play on a player that reports audible playback, then
    let it go (the session pauses) and wait until the server has recorded that. Returns
    the term and entry the player played."""
    async with channel(a.srv, a.token) as watcher:
        async with channel(a.srv, a.token, device_id=player_id, capabilities=("play",)) as p:
            assert (await p.command("play"))["code"] == "ok"
            start = await p.wait("directive")
            report = {
                "term": start["term"],
                "entry_id": start["entry_id"],
                "position_ms": 0,
                "at_ms": now_ms(),
                "playing": True,
                "rate": 1.0,
            }
            await p.send(type="report", report=report)
            await p.wait("state", lambda m: m["state"]["position"]["rate"] == 1.0)
        await watcher.wait("state", lambda m: m["state"]["active_device"] is None)
    return start["term"], start["entry_id"]


def make_world(shared_server: ServerProc, make: Callable[..., Api]) -> World:
    """Accounts A and B (made with `make`), each with data of its own."""
    a, b = make("alice"), make("bob")
    lib = all_tracks(a)
    with_art = next(t for t in lib if t["art_url"])
    tag = secrets.token_hex(4)
    remote_url = f"http://a-secret-{tag}.example/stream"
    remote_title = f"A secret station {tag}"
    rid = a.ok("POST", "/v1/tracks/remote", json={"url": remote_url, "title": remote_title})["id"]
    playlist = f"alist-{tag}"
    a.ok("PUT", f"/v1/playlists/{playlist}", json={"track_ids": [lib[0]["id"], rid]})
    a.ok("PUT", f"/v1/likes/{lib[1]['id']}")
    a.ok("PUT", f"/v1/likes/{rid}")
    a.cmd("queue_add", track_ids=[lib[2]["id"], rid])
    a.cmd("volume", value=37)
    player = f"adev-{tag}"
    term, entry = asyncio.run(_play_and_be_heard(a, player))
    # B has data of its own.
    b.ok("PUT", "/v1/playlists/blist", json={"track_ids": [lib[3]["id"]]})
    b.cmd("queue_add", track_ids=[lib[3]["id"]])
    # A token of a logged-out login of A, and an expired one.
    spare = Api(shared_server, a.name, shared_server.login(a.name))
    revoked = spare.token
    spare.ok("POST", "/v1/auth/logout")
    spare.close()
    expired = mint_token(shared_server, a.name, a.device_id, now_ms() - 1000)
    a_app = make_app_password(a, f"aapp-{tag}")
    a_revoked = make_app_password(a, f"arevoked-{tag}")
    a.ok("DELETE", f"/v1/app-passwords/{a_revoked.name}")
    b_app = make_app_password(b, "bapp")
    jam_code = a.ok("POST", "/v1/jam", json={})["code"]  # A hosts a jam
    a_lists = subsonic_call(shared_server, a.name, a_app.password, "getPlaylists")
    a_sid = next(p["id"] for p in a_lists["playlists"]["playlist"] if p["name"] == playlist)
    # A's Subsonic marks: a bookmark with a comment of its own and a rating.
    a_comment = f"a-bookmark-{tag}"
    subsonic_call(
        shared_server,
        a.name,
        a_app.password,
        "createBookmark",
        id=lib[0]["id"],
        position="61000",
        comment=a_comment,
    )
    subsonic_call(shared_server, a.name, a_app.password, "setRating", id=lib[0]["id"], rating="4")
    w = World(
        shared_server,
        a,
        b,
        a_player=player,
        a_playlist=playlist,
        a_remote=rid,
        a_remote_url=remote_url,
        a_remote_title=remote_title,
        a_term=term,
        a_entry=entry,
        library_track=lib[0]["id"],
        album_id=a.ok("GET", "/v1/albums")["albums"][0]["id"],
        art_id=urlsplit(with_art["art_url"]).path.rsplit("/", 1)[1],
        expired_token=expired,
        revoked_token=revoked,
        a_app=a_app,
        a_revoked_app=a_revoked,
        b_app=b_app,
        a_playlist_sid=a_sid,
        a_jam_code=jam_code,
    )
    w.markers = [a.name, a.device_id, player, playlist, rid, remote_url, remote_title]
    w.markers += [a_app.name, a_app.password, a_app.device_id, a_sid, jam_code, a_comment]
    assert snapshot(a, playlist, rid)["history"]["history"]  # A really has a history
    return w


@pytest.fixture(scope="module")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[ServerProc]:
    """The module's server, with the per-account REST rate lifted: A's snapshots before
    and after every route of the matrix, from one account in a burst, would pass the
    limit (50/s) and be answered 429, which says nothing of isolation (the limit has its
    own test in test_limits.py)."""
    srv = launch(
        tmp_path_factory.mktemp(f"isolation-{backend.name}"),
        store=backend.store(),
        env={"TUNEHAND_REST_PER_S": "1000000"},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def world(shared_server: ServerProc) -> Iterator[World]:
    """The world of the tests that leave A as it is."""
    with accounts(shared_server) as make:
        yield make_world(shared_server, make)


@pytest.fixture
def own_world(shared_server: ServerProc) -> Iterator[World]:
    """A world for one test alone (one that changes A, or needs A untouched by others)."""
    with accounts(shared_server) as make:
        yield make_world(shared_server, make)


@pytest.fixture(scope="module")
def a_before(world: World) -> Json:
    return snapshot(world.a, world.a_playlist, world.a_remote)


# --- the route list itself ------------------------------------------------------------


def test_every_route_and_message_is_classified() -> None:
    """Every route the server's app serves and every channel message type is in
    tests/route_table.py, and nothing there is gone; else this names what to add."""
    problems = classification_problems(SERVED)
    assert not problems, "\n".join(problems)
    assert len(PROTECTED) >= 20 and len(PUBLIC) >= 5 and SIGNED  # the matrices are not empty
    assert set(MESSAGES) == set(CLIENT_TYPES)


def test_the_running_server_serves_the_table(world: World) -> None:
    """The app built with this server's own settings has the routes the matrices use,
    and the running server answers each of them (no route is a 404 or 405 of routing)."""
    store = world.srv.store
    settings = Settings(
        data_dir=world.srv.data_dir,
        music=(world.srv.music,),
        database_url=store.database,
        redis_url=store.redis,
        **({"redis_prefix": store.redis_prefix} if store.redis_prefix else {}),
    )
    assert sorted(served_endpoints(settings)) == sorted(SERVED)
    for method, template in SERVED:
        r = httpx.request(method, world.srv.url + world.path(method, template), timeout=30)
        assert r.status_code != 405, (method, template, r.text)
        if r.status_code == 404:
            assert r.json()["error"]["code"] == "not_found", (method, template, r.text)


def test_minted_tokens_work_until_they_expire(world: World) -> None:
    """The expired token below is refused for its age, not for being made up."""
    fresh = mint_token(world.srv, world.a.name, world.a.device_id, now_ms() + 60_000)
    r = httpx.get(world.srv.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {fresh}"})
    assert (r.status_code, r.json()["user"]) == (200, world.a.name)


# --- no valid token: 401 everywhere ---------------------------------------------------

BAD_CREDENTIALS: dict[str, Callable[[World], dict[str, str]]] = {
    "missing": lambda w: {},
    "basic": lambda w: {"Authorization": "Basic YWxpY2U6c2VjcmV0LXB3"},
    "bare-bearer": lambda w: {"Authorization": "Bearer"},
    "bearer-spaces": lambda w: {"Authorization": "Bearer    \t x"},
    "forged": lambda w: {"Authorization": "Bearer tha_" + secrets.token_urlsafe(32)},
    "garbage": lambda w: {"Authorization": "Bearer ../../etc/passwd"},
    "too-long": lambda w: {"Authorization": "Bearer tha_" + "x" * 5000},
    "expired": lambda w: {"Authorization": f"Bearer {w.expired_token}"},
    "revoked": lambda w: {"Authorization": f"Bearer {w.revoked_token}"},
    "refresh-as-access": lambda w: {"Authorization": f"Bearer {w.a.tokens['refresh_token']}"},
}


@pytest.mark.parametrize("credential", sorted(BAD_CREDENTIALS))
@pytest.mark.parametrize(("method", "template"), PROTECTED)
def test_a_protected_route_refuses_a_bad_token(
    world: World, method: str, template: str, credential: str
) -> None:
    r = world.call(method, template, BAD_CREDENTIALS[credential](world))
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["code"] == "unauthorized"
    for marker in world.markers:
        assert marker not in r.text


# --- account B's token: never A's data -----------------------------------------------


def call_as_b(world: World, method: str, template: str) -> httpx.Response:
    """B calls the route, naming A's things."""
    b = world.b
    if (method, template) == ("POST", "/v1/auth/logout"):
        b = Api(world.srv, b.name, world.srv.login(b.name))  # keep B's main login
    try:
        return world.call(method, template, b.headers)
    finally:
        if b is not world.b:
            b.close()
        if (method, template) == ("POST", "/v1/jam"):
            world.b.delete("/v1/jam")  # B's own jam: B stays in none, in any order


@pytest.mark.parametrize(("method", "template"), PROTECTED)
def test_account_b_never_sees_or_changes_account_a(
    world: World, a_before: Json, method: str, template: str
) -> None:
    r = call_as_b(world, method, template)
    assert r.status_code < 500, r.text
    sent = world.path(method, template) + json.dumps(world.body(method, template))
    for marker in world.markers:
        if marker not in sent:  # echoing what B itself sent back is no leak
            assert marker not in r.text, (marker, r.text)
    assert r.status_code == ROUTES[method, template].as_b, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message"}
    assert snapshot(world.a, world.a_playlist, world.a_remote) == a_before


def test_b_sees_only_its_own(world: World) -> None:
    b = world.b
    assert b.ok("GET", "/v1/auth/whoami")["user"] == b.name
    ids = {d["id"] for d in b.ok("GET", "/v1/devices")["devices"]}
    assert b.device_id in ids
    assert not ids & {world.a.device_id, world.a_player}
    assert [p["name"] for p in b.ok("GET", "/v1/playlists")["playlists"]] == ["blist"]
    assert b.ok("GET", "/v1/likes") == {"tracks": []}
    assert b.ok("GET", "/v1/history") == {"history": []}
    st = b.state()
    assert st["volume"] == 100
    assert world.a_remote not in json.dumps(st)
    # B queueing, playing or transferring to A's things: not found.
    b.cmd("queue_next", "not_found", track_ids=[world.a_remote])
    b.cmd("play", "not_found", device_id=world.a_player)
    b.cmd("transfer", "not_found", device_id=world.a_player)
    b.cmd("transfer", "not_found", device_id=world.a.device_id)
    assert b.post("/v1/tracks/remote", json={"url": world.a_remote_url}).json()["id"] != (
        world.a_remote
    )


def test_sessions_move_independently(shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        c, d = make("carol"), make("dave")
        tid = all_tracks(c)[0]["id"]
        d_before = snapshot(d)
        c.cmd("queue_add", track_ids=[tid])
        c.cmd("next")
        c.cmd("volume", value=5)
        c.cmd("repeat", mode="one")
        assert snapshot(d) == d_before
        c_before = snapshot(c)
        d.cmd("queue_add", track_ids=[tid, tid])
        d.cmd("shuffle", on=True)
        d.ok("PUT", "/v1/playlists/mine", json={"track_ids": [tid]})
        d.ok("PUT", f"/v1/likes/{tid}")
        assert snapshot(c) == c_before
        assert c.get("/v1/playlists/mine").status_code == 404
        assert d.state()["version"] == 2


SIGNATURES: dict[str, Callable[[World, str], dict[str, str]]] = {
    "none": lambda w, t: {},
    "forged": lambda w, t: {"exp": "9999999999", "sig": "forged"},
    "expired": lambda w, t: w.signed(t, int(time.time()) - 5),
    "for-another-id": lambda w, t: w.signed(t, int(time.time()) + 600, "c" + "1" * 32),
}


SIGNED_ANSWER: dict[str, tuple[int, str]] = {
    "/v1/stream/{track_id}": (200, "audio/"),
    "/v1/art/{art_id}": (422, "application/json"),
}


@pytest.mark.parametrize("signature", sorted(SIGNATURES))
@pytest.mark.parametrize(("method", "template"), SIGNED)
def test_a_signed_route_needs_a_valid_signature_not_a_token(
    world: World, method: str, template: str, signature: str
) -> None:
    url = world.srv.url + world.path(method, template)
    params = SIGNATURES[signature](world, template)
    for headers in ({}, world.a.headers, world.b.headers):
        r = httpx.request(method, url, params=params, headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    # A signed URL works for anybody who has it, with or without a token: what it
    # names is the server's library, not an account's. (The generated library's
    # cover.jpg is random bytes: its picture is found, then refused as undecodable.)
    params = world.signed(template, int(time.time()) + 600)
    for headers in ({}, world.a.headers, world.b.headers):
        r = httpx.request(method, url, params=params, headers=headers)
        status, mime = SIGNED_ANSWER[template]
        assert r.status_code == status and r.headers["content-type"].startswith(mime), (
            r.status_code,
            r.headers["content-type"],
        )


def test_signed_urls_come_from_any_account_and_remote_tracks_have_none(world: World) -> None:
    view = world.b.ok("GET", f"/v1/tracks/{world.library_track}")
    assert httpx.get(world.srv.url + view["url"]).status_code == 200
    art = next(t for t in all_tracks(world.b) if t["art_url"])["art_url"]
    assert urlsplit(art).path == f"/v1/art/{world.art_id}" and parse_qs(urlsplit(art).query)
    assert httpx.get(world.srv.url + art).json()["error"]["code"] == "bad_picture"
    # A remote track has no stream: its URL is its own.
    assert world.a.ok("GET", f"/v1/tracks/{world.a_remote}")["url"] == world.a_remote_url
    r = httpx.get(world.srv.url + f"/v1/stream/{world.a_remote}")
    assert r.status_code == 403


def b_message(world: World, kind: str) -> Json:
    """A channel message of type `kind` from B that names A's things where it can."""
    report = {
        "term": world.a_term,
        "entry_id": world.a_entry,
        "position_ms": 1000,
        "at_ms": now_ms(),
        "playing": True,
        "rate": 1.0,
    }
    command = {"op": "queue_add", "command_id": unique("bm"), "track_ids": [world.a_remote]}
    bodies: dict[str, Json] = {
        "auth": {"token": world.a.token, "device": {"id": world.a_player, "name": "x"}},
        "command": {"command": command},
        "report": {"report": report},
        "time": {"t0": 1.5},
        "resync": {"last_version": 0},
        "ping": {},
        "ready": {"transfer_id": f"{world.a_term}.{world.a_player}"},
        "failed": {"transfer_id": f"{world.a_term}.{world.a_player}", "message": "no"},
    }
    assert kind in bodies, f"give b_message a message of type {kind!r}"
    return {"type": kind, **bodies[kind]}


@pytest.mark.parametrize("kind", sorted(CLIENT_TYPES))
async def test_b_channel_messages_never_reach_a(world: World, a_before: Json, kind: str) -> None:
    """Every message type the channel reads, sent by B naming A's things: B gets its
    classified answer, hears nothing of A, and A's data stays as it was."""
    b = world.b
    msg = b_message(world, kind)
    sent = json.dumps(msg)
    async with channel(b.srv, b.token, device_id=unique("bmsg"), capabilities=("play",)) as ch:
        await ch.barrier()
        await ch.ws.send(sent)
        answer = MESSAGES[kind].answer
        if answer is not None:
            got = await ch.wait(answer)
            assert got.get("code") == MESSAGES[kind].code, got
        heard = await ch.barrier()
        if answer is None:
            assert [m["type"] for m in heard if m["type"] != "devices"] == [], heard
        assert ch.hello["device_id"] == ch.device_id  # still B's own device
    for m in ch.seen:
        assert SERVER_MESSAGES[m["type"]], m  # only answers and news of B's own devices
        for marker in world.markers:
            if marker not in sent:
                assert marker not in json.dumps(m), (marker, m)
    assert snapshot(world.a, world.a_playlist, world.a_remote) == a_before


def test_account_a_is_unchanged_after_all_of_that(own_world: World) -> None:
    """B calls every route in a row, naming A's things; A is still as it was."""
    world = own_world
    a_before = snapshot(world.a, world.a_playlist, world.a_remote)
    for method, template in PROTECTED:
        r = call_as_b(world, method, template)
        assert r.status_code < 500, (method, template, r.text)
    assert snapshot(world.a, world.a_playlist, world.a_remote) == a_before


# --- a guest of A's jam: A's shared session, and nothing else of A -------------------

GUEST_SEES = ("a_player", "a_remote", "a_remote_url", "a_remote_title")
"""What of A a guest of A's jam may see: A's name, A's devices (by name and id) and A's
queue (A's radio station is in it). Never A's playlists, app passwords, jam code ...
unless it is a guest, which is given the code."""


def not_for_guests(world: World) -> list[str]:
    shared = {world.a.name, world.a.device_id, world.a_jam_code}
    shared |= {getattr(world, name) for name in GUEST_SEES}
    return [m for m in world.markers if m not in shared]


def a_own(who: Api, world: World) -> Json:
    """What A keeps to itself (everything but the shared session)."""
    snap = snapshot(who, world.a_playlist, world.a_remote)
    return {k: v for k, v in snap.items() if k not in ("session", "queue")}


def test_a_guest_sees_the_shared_session_and_nothing_else(own_world: World) -> None:
    """B joins A's jam: B sees A's queue, what plays and A's device names, never their
    addresses or A's playlists, likes, history or app passwords; then every route, as
    the guest, naming A's things, answers as classified (`Kind.as_guest`)."""
    world = own_world
    a, b = world.a, world.b
    a_before = a_own(a, world)
    assert b.ok("POST", "/v1/jam/join", json={"code": world.a_jam_code})["host"] == a.name
    shared = b.ok("GET", "/v1/session")
    assert shared["state"] == a.state() and shared["jam"] == {"role": "guest"}
    assert shared["state"]["volume"] == 37  # A's session

    async def online_player() -> Json:
        async with channel(a.srv, a.token, device_id=world.a_player, capabilities=("play",)):
            return {d["id"]: d for d in b.ok("GET", "/v1/devices")["devices"]}

    devices = asyncio.run(online_player())
    assert world.a_player in devices and b.device_id in devices
    assert devices[world.a_player]["address"] == ""  # A's device: its name, not its details
    assert devices[world.a_player]["last_seen_ms"] == 0
    assert a.device_id not in devices  # offline: not on the shared session
    assert devices[b.device_id]["address"]  # B's own keep theirs
    assert [p["name"] for p in b.ok("GET", "/v1/playlists")["playlists"]] == ["blist"]
    assert b.ok("GET", "/v1/likes") == {"tracks": []}
    assert b.ok("GET", "/v1/history") == {"history": []}
    hidden = not_for_guests(world)
    # Leaving last: until then B is a guest.
    for method, template in sorted(PROTECTED, key=lambda e: e == ("POST", "/v1/jam/leave")):
        if template.startswith("/v1/auth/"):
            continue  # logins and device codes: nothing of a jam (and throttled per address)
        r = world.call(method, template, b.headers)
        assert r.status_code < 500, (method, template, r.text)
        sent = world.path(method, template) + json.dumps(world.body(method, template))
        for marker in hidden:
            if marker not in sent:
                assert marker not in r.text, (method, template, marker, r.text)
        kind = ROUTES[method, template]
        want = kind.as_b if kind.as_guest is None else kind.as_guest
        assert r.status_code == want, (method, template, r.text)
    assert a_own(a, world) == a_before
    assert b.get("/v1/jam").status_code == 404  # B left: back on its own session
    assert b.state()["queue"][0]["track_id"] != world.a_remote


# --- the channel (changes A's session and devices: a world of its own) --------------


async def test_b_channel_never_hears_about_a(own_world: World) -> None:
    world = own_world
    a, b = world.a, world.b
    async with channel(b.srv, b.token, device_id=unique("bdev")) as bch:
        await bch.barrier()
        async with (
            channel(a.srv, a.token) as ach,
            channel(a.srv, a.token, device_id=world.a_player, capabilities=("play",)) as player,
        ):
            assert (await ach.command("volume", value=37))["code"] == "ok"
            assert (await ach.command("play"))["code"] == "ok"
            await player.wait("directive")
            assert (await ach.command("pause"))["code"] == "ok"
            await player.barrier()
        await bch.barrier()  # anything sent to B by now has arrived
    own = {d["id"] for d in bch.hello["devices"]}
    assert not own & {a.device_id, world.a_player}
    for m in bch.seen:
        assert m["type"] in ("hello", "devices", "pong"), m  # nothing it did not ask for
        for marker in world.markers:
            assert marker not in json.dumps(m)
        if m["type"] == "devices":
            assert {d["id"] for d in m["devices"]} <= own


@pytest.mark.parametrize("whose", ["player", "login"])
async def test_b_cannot_take_a_device_id_of_a(own_world: World, whose: str) -> None:
    world = own_world
    device_id = world.a_player if whose == "player" else world.a.device_id
    async with connect(ws_url(world.srv)) as ws:
        auth_msg = {
            "type": "auth",
            "token": world.b.token,
            "device": {"id": device_id, "name": "x"},
        }
        await ws.send(json.dumps(auth_msg))
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert (err["type"], err["code"]) == ("error", "unauthorized")
        assert await expect_closed(ws) == 4001
    # The device is still A's.
    async with channel(world.a.srv, world.a.token, device_id=device_id) as ch:
        assert ch.hello["device_id"] == device_id


def test_a_login_cannot_take_a_device_id_of_another_account(world: World) -> None:
    r = httpx.post(
        world.srv.url + "/v1/auth/login",
        json={"user": world.b.name, "password": "secret-pw", "device_id": world.a_player},
    )
    assert r.status_code == 401
    assert world.a.device_id not in r.text


def test_new_accounts_start_empty(shared_server: ServerProc) -> None:
    name = unique("eve")
    add_users(shared_server, name)
    eve = Api(shared_server, name, shared_server.login(name))
    try:
        snap = snapshot(eve)
        assert snap["session"]["state"]["version"] == 0
        assert snap["playlists"] == {"playlists": []}
        assert snap["likes"] == {"tracks": []}
        assert snap["history"] == {"history": []}
    finally:
        eve.close()


# --- the Subsonic API: every method, every bad credential, B naming A's things ----------
#
# `/rest/{method}` is one route per HTTP method; what it does is the method, so the
# matrices here run over the server's own dispatch table (classified in
# route_table.SUBSONIC). Every request comes from a fresh network (`from_fresh_network`)
# so the throttle of failed credentials never answers in place of the check under test.


def subsonic_bad(world: World, credential: str) -> dict[str, str]:
    a, b = world.a, world.b
    base = {"v": "1.16.1", "c": "isolation", "f": "json"}
    given: dict[str, dict[str, str]] = {
        "none": base,
        "wrong-password": {**base, "u": a.name, "p": "not-" + world.a_app.password},
        "a-password-as-b": {**base, "u": b.name, "p": world.a_app.password},
        "a-token-as-b": subsonic_params(b.name, world.a_app.password),
        "revoked": subsonic_params(a.name, world.a_revoked_app.password),
        "revoked-api-key": {**base, "apiKey": world.a_revoked_app.password},
        "forged-api-key": {**base, "apiKey": "forged-" + secrets.token_hex(8)},
        "account-password": {**base, "u": a.name, "p": "secret-pw"},  # never a Subsonic one
        "unknown-user": subsonic_params("nobody-" + secrets.token_hex(3), "x"),
    }
    return given[credential]


SUBSONIC_BAD_CODE = {
    "none": 10,
    "wrong-password": 40,
    "a-password-as-b": 40,
    "a-token-as-b": 40,
    "revoked": 40,
    "revoked-api-key": 44,
    "forged-api-key": 44,
    "account-password": 40,
    "unknown-user": 40,
}


def subsonic_as_b(world: World, method: str) -> dict[str, str]:
    """Parameters of `method` that name A's things where it can (else the library's)."""
    a_pl = world.a_playlist_sid
    track = world.library_track
    named: dict[str, dict[str, str]] = {
        "getArtist": {"id": "ar" + b"sigur ros".hex()},
        "getAlbum": {"id": world.album_id},
        "getSong": {"id": track},
        "getLyricsBySongId": {"id": track},
        "getAlbumList2": {"type": "recent"},
        "getAlbumList": {"type": "highest"},
        "getMusicDirectory": {"id": world.album_id},
        "search2": {"query": "a"},
        "setRating": {"id": track, "rating": "2"},
        "createBookmark": {"id": track, "position": "5000"},
        "deleteBookmark": {"id": track},
        "getCoverArt": {"id": world.art_id},
        "stream": {"id": track},
        "download": {"id": track},
        "getUser": {"username": world.a.name},
        "getPlaylists": {"username": world.a.name},
        "getPlaylist": {"id": a_pl},
        "createPlaylist": {"playlistId": a_pl},
        "updatePlaylist": {"playlistId": a_pl, "name": "taken-by-b"},
        "deletePlaylist": {"id": a_pl},
        "star": {"id": track},
        "unstar": {"id": track},
        "scrobble": {"id": track},
        "savePlayQueue": {"id": track, "current": track, "position": "1000"},
    }
    return named.get(method, {})


@pytest.mark.parametrize("credential", sorted(SUBSONIC_BAD_CODE))
@pytest.mark.parametrize("method", sorted(SUBSONIC))
@pytest.mark.parametrize(("http", "template"), SUBSONIC_ROUTES)
def test_a_subsonic_method_refuses_bad_credentials(
    world: World, http: str, template: str, method: str, credential: str
) -> None:
    params = {**subsonic_bad(world, credential), **subsonic_as_b(world, method)}
    url = world.srv.url + template.format(method=method)
    with from_fresh_network() as client:
        r = client.post(url, data=params) if http == "POST" else client.get(url, params=params)
    assert r.status_code == 200, r.text
    out = r.json()["subsonic-response"]
    if SUBSONIC[method].public:
        assert out["status"] == "ok", out
    else:
        assert (out["status"], out["error"]["code"]) == ("failed", SUBSONIC_BAD_CODE[credential])
    for marker in world.markers:
        if marker not in str(params):
            assert marker not in r.text, (marker, r.text)


@pytest.mark.parametrize("method", sorted(SUBSONIC))
def test_account_b_never_sees_or_changes_account_a_over_subsonic(
    world: World, a_before: Json, method: str
) -> None:
    b = world.b
    params = {**subsonic_params(b.name, world.b_app.password), **subsonic_as_b(world, method)}
    with from_fresh_network() as client:
        r = client.get(f"{world.srv.url}/rest/{method}", params=params)
    assert r.status_code == 200, r.text
    if r.headers["content-type"].startswith("application/json"):
        out = r.json()["subsonic-response"]
        code = out["error"]["code"] if out["status"] == "failed" else None
        assert code == SUBSONIC[method].as_b, out
    else:  # the library's bytes
        assert SUBSONIC[method].as_b is None and r.headers["content-type"].startswith("audio/")
    for marker in world.markers:
        if marker not in str(params):
            assert marker not in r.text, (marker, r.text)
    assert snapshot(world.a, world.a_playlist, world.a_remote) == a_before


def test_every_subsonic_method_is_in_the_matrices() -> None:
    assert len(SUBSONIC) >= 25 and SUBSONIC_ROUTES == [
        ("GET", "/rest/{method}"),
        (
            "POST",
            "/rest/{method}",
        ),
    ]
