"""Bad input never breaks the server: every refusal is a 4xx JSON error, never a 500,
never a traceback, never a file's content.

Bodies with wrong types, missing fields, no JSON, arrays, deep nesting or too many
bytes; path traversal in track ids and playlist names; NUL characters (which
PostgreSQL cannot store) and other input the database would choke on, on both
backends; absurd numbers in device reports. Each test checks that the server printed
no traceback while it ran (`shared_server_log_clean`).
Every test runs on SQLite and on PostgreSQL + Redis (`shared_server`).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.fixtures_server import Backend, ServerProc, launch
from tests.route_table import (
    MESSAGES,
    ROUTES,
    SERVED,
    classification_problems,
    params_of,
    sample_path,
)
from tests.test_api import (
    TIMEOUT_S,
    Api,
    Json,
    accounts,
    acmd,
    all_tracks,
    assert_log_clean,
    async_http,
    channel,
    expect_closed,
    now_ms,
    ws_url,
)
from tunehand.server.streams import Signer

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

# Every served route that reads a JSON body, with a path to call it at.
BODY_ROUTES: dict[tuple[str, str], str] = {
    (m, t): sample_path(t) for m, t in SERVED if (m, t) in ROUTES and ROUTES[m, t].body == "json"
}
# Every served route with a parameter in its path, once per parameter: (method, template
# with that parameter left as "{}" and the others filled in).
PARAM_ROUTES: list[tuple[str, str]] = sorted(
    {(m, sample_path(t, **{p: "{}"})) for m, t in SERVED for p in params_of(t)}
)

FILE_CONTENT = ("root:", "/bin/sh", "[boot loader]")


def check_error(r: httpx.Response, status: int | tuple[int, ...]) -> Json:
    """A refusal: the status, a JSON `{"error": {"code", "message"}}` body, no leak."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert r.status_code in allowed, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: Json = r.json()
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in r.text
    for needle in FILE_CONTENT:
        assert needle not in r.text
    return body


