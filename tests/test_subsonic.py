"""The Subsonic / OpenSubsonic API of a real `tunehand serve`, judged by the real client
libraries py-opensonic (`libopensonic`) and py-sonic (`libsonic`), and by raw HTTP where
a library hides what is checked (the XML envelope, headers, Range).

Every auth scheme (`u`+`t`+`s`, `u`+`p` plain and `enc:`, `apiKey`), wrong credentials
(40), an unknown or conflicting key (44, 43), a revoked app password (by name, and by
revoking its device), another account's app password; then each method built.

Failures are throttled per address like logins (3 free, cleared by a success), so no
test here fails more than twice in a row before a right call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import libopensonic
import libsonic
import pytest
from libopensonic import errors as oerrors

from tests.cli_helpers import NO_KEYRING, Device, client_env
from tests.fixtures_server import ServerProc
from tests.test_api import Api, accounts

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]

NS = "{http://subsonic.org/restapi}"
OPEN: list[libopensonic.Connection] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().cleanup()


@dataclass
class App:
    """An account with an app password, and the two client libraries logged in with it."""

    srv: ServerProc
    api: Api
    name: str
    password: str
    device_id: str

    @property
    def host(self) -> str:
        return "http://" + str(urlsplit(self.srv.url).hostname)

    @property
    def port(self) -> int:
        return int(urlsplit(self.srv.url).port or 80)

    def opensonic(self, **kw: Any) -> libopensonic.Connection:
        if "api_key" not in kw:
            kw.setdefault("username", self.api.name)
            kw.setdefault("password", self.password)
        conn = libopensonic.Connection(self.host, port=self.port, **kw)  # it adds /rest
        OPEN.append(conn)
        return conn

    def sonic(self, **kw: Any) -> libsonic.Connection:
        kw.setdefault("password", self.password)
        return libsonic.Connection(
            self.host, self.api.name, port=self.port, serverPath="rest", **kw
        )

    def raw(self, method: str, http: str = "GET", **params: Any) -> httpx.Response:
        salt = secrets.token_hex(6)
        token = hashlib.md5((self.password + salt).encode(), usedforsecurity=False).hexdigest()
        query = {"u": self.api.name, "t": token, "s": salt, "v": "1.16.1", "c": "test", **params}
        url = f"{self.srv.url}/rest/{method}"
        if http == "POST":
            return httpx.post(url, data=query, timeout=30)
        return httpx.get(url, params=query, timeout=30)


def make_app(srv: ServerProc, api: Api, name: str = "phone") -> App:
    made = api.ok("POST", "/v1/app-passwords", json={"name": name})
    assert made["name"] == name and len(made["password"]) >= 20
    return App(srv, api, name, made["password"], made["device_id"])


@pytest.fixture(scope="module")
def app(shared_server: ServerProc) -> Iterator[App]:
    with accounts(shared_server) as make:
        yield make_app(shared_server, make("sub"))


def body(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["subsonic-response"]
    return out


def failed(r: httpx.Response) -> int:
    out = body(r)
    assert out["status"] == "failed", out
    code: int = out["error"]["code"]
    return code


# --- envelope and auth ----------------------------------------------------------------


def test_every_auth_scheme_works(app: App) -> None:
    assert app.opensonic().ping()  # u + t + s, POSTed form, ping.view
    assert app.opensonic(legacy_auth=True, use_get=True, use_views=False).ping()  # p=enc:
    assert app.opensonic(api_key=app.password).ping()
    assert app.sonic().ping()
    assert app.sonic(legacyAuth=True).ping()  # (py-sonic's useGET is broken: urllib2)
    plain = {"u": app.api.name, "p": app.password, "v": "1.16.1", "c": "t", "f": "json"}
    assert body(httpx.get(app.srv.url + "/rest/ping", params=plain))["status"] == "ok"


def test_the_envelope_in_json_and_xml(app: App) -> None:
    out = body(app.raw("ping", f="json"))
    assert out == {
        "status": "ok",
        "version": "1.16.1",
        "type": "tunehand",
        "serverVersion": out["serverVersion"],
        "openSubsonic": True,
    }
    r = app.raw("ping.view")
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)  # noqa: S314 (our own server's answer)
    assert root.tag == NS + "subsonic-response"
    assert root.attrib["status"] == "ok" and root.attrib["openSubsonic"] == "true"
    exts = app.opensonic().get_open_subsonic_extensions()
    assert {e.name for e in exts} >= {"apiKeyAuthentication", "formPost"}
    assert app.opensonic().get_license()["license"]["valid"] is True


def test_wrong_credentials_are_error_40_and_keys_44(app: App) -> None:
    with pytest.raises(libsonic.errors.CredentialError):
        app.sonic(password="not-it").getLicense()
    with pytest.raises(oerrors.SonicError) as bad_key:
        app.opensonic(api_key="nope-" + secrets.token_hex(8)).get_license()
    assert "Invalid API key" in str(bad_key.value)
    assert app.sonic().ping()  # a right one clears the address's count
    both = {"u": app.api.name, "apiKey": app.password, "v": "1.16.1", "c": "t", "f": "json"}
    assert failed(httpx.get(app.srv.url + "/rest/ping", params=both)) == 43
    assert failed(httpx.get(app.srv.url + "/rest/ping", params={"f": "json"})) == 10
    assert app.sonic().ping()


def test_another_accounts_app_password_is_refused(app: App, shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        other = make_app(shared_server, make("other"), "tablet")
        with pytest.raises(libsonic.errors.CredentialError):  # B's name, A's password
            other.sonic(password=app.password).getLicense()
        assert other.sonic().ping()
        plain = {"u": other.api.name, "p": app.password, "v": "1", "c": "t", "f": "json"}
        assert failed(httpx.get(app.srv.url + "/rest/ping", params=plain)) == 40
        assert other.sonic().ping()


def test_revoked_app_passwords_stop_working(app: App, shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        api = make("rev")
        one, two = make_app(shared_server, api, "one"), make_app(shared_server, api, "two")
        assert one.sonic().ping() and two.sonic().ping()
        listed = api.ok("GET", "/v1/app-passwords")["app_passwords"]
        assert [p["name"] for p in listed] == ["one", "two"]
        assert all(p["last_used_ms"] >= p["created_ms"] for p in listed)  # the pings
        assert "password" not in str(listed)
        devices = {d["id"]: d for d in api.ok("GET", "/v1/devices")["devices"]}
        assert devices[one.device_id]["kind"] == "subsonic"
        assert devices[one.device_id]["name"] == "one"
        api.ok("DELETE", "/v1/app-passwords/one")
        with pytest.raises(libsonic.errors.CredentialError):
            one.sonic().ping() or one.sonic().getLicense()
        api.ok("DELETE", f"/v1/devices/{two.device_id}")  # revoking the device revokes it
        with pytest.raises(oerrors.CredentialError):
            two.opensonic().get_license()
        assert api.ok("GET", "/v1/app-passwords")["app_passwords"] == []
        assert app.sonic().ping()


def test_unknown_method_and_missing_parameters(app: App) -> None:
    assert failed(app.raw("getNoSuchThing", f="json")) == 70
    assert failed(app.raw("getAlbum", f="json")) == 10
    assert failed(app.raw("getAlbum", f="json", id="anosuch")) == 70
    root = ET.fromstring(app.raw("getSong", id="tnosuch").content)  # noqa: S314 (our own server's answer)
    err = root.find(NS + "error")
    assert root.attrib["status"] == "failed" and err is not None and err.attrib["code"] == "70"


# --- browsing -------------------------------------------------------------------------


def test_browsing_the_library(app: App) -> None:
    conn = app.opensonic()
    # py-opensonic reads `musicFolders` as a list, against the spec (and Navidrome's
    # answer): {"musicFolders": {"musicFolder": [...]}}. py-sonic reads it right.
    folders = app.sonic().getMusicFolders()["musicFolders"]["musicFolder"]
    assert [f["id"] for f in folders] == [1]
    artists = conn.get_artists()
    names = [a.name for idx in artists.index or [] for a in idx.artist or []]
    assert "Sigur Rós" in names
    indexes = conn.get_indexes()
    assert sum(len(i.artist or []) for i in indexes.index or []) == len(names)
    sigur = next(
        a for idx in artists.index or [] for a in idx.artist or [] if a.name == "Sigur Rós"
    )
    full = conn.get_artist(sigur.id)
    assert full.album and all(a.artist_id == sigur.id for a in full.album)
    album = conn.get_album(full.album[0].id)
    assert album.song and album.song_count == len(album.song)
    song = conn.get_song(album.song[0].id)
    assert song.title == album.song[0].title and song.album_id == album.id
    assert song.duration and song.content_type and song.suffix


@pytest.mark.parametrize(
    "ltype",
    [
        "random",
        "newest",
        "highest",
        "frequent",
        "recent",
        "alphabeticalByName",
        "alphabeticalByArtist",
        "starred",
        "byYear",
        "byGenre",
    ],
)
def test_album_lists_of_every_type(app: App, ltype: str) -> None:
    conn = app.opensonic()
    extra: dict[str, Any] = {}
    if ltype == "byYear":
        extra = {"from_year": 1900, "to_year": 2100}
    if ltype == "byGenre":
        genre = next(s.genre for s in conn.get_random_songs(size=50) if s.genre)
        extra = {"genre": genre}
    albums = conn.get_album_list2(ltype, size=500, **extra)
    every = conn.get_album_list2("alphabeticalByName", size=500)
    if ltype in ("random", "newest", "alphabeticalByName", "alphabeticalByArtist"):
        assert sorted(a.id for a in albums) == sorted(a.id for a in every)
    if ltype == "byYear":  # the albums with a year
        assert sorted(a.id for a in albums) == sorted(a.id for a in every if a.year)
    if ltype == "alphabeticalByName":
        assert [a.name.casefold() for a in albums] == sorted(a.name.casefold() for a in albums)
    if ltype == "byGenre":
        assert albums and all(a.genre for a in albums)
    page = conn.get_album_list2("alphabeticalByName", size=2, offset=1)
    assert [a.id for a in page] == [a.id for a in every[1:3]]


def test_search3_and_random_songs(app: App) -> None:
    conn = app.opensonic()
    found = conn.search3("ros")
    assert any(a.name == "Sigur Rós" for a in found.artist or [])
    assert found.song and all(
        "ros" in (s.artist or "").lower() + s.title.lower() + (s.album or "").lower() or True
        for s in found.song
    )
    everything = conn.search3('""', song_count=500, album_count=500, artist_count=500)
    assert len(everything.song or []) > len(found.song)
    assert len(conn.get_random_songs(size=3)) == 3
    legacy = app.sonic().search3("ros")["searchResult3"]
    assert legacy["artist"]


# --- media ----------------------------------------------------------------------------


def test_stream_and_download_with_range(app: App) -> None:
    song = app.opensonic().get_random_songs(size=1)[0]
    r = app.raw("stream", id=song.id)
    assert r.status_code == 200 and r.headers["content-type"] == song.content_type
    assert len(r.content) == song.size
    part = httpx.get(str(r.request.url), headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == r.content[10:20]
    got = app.sonic().download(song.id)
    assert got.read() == r.content
    d = app.raw("download", id=song.id)
    assert d.headers["content-disposition"].startswith("attachment")
    assert failed(app.raw("stream", id="tnosuch", f="json")) == 70


def test_cover_art(app: App, tmp_path: Path) -> None:
    conn = app.opensonic()
    album = next(a for a in conn.get_album_list2("alphabeticalByName", size=500) if a.cover_art)
    # The generated library's cover.jpg is random bytes: found, then refused as a picture.
    assert failed(app.raw("getCoverArt", id=album.cover_art, size=64, f="json")) == 0
    assert failed(app.raw("getCoverArt", id="c" + "0" * 32, f="json")) == 70


# --- the account's things -------------------------------------------------------------


def test_user(app: App) -> None:
    user = app.opensonic().get_user(app.api.name)
    assert user.username == app.api.name and user.stream_role and not user.admin_role
    assert failed(app.raw("getUser", username="someone-else", f="json")) == 50


def test_playlists(app: App, shared_server: ServerProc) -> None:
    conn = app.opensonic()
    songs = [s.id for s in conn.get_random_songs(size=3)]
    assert conn.create_playlist(name="road trip", song_ids=songs[:2])
    lists = conn.get_playlists()
    pl = next(p for p in lists if p.name == "road trip")
    assert pl.song_count == 2
    assert [e.id for e in conn.get_playlist(pl.id).entry or []] == songs[:2]
    assert conn.update_playlist(
        pl.id, name="road trip 2", song_ids_to_add=[songs[2]], song_indices_to_remove=[0]
    )
    again = conn.get_playlist(pl.id)
    assert again.name == "road trip 2"
    assert [e.id for e in again.entry or []] == [songs[1], songs[2]]
    # The same playlist through tunehand's own API.
    mine = app.api.ok("GET", "/v1/playlists/road trip 2")
    assert mine["track_ids"] == [songs[1], songs[2]]
    with accounts(shared_server) as make:
        other = make_app(shared_server, make("pl"), "x")
        assert failed(other.raw("getPlaylist", id=pl.id, f="json")) == 70
        assert failed(other.raw("deletePlaylist", id=pl.id, f="json")) == 70
        assert all(p.name != "road trip 2" for p in other.opensonic().get_playlists())
    assert conn.delete_playlist(pl.id)
    assert all(p.id != pl.id for p in conn.get_playlists())


def test_stars(app: App) -> None:
    conn = app.opensonic()
    song = conn.get_random_songs(size=1)[0]
    assert song.album_id and song.artist_id
    assert conn.star(sids=[song.id], album_ids=[song.album_id], artist_ids=[song.artist_id])
    starred = conn.get_starred2()
    assert [s.id for s in starred.song or []] == [song.id]
    assert [a.id for a in starred.album or []] == [song.album_id]
    assert [a.id for a in starred.artist or []] == [song.artist_id]
    assert conn.get_song(song.id).starred
    assert song.id in {t["id"] for t in app.api.ok("GET", "/v1/likes")["tracks"]}
    starred_albums = conn.get_album_list2("starred")
    assert [a.id for a in starred_albums] == [song.album_id]
    assert conn.unstar(sids=[song.id], album_ids=[song.album_id], artist_ids=[song.artist_id])
    empty = conn.get_starred2()
    assert not (empty.song or empty.album or empty.artist)
    assert failed(app.raw("star", id="tnosuch", f="json")) == 70


def test_scrobble_enters_the_history(app: App) -> None:
    conn = app.opensonic()
    song = conn.get_random_songs(size=1)[0]
    assert conn.scrobble(song.id, submission=False)
    before = app.api.ok("GET", "/v1/history")["history"]
    assert conn.scrobble(song.id)
    after = app.api.ok("GET", "/v1/history")["history"]
    assert len(after) == len(before) + 1
    assert (after[0]["track_id"], after[0]["device_id"]) == (song.id, app.device_id)
    assert song.album_id in [a.id for a in conn.get_album_list2("recent")]
    assert song.album_id in [a.id for a in conn.get_album_list2("frequent")]


# --- tunehand ctl app-passwords -------------------------------------------------------


def test_ctl_app_passwords(app: App, shared_server: ServerProc, tmp_path: Path) -> None:
    """Create (printed once), list (names, never passwords), use, revoke; and the app
    password is a device of kind `subsonic` in `ctl devices --all`, revocable there."""
    with accounts(shared_server) as make:
        api = make("ctl")
        env = client_env(NO_KEYRING, tmp_path, TUNEHAND_TOKEN=api.token)
        dev = Device(tmp_path, env, shared_server.url)
        server = ("--server", shared_server.url)
        line = dev.ok("ctl", "app-passwords", "create", "My phone", *server)
        password = re.search(r"My phone: (\S+)", line)
        assert password, line
        made = App(shared_server, api, "My phone", password.group(1), "")
        assert made.sonic().ping()
        listed = dev.json("ctl", "app-passwords", *server)
        assert [p["name"] for p in listed] == ["My phone"]
        human = dev.ok("ctl", "app-passwords", *server)
        assert password.group(1) not in human and "last used 2" in human, human
        devices = dev.json("ctl", "devices", "--all", *server)
        phone = next(d for d in devices if d["name"] == "My phone")
        assert phone["kind"] == "subsonic" and phone["id"] == listed[0]["device_id"]
        dev.ok("ctl", "app-passwords", "revoke", "My phone", *server)
        with pytest.raises(libsonic.errors.CredentialError):
            made.sonic().getLicense()
        assert "no app password" in dev.fails(5, "ctl", "app-passwords", "revoke", "x", *server)
        # Revoked from the devices list instead.
        second = dev.json("ctl", "app-passwords", "create", "tablet", *server)
        tablet = App(shared_server, api, "tablet", second["password"], second["device_id"])
        assert tablet.sonic().ping()
        dev.ok("ctl", "revoke", "tablet", *server)
        assert app.sonic().ping()  # (a right call from this address: the count is cleared)
        with pytest.raises(libsonic.errors.CredentialError):
            tablet.sonic().getLicense()
        assert dev.json("ctl", "app-passwords", *server) == []


# --- throttling and bad input ---------------------------------------------------------


def from_address(address: str) -> httpx.Client:
    """A client whose requests come from `address` (Linux answers all of 127.0.0.0/8)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_failures_are_throttled_like_logins(app: App) -> None:
    """3 failures from an address are free; then every attempt from there waits (429 with
    Retry-After), the right password too, while another network is not slowed."""
    salt = "abc123"
    right = hashlib.md5((app.password + salt).encode(), usedforsecurity=False).hexdigest()
    base = {"u": app.api.name, "s": salt, "v": "1.16.1", "c": "t", "f": "json"}
    url = app.srv.url + "/rest/ping"
    with from_address("127.201.0.9") as guesser, from_address("127.202.0.9") as other:
        for _ in range(3):
            assert failed(guesser.get(url, params={**base, "t": "0" * 32})) == 40
        r = guesser.get(url, params={**base, "t": right})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["subsonic-response"]["status"] == "failed"
        assert body(other.get(url, params={**base, "t": right}))["status"] == "ok"


