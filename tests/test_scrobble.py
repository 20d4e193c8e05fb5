"""Scrobbling, server-side, against local stand-ins for ListenBrainz (`/1/validate-token`,
`/1/submit-listens`) and Last.fm (`auth.getToken`, `auth.getSession`,
`track.updateNowPlaying`, `track.scrobble`, signatures checked): `ctl scrobble add`,
list and remove; playing-now at the start, one listen per play after half the track
(through a handoff), the outbox retried while a service is down, tokens never stored or
logged in clear."""

from __future__ import annotations

import json
import os
import subprocess
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
from tests.fixtures_server import Backend, ServerProc, launch, tunehand_cmd, two_instances
from tunehand.server.scrobble_clients import lastfm_signature
from tunehand.server.scrobbling import threshold_ms

LB_TOKEN = "lb-token-0123456789-secret"
LASTFM_KEY, LASTFM_SECRET = "fmkey123", "fmsecret456"
LASTFM_SESSION = "fm-session-key-secret-789"
WAIT_S = 30.0

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]


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


def _server_toml(data: Path, services: Services, secret: str, mode: int = 0o600) -> Path:
    """The server's Last.fm settings (with `secret`: one line of TOML, or none)."""
    data.mkdir(mode=0o700, exist_ok=True)
    path = data / "server.toml"
    path.write_text(
        f'lastfm_api_key = "{LASTFM_KEY}"\n{secret}'
        f'lastfm_url = "{services.url}/fm/2.0/"\nlastfm_auth_url = "{services.url}/fmauth/"\n'
    )
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, services: Services, backend: Backend
) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp(f"scrobble-{backend.name}")
    with services.lock:  # the stand-ins start afresh for each backend's server
        services.received.clear()
        services.lb_refused_down, services.approved = 0, False
    music = root / "music"
    for i, title in enumerate(("First Song", "Second Song", "Third Song")):
        make_track(music, f"{i}", "ogg", title=title, artist="Scrob", album="Outbox", duration_s=6)
    _server_toml(root / "data", services, f'lastfm_api_secret = "{LASTFM_SECRET}"\n')
    s = launch(root, music=music, store=backend.store(), env={"TUNEHAND_SCROBBLE_RETRY_S": "0.3"})
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


def _add_listenbrainz(dev: Device, services: Services) -> None:
    """`ctl scrobble add listenbrainz` with the stand-in's URL and its token."""
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


def test_a_listen_waits_in_the_outbox_while_the_service_is_down(
    srv: ServerProc, services: Services, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    dev = _device(srv, tmp_path, secret_service, "scrob2")
    _add_listenbrainz(dev, services)
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
    tmp_path: Path, secret_service: dict[str, str], start_server: Callable[..., ServerProc]
) -> None:
    s = start_server()
    dev = _device(s, tmp_path, secret_service, "nofm")
    line = dev.fails(1, "ctl", "scrobble", "add", "lastfm")
    assert "no Last.fm API key" in line
    assert dev.ctl("scrobble") == "no scrobbling: see `ctl scrobble add`\n"
    line = dev.fails(2, "ctl", "scrobble", "add", "listenbrainz")
    assert "--token-stdin" in line


def _lb(services: Services, kind: str, title: str) -> int:
    return sum(
        b["payload"][0]["track_metadata"]["track_name"] == title for b in services.got("lb:" + kind)
    )


def _fm(services: Services, method: str, title: str) -> int:
    return sum(f["track"] == title for f in services.got("fm:" + method))