@pytest.fixture(scope="module")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, backend: Backend
) -> Iterator[ServerProc]:
    """The module's server, with the per-account REST rate lifted: this module sends
    hundreds of requests from one account in a burst on purpose (every route, every bad
    body), which the limit would answer 429 (the limit has its own test in
    test_limits.py)."""
    srv = launch(
        tmp_path_factory.mktemp(f"bad-input-{backend.name}"),
        store=backend.store(),
        env={"TUNEHAND_REST_PER_S": "1000000"},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def user(shared_server: ServerProc) -> Iterator[Api]:
    with accounts(shared_server) as make:
        yield make("bad")


@pytest.fixture(scope="module")
def second(shared_server: ServerProc) -> Iterator[Api]:
    """Another account, for input PostgreSQL refuses where SQLite takes it."""
    with accounts(shared_server) as make:
        yield make("pg")


def test_every_route_and_message_is_classified() -> None:
    """The matrices below come from tests/route_table.py: a route or message type the
    server has and the table does not (or the other way round) is named here."""
    problems = classification_problems(SERVED)
    assert not problems, "\n".join(problems)
    assert len(BODY_ROUTES) >= 8 and len(PARAM_ROUTES) >= 10  # the matrices are not empty
    assert ("GET", "/v1/art/{}") in PARAM_ROUTES


# --- bodies -----------------------------------------------------------------------------

GARBAGE: list[tuple[str, bytes, int]] = [
    ("empty", b"", 400),
    ("not-json", b"not json", 422),
    ("truncated", b'{"op": "pause", ', 422),
    ("array", b"[1, 2, 3]", 422),
    ("array-of-object", b'[{"op": "pause", "command_id": "x"}]', 422),
    ("null", b"null", 422),
    ("number", b"42", 422),
    ("string", b'"hello"', 422),
    ("bad-utf8", b'{"user": "\xff\xfe"}', 422),
    ("nan", b'{"value": NaN}', 422),
    ("deep-object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 422),
    ("deep-array", b"[" * 100_000, 422),
]


@pytest.mark.parametrize(("name", "raw", "status"), GARBAGE, ids=[g[0] for g in GARBAGE])
@pytest.mark.parametrize("route", sorted(BODY_ROUTES), ids="-".join)
def test_a_body_that_is_not_the_right_json_object_is_refused(
    user: Api, route: tuple[str, str], name: str, raw: bytes, status: int
) -> None:
    method, _ = route
    r = user.http.request(
        method, BODY_ROUTES[route], content=raw, headers={"Content-Type": "application/json"}
    )
    assert check_error(r, status)["error"]["code"] == "invalid"


WRONG: list[tuple[str, str, Json, str]] = [
    ("POST", "/v1/auth/login", {"user": 5, "password": "x", "device_id": "d"}, "$.user"),
    ("POST", "/v1/auth/login", {"user": "x", "password": ["x"], "device_id": "d"}, "$.password"),
    # device_id is optional (the server mints one), but a wrong type is refused
    ("POST", "/v1/auth/login", {"user": "x", "password": "y", "device_id": 5}, "$.device_id"),
    ("POST", "/v1/auth/login", {"user": "x", "password": "y", "device_id": "d" * 65}, "device_id"),
    (
        "POST",
        "/v1/auth/login",
        {"user": "x", "password": "y", "device_id": "d", "device_name": "n" * 129},
        "device_name",
    ),
    ("POST", "/v1/auth/refresh", {"refresh_token": 5}, "$.refresh_token"),
    ("POST", "/v1/auth/refresh", {}, "refresh_token"),
    ("POST", "/v1/session/commands", {"op": "volume"}, "command_id"),
    ("POST", "/v1/session/commands", {"command_id": "x"}, "op"),
    ("POST", "/v1/session/commands", {"op": 5, "command_id": "x"}, "$.op"),
    ("POST", "/v1/session/commands", {"op": "explode", "command_id": "x"}, "$.op"),
    ("POST", "/v1/session/commands", {"op": "pause", "command_id": 7}, "$.command_id"),
    ("POST", "/v1/session/commands", {"op": "volume", "command_id": "x", "value": "9"}, "$.value"),
    ("POST", "/v1/session/commands", {"op": "volume", "command_id": "x", "value": 1.5}, "$.value"),
    (
        "POST",
        "/v1/session/commands",
        {"op": "queue_add", "command_id": "x", "track_ids": "t1"},
        "$.track_ids",
    ),
    (
        "POST",
        "/v1/session/commands",
        {"op": "queue_add", "command_id": "x", "track_ids": [1]},
        "$.track_ids[0]",
    ),
    ("POST", "/v1/session/commands", {"op": "shuffle", "command_id": "x", "on": "yes"}, "$.on"),
    ("POST", "/v1/session/commands", {"op": "repeat", "command_id": "x", "mode": "some"}, "$.mode"),
    ("POST", "/v1/session/commands", {"op": "pause", "command_id": "x", "if_version": "1"}, "$.if"),
    ("PUT", "/v1/playlists/bad-input", {"track_ids": "t1"}, "$.track_ids"),
    ("PUT", "/v1/playlists/bad-input", {"track_ids": [None]}, "$.track_ids[0]"),
    ("PUT", "/v1/playlists/bad-input", {}, "track_ids"),
    ("POST", "/v1/tracks/remote", {"url": 5}, "$.url"),
    ("POST", "/v1/tracks/remote", {"title": "x"}, "url"),
    ("POST", "/v1/tracks/remote", {"url": "http://x.example/", "title": 5}, "$.title"),
    ("POST", "/v1/tracks/remote", {"url": "file:///etc/passwd"}, "url"),
    ("POST", "/v1/tracks/remote", {"url": "../../etc/passwd"}, "url"),
]


@pytest.mark.parametrize(("method", "path", "body", "needle"), WRONG)
def test_wrong_types_and_missing_fields_are_named(
    user: Api, method: str, path: str, body: Json, needle: str
) -> None:
    r = user.http.request(method, path, json=body)
    err = check_error(r, 422)["error"]
    assert err["code"] == "invalid"
    assert needle in err["message"]


COMMANDS_OUT_OF_RANGE: list[Json] = [
    {"op": "pause", "command_id": ""},
    {"op": "pause", "command_id": "c" * 65},
    {"op": "volume", "value": 10**30},
    {"op": "volume", "value": -(10**30)},
    {"op": "seek", "position_ms": -1},
    {"op": "queue_add", "track_ids": []},
    {"op": "queue_add", "track_ids": ["t" * 2049]},
    {"op": "queue_add", "track_ids": ["t1"] * 10_001},
    {"op": "queue_remove", "entry_ids": []},
    {"op": "queue_move", "entry_id": "e1.0", "index": -1},
    {"op": "queue_replace", "track_ids": ["t1"]},  # no if_version
    {"op": "transfer"},
]


@pytest.mark.parametrize("cmd", COMMANDS_OUT_OF_RANGE, ids=lambda c: f"{c['op']}")
def test_a_command_out_of_range_is_refused_as_invalid(second: Api, cmd: Json) -> None:
    before = second.state()
    r = second.post("/v1/session/commands", json={"command_id": "oor-" + str(now_ms()), **cmd})
    body = check_error(r, 422)
    assert body["result"]["code"] == body["error"]["code"] == "invalid"
    assert body["state"] == before
    assert second.state() == before


@pytest.mark.parametrize("route", sorted(BODY_ROUTES), ids="-".join)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_1_mib_is_413(user: Api, route: tuple[str, str], chunked: bool) -> None:
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    content: Any = pieces() if chunked else big
    r = user.http.request(route[0], BODY_ROUTES[route], content=content)
    assert check_error(r, 413)["error"]["code"] == "too_large"


def test_a_playlist_of_too_many_tracks_is_refused(user: Api) -> None:
    r = user.put("/v1/playlists/huge", json={"track_ids": ["t1"] * 10_001})
    check_error(r, 422)
    assert user.get("/v1/playlists/huge").status_code == 404


# --- paths ------------------------------------------------------------------------------

TRAVERSAL = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "....//....//etc/passwd",
    "..%5C..%5Cwindows%5Cwin.ini",
    "%252e%252e%252fetc%252fpasswd",
    "..",
    "%2e%2e",
]


def _raw(srv: ServerProc, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """A request with the path exactly as given (httpx would normalize `..`)."""
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.mark.parametrize(("method", "template"), PARAM_ROUTES)
def test_path_traversal_in_ids_and_names_never_reaches_a_file(
    user: Api, method: str, template: str
) -> None:
    for attempt in TRAVERSAL:
        status, text = _raw(user.srv, method, template.format(attempt), user.headers)
        assert status < 500, (method, attempt, text)
        for needle in FILE_CONTENT:
            assert needle not in text
        assert "Traceback" not in text
        if template.startswith("/rest/") and text.startswith("<?xml"):  # a Subsonic error
            assert 'status="failed"' in text and "<error " in text, text
            continue
        assert "error" in json.loads(text) or status == 200, text


def signer_of(srv: ServerProc) -> Signer:
    return Signer((srv.data_dir / "signing.key").read_bytes().strip())


@pytest.mark.parametrize("route", ["stream", "art"])
def test_a_traversal_id_is_not_found_even_when_signed(user: Api, route: str) -> None:
    """The stream and art routes look ids up in the library; an id is never a path."""
    signer = signer_of(user.srv)
    exp = int(time.time()) + 600
    for value in ("..", "...", "../../etc/passwd", "/etc/passwd", "passwd", "C:\\boot.ini"):
        sign = signer.art_signature if route == "art" else signer.signature
        sig = sign(value, exp)
        path = f"/v1/{route}/{quote(value, safe='')}?exp={exp}&sig={sig}"
        path += f"&d={user.device_id}&k={signer.device_mac(user.device_id, sig)}"
        status, text = _raw(user.srv, "GET", path, {})
        # A "/" in the id (even as %2F) leaves the route: no route there, the router's 404.
        code = "http" if "/" in value else "not_found"
        assert (status, json.loads(text)["error"]["code"]) == (404, code), (value, text)
        assert not any(needle in text for needle in FILE_CONTENT)
    for attempt in TRAVERSAL:
        status, text = _raw(user.srv, "GET", f"/v1/{route}/{attempt}?exp={exp}&sig=x", {})
        assert status in (403, 404), (attempt, text)
        assert not any(needle in text for needle in FILE_CONTENT)


def test_traversal_playlist_names_are_only_names(user: Api) -> None:
    tid = all_tracks(user)[0]["id"]
    for name in ("..", "...", "..\\..\\etc\\passwd", "../../etc/passwd", "a/b/", "%2e%2e", "~root"):
        path = "/v1/playlists/" + quote(name, safe="").replace(".", "%2E")  # httpx drops ".."
        assert user.ok("PUT", path, json={"track_ids": [tid]}) == {"ok": True}
        got = user.ok("GET", path)
        assert (got["name"], got["track_ids"]) == (name, [tid])
        user.ok("DELETE", path)
    assert user.ok("GET", "/v1/playlists") == {"playlists": []}


def test_unknown_routes_and_methods_answer_json(user: Api, shared_server: ServerProc) -> None:
    # `/` is the web app's page (tests/test_web_auth.py); nothing else outside /v1 is.
    for path in (
        "/index.html",
        "/v1",
        "/v1/nope",
        "/v2/session",
        "/v1/session/extra",
        "/etc/passwd",
    ):
        check_error(httpx.get(shared_server.url + path), 404)
        check_error(user.get(path), 404)
    for method, path in (("DELETE", "/v1/health"), ("POST", "/v1/search"), ("PUT", "/v1/session")):
        check_error(user.http.request(method, path), 405)
    check_error(user.http.request("PATCH", "/v1/playlists", json={}), 405)


def test_bad_query_parameters(user: Api) -> None:
    for limit in ("abc", "²", "--5", "1e3", "0x10", "", "9" * 5000):
        check_error(user.get("/v1/history", params={"limit": limit}), 422)
        check_error(user.get("/v1/search", params={"q": "ros", "limit": limit}), 422)
    assert user.get("/v1/history", params={"limit": "9" * 30}).status_code == 200
    assert user.get("/v1/history", params={"limit": "-5"}).status_code == 200
    for q in (None, "", "   ", "x" * 201):
        params = {} if q is None else {"q": q}
        check_error(user.get("/v1/search", params=params), 422)
    for q in ("!!!", "%", "_", "\\", "'; DROP TABLE tracks; --", "\x00", "ros\x00"):
        r = user.get("/v1/search", params={"q": q})
        assert r.status_code == 200, (q, r.text)
    assert user.ok("GET", "/v1/search", params={"q": "ros"})["tracks"]  # still there
    art = urlsplit(next(t for t in all_tracks(user) if t["art_url"])["art_url"])
    signed = dict(parse_qsl(art.query))
    url = user.srv.url + art.path
    for size in ("abc", "²", "1e3", "", "9" * 5000):
        check_error(httpx.get(url, params={**signed, "size": size}), 422)
    for exp in ("abc", "", "9" * 5000, "-1"):
        check_error(httpx.get(url, params={**signed, "exp": exp}), 403)


RANGES: list[tuple[str, int]] = [
    ("bytes=99999999-", 416),  # past the end
    ("bytes=abc", 400),
    ("bytes=5-1", 400),
    ("lines=1-2", 400),
    ("bytes=" + "1" * 5000, 400),
    ("bytes", 400),
]


@pytest.mark.parametrize(("rng", "status"), RANGES, ids=[str(i) for i in range(len(RANGES))])
def test_stream_range_errors_are_4xx_json(user: Api, rng: str, status: int) -> None:
    tr = all_tracks(user)[0]
    url = user.srv.url + tr["url"]
    size = int(httpx.head(url).headers["content-length"])
    for method in ("GET", "HEAD"):
        r = httpx.request(method, url, headers={"Range": rng})
        assert r.status_code == status, (method, rng, r.status_code)
    err = check_error(httpx.get(url, headers={"Range": rng}), status)["error"]
    assert (err["code"], "Range" in err["message"]) == (
        "range_not_satisfiable" if status == 416 else "invalid",
        True,
    )
    if status == 416:
        assert httpx.get(url, headers={"Range": rng}).headers["content-range"] == f"bytes */{size}"
    # A Range that an If-Range no longer matches is ignored: the whole file.
    r = httpx.get(url, headers={"Range": rng, "If-Range": '"stale-etag"'})
    assert (r.status_code, len(r.content)) == (200, size)


def test_stream_ranges_that_fit_are_served(user: Api) -> None:
    url = user.srv.url + all_tracks(user)[0]["url"]
    whole = httpx.get(url).content
    r = httpx.get(url, headers={"Range": "bytes=2-9"})
    assert (r.status_code, r.content) == (206, whole[2:10])
    assert r.headers["content-range"] == f"bytes 2-9/{len(whole)}"


# --- input the database would choke on, on both backends -------------------------------


# Every served route with a parameter, with a NUL in each (signed routes unsigned: a
# parameter is refused before the signature is checked).
NUL_PATHS = sorted(
    {
        (
            m,
            sample_path(t, **{p: "a%00b"})
            + ("?exp=1&sig=x" if ROUTES[m, t].access == "signed" else ""),
        )
        for m, t in SERVED
        if (m, t) in ROUTES and ROUTES[m, t].access != "subsonic"  # test_subsonic's
        for p in params_of(t)
    }
)
NUL_BODIES: list[tuple[str, str, Json]] = [
    ("POST", "/v1/auth/login", {"user": "a\x00", "password": "x", "device_id": "d"}),
    ("POST", "/v1/auth/login", {"user": "a", "password": "x", "device_id": "d\x00"}),
    ("POST", "/v1/auth/refresh", {"refresh_token": "thr_\x00"}),
    ("POST", "/v1/session/commands", {"op": "pause", "command_id": "c\x00"}),
    ("POST", "/v1/session/commands", {"op": "queue_add", "command_id": "c", "track_ids": ["\x00"]}),
    ("POST", "/v1/session/commands", {"op": "transfer", "command_id": "c", "device_id": "d\x00"}),
    ("PUT", "/v1/playlists/nul", {"track_ids": ["t\x00"]}),
    ("POST", "/v1/tracks/remote", {"url": "http://x.example/\x00"}),
    ("POST", "/v1/tracks/remote", {"url": "http://x.example/", "title": "\x00"}),
]


def test_nul_characters_are_refused_not_stored(second: Api) -> None:
    for method, path in NUL_PATHS:
        empty: Json | None = {"track_ids": []} if method == "PUT" else None
        r = second.http.request(method, path, json=empty)
        assert check_error(r, 422)["error"]["code"] == "invalid", (method, path)
    for method, path, body in NUL_BODIES:
        r = second.http.request(method, path, json=body)
        assert check_error(r, 422)["error"]["code"] == "invalid", (method, path, body)
    assert second.get("/v1/search", params={"q": "ros\x00"}).status_code == 200
    assert second.get("/v1/session").status_code == 200
    assert_log_clean(second.srv)


def test_long_values_the_columns_cannot_hold_are_refused(second: Api) -> None:
    srv = second.srv
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": "u" * 5000, "password": "p" * 5000, "device_id": "d"},
        headers={"X-Forwarded-For": "10.1.2.3"},
    )
    check_error(r, 401)
    # A proxy's X-Forwarded-For can say anything: the address is cut, the login works.
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": second.name, "password": "secret-pw", "device_id": "fwd"},
        headers={"X-Forwarded-For": "a" * 300},
    )
    assert r.status_code == 200, r.text
    check_error(second.put("/v1/playlists/" + "n" * 201, json={"track_ids": []}), 422)
    assert second.put("/v1/playlists/" + "n" * 200, json={"track_ids": []}).status_code == 200
    check_error(second.get("/v1/tracks/" + "t" * 201), 422)
    check_error(second.put("/v1/likes/" + "t" * 200), 404)
    assert_log_clean(srv)


