"""End to end: every `tunehand ctl` command, `watch`, exit codes, devices and the server's life.

The real CLI runs in subprocesses, logged in through the real OS keyring (a private
gnome-keyring), against a real server; effects are checked through `ctl status --json`
and `ctl queue --json`. Playing devices are `FakePlayer`s: websocket clients that say
they can play, as a receiver would. Each test has its own user on one server per module.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_helpers import (
    PASSWORD,
    Device,
    FakePlayer,
    LineReader,
    UserPool,
    add_users,
    client_env,
    error_line,
    new_device_id,
)
from tests.fixtures_server import ServerProc, launch

STATUS_FIELDS = {
    "device",
    "playing",
    "track",
    "position_ms",
    "volume",
    "shuffle",
    "repeat",
    "queue_length",
    "entry_id",
    "version",
    "error",
    "added_by",
    "jam",
    "chapters",
    "chapter",
    "speed",
}
TRACK_FIELDS = {"id", "title", "artist", "album", "duration_ms", "album_id", "art_url"}
RADIO = "http://radio.example.org/stream.mp3"


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(shared_server: ServerProc) -> ServerProc:
    return shared_server


@pytest.fixture(scope="module")
def pool(srv: ServerProc) -> UserPool:
    return UserPool(srv, "cli")


@dataclass
class Account:
    """A user of the module's server, logged in on this machine as the device "laptop"."""

    srv: ServerProc
    user: str
    dev: Device
    players: list[FakePlayer] = field(default_factory=list)

    def player(
        self, name: str, capabilities: tuple[str, ...] = ("play",), on_prepare: str = "ready"
    ) -> FakePlayer:
        device_id = new_device_id()
        token = self.srv.login(self.user, device_id=device_id)["access_token"]
        p = FakePlayer(self.srv.url, token, device_id, name, capabilities, on_prepare).start()
        self.players.append(p)
        return p

    def change(self, *args: str) -> dict[str, Any]:
        """Run a ctl command that changes the session; check it made exactly one version."""
        before = self.dev.status()["version"]
        self.dev.ctl(*args)
        after = self.dev.status()
        assert after["version"] == before + 1, (args, before, after)
        return after


def logged_in_device(
    srv: ServerProc, user: str, config_dir: Path, keyring: dict[str, str], name: str = "laptop"
) -> Device:
    dev = Device(config_dir, client_env(keyring, config_dir), server_log=srv.log)
    r = dev.login(srv.url, user, PASSWORD, "--device-name", name)
    assert r.returncode == 0, r.stderr
    return dev


@pytest.fixture
def acct(
    srv: ServerProc, pool: UserPool, tmp_path: Path, secret_service: dict[str, str]
) -> Iterator[Account]:
    user = pool.take()
    account = Account(srv, user, logged_in_device(srv, user, tmp_path / "laptop", secret_service))
    yield account
    for p in account.players:
        p.close()


@pytest.fixture(scope="module")
def idle(
    srv: ServerProc,
    pool: UserPool,
    tmp_path_factory: pytest.TempPathFactory,
    secret_service: dict[str, str],
) -> Device:
    """A logged-in device of a user whose session nothing plays (for error cases)."""
    return logged_in_device(srv, pool.take(), tmp_path_factory.mktemp("idle"), secret_service)


@dataclass(frozen=True)
class Catalogue:
    tracks: dict[str, dict[str, Any]]  # by title
    albums: dict[str, dict[str, Any]]  # by title, with "track_ids" in play order

    def id(self, title: str) -> str:
        return str(self.tracks[title]["id"])