def test_a_subsonic_apps_scrobbles_count_once_per_play(
    srv: ServerProc, services: Services, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    """The app is a device: its scrobble is its play report. Of the session's current
    play, one a tunehand device already counted, it adds nothing; of a play of its own,
    playing-now and the listen go on to both services, once (not again when resent)."""
    import httpx
    import libopensonic
    import libsonic

    user = "scrob4"
    dev = _device(srv, tmp_path, secret_service, user)
    _add_listenbrainz(dev, services)
    h = {"Authorization": "Bearer " + srv.login(user)["access_token"]}
    services.approved = True
    start = httpx.post(srv.url + "/v1/scrobble/lastfm/start", headers=h, json={}).json()
    r = httpx.post(srv.url + "/v1/scrobble/lastfm/finish", headers=h, json=start)
    assert r.json()["name"] == "lastfm", r.text
    ids: dict[str, str] = {}
    for album in httpx.get(srv.url + "/v1/albums", headers=h).json()["albums"]:
        got = httpx.get(f"{srv.url}/v1/albums/{album['id']}/tracks", headers=h).json()
        ids.update({t["title"]: t["id"] for t in got["tracks"]})
    made = httpx.post(srv.url + "/v1/app-passwords", headers=h, json={"name": "phone"}).json()
    host, port = "http://127.0.0.1", int(srv.url.rsplit(":", 1)[1])
    opensonic = libopensonic.Connection(host, user, made["password"], port=port)
    sonic = libsonic.Connection(host, user, made["password"], port=port, serverPath="rest")
    counts = {(k, t): _lb(services, k, t) for k in ("single", "playing_now") for t in ids} | {
        (m, t): _fm(services, m, t)
        for m in ("track.scrobble", "track.updateNowPlaying")
        for t in ids
    }

    def grew(kind: str, title: str) -> int:
        fm = {"single": "track.scrobble", "playing_now": "track.updateNowPlaying"}[kind]
        return (_lb(services, kind, title) - counts[(kind, title)]) + (
            _fm(services, fm, title) - counts[(fm, title)]
        ) * 100

    box = _player(srv, user, "box")
    try:
        # A tunehand device plays Third Song past half: counted (both services, once).
        dev.ctl("play", "--search", "third song", "--device", "box")
        box.wait_state(lambda st: st["active_device"] == box.device_id and st["current"])
        box.report_playing(2900)
        wait_for(lambda: grew("single", "Third Song") == 101, "the device's listen")
        wait_for(lambda: grew("playing_now", "Third Song") == 101, "the device's playing now")
        # The app reports the same play (the session's current entry): nothing more.
        assert opensonic.scrobble(ids["Third Song"], submission=False)
        assert opensonic.scrobble(ids["Third Song"], submission=True)
        # A play of the app's own: playing now, then the listen at the app's time.
        sonic.scrobble(ids["First Song"], submission=False)
        sonic.scrobble(ids["First Song"], submission=False)  # said again: not resent
        wait_for(lambda: grew("playing_now", "First Song") == 101, "the app's playing now")
        at = int(time.time()) - 100
        sonic.scrobble(ids["First Song"], submission=True, listenTime=at)
        assert opensonic.scrobble(ids["First Song"], submission=True, listen_time=at)  # resent
        # One more listen of its own, sent after those: once it is there, they all are.
        assert opensonic.scrobble(ids["Second Song"], submission=True)
        wait_for(lambda: grew("single", "Second Song") == 101, "the last listen")
        assert grew("single", "First Song") == 101
        assert grew("playing_now", "First Song") == 101
        assert grew("single", "Third Song") == 101
        assert grew("playing_now", "Third Song") == 101
        first = [
            b["payload"][0]
            for b in services.got("lb:single")
            if b["payload"][0]["track_metadata"]["track_name"] == "First Song"
        ][-1]
        assert first["listened_at"] == at
        history = httpx.get(srv.url + "/v1/history", headers=h).json()["history"]
        assert [e["played_ms"] for e in history if e["track_id"] == ids["First Song"]] == [
            at * 1000
        ]
        assert [f["timestamp"] for f in services.got("fm:track.scrobble")][-2] == str(at)
    finally:
        box.close()
        opensonic.cleanup()


def test_one_listen_per_play_across_two_instances(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_backend: Backend,
    services: Services,
    tmp_path: Path,
    secret_service: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two instances of one deployment (PostgreSQL + Redis): the device plays through A,
    the commands come through B; each play is sent once. They share the signing key, as
    the README's several instances do (tokens are sealed under a key derived from it)."""
    monkeypatch.setenv("TUNEHAND_SIGNING_KEY", "twin-instances-signing-key-0123456789")
    music = tmp_path / "music"
    for i, title in enumerate(("Twin One", "Twin Two")):
        make_track(music, f"{i}", "ogg", title=title, artist="Scrob", album="Twins", duration_s=6)
    with two_instances(tmp_path_factory, postgres_backend.store(), music) as (a, b):
        dev = _device(b, tmp_path, secret_service, "scrob-twins")
        _add_listenbrainz(dev, services)
        box = _player(a, "scrob-twins", "box")
        try:
            before = None
            for title in ("Twin One", "Twin Two"):
                dev.ctl("play", "--search", title.lower(), "--device", "box")
                before = box.wait_state(
                    lambda st, was=before: (
                        st["active_device"] == box.device_id and st["current"] not in (None, was)
                    )
                )["current"]
                box.report_playing(2900)
                wait_for(lambda t=title: _lb(services, "single", t) >= 1, f"{title}'s listen")
            dev.ctl("pause")
            wait_for(lambda: json.loads(dev.ctl("scrobble", "--json"))[0]["queued"] == 0, "empty")
        finally:
            box.close()
        for title in ("Twin One", "Twin Two"):
            assert _lb(services, "single", title) == 1, title
            assert _lb(services, "playing_now", title) == 1, title


def _serve_fails(data: Path, env: dict[str, str] | None = None) -> str:
    """`serve` on `data` must stop before it listens: exit 2 and one line; the line."""
    r = subprocess.run(
        tunehand_cmd("serve", "--port", "0", "--data-dir", str(data), "--no-scan"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "listening on" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_others_can_read_stops_the_server(
    tmp_path: Path, services: Services, mode: int
) -> None:
    """As ssh does with a private key open to others: refused, not used, one line."""
    path = _server_toml(
        tmp_path / "data", services, f'lastfm_api_secret = "{LASTFM_SECRET}"\n', mode
    )
    line = _serve_fails(tmp_path / "data")
    assert f"{path}: holds lastfm_api_secret but is open to group or others" in line
    assert f"mode {mode:04o}" in line and f"chmod 600 {path}" in line
    assert LASTFM_SECRET not in line
    # A secret file named by server.toml: the same rule.
    (tmp_path / "fm-secret").write_text(LASTFM_SECRET + "\n")
    (tmp_path / "fm-secret").chmod(mode)
    _server_toml(
        tmp_path / "data", services, f'lastfm_api_secret_file = "{tmp_path / "fm-secret"}"\n'
    )
    line = _serve_fails(tmp_path / "data")
    assert f"{tmp_path / 'fm-secret'}: holds the Last.fm API secret but is open" in line


def test_the_secret_given_twice_or_unreadable_is_one_line(
    tmp_path: Path, services: Services
) -> None:
    data = tmp_path / "data"
    _server_toml(data, services, f'lastfm_api_secret = "{LASTFM_SECRET}"\n')
    line = _serve_fails(data, {"TUNEHAND_LASTFM_API_SECRET": LASTFM_SECRET})
    assert "the Last.fm API secret is given twice" in line
    assert "lastfm_api_secret and TUNEHAND_LASTFM_API_SECRET" in line
    _server_toml(data, services, 'lastfm_api_secret_file = "nowhere"\n')
    line = _serve_fails(data)
    assert f"lastfm_api_secret_file {data / 'nowhere'}: unreadable" in line
    (data / "empty").touch(mode=0o600)
    _server_toml(data, services, 'lastfm_api_secret_file = "empty"\n')
    assert "must hold the Last.fm API secret on one line" in _serve_fails(data)


@pytest.mark.parametrize("source", ["environment", "file"])
def test_the_secret_from_the_environment_or_a_file(
    tmp_path: Path, services: Services, source: str
) -> None:
    """A world-readable server.toml without the secret is fine; the secret comes from
    TUNEHAND_LASTFM_API_SECRET or from a 0600 file, and signs the Last.fm calls."""
    import httpx

    data = tmp_path / "data"
    env: dict[str, str] = {}
    if source == "environment":
        _server_toml(data, services, "", mode=0o644)
        env["TUNEHAND_LASTFM_API_SECRET"] = LASTFM_SECRET
    else:
        secret_file = tmp_path / "creds" / "lastfm"
        secret_file.parent.mkdir()
        secret_file.write_text(LASTFM_SECRET + "\n")
        secret_file.chmod(0o400)
        _server_toml(data, services, f'lastfm_api_secret_file = "{secret_file}"\n', mode=0o644)
    music = tmp_path / "music"
    make_track(music, "0", "ogg", title="One", artist="Scrob", album="Env", duration_s=2)
    s = launch(tmp_path, music=music, env=env)
    try:
        s.add_user("envfm")
        h = {"Authorization": "Bearer " + s.login("envfm")["access_token"]}
        r = httpx.post(s.url + "/v1/scrobble/lastfm/start", headers=h, json={})
        # The stand-in checks the signature made with the secret: a wrong one is refused.
        assert r.status_code == 200, r.text
        assert r.json()["url"] == f"{services.url}/fmauth/?api_key={LASTFM_KEY}&token=fmtoken1"
        assert not any(LASTFM_SECRET in line for line in s.log)
    finally:
        s.stop()