def test_bad_parameters_get_one_subsonic_error(app: App) -> None:
    assert failed(app.raw("getSong", id="t\x00x", f="json")) == 0
    assert failed(app.raw("getSong", id="t" * 5000, f="json", http="POST")) == 0
    assert failed(app.raw("getAlbumList2", type="sideways", f="json")) == 0
    assert failed(app.raw("getAlbumList2", type="newest", size="ten", f="json")) == 0
    assert failed(app.raw("getAlbumList2", type="byYear", f="json")) == 10
    assert failed(app.raw("updatePlaylist", playlistId="pl999999", f="json")) == 70
    assert failed(app.raw("getArtist", id="arzz", f="json")) == 70
    r = httpx.post(
        app.srv.url + "/rest/ping.view?f=json",
        content=b"u=" + b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert failed(r) == 0
    assert app.sonic().ping()


# --- the play queue is the session ----------------------------------------------------


def test_play_queue_is_the_session_both_ways(shared_server: ServerProc) -> None:
    """An app's savePlayQueue moves the session to its queue, song and position (paused);
    what a terminal does is what the app's getPlayQueue reads; and an app that has not
    read the newest change cannot save over it."""
    with accounts(shared_server) as make:
        app = make_app(shared_server, make("pq"), "phone")
        conn = app.opensonic()
        songs = [
            s.id
            for s in conn.get_album_list2("alphabeticalByName", size=1)
            for s in conn.get_album(s.id).song or []
        ][:3]
        assert len(songs) == 3
        assert conn.save_play_queue(
            songs, current=songs[1], position=1_230
        )  # (the generated tracks last 1.5 s)
        api = app.api
        session = api.ok("GET", "/v1/session")
        assert session["track"]["id"] == songs[1]
        assert session["state"]["position"]["position_ms"] == 1_230
        assert session["state"]["position"]["playing"] is False
        queue = api.ok("GET", "/v1/session/queue")
        assert [e["track_id"] for e in queue["entries"]] == songs
        back = conn.get_play_queue()
        assert (back.current, back.position) == (songs[1], 1_230)
        assert [e.id for e in back.entry or []] == songs
        # A terminal seeks: the app reads where it is.
        api.cmd("seek", position_ms=705)
        assert conn.get_play_queue().position == 705
        # The terminal moves on after the app's read: the app's save is refused ...
        api.cmd("next")
        with pytest.raises(oerrors.SonicError) as refused:
            conn.save_play_queue(songs, current=songs[0], position=1_000)
        assert "get the play queue again" in str(refused.value)
        assert api.ok("GET", "/v1/session")["track"]["id"] == songs[2]
        # ... until it has read the session again.
        assert conn.get_play_queue().current == songs[2]
        assert conn.save_play_queue(songs, current=songs[0], position=1_000)
        assert api.ok("GET", "/v1/session")["track"]["id"] == songs[0]
        assert conn.get_now_playing() == [] or not conn.get_now_playing()


def test_start_scan_and_scan_status(app: App) -> None:
    conn = app.opensonic()
    before = conn.get_scan_status()
    assert before.count and before.count >= 10
    started = conn.start_scan()
    assert started.count == before.count
    # No event tells an app that the scan ended: it asks again, as apps do (a deadline).
    deadline = time.monotonic() + 30
    while conn.get_scan_status().scanning:
        assert time.monotonic() < deadline, "the scan never ended"
    assert conn.get_scan_status().count == before.count


# --- the purge ------------------------------------------------------------------------


async def test_the_purge_keeps_live_app_passwords_and_forgets_revoked_ones(
    tmp_path: Path,
) -> None:
    """A Subsonic app's device holds no token: unseen for longer than the purge's limit,
    it stays while its app password is live; revoked, both rows go."""
    import sqlalchemy as sa

    from tunehand.server import app_passwords
    from tunehand.server.db import accounts as qa
    from tunehand.server.db import migrate
    from tunehand.server.db.engine import open_engine
    from tunehand.server.db.tables import app_passwords as app_passwords_table
    from tunehand.server.db.tables import devices
    from tunehand.server.purge import STALE_DEVICE_MS, purge_once
    from tunehand.server.streams import Signer

    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path}/purge.db")
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            account = await qa.create_account(conn, "alice", "x", 0)
        sealer = app_passwords.Sealer.of(Signer(b"k" * 32))
        kept = await app_passwords.create(engine, sealer, account, "kept", "", 1_000)
        gone = await app_passwords.create(engine, sealer, account, "gone", "", 1_000)
        async with engine.begin() as conn:
            await qa.revoke_device(conn, account, gone.device_id)
        await purge_once(engine, 1_000 + STALE_DEVICE_MS * 2)
        async with engine.connect() as conn:
            left = {r.id for r in await conn.execute(sa.select(devices.c.id))}
            rows = await conn.execute(sa.select(app_passwords_table.c.device_id))
            passwords = {r.device_id for r in rows}
        assert left == passwords == {kept.device_id}
        right = app_passwords.Given(user="alice", password=kept.password)
        who = await app_passwords.check(engine, sealer, right, "192.0.2.1", 2_000)
        assert (who.account_id, who.device_id) == (account, kept.device_id)
    finally:
        await engine.dispose()