@pytest.fixture(scope="module")
def catalogue(srv: ServerProc, pool: UserPool) -> Catalogue:
    """The generated library as the server indexed it (album ids are not shown by ctl)."""
    token = srv.login(pool.take())["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    albums = {}
    tracks = {}
    for a in httpx.get(srv.url + "/v1/albums", headers=h, timeout=10).json()["albums"]:
        found = httpx.get(f"{srv.url}/v1/albums/{a['id']}/tracks", headers=h, timeout=10).json()
        albums[a["title"]] = {**a, "track_ids": [t["id"] for t in found["tracks"]]}
        tracks.update({t["title"]: t for t in found["tracks"]})
    return Catalogue(tracks, albums)


def entry_ids(q: dict[str, Any]) -> list[str]:
    return [e["entry_id"] for e in q["entries"]]


def track_ids(q: dict[str, Any]) -> list[str]:
    return [e["track"]["id"] for e in q["entries"]]


# --- play and choosing a device ----------------------------------------------------


def test_play_without_an_active_device_names_the_choices(
    acct: Account, catalogue: Catalogue
) -> None:
    dev, song = acct.dev, catalogue.id("Morning Song")
    line = dev.fails(5, "ctl", "play", song)
    assert "no device" in line, line

    acct.player("living-room")
    kitchen = acct.player("kitchen")
    line = dev.fails(5, "ctl", "play", song)
    assert "living-room" in line and "kitchen" in line and "--device" in line, line
    assert dev.status()["device"] is None

    line = dev.fails(5, "ctl", "play", song, "--device", "garage")
    assert "garage" in line and "kitchen" in line, line
    st = acct.change("play", song, "--device", "kitchen")
    assert st["device"] == {"id": kitchen.device_id, "name": "kitchen"}
    assert st["playing"] is True and st["track"]["id"] == song
    start = kitchen.wait_message(lambda m: m.get("type") == "directive")
    assert start["action"] == "start" and start["playing"] is True
    assert start["track"]["id"] == song


def test_play_offers_only_devices_that_play(acct: Account, catalogue: Catalogue) -> None:
    acct.player("status-bar", capabilities=())
    line = acct.dev.fails(5, "ctl", "play", catalogue.id("Crossroads"))
    assert "status-bar" not in line, line


def test_play_uses_the_only_online_player(acct: Account, catalogue: Catalogue) -> None:
    dev, song = acct.dev, catalogue.id("Paper Boats")
    acct.player("status-bar", capabilities=())  # online, but it cannot play
    room = acct.player("living-room")
    st = acct.change("play", song)
    assert set(st) == STATUS_FIELDS
    assert st["device"] == {"id": room.device_id, "name": "living-room"}
    assert st["playing"] is True and st["queue_length"] == 1 and st["position_ms"] == 0
    assert set(st["track"]) == TRACK_FIELDS
    assert st["track"]["title"] == "Paper Boats" and st["track"]["artist"] == "The Examples"
    assert st["track"]["album"] == "First Light" and st["track"]["duration_ms"] > 0
    assert room.wait_message(lambda m: m.get("type") == "directive")["action"] == "start"
    assert "Paper Boats" in dev.ctl("status") and "living-room" in dev.ctl("status")

    devices = dev.json("ctl", "devices")
    assert all(
        set(d) == {"id", "name", "online", "active", "last_seen_ms", "address", "kind", "warm"}
        and d["kind"] == "terminal"
        and d["warm"] is False  # (no device here has asked to be kept warm)
        for d in devices
    )
    by_name = {d["name"]: d for d in devices}
    assert set(by_name) == {"living-room", "status-bar"}  # laptop (ctl) is not online
    assert by_name["living-room"]["active"] is True and by_name["living-room"]["online"] is True
    assert by_name["status-bar"]["active"] is False
    every = {d["name"]: d for d in dev.json("ctl", "devices", "--all")}
    assert every["laptop"]["online"] is False and every["laptop"]["id"] == dev.device_id()
    assert "living-room" in dev.ctl("devices")

    st = acct.change("play", "--search", "staralfur")
    assert st["track"]["title"] == "Starálfur" and st["queue_length"] == 2

    # The active device going away pauses the session where it was; nothing is lost.
    room.close()
    st = dev.status()
    assert st["device"] is None and st["playing"] is False
    assert st["track"]["title"] == "Starálfur"


# --- transport: pause, toggle, next, prev, seek, volume, shuffle, repeat ---------------


def test_transport_commands(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    album = catalogue.albums["Analytical Engines"]
    acct.player("living-room")
    st = acct.change("play", "--album", album["id"])
    assert st["track"]["id"] == album["track_ids"][0] and st["playing"] is True
    assert st["queue_length"] == len(album["track_ids"]) == 3
    first = st["entry_id"]

    assert acct.change("pause")["playing"] is False
    assert dev.status()["entry_id"] == first
    assert acct.change("toggle")["playing"] is True
    assert acct.change("toggle")["playing"] is False
    assert acct.change("play")["playing"] is True  # resume

    st = acct.change("next")
    assert st["track"]["id"] == album["track_ids"][1] and st["playing"] is True
    st = acct.change("prev")  # under 3 s in: the previous entry
    assert st["track"]["id"] == album["track_ids"][0] and st["entry_id"] == first

    # Seeking, on a stream (duration unknown, so nothing caps the position), paused.
    st = acct.change("play", "--url", RADIO, "--no-wait")  # a fake device: it never plays it
    assert st["track"]["title"] == RADIO and st["queue_length"] == 4
    radio = st["entry_id"]
    acct.change("pause")
    assert acct.change("seek", "90")["position_ms"] == 90_000
    assert acct.change("seek", "1:30.5")["position_ms"] == 90_500
    assert acct.change("seek", "+10")["position_ms"] == 100_500
    assert acct.change("seek", "-20.5")["position_ms"] == 80_000
    assert acct.change("seek", "1:02:03")["position_ms"] == 3_723_000
    assert acct.change("seek", "-9999")["position_ms"] == 0
    acct.change("seek", "45")
    st = acct.change("prev")  # over 3 s in: the same entry from its start
    assert st["entry_id"] == radio and st["position_ms"] == 0

    # A library track caps seeks at its duration.
    st = acct.change("next")
    assert st["track"]["id"] == album["track_ids"][1]
    st = acct.change("seek", "1:30")
    assert st["position_ms"] == st["track"]["duration_ms"]

    assert acct.change("volume", "30")["volume"] == 30
    assert acct.change("volume", "+15")["volume"] == 45
    assert acct.change("volume", "-5")["volume"] == 40
    assert acct.change("volume", "-100")["volume"] == 0
    assert acct.change("volume", "+250")["volume"] == 100

    entry = dev.status()["entry_id"]
    st = acct.change("shuffle", "on")
    assert st["shuffle"] is True and st["entry_id"] == entry  # shuffling never jumps
    assert acct.change("shuffle", "off")["shuffle"] is False
    for mode in ("all", "one", "off"):
        assert acct.change("repeat", mode)["repeat"] == mode

    human = dev.ctl("status")
    assert "vol 100" in human and "repeat off" in human and "shuffle off" in human


# --- the queue ---------------------------------------------------------------------


def test_queue_commands(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    a, b, c, d = (catalogue.id(t) for t in ("Difference", "Open Road", "Crossroads", "Bernoulli"))
    assert dev.queue() == {"version": 0, "current": None, "entries": []}
    assert "empty" in dev.ctl("queue")

    acct.change("queue", "add", a, b)
    q = dev.queue()
    assert track_ids(q) == [a, b] and q["current"] is None
    e = q["entries"][0]
    assert set(e) == {"entry_id", "current", "track", "added_by", "autoplay"}
    assert set(e["track"]) == TRACK_FIELDS
    assert e["current"] is False and e["autoplay"] is False

    acct.player("living-room")
    acct.change("play", a)  # inserts after the (missing) current entry and plays it
    q = dev.queue()
    assert track_ids(q) == [a, a, b] and q["current"] == q["entries"][0]["entry_id"]
    assert [e["current"] for e in q["entries"]] == [True, False, False]
    acct.change("queue", "remove", q["entries"][1]["entry_id"])
    assert track_ids(dev.queue()) == [a, b]

    acct.change("queue", "next", c)
    assert track_ids(dev.queue()) == [a, c, b]
    acct.change("queue", "add", "--search", "bernoul")
    acct.change("queue", "add", "--url", RADIO)
    q = dev.queue()
    assert track_ids(q)[:4] == [a, c, b, d] and q["entries"][4]["track"]["title"] == RADIO
    acct.change("queue", "add", "--album", catalogue.albums["Roads Compilation"]["id"])
    assert dev.status()["queue_length"] == 8

    q = dev.queue()
    ids = entry_ids(q)
    acct.change("queue", "move", ids[2], "0")  # b to the top
    assert entry_ids(dev.queue()) == [ids[2], ids[0], ids[1], *ids[3:]]
    acct.change("queue", "move", ids[2], "99")  # past the end: the end
    assert entry_ids(dev.queue()) == [ids[0], ids[1], *ids[3:], ids[2]]
    # Unshuffled, the play order is the queue: --play-order moves the same way.
    acct.change("queue", "move", ids[2], "1", "--play-order")
    assert entry_ids(dev.queue()) == [ids[0], ids[2], ids[1], *ids[3:]]
    acct.change("queue", "move", ids[2], "99", "--play-order")
    assert entry_ids(dev.queue()) == [ids[0], ids[1], *ids[3:], ids[2]]
    acct.change("queue", "remove", ids[3], ids[4])
    assert entry_ids(dev.queue()) == [ids[0], ids[1], *ids[5:], ids[2]]
    # Removing the current entry moves on to the next one.
    st = acct.change("queue", "remove", ids[0])
    assert st["entry_id"] == ids[1] and st["track"]["id"] == c
    lines = dev.ctl("queue").splitlines()
    assert lines[0].startswith("▶ " + ids[1]) and "Crossroads" in lines[0]

    st = acct.change("queue", "clear")
    assert st["queue_length"] == 0 and st["track"] is None and st["entry_id"] is None
    assert dev.queue()["entries"] == []
    assert "nothing is playing" in dev.ctl("status")


# --- search, playlists, likes, history --------------------------------------------------


def test_search(acct: Account) -> None:
    dev = acct.dev
    found = dev.json("ctl", "search", "ros")
    assert found and {t["artist"] for t in found} == {"Sigur Rós"}
    assert all(set(t) == TRACK_FIELDS for t in found)
    assert len(dev.json("ctl", "search", "ros", "--limit", "1")) == 1
    assert [t["title"] for t in dev.json("ctl", "search", "STARALFUR")] == ["Starálfur"]
    human = dev.ctl("search", "paper")
    assert "Paper Boats" in human and "The Examples" in human
    assert dev.json("ctl", "search", "zzqqxx") == []
    assert dev.ctl("search", "zzqqxx").strip() == "no match"


def test_playlists(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    a, b, c = (catalogue.id(t) for t in ("Svefn-g-englar", "Bernoulli", "Rainroad"))
    assert dev.json("ctl", "playlists") == []
    name = "Road trip ü?#%"  # spaces, accents and URL syntax survive the URL
    dev.ctl("playlists", "save", name, a, b)
    lists = dev.json("ctl", "playlists")
    assert [(p["name"], p["tracks"]) for p in lists] == [(name, 2)]
    assert set(lists[0]) == {"name", "tracks", "updated_ms"}
    shown = dev.json("ctl", "playlists", "show", name)
    assert shown["name"] == name and [t["id"] for t in shown["tracks"]] == [a, b]
    assert all(set(t) == TRACK_FIELDS for t in shown["tracks"])
    assert "Bernoulli" in dev.ctl("playlists", "show", name)

    # `save` without tracks saves the queue; saving again replaces.
    acct.change("queue", "add", c, a)
    dev.ctl("playlists", "save", "from queue")
    assert [t["id"] for t in dev.json("ctl", "playlists", "show", "from queue")["tracks"]] == [
        c,
        a,
    ]
    dev.ctl("playlists", "save", name, b)
    assert [t["id"] for t in dev.json("ctl", "playlists", "show", name)["tracks"]] == [b]
    assert "from queue" in dev.ctl("playlists")

    acct.player("living-room")
    st = acct.change("play", "--playlist", "from queue")  # replaces the queue
    assert st["track"]["id"] == c and st["playing"] is True
    assert track_ids(dev.queue()) == [c, a]

    dev.ctl("playlists", "delete", name)
    assert [p["name"] for p in dev.json("ctl", "playlists")] == ["from queue"]
    assert name in dev.fails(5, "ctl", "playlists", "show", name)
    assert name in dev.fails(5, "ctl", "play", "--playlist", name)
    dev.fails(5, "ctl", "playlists", "delete", name)
    dev.fails(5, "ctl", "playlists", "save", "bad", "tnosuchtrack0000000")
    assert [p["name"] for p in dev.json("ctl", "playlists")] == ["from queue"]


def test_playlist_name_with_a_slash(acct: Account, catalogue: Catalogue) -> None:
    """A playlist name is any text (the API takes "/" in `/v1/playlists/{name}`): "AC/DC"
    is saved, listed, shown, played and deleted as itself, never as a path."""
    dev, song = acct.dev, catalogue.id("Open Road")
    for name in ("AC/DC", "/lead/", "a//b"):
        dev.ctl("playlists", "save", name, song)
        assert name in [p["name"] for p in dev.json("ctl", "playlists")]
        shown = dev.json("ctl", "playlists", "show", name)
        assert (shown["name"], [t["id"] for t in shown["tracks"]]) == (name, [song])
    assert "DC" not in [p["name"] for p in dev.json("ctl", "playlists")]
    acct.player("living-room")
    st = acct.change("play", "--playlist", "AC/DC")
    assert st["track"]["id"] == song and st["playing"] is True
    for name in ("AC/DC", "/lead/", "a//b"):
        dev.ctl("playlists", "delete", name)
        assert name not in [p["name"] for p in dev.json("ctl", "playlists")]
        assert name in dev.fails(5, "ctl", "playlists", "show", name)


def test_like_likes_and_history(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    a, b = catalogue.id("Flugufrelsarinn"), catalogue.id("Signal Fires")
    assert dev.json("ctl", "likes") == [] and dev.json("ctl", "history") == []
    assert "nothing is playing" in dev.fails(2, "ctl", "like")

    dev.ctl("like", a)
    likes = dev.json("ctl", "likes")
    assert [t["id"] for t in likes] == [a] and set(likes[0]) == TRACK_FIELDS

    room = acct.player("living-room")
    acct.change("play", b)
    dev.ctl("like")  # the current track
    assert {t["id"] for t in dev.json("ctl", "likes")} == {a, b}
    dev.ctl("like", a, "--remove")
    assert [t["id"] for t in dev.json("ctl", "likes")] == [b]
    assert "Signal Fires" in dev.ctl("likes")

    # A track enters the history when the device says it is audible.
    room.report_playing()
    room.wait_state(lambda s: s["position"]["rate"] > 0)
    history = dev.json("ctl", "history")
    assert len(history) == 1
    assert set(history[0]) == {"track", "played_ms", "device_id"}
    assert history[0]["track"]["id"] == b and history[0]["device_id"] == room.device_id
    assert isinstance(history[0]["played_ms"], int)

    acct.change("play", a)
    room.wait_state(lambda s: s["position"]["rate"] == 0)
    room.report_playing()
    room.wait_state(lambda s: s["position"]["rate"] > 0)
    assert [h["track"]["id"] for h in dev.json("ctl", "history")] == [a, b]  # newest first
    assert [h["track"]["id"] for h in dev.json("ctl", "history", "--limit", "1")] == [a]
    assert "Flugufrelsarinn" in dev.ctl("history")


# --- transfer ----------------------------------------------------------------------


def test_transfer_by_name_id_and_prefix(acct: Account, catalogue: Catalogue) -> None:
    dev, song = acct.dev, catalogue.id("Signal Fires")
    room = acct.player("living-room")
    kitchen = acct.player("kitchen")
    acct.change("play", song, "--device", "living-room")

    st = acct.change("transfer", "kitchen")
    assert st["device"] == {"id": kitchen.device_id, "name": "kitchen"} and st["playing"]
    assert st["track"]["id"] == song
    prepare = kitchen.wait_message(lambda m: m.get("action") == "prepare")
    assert prepare["track"]["id"] == song and prepare["transfer_id"]
    assert room.wait_message(lambda m: m.get("action") == "stop")["type"] == "directive"
    start = kitchen.wait_message(lambda m: m.get("action") == "start")
    assert start["playing"] is True and start["term"] > prepare["term"]

    st = acct.change("transfer", room.device_id)
    assert st["device"]["id"] == room.device_id and st["playing"] is True

    # A target that cannot play aborts the transfer; the music stays where it was.
    acct.player("bathroom", on_prepare="failed")
    before = dev.status()
    line = dev.fails(1, "ctl", "transfer", "bathroom")
    assert "transfer" in line and "aborted" in line, line
    after = dev.status()
    assert after["device"] == before["device"] and after["playing"] is True
    assert after["version"] == before["version"]

    st = acct.change("transfer", "KIT", "--paused")  # unique prefix, any case
    assert st["device"]["id"] == kitchen.device_id and st["playing"] is False

    line = dev.fails(5, "ctl", "transfer", "garage")
    assert "garage" in line and "living-room" in line and "kitchen" in line, line
    room.close()
    line = dev.fails(5, "ctl", "transfer", "living-room")
    assert "offline" in line, line
    assert dev.status()["device"]["id"] == kitchen.device_id


def test_transfer_of_a_paused_session_arrives_paused(acct: Account, catalogue: Catalogue) -> None:
    """What `transfer --help` and the README say: a paused session moves without a
    handoff, the target holds the track paused at the same position, the old device
    stops, and nothing plays until `play`."""
    song = catalogue.id("Paper Boats")
    room, kitchen = acct.player("living-room"), acct.player("kitchen")
    acct.change("play", song, "--device", "living-room")
    acct.change("seek", "1")
    paused = acct.change("pause")
    st = acct.change("transfer", "kitchen")
    assert st["device"]["id"] == kitchen.device_id and st["playing"] is False
    assert st["position_ms"] == paused["position_ms"] and st["track"]["id"] == song
    start = kitchen.wait_message(lambda m: m.get("action") == "start")
    assert start["playing"] is False and start["position_ms"] == paused["position_ms"]
    assert not any(m.get("action") == "prepare" for m in kitchen.messages)  # no handoff
    assert room.wait_message(lambda m: m.get("action") == "stop")["type"] == "directive"
    assert acct.change("play")["playing"] is True


def test_transfer_help_says_what_happens_to_a_paused_session(idle: Device) -> None:
    out = idle.ok("ctl", "transfer", "--help")
    flat = " ".join(out.split())
    assert "Paused, DEVICE becomes the active device holding the track paused" in flat
    assert "--paused arrive paused" in flat


# --- --album and --playlist by name ------------------------------------------------


def test_play_and_queue_add_take_an_album_by_title_or_prefix(
    acct: Account, catalogue: Catalogue
) -> None:
    dev = acct.dev
    acct.player("living-room")
    engines, first = catalogue.albums["Analytical Engines"], catalogue.albums["First Light"]
    st = acct.change("play", "--album", "Analytical Engines")
    assert st["track"]["id"] == engines["track_ids"][0] and st["playing"] is True
    assert track_ids(dev.queue()) == engines["track_ids"]
    st = acct.change("play", "--album", "agaetis")  # a prefix; no case, no accents
    assert track_ids(dev.queue()) == catalogue.albums["Ágætis byrjun"]["track_ids"]
    acct.change("queue", "add", "--album", "FIRST light")
    assert track_ids(dev.queue())[-len(first["track_ids"]) :] == first["track_ids"]
    acct.change("play", "--album", first["id"])  # an id still works
    assert track_ids(dev.queue()) == first["track_ids"]
    # Several match: listed with their ids, exit 2, nothing changes.
    before = dev.status()["version"]
    line = dev.fails(2, "ctl", "play", "--album", "a")
    assert "matches 2" in line, line
    for title in ("Analytical Engines", "Ágætis byrjun"):
        assert f"{title} by " in line and catalogue.albums[title]["id"] in line, line
    line = dev.fails(5, "ctl", "queue", "add", "--album", "Pastel Blues")
    assert line == "tunehand: no album 'Pastel Blues'", line
    assert dev.status()["version"] == before


def test_play_takes_a_playlist_by_name_or_prefix(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    a, b, c = (catalogue.id(t) for t in ("Open Road", "Crossroads", "Bernoulli"))
    dev.ctl("playlists", "save", "Morning run", a)
    dev.ctl("playlists", "save", "Morning mix", b)
    dev.ctl("playlists", "save", "Évening", c)
    dev.ctl("playlists", "save", "rock", a)
    dev.ctl("playlists", "save", "Rock", b)
    acct.player("living-room")
    assert acct.change("play", "--playlist", "eve")["track"]["id"] == c  # prefix, accents
    assert acct.change("play", "--playlist", "morning MIX")["track"]["id"] == b
    assert acct.change("play", "--playlist", "rock")["track"]["id"] == a  # exact wins
    assert acct.change("play", "--playlist", "Rock")["track"]["id"] == b
    before = dev.status()["version"]
    line = dev.fails(2, "ctl", "play", "--playlist", "morn")
    assert "'morn' matches 2: Morning mix, Morning run" in line, line
    line = dev.fails(2, "ctl", "play", "--playlist", "ROCK")  # two differ only in case
    assert "matches 2" in line, line
    line = dev.fails(5, "ctl", "play", "--playlist", "noon")
    assert line == "tunehand: no playlist 'noon'", line
    assert dev.status()["version"] == before


# --- watch -------------------------------------------------------------------------


def test_watch_template_and_waybar(acct: Account, catalogue: Catalogue) -> None:
    dev = acct.dev
    assert "not a field" in dev.fails(2, "ctl", "watch", "--format", "{nope}")
    room = acct.player("living-room")
    plain = dev.popen("ctl", "watch", "--format", "{state}|{title}|{artist}|{device}|{volume}")
    bar = dev.popen("ctl", "watch", "--waybar")
    try:
        out, bar_out = LineReader(plain.stdout), LineReader(bar.stdout)  # type: ignore[arg-type]
        assert out.next() == "stopped||||100"
        assert json.loads(bar_out.next())["class"] == "stopped"
        dev.ctl("play", catalogue.id("Paper Boats"))
        room.wait_message(lambda m: m.get("type") == "directive")
        assert out.next() == "playing|Paper Boats|The Examples|living-room|100"
        shown = json.loads(bar_out.next())
        assert "Paper Boats" in shown["text"] and "living-room" in shown["tooltip"]
        assert set(shown) == {"text", "tooltip", "class", "alt"}
    finally:
        for p in (plain, bar):
            p.terminate()
            p.wait(timeout=10)


def test_watch_elapsed_is_refreshed_every_second_while_playing(acct: Account) -> None:
    dev = acct.dev
    room = acct.player("den")
    proc = dev.popen("ctl", "watch", "--format", "{state} {elapsed}/{duration} {volume}")
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        assert out.next() == "stopped / 100"
        dev.ctl("play", "--url", RADIO, "--no-wait")  # a stream: nothing caps the position
        room.wait_state(lambda s: s["active_device"] == room.device_id)
        room.report_playing(62_000)
        # Nothing changes in the session now, yet the line moves on every second (m:ss).
        seen: list[int] = []
        while len(seen) < 3:
            line = out.next(timeout=5)
            m = re.fullmatch(r"playing (\d+):(\d\d)/-:-- 100", line)
            assert m is not None, line
            if int(m[1]) >= 1:
                seen.append(int(m[1]) * 60 + int(m[2]))
        # one line a second (a tick late under load may skip one)
        assert all(1 <= b - a <= 2 for a, b in itertools.pairwise(seen)), out.seen
        assert out.seen[-3].startswith("playing 1:0"), out.seen
        # Paused, the line only changes with the session.
        dev.ctl("pause")
        paused = out.next()
        assert paused.startswith("paused 1:0"), paused
        dev.ctl("volume", "30")
        assert out.next() == paused.removesuffix("100") + "30"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_revoke_logs_a_device_out(acct: Account) -> None:
    room = acct.player("kitchen")
    line = acct.dev.ctl("revoke", "kitchen")
    assert "revoked kitchen" in line
    room.wait_closed()
    names = [d["name"] for d in acct.dev.json("ctl", "devices", "--all")]
    assert "kitchen" not in names
    assert "no device" in acct.dev.fails(5, "ctl", "revoke", "kitchen")


def test_watch_prints_one_json_line_per_change(acct: Account) -> None:
    dev = acct.dev
    proc = dev.popen("ctl", "watch")
    try:
        out = LineReader(proc.stdout)  # type: ignore[arg-type]
        first = json.loads(out.next())
        assert set(first) == STATUS_FIELDS and first["version"] == dev.status()["version"]

        dev.ctl("volume", "21")
        dev.ctl("repeat", "all")
        dev.ctl("shuffle", "on")
        dev.ctl("queue", "add", "--search", "ros")
        lines = [json.loads(out.next()) for _ in range(4)]
        assert [s["version"] for s in lines] == [first["version"] + i for i in range(1, 5)]
        assert all(set(s) == STATUS_FIELDS for s in lines)
        assert [s["volume"] for s in lines] == [21, 21, 21, 21]
        assert [s["repeat"] for s in lines] == ["off", "all", "all", "all"]
        assert [s["shuffle"] for s in lines] == [False, False, True, True]
        assert [s["queue_length"] for s in lines] == [0, 0, 0, 1]
        assert lines[-1] == dev.status() | {"position_ms": lines[-1]["position_ms"]}
        assert proc.poll() is None
        # watch is an observer: it is online but never a player, and keeps the device's name.
        me = {d["id"]: d for d in dev.json("ctl", "devices")}[dev.device_id()]
        assert me["online"] is True and me["active"] is False
        assert me["name"] == "laptop"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert "Traceback" not in err, err


# --- exit codes and one-line errors --------------------------------------------------

BAD_USAGE = [
    ("volume", "abc"),
    ("volume", "101"),
    ("volume", "5o"),
    ("seek", "x"),
    ("seek", "1:2:3:4"),
    ("seek", ""),
    ("repeat", "sometimes"),
    ("shuffle", "maybe"),
    ("queue", "move", "e1.0", "-1"),
    ("queue", "move", "e1.0", "first"),
    ("queue", "add"),
    ("queue", "remove"),
    ("search", "x", "--limit", "0"),
    ("history", "--limit", "0"),
    ("play", "--album", "a1", "--playlist", "p"),
    ("frobnicate",),
    (),
]


@pytest.mark.parametrize("args", BAD_USAGE, ids=lambda a: " ".join(a) or "nothing")
def test_bad_arguments_exit_2_with_one_line(idle: Device, args: tuple[str, ...]) -> None:
    before = idle.status()
    idle.fails(2, "ctl", *args)
    assert idle.status() == before


@pytest.mark.parametrize("args", BAD_USAGE, ids=lambda a: " ".join(a) or "nothing")
def test_bad_arguments_are_found_before_the_keyring_is_read(
    idle: Device, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Usage errors need no server, login or keyring: a hung keyring must not delay them.

    (With no server configured, ctl reads the login to find one: that must come after.)
    """
    config_dir = tmp_path / "fresh"
    fresh = Device(config_dir, {**idle.env, "TUNEHAND_CONFIG_DIR": str(config_dir)})
    hung = {"PYTHON_KEYRING_BACKEND": "tests.hanging_keyring.HangingKeyring"}
    line = error_line(fresh.run("ctl", *args, env=hung, timeout=4), 2)
    assert "keyring" not in line and "server" not in line and "log" not in line, line
    assert not config_dir.exists()  # reading a config leaves nothing behind


NOT_FOUND = [
    (("play", "tnosuchtrack00000000"), "tnosuchtrack"),
    (("play", "--playlist", "nope"), "nope"),
    (("play", "--album", "anosuchalbum"), "anosuchalbum"),
    (("play", "--search", "zzqqxx"), "zzqqxx"),
    (("queue", "add", "tnosuchtrack00000000"), "tnosuchtrack"),
    (("queue", "remove", "e999.0"), "e999.0"),
    (("queue", "move", "e999.0", "0"), "e999.0"),
    (("playlists", "show", "nope"), "nope"),
    (("playlists", "delete", "nope"), "nope"),
    (("like", "tnosuchtrack00000000"), "tnosuchtrack"),
    (("transfer", "garage"), "garage"),
]


@pytest.mark.parametrize("args,named", NOT_FOUND, ids=lambda a: " ".join(a))
def test_unknown_things_exit_5_naming_them(idle: Device, args: tuple[str, ...], named: str) -> None:
    assert named in idle.fails(5, "ctl", *args)


@pytest.mark.parametrize(
    "args,says",
    [(("next",), "empty"), (("prev",), "empty"), (("seek", "10"), "nothing to seek")],
    ids=lambda a: " ".join(a),
)
def test_refused_commands_exit_1_with_one_line(
    idle: Device, args: tuple[str, ...], says: str
) -> None:
    assert says in idle.fails(1, "ctl", *args)


def test_unreachable_server_exits_4(idle: Device, unused_url: str) -> None:
    # A login for that server (here a token from the environment) that cannot reach it.
    for args in (("status",), ("volume", "10"), ("queue", "--json"), ("devices",)):
        r = idle.run("ctl", "--server", unused_url, *args, env={"TUNEHAND_TOKEN": "tha_x"})
        line = error_line(r, 4)
        assert unused_url in line, line


@pytest.fixture
def unused_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_server_option_overrides_the_configured_server(idle: Device, unused_url: str) -> None:
    assert idle.server in (idle.config_dir / "config.toml").read_text()
    for args in (
        ("--server", unused_url, "ctl", "status"),
        ("ctl", "--server", unused_url, "status"),
        ("ctl", "status", "--server", unused_url),
    ):
        # This device's login is not for that server: its tokens are never sent there.
        line = error_line(idle.run(*args), 3)
        assert line.startswith(f"tunehand: not logged in to {unused_url}:"), line
    other_spelling = idle.server.replace("127.0.0.1", "localhost") + "/"
    assert idle.json("ctl", "status", "--server", other_spelling)["version"] >= 0


@pytest.mark.parametrize(
    "path,root_path",
    [("/v1", ""), ("/v1/", ""), ("/v1/session", ""), ("/nope", ""), ("/music/v1", "/music")],
)
def test_a_url_that_is_not_the_server_root_exits_2_naming_the_root(
    idle: Device, path: str, root_path: str
) -> None:
    """`--server http://host:port/v1` is a user's slip: the real server answers its route-miss
    404 (not a "not_found" of its own), so ctl names the root instead of 'Not Found' (exit 5)."""
    url = idle.server + path
    shown = url.rstrip("/")
    for args in (("status",), ("volume", "10"), ("queue", "--json"), ("devices",)):
        line = idle.fails(2, "ctl", "--server", url, *args)
        assert line == (
            f"tunehand: {shown} is not a tunehand server root (try {idle.server}{root_path})"
        ), line
    # The server's own 404s still mean "no such thing" (exit 5), at the root.
    assert "garage" in idle.fails(5, "ctl", "--server", idle.server, "transfer", "garage")


class _NotTunehand(http.server.BaseHTTPRequestHandler):
    """Another web server: a 404 page in HTML for every path."""

    def do_GET(self) -> None:
        body = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_url_of_another_web_server_exits_2(idle: Device) -> None:
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTunehand)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        line = idle.fails(2, "ctl", "--server", url, "status")
        assert line == (
            f"tunehand: {url} is not a tunehand server, or an older one without /v1/health"
        )
        line = idle.fails(2, "ctl", "--server", url + "/v1", "status")
        assert line == f"tunehand: {url}/v1 is not a tunehand server root (try {url})"
    finally:
        other.shutdown()
        other.server_close()
        thread.join(timeout=10)


# --- devices on one machine ----------------------------------------------------------


def test_config_dir_gives_each_device_its_own_identity(
    srv: ServerProc, pool: UserPool, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    user = pool.take()
    desk, couch = tmp_path / "desk", tmp_path / "couch"
    env = client_env(secret_service, tmp_path / "unused")
    del env["TUNEHAND_CONFIG_DIR"]
    # One by --config-dir, one by TUNEHAND_CONFIG_DIR.
    a = Device(tmp_path, env)
    r = a.run(
        "login", srv.url, "--config-dir", str(desk), "--user", user, "--password-stdin",
        "--device-name", "desk", input=PASSWORD + "\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    b = Device(couch, {**env, "TUNEHAND_CONFIG_DIR": str(couch)})
    assert b.login(srv.url, user, PASSWORD, "--device-name", "couch").returncode == 0

    desk_id = (desk / "device-id").read_text().strip()
    couch_id = (couch / "device-id").read_text().strip()
    assert desk_id != couch_id
    listed = {d["id"]: d["name"] for d in b.json("ctl", "devices", "--all")}
    assert listed == {desk_id: "desk", couch_id: "couch"}

    # Both logins live side by side in the keyring; logging one out leaves the other.
    b.ok("logout")
    b.fails(3, "ctl", "status")
    # --config-dir wins over TUNEHAND_CONFIG_DIR.
    assert b.json("--config-dir", str(desk), "ctl", "status")["version"] >= 0
    assert b.json("ctl", "--config-dir", str(desk), "status")["version"] >= 0
    assert a.json("ctl", "status", "--config-dir", str(desk))["version"] >= 0


# --- the server's life: SIGTERM / SIGINT -------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_stops_cleanly_and_keeps_every_write(
    sig: signal.Signals,
    srv: ServerProc,
    catalogue: Catalogue,
    tmp_path: Path,
    secret_service: dict[str, str],
) -> None:
    root = tmp_path / "server"
    first = launch(root, music=srv.music)
    second: ServerProc | None = None
    try:
        add_users(first, ["keeper"])
        dev = logged_in_device(first, "keeper", tmp_path / "laptop", secret_service)
        token = first.login("keeper", device_id=new_device_id())
        room = FakePlayer(first.url, token["access_token"], token["device_id"], "room").start()
        song = catalogue.id("Bernoulli")
        dev.ctl("play", song)
        dev.ctl("playlists", "save", "kept", song)
        dev.ctl("volume", "37")
        before = dev.status()
        in_flight = dev.popen("ctl", "queue", "add", song)

        assert first.stop(sig) == 0
        in_flight.communicate(timeout=30)
        room.wait_closed()
        assert "Traceback" not in "\n".join(first.log)
        line = dev.fails(4, "ctl", "status")
        assert first.url in line

        # The same server again: same data, same address (tokens belong to their server).
        port = first.url.rsplit(":", 1)[1]
        second = launch(root, music=srv.music, extra_args=("--port", port))
        assert second.url == first.url
        after = dev.json("ctl", "status")
        assert after["volume"] == 37
        assert [p["name"] for p in dev.json("ctl", "playlists")] == ["kept"]
        # A command that got its answer is kept (one that did not may or may not be).
        added = 1 if in_flight.returncode == 0 else 0
        assert in_flight.returncode in (0, 4), in_flight.returncode
        assert after["queue_length"] == before["queue_length"] + added
        # A shutdown does not count as losing the devices: they keep playing locally and
        # reconnect, so the session is exactly as it was (no extra version).
        assert after["track"]["id"] == song and after["playing"] is True
        assert after["device"] == before["device"]
        assert after["version"] == before["version"] + added
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0


# --- what `ctl` imports ---------------------------------------------------------------

_SHOW_MODULES = """
import json, sys
from tunehand.cli.main import main
sys.argv = ["tunehand", *sys.argv[1:]]
try:
    code = main(sys.argv[1:])
finally:
    with open({out!r}, "w") as f:
        json.dump(sorted(sys.modules), f)
sys.exit(code)
"""
HEAVY = ("textual", "mpv", "tunehand.server", "sqlalchemy", "starlette", "uvicorn", "alembic")


@pytest.mark.parametrize(
    "args",
    [("ctl", "status", "--json"), ("ctl", "queue"), ("auth", "status")],
    ids=lambda a: " ".join(a),
)
def test_client_commands_import_no_server_tui_or_mpv(
    idle: Device, tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = tmp_path / "modules.json"
    r = subprocess.run(
        [sys.executable, "-c", _SHOW_MODULES.format(out=str(out)), *args],
        capture_output=True,
        text=True,
        env=idle.env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    modules = json.loads(out.read_text())
    assert "tunehand.cli.main" in modules
    heavy = [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert heavy == []


OFF_THE_CTL_STATUS_PATH = (
    "textual",
    "mpv",
    "PIL",
    "sqlalchemy",
    "starlette",
    "httpx",
    "keyring",  # the fast path reads the Secret Service with jeepney, no backend discovery
    "secretstorage",
    "shutil",  # argparse's width comes from os.get_terminal_size
    "threading",  # only for the keyring fallback
    "encodings.idna",  # an ASCII host goes to getaddrinfo as bytes
    "dataclasses",
    "asyncio",
    "logging",
    "ssl",  # only for https servers
    "http.client",
    "email",
    "platformdirs",  # only when no config dir is given
)


def test_ctl_status_with_the_keyring_imports_only_what_it_needs(
    idle: Device, tmp_path: Path
) -> None:
    """`ctl status --json` (status bars run it every few seconds) with the login in the
    real keyring: none of the modules that would only add to its start-up time."""
    out = tmp_path / "modules.json"
    r = subprocess.run(
        [sys.executable, "-c", _SHOW_MODULES.format(out=str(out)), "ctl", "status", "--json"],
        capture_output=True,
        text=True,
        env=idle.env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] >= 0
    modules = json.loads(out.read_text())
    assert "jeepney" in modules  # the login came from the Secret Service's fast path
    found = [
        m
        for m in modules
        if m in OFF_THE_CTL_STATUS_PATH or m.split(".")[0] in OFF_THE_CTL_STATUS_PATH
    ]
    assert found == []
