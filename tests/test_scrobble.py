"""Scrobbling, server-side, against local stand-ins for ListenBrainz (`/1/validate-token`,
`/1/submit-listens`) and Last.fm (`auth.getToken`, `auth.getSession`,
`track.updateNowPlaying`, `track.scrobble`, signatures checked): `ctl scrobble add`,
list and remove; playing-now at the start, one listen per play after half the track
(through a handoff), the outbox retried while a service is down, tokens never stored or
logged in clear."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.audiogen import make_track
from tests.cli_helpers import PASSWORD, Device, FakePlayer, add_users, client_env, new_device_id
from tests.fixtures_server import ServerProc, launch
from tunehand.server.scrobble_clients import lastfm_signature
from tunehand.server.scrobbling import threshold_ms

LB_TOKEN = "lb-token-0123456789-secret"
LASTFM_KEY, LASTFM_SECRET = "fmkey123", "fmsecret456"
LASTFM_SESSION = "fm-session-key-secret-789"
WAIT_S = 30.0


def wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    cond = threading.Condition()
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        with cond:
            cond.wait(0.05)


@dataclass
class Services:
    """Both stand-ins: what they received, and switches for the tests."""

    url: str = ""
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lb_down: bool = False
    lb_refused_down: int = 0
    approved: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def got(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for k, body in self.received if k == kind]


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    state = Services()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path == "/lb/1/validate-token":
                ok = self.headers.get("Authorization") == f"Token {LB_TOKEN}"
                body = {"valid": ok, "user_name": "lbuser"} if ok else {"valid": False}
                self._answer(200, body)
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/lb/1/submit-listens":
                if state.lb_down:
                    state.lb_refused_down += 1
                    self._answer(503, {"error": "down"})
                    return
                if self.headers.get("Authorization") != f"Token {LB_TOKEN}":
                    self._answer(401, {"error": "bad token"})
                    return
                body = json.loads(raw)
                with state.lock:
                    state.received.append(("lb:" + body["listen_type"], body))
                self._answer(200, {"status": "ok"})
                return
            if self.path == "/fm/2.0/":
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                sig = form.pop("api_sig", "")
                fmt = form.pop("format", "")
                if sig != lastfm_signature(form, LASTFM_SECRET) or fmt != "json":
                    self._answer(403, {"error": 13, "message": "Invalid method signature"})
                    return
                method = form["method"]
                if method == "auth.getToken":
                    self._answer(200, {"token": "fmtoken1"})
                elif method == "auth.getSession":
                    if not state.approved:
                        self._answer(403, {"error": 14, "message": "Unauthorized Token"})
                    else:
                        self._answer(200, {"session": {"name": "fmuser", "key": LASTFM_SESSION}})
                elif method in ("track.updateNowPlaying", "track.scrobble"):
                    assert form["sk"] == LASTFM_SESSION
                    with state.lock:
                        state.received.append(("fm:" + method, form))
                    self._answer(200, {"ok": True})
                else:
                    self._answer(400, {"error": 3, "message": "Invalid Method"})
                return
            self._answer(404, {})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, services: Services) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("scrobble")
    music = root / "music"
    for i, title in enumerate(("First Song", "Second Song", "Third Song")):
        make_track(music, f"{i}", "ogg", title=title, artist="Scrob", album="Outbox", duration_s=6)
    data = root / "data"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text(
        f'lastfm_api_key = "{LASTFM_KEY}"\nlastfm_api_secret = "{LASTFM_SECRET}"\n'
        f'lastfm_url = "{services.url}/fm/2.0/"\nlastfm_auth_url = "{services.url}/fmauth/"\n'
    )
    s = launch(root, music=music, env={"TUNEHAND_SCROBBLE_RETRY_S": "0.3"})
    yield s
    s.stop()


def test_a_listen_counts_after_half_the_track_or_4_minutes() -> None:
    assert threshold_ms(6_000) == 3_000
    assert threshold_ms(400_000) == 200_000
    assert threshold_ms(3_600_000) == 240_000
    assert threshold_ms(0) == 240_000


def _device(srv: ServerProc, tmp_path: Path, keyring: dict[str, str], user: str) -> Device:
    add_users(srv, [user])
    cfg = tmp_path / user
    dev = Device(cfg, client_env(keyring, cfg), server_log=srv.log)
    assert dev.login(srv.url, user, PASSWORD, "--device-name", "laptop").returncode == 0
    return dev


def _player(srv: ServerProc, user: str, name: str) -> FakePlayer:
    device_id = new_device_id()
    token = srv.login(user, device_id=device_id)["access_token"]
    return FakePlayer(srv.url, token, device_id, name).start()


def test_scrobble_add_list_remove_and_one_listen_per_play(
    srv: ServerProc, services: Services, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    dev = _device(srv, tmp_path, secret_service, "scrob1")
    lb = f"{services.url}/lb"
    # A wrong token is refused, with one line.
    line = dev.fails(
        1, "ctl", "scrobble", "add", "listenbrainz", "--token-stdin", "--url", lb, input="wrong\n"
    )
    assert "refused the token" in line
    out = dev.ok(
        "ctl",
        "scrobble",
        "add",
        "listenbrainz",
        "--token-stdin",
        "--url",
        lb,
        input=LB_TOKEN + "\n",
    )
    assert out == "scrobbling to ListenBrainz as lbuser\n"
    # Last.fm: the page to approve on is printed, then ctl waits for the approval.
    proc = dev.popen("ctl", "scrobble", "add", "lastfm")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == (
            f"Approve tunehand on Last.fm: {services.url}/fmauth/?api_key={LASTFM_KEY}"
            "&token=fmtoken1\n"
        )
        services.approved = True
        assert proc.stdout.readline() == "scrobbling to Last.fm as fmuser\n"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    listed = json.loads(dev.ctl("scrobble", "--json"))
    assert [(s["name"], s["user"], s["queued"]) for s in listed] == [
        ("lastfm", "fmuser", 0),
        ("listenbrainz", "lbuser", 0),
    ]

    box, kitchen = _player(srv, "scrob1", "box"), _player(srv, "scrob1", "kitchen")
    try:
        dev.ctl("play", "--search", "first song", "--device", "box")
        box.wait_state(lambda st: st["active_device"] == box.device_id and st["current"])
        box.report_playing(0)
        now_lb = wait_for(lambda: services.got("lb:playing_now"), "ListenBrainz playing now")
        now_fm = wait_for(lambda: services.got("fm:track.updateNowPlaying"), "Last.fm now")
        meta = now_lb[0]["payload"][0]["track_metadata"]
        assert (meta["artist_name"], meta["track_name"], meta["release_name"]) == (
            "Scrob",
            "First Song",
            "Outbox",
        )
        assert "listened_at" not in now_lb[0]["payload"][0]
        assert (now_fm[0]["artist"], now_fm[0]["track"], now_fm[0]["duration"]) == (
            "Scrob",
            "First Song",
            "6",
        )
        # A handoff before half the track: still the same play.
        dev.ctl("transfer", "kitchen")
        kitchen.wait_state(lambda st: st["active_device"] == kitchen.device_id)
        kitchen.report_playing(1500)
        listens = wait_for(lambda: services.got("lb:single"), "one listen, after 3 s")
        scrobbles = wait_for(lambda: services.got("fm:track.scrobble"), "one scrobble")
        assert listens[0]["payload"][0]["track_metadata"]["track_name"] == "First Song"
        started = listens[0]["payload"][0]["listened_at"]
        assert abs(started - time.time()) < 60
        assert scrobbles[0]["timestamp"] == str(started)
        dev.ctl("pause")  # another change of the same play: nothing more
        dev.ctl("play")
        wait_for(
            lambda: all(s["queued"] == 0 for s in json.loads(dev.ctl("scrobble", "--json"))),
            "the outbox is empty",
        )
        assert len(services.got("lb:single")) == 1
        assert len(services.got("fm:track.scrobble")) == 1
        assert len(services.got("lb:playing_now")) == 1
    finally:
        box.close()
        kitchen.close()

    dev.ctl("scrobble", "remove", "lastfm")
    assert [s["name"] for s in json.loads(dev.ctl("scrobble", "--json"))] == ["listenbrainz"]
    assert "no scrobbling to 'lastfm'" in dev.fails(5, "ctl", "scrobble", "remove", "lastfm")
    # Secrets: never in the server's output, never in clear in its database.
    for secret in (LB_TOKEN, LASTFM_SESSION):
        assert not any(secret in line for line in srv.log)
        for f in srv.data_dir.iterdir():
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f


def test_a_listen_waits_in_the_outbox_while_the_service_is_down(
    srv: ServerProc, services: Services, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    dev = _device(srv, tmp_path, secret_service, "scrob2")
    dev.ok(
        "ctl",
        "scrobble",
        "add",
        "listenbrainz",
        "--token-stdin",
        "--url",
        f"{services.url}/lb",
        input=LB_TOKEN + "\n",
    )
    box = _player(srv, "scrob2", "box")
    before = len(services.got("lb:single"))
    services.lb_down = True
    try:
        dev.ctl("play", "--search", "second song", "--device", "box")
        box.wait_state(lambda st: st["active_device"] == box.device_id and st["current"])
        box.report_playing(2900)
        wait_for(lambda: services.lb_refused_down >= 2, "tried and retried while down")
        [svc] = json.loads(dev.ctl("scrobble", "--json"))
        assert svc["queued"] == 1
        assert len(services.got("lb:single")) == before
        services.lb_down = False
        wait_for(lambda: len(services.got("lb:single")) == before + 1, "sent once it is back")
        assert services.got("lb:single")[-1]["payload"][0]["track_metadata"]["track_name"] == (
            "Second Song"
        )
        wait_for(lambda: json.loads(dev.ctl("scrobble", "--json"))[0]["queued"] == 0, "empty")
    finally:
        services.lb_down = False
        box.close()
    assert any("will retry" in line and LB_TOKEN not in line for line in srv.log)


def test_without_a_lastfm_key_the_server_says_so(
    tmp_path: Path, secret_service: dict[str, str]
) -> None:
    s = launch(tmp_path)
    try:
        dev = _device(s, tmp_path, secret_service, "nofm")
        line = dev.fails(1, "ctl", "scrobble", "add", "lastfm")
        assert "no Last.fm API key" in line
        assert dev.ctl("scrobble") == "no scrobbling: see `ctl scrobble add`\n"
        line = dev.fails(2, "ctl", "scrobble", "add", "listenbrainz")
        assert "--token-stdin" in line
    finally:
        s.stop()