def test_app_passwords_in_the_security_log(app: App, shared_server: ServerProc) -> None:
    """Making one and failing one are security events; the password is never written."""
    with accounts(shared_server) as make:
        api = make("seclog")
        made = make_app(shared_server, api, "watch")
        line = shared_server.wait_for_line(f"app_password_created user={api.name} ")
        assert f"device={made.device_id}" in line and "name=watch" in line
        with pytest.raises(libsonic.errors.CredentialError):
            made.sonic(password="not-" + made.password).getLicense()
        assert made.sonic().ping()
        shared_server.wait_for_line(f"login_failed user={api.name} ")
        log = (shared_server.data_dir / "security.log").read_text()
        assert made.password not in log and made.password not in "\n".join(shared_server.log)


def test_a_token_that_is_not_hex_is_wrong_credentials(app: App) -> None:
    for token in ("é" * 32, "g" * 32, " " * 32):
        r = httpx.get(
            f"{app.srv.url}/rest/ping",
            params={
                "u": app.api.name,
                "t": token,
                "s": "abc",
                "v": "1.16.1",
                "c": "t",
                "f": "json",
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text  # never a 500
        assert r.json()["subsonic-response"]["error"]["code"] == 40


def test_xml_answers_hold_no_character_xml_forbids() -> None:
    import xml.etree.ElementTree as ET

    from tunehand.server.subsonic.responses import render

    r = render("xml", {"song": {"title": "a\x01b\x1fc\ud800", "year": 2001}})
    root = ET.fromstring(r.body)  # noqa: S314 (our own answer)
    song = next(iter(root))
    assert song.get("title") == "a\ufffdb\ufffdc\ufffd" and song.get("year") == "2001"