REPORT: Json = {"term": 1, "entry_id": None, "position_ms": 0, "at_ms": 0, "playing": False}


async def test_the_channel_survives_what_the_database_cannot_take(second: Api) -> None:
    async with channel(second.srv, second.token) as ch:
        res = await ch.command("pause", command_id="c" * 65)
        assert res["code"] == "invalid"
        for raw in (
            json.dumps({"type": "command", "command": {"op": "pause", "command_id": "c\x00"}}),
            json.dumps({"type": "report", "report": {**REPORT, "entry_id": "e\x00"}}),
            "[" * 100_000,
            '{"a":' * 20_000 + "1" + "}" * 20_000,
        ):
            await ch.ws.send(raw)
            err = await ch.wait("error")
            assert err["code"] == "invalid"
        await ch.send(type="ping")
        await ch.wait("pong")
    async with connect(ws_url(second.srv)) as ws:  # the first message too
        auth = {"type": "auth", "token": second.token, "device": {"id": "d\x00", "name": "x"}}
        await ws.send(json.dumps(auth))
        err = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert (err["type"], err["code"]) == ("error", "invalid")
        assert await expect_closed(ws) == 1008
    assert_log_clean(second.srv)


@pytest.mark.parametrize("kind", sorted(k for k, m in MESSAGES.items() if m.bad is not None))
async def test_every_message_type_with_a_wrong_field_is_invalid(second: Api, kind: str) -> None:
    """Each message type the channel reads (tests/route_table.py), with a field of the
    wrong type: one `invalid` error naming it, and the connection stays up."""
    bad = MESSAGES[kind].bad
    assert bad is not None
    async with channel(second.srv, second.token) as ch:
        await ch.ws.send(json.dumps({"type": kind, **bad}))
        err = await ch.wait("error")
        assert err["code"] == "invalid" and err["message"].count("\n") == 0, err
        assert any(f"$.{field}" in err["message"] for field in bad), err
        await ch.send(type="ping")
        await ch.wait("pong")
    assert_log_clean(second.srv)


