"""The rest of the Subsonic API on a real `tunehand serve`, judged by py-opensonic and
py-sonic where they have the call (raw HTTP where they hide what is checked): the older
methods apps still call (`getMusicDirectory`, `search2`, `getAlbumList`, `getStarred`),
ratings and bookmarks per account, "now playing" from `scrobble`, the `c` parameter
naming the app's device, the API version check, and `savePlayQueue`'s guard holding
across two instances of one deployment."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import libopensonic
import pytest
from libopensonic import errors as oerrors

from tests.fixtures_server import Backend, ServerProc, launch
from tests.test_api import Api, accounts, add_users
from tests.test_subsonic import OPEN, App, body, failed, make_app
from tunehand.server.streams import KEY_ENV

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().cleanup()


@pytest.fixture(scope="module")
def two(shared_server: ServerProc) -> Iterator[tuple[App, App]]:
    """Two accounts, each with an app password."""
    with accounts(shared_server) as make:
        yield make_app(shared_server, make("old")), make_app(shared_server, make("other"))


def sigur(app: App) -> str:
    found = app.sonic().search2("sigur")["searchResult2"]
    return str(next(a["id"] for a in found["artist"] if a["name"] == "Sigur Rós"))


# --- the older API ----------------------------------------------------------------------


def test_browsing_by_directory(two: tuple[App, App]) -> None:
    app, _ = two
    sonic = app.sonic()
    indexes = sonic.getIndexes()["indexes"]["index"]
    artist_ids = [a["id"] for i in indexes for a in i["artist"]]
    artist = sigur(app)
    assert artist in artist_ids
    directory = app.opensonic().get_music_directory(artist)
    assert directory.name == "Sigur Rós" and directory.child
    albums = directory.child
    assert all(c.is_dir and c.parent == artist for c in albums)
    id3 = app.opensonic().get_artist(artist)
    assert sorted(c.id for c in albums) == sorted(a.id for a in id3.album or [])
    inside = sonic.getMusicDirectory(albums[0].id)["directory"]
    assert inside["parent"] == artist and inside["child"]
    assert not any(c["isDir"] for c in inside["child"])
    songs = app.opensonic().get_album(albums[0].id).song or []
    assert [c["id"] for c in inside["child"]] == [s.id for s in songs]
    assert failed(app.raw("getMusicDirectory", id="anosuch", f="json")) == 70
    assert failed(app.raw("getMusicDirectory", id="ar" + b"nobody".hex(), f="json")) == 70


def test_search2_finds_what_search3_finds(two: tuple[App, App]) -> None:
    app, _ = two
    conn = app.opensonic()
    for query in ("ros", "sigur ros", "zzzz"):
        old = conn.search2(query, song_count=50)
        new = conn.search3(query, song_count=50)
        assert [a.id for a in old.artist or []] == [a.id for a in new.artist or []]
        assert [a.id for a in old.album or []] == [a.id for a in new.album or []]
        assert [s.id for s in old.song or []] == [s.id for s in new.song or []]
    hit = app.sonic().search2("ros")["searchResult2"]
    assert hit["artist"] and hit["song"] and all(a["isDir"] for a in hit.get("album", []))


LIST_TYPES = [
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
]


@pytest.mark.parametrize("ltype", LIST_TYPES)
def test_get_album_list_of_every_type(two: tuple[App, App], ltype: str) -> None:
    app, _ = two
    sonic = app.sonic()
    extra: dict[str, Any] = {}
    if ltype == "byYear":
        extra = {"fromYear": 1900, "toYear": 2100}
    if ltype == "byGenre":
        extra = {
            "genre": next(s.genre for s in app.opensonic().get_random_songs(size=50) if s.genre)
        }
    old = sonic.getAlbumList(ltype, size=500, **extra)["albumList"].get("album", [])
    new = sonic.getAlbumList2(ltype, size=500, **extra)["albumList2"].get("album", [])
    if ltype == "random":
        assert sorted(a["id"] for a in old) == sorted(a["id"] for a in new)
    else:
        assert [a["id"] for a in old] == [a["id"] for a in new]
    assert all(a["isDir"] and a["title"] for a in old)
    if ltype in ("newest", "alphabeticalByName", "random"):
        assert old


def test_get_starred(two: tuple[App, App]) -> None:
    app, other = two
    conn = app.opensonic()
    song = conn.get_random_songs(size=1)[0]
    assert song.album_id and song.artist_id
    conn.star(sids=[song.id], album_ids=[song.album_id], artist_ids=[song.artist_id])
    try:
        starred = app.sonic().getStarred()["starred"]
        assert [s["id"] for s in starred["song"]] == [song.id]
        assert [a["id"] for a in starred["album"]] == [song.album_id]
        assert starred["album"][0]["isDir"] is True
        assert [a["id"] for a in starred["artist"]] == [song.artist_id]
        theirs = other.sonic().getStarred()["starred"]
        assert not (theirs.get("song") or theirs.get("album") or theirs.get("artist"))
    finally:
        conn.unstar(sids=[song.id], album_ids=[song.album_id], artist_ids=[song.artist_id])


# --- ratings and bookmarks --------------------------------------------------------------


def test_ratings_are_the_accounts_own(two: tuple[App, App]) -> None:
    app, other = two
    conn = app.opensonic()
    artist = sigur(app)
    album = (conn.get_artist(artist).album or [])[0]
    song = (conn.get_album(album.id).song or [])[0]
    assert conn.set_rating(song.id, 4) and conn.set_rating(album.id, 5)
    assert app.sonic().setRating(artist, 3)["status"] == "ok"
    try:
        assert conn.get_song(song.id).user_rating == 4
        assert conn.get_album(album.id).user_rating == 5
        # py-opensonic's ArtistWithAlbumsID3 has no userRating: read the answer itself.
        assert body(app.raw("getArtist", id=artist, f="json"))["artist"]["userRating"] == 3
        directory = app.sonic().getMusicDirectory(artist)["directory"]
        assert directory["userRating"] == 3
        assert next(c for c in directory["child"] if c["id"] == album.id)["userRating"] == 5
        assert [a.id for a in conn.get_album_list2("highest")] == [album.id]
        assert [a.id for a in conn.get_album_list("highest")] == [album.id]
        # Another account sees none of them.
        assert other.opensonic().get_song(song.id).user_rating is None
        assert other.opensonic().get_album_list2("highest") == []
        # Rating 0 removes one; a wrong rating or id is refused.
        assert conn.set_rating(song.id, 0)
        assert conn.get_song(song.id).user_rating is None
        assert failed(app.raw("setRating", id=song.id, rating="6", f="json")) == 0
        assert failed(app.raw("setRating", id=song.id, rating="x", f="json")) == 0
        assert failed(app.raw("setRating", id="tnosuch", rating="2", f="json")) == 70
        assert failed(app.raw("setRating", id=song.id, f="json")) == 10
    finally:
        conn.set_rating(album.id, 0)
        conn.set_rating(artist, 0)


def test_bookmarks_are_the_accounts_own(two: tuple[App, App]) -> None:
    app, other = two
    conn = app.opensonic()
    song = conn.get_random_songs(size=1)[0]
    assert conn.create_bookmark(song.id, 61_000, "chapter 3")
    marks = conn.get_bookmarks()
    assert [(b.entry.id, b.position, b.comment) for b in marks] == [(song.id, 61_000, "chapter 3")]
    assert marks[0].username == app.api.name
    # Saving again moves it; py-sonic reads the same.
    assert conn.create_bookmark(song.id, 90_500)
    legacy = app.sonic().getBookmarks()["bookmarks"]["bookmark"]
    assert [(b["entry"]["id"], b["position"]) for b in legacy] == [(song.id, 90_500)]
    assert other.opensonic().get_bookmarks() == []
    assert other.opensonic().delete_bookmark(song.id)  # none of its own: nothing happens
    assert [b.position for b in conn.get_bookmarks()] == [90_500]
    assert conn.delete_bookmark(song.id)
    assert conn.get_bookmarks() == []
    assert failed(app.raw("createBookmark", id=song.id, f="json")) == 0  # no position
    assert failed(app.raw("createBookmark", id="tnosuch", position="5", f="json")) == 70


# --- now playing, the app's name ------------------------------------------------------


def test_scrobble_not_submitted_is_now_playing_and_not_history(two: tuple[App, App]) -> None:
    app, other = two
    conn = app.opensonic()
    song = conn.get_random_songs(size=1)[0]
    before = app.api.ok("GET", "/v1/history")["history"]
    assert conn.scrobble(song.id, submission=False)
    assert app.api.ok("GET", "/v1/history")["history"] == before
    playing = conn.get_now_playing()
    assert [(e.id, e.username) for e in playing] == [(song.id, app.api.name)]
    devices = {d["id"]: d["name"] for d in app.api.ok("GET", "/v1/devices")["devices"]}
    assert playing[0].player_name == devices[app.device_id]
    assert other.opensonic().get_now_playing() == []
    # Submitting it records one listen and ends its "now playing".
    assert conn.scrobble(song.id)
    after = app.api.ok("GET", "/v1/history")["history"]
    assert len(after) == len(before) + 1 and after[0]["track_id"] == song.id
    assert conn.get_now_playing() == []
    assert failed(app.raw("scrobble", id="tnosuch", submission="false", f="json")) == 70


def test_the_c_parameter_names_the_apps_device(shared_server: ServerProc) -> None:
    with accounts(shared_server) as make:
        app = make_app(shared_server, make("cname"), "phone-password")
        song = app.opensonic().get_random_songs(size=1)[0]
        ok = app.raw(
            "savePlayQueue", id=song.id, current=song.id, position="500", c="Symfonium", f="json"
        )
        assert body(ok)["status"] == "ok"
        devices = {d["id"]: d["name"] for d in app.api.ok("GET", "/v1/devices")["devices"]}
        assert devices[app.device_id] == "Symfonium"
        # A second app of the account calling itself the same gets a name of its own.
        second = make_app(shared_server, app.api, "tablet-password")
        body(second.raw("getPlayQueue", f="json"))
        r = second.raw(
            "savePlayQueue", id=song.id, current=song.id, position="600", c="Symfonium", f="json"
        )
        assert body(r)["status"] == "ok"
        devices = {d["id"]: d["name"] for d in app.api.ok("GET", "/v1/devices")["devices"]}
        assert devices[second.device_id] == "Symfonium-2"
        assert devices[app.device_id] == "Symfonium"
        # The app password keeps its own name (revoked by it).
        names = [p["name"] for p in app.api.ok("GET", "/v1/app-passwords")["app_passwords"]]
        assert sorted(names) == ["phone-password", "tablet-password"]


# --- the API version ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("1.16.1", None),
        ("1.13.0", None),
        ("1.2", None),
        ("1.99.0", None),  # a newer minor: every 1.x call is answered
        ("2.0.0", 30),  # server must upgrade
        ("17.1.0", 30),
        ("0.9.0", 20),  # client must upgrade
        ("one.two", 10),
        ("1.16.1-beta", 10),
        ("1", None),
        ("1.", 10),
    ],
)
def test_the_api_version_is_checked(two: tuple[App, App], version: str, code: int | None) -> None:
    app, _ = two
    r = app.raw("ping", v=version, f="json")
    out = body(r)
    if code is None:
        assert out["status"] == "ok", out
    else:
        assert (out["status"], out["error"]["code"]) == ("failed", code), out
    if code is not None:
        with pytest.raises(oerrors.SonicError):
            libopensonic.Connection(
                app.host,
                port=app.port,
                username=app.api.name,
                password=app.password,
                api_version=version,
            ).ping()


# --- the play queue's guard across instances ------------------------------------------


def test_the_play_queue_guard_holds_across_instances(
    tmp_path_factory: pytest.TempPathFactory, postgres_backend: Backend
) -> None:
    """An app that read the session on instance A, then a change by a terminal: its save
    through instance B is refused as it is through A, until it reads again (on B)."""
    store = postgres_backend.store()
    # One deployment shares its signing key (app passwords are sealed under it).
    env = {KEY_ENV: secrets.token_hex(32)}
    a = launch(tmp_path_factory.mktemp("guard-a"), store=store, env=env)
    try:
        b = launch(
            tmp_path_factory.mktemp("guard-b"),
            music=a.music,
            store=store,
            env=env,
            extra_args=("--no-scan",),
            wait_scan=False,
        )
    except BaseException:
        a.stop()
        raise
    try:
        add_users(a, "guard")
        api = Api(a, "guard", a.login("guard"))
        try:
            app_a = make_app(a, api, "phone")
            app_b = App(b, api, app_a.name, app_a.password, app_a.device_id)
            songs = [s.id for s in app_a.opensonic().get_random_songs(size=3)]
            assert body(app_a.raw("getPlayQueue", f="json"))["status"] == "ok"
            api.cmd("queue_add", track_ids=[songs[0]])  # a terminal changes the queue
            refused = app_b.raw("savePlayQueue", id=songs, current=songs[1], f="json")
            assert failed(refused) == 0
            assert "get the play queue again" in body(refused)["error"]["message"]
            assert body(app_b.raw("getPlayQueue", f="json"))["status"] == "ok"
            saved = app_a.raw("savePlayQueue", id=songs, current=songs[1], f="json")
            assert body(saved)["status"] == "ok"
            queue = api.ok("GET", "/v1/session/queue")
            assert [e["track_id"] for e in queue["entries"]] == songs
        finally:
            api.http.close()
    finally:
        b.stop()
        a.stop()


def test_raw_http_client_gets_json(two: tuple[App, App]) -> None:
    """Every new method answers in JSON and XML alike."""
    app, _ = two
    for method, params in (
        ("getBookmarks", {}),
        ("getStarred", {}),
        ("getAlbumList", {"type": "newest"}),
        ("search2", {"query": "ros"}),
    ):
        assert body(app.raw(method, f="json", **params))["status"] == "ok"
        xml = app.raw(method, **params)
        assert xml.status_code == 200 and 'status="ok"' in xml.text
        assert isinstance(xml, httpx.Response)