BAD_REPORTS: list[tuple[str, Json]] = [
    ("huge-rate", {"rate": 1e308}),
    ("infinite-rate", {"rate": 1e400}),
    ("negative-rate", {"rate": -1.0}),
    ("huge-position", {"position_ms": 10**30}),
    ("huge-at", {"at_ms": 10**30}),
    ("negative-at", {"at_ms": -(10**30)}),
]


@pytest.mark.parametrize(("name", "change"), BAD_REPORTS, ids=[b[0] for b in BAD_REPORTS])
async def test_a_report_with_absurd_numbers_is_refused(user: Api, name: str, change: Json) -> None:
    """A device's numbers go into position arithmetic: a rate of 1e308 made every later
    command of the account fail with an overflow."""
    tid = all_tracks(user)[0]["id"]
    async with (
        async_http(user) as http,
        channel(user.srv, user.token, capabilities=("play",)) as player,
    ):
        # The player of an earlier case may still be the active device: transfer from it.
        await acmd(http, "queue_replace", track_ids=[tid], if_version=user.state()["version"])
        st = (await acmd(http, "transfer", device_id=player.device_id))["state"]
        start = await player.wait("directive", lambda m: m["term"] == st["term"])
        report = {
            "term": start["term"],
            "entry_id": start["entry_id"],
            "position_ms": 0,
            "at_ms": now_ms(),
            "playing": True,
            "rate": 1.0,
            **change,
        }
        raw = json.dumps(report).replace("Infinity", "1e400")
        await player.ws.send('{"type": "report", "report": ' + raw + "}")
        err = await player.wait("error")
        assert err["code"] == "invalid"
        for op in ("pause", "toggle", "next"):
            await acmd(http, op)
        await acmd(http, "seek", delta_ms=10)
        await acmd(http, "transfer", device_id=player.device_id)
    assert user.get("/v1/session").status_code == 200
