"""Jams end to end: a real server, real receivers (mpv, ao=null), `ctl` in subprocesses.

Two and three accounts: start and join with the code, add from every account, who
added what (`ctl queue --json`, `status --json`), the role rules both ways (a guest is
refused pause, skip, seek, transfer and others' entries; the host lets guests control
and takes it back), kick (and no rejoining), leave and end (the guest's own session
comes back as it was), a host whose devices disconnect, and a guest on the other
instance (PostgreSQL + Redis).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_helpers import (
    DeviceDir,
    Receiver,
    Users,
    add_users,
    ctl,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    short_sock_dir,
    status,
)
from tests.fixtures_server import Backend, ServerProc, launch, two_instances
from tunehand.server.streams import KEY_ENV

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TRACKS = ("Jam One", "Jam Two", "Jam Three", "Jam Four")
TRACK_S = 60
CODE = re.compile(r"^[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}$")


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_mpv()
    music = tmp_path_factory.mktemp("jam-music")
    make_tones(music, TRACKS, album="Jam Tones", duration_s=TRACK_S)
    return music


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, music: Path) -> Iterator[Users]:
    srv = launch(tmp_path_factory.mktemp("jam-server"), music=music)
    users = [f"jam{i}" for i in range(16)]
    add_users(srv, users)
    with short_sock_dir("th-jam-") as sock_dir:
        yield Users(srv=srv, users=users, sock_dir=sock_dir)
        srv.stop()


@dataclass
class Person:
    """One account: a `ctl` device ("phone") and a receiver's device dir."""

    user: str
    phone: DeviceDir
    box: DeviceDir
    sock_dir: Path
    receivers: list[Receiver] = field(default_factory=list)

    def ctl(self, *args: str) -> str:
        return ctl_ok(self.phone, *args)

    def refused(self, *args: str) -> str:
        """A refused command: one line on stderr, a non-zero exit."""
        r = ctl(self.phone, *args)
        assert r.returncode != 0, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        return lines[0]

    def json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json"))

    def receiver(self) -> Receiver:
        r = Receiver.start(self.box, self.sock_dir)
        self.receivers.append(r)
        return r

    def queue(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.json("queue")["entries"]
        return entries


def person(srv: ServerProc, user: str, tmp: Path, sock_dir: Path) -> Person:
    phone = DeviceDir(f"{user}-phone", tmp / f"{user}-phone")
    box = DeviceDir(f"{user}-box", tmp / f"{user}-box")
    login_all(srv.url, user, [phone, box])
    return Person(user, phone, box, sock_dir)


@pytest.fixture
def people(world: Users, tmp_path: Path) -> Iterator[Callable[[], Person]]:
    made: list[Person] = []

    def make() -> Person:
        p = person(world.srv, world.user(), tmp_path, world.sock_dir)
        made.append(p)
        return p

    yield make
    for p in made:
        for r in p.receivers:
            r.stop()
            print(f"--- {r.lines.label} (exit {r.proc.returncode}):\n{r.lines.text()}")


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` (a subprocess or a query each time) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never happened: {check}"


def silent(r: Receiver) -> bool:
    return r.ipc.get("pause") is True or r.ipc.get("idle-active") is True


def start_jam(host: Person, *flags: str) -> str:
    out = host.json("jam", "start", *flags)
    assert set(out) == {"code", "url"} and CODE.match(out["code"]), out
    assert out["code"] in out["url"] and out["url"].startswith("http")
    code: str = out["code"]
    return code


def by_title(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["track"]["title"]: e["added_by"] for e in entries}


def test_two_accounts_share_one_queue_with_roles(people: Callable[[], Person]) -> None:
    host, guest = people(), people()
    hbox, gbox = host.receiver(), guest.receiver()
    # The guest's own session, to be kept aside: one entry, paused.
    guest.ctl("queue", "add", "--search", TRACKS[3])
    own_before = guest.queue()

    code = start_jam(host)
    assert host.json("jam", "start")["code"] == code  # asked again: the same jam
    host.ctl("play", "--search", TRACKS[0])
    hbox.ipc.wait_advancing(0.3)

    mark = gbox.mark()
    assert guest.ctl("jam", "join", code).strip() == f"joined {host.user}'s jam"
    gbox.wait_for(f"joined {host.user}'s jam", since=mark)

    # Both add; every entry says who added it, seen alike by both accounts.
    guest.ctl("queue", "add", "--search", TRACKS[1])
    host.ctl("queue", "add", "--search", TRACKS[2])
    want = {TRACKS[0]: host.user, TRACKS[1]: guest.user, TRACKS[2]: host.user}
    assert by_title(guest.queue()) == by_title(host.queue()) == want
    st = status(guest.phone)
    assert st["track"]["title"] == TRACKS[0] and st["added_by"] == host.user
    assert st["playing"] is True and st["jam"] == {"role": "guest"}
    assert st["device"]["name"] == hbox.dev.name  # the host's device, by name
    info = guest.json("jam")
    assert info["host"] == host.user and info["code"] == code
    assert info["guests_can_control"] is False
    assert [m["user"] for m in info["members"]] == [host.user, guest.user]
    assert info["members"][0]["devices"] and hbox.dev.name in info["members"][0]["devices"]
    assert gbox.dev.name in info["members"][1]["devices"]

    # A guest may not control playback or touch the host's entries ...
    entries = guest.queue()
    hosts_entry = next(e["entry_id"] for e in entries if e["added_by"] == host.user)
    own = next(e["entry_id"] for e in entries if e["added_by"] == guest.user)
    for args in (
        ("pause",),
        ("next",),
        ("seek", "10"),
        ("volume", "10"),
        ("transfer", gbox.dev.name),
        ("queue", "move", hosts_entry, "0"),
        ("queue", "remove", hosts_entry),
    ):
        line = guest.refused(*args)
        assert "host" in line, (args, line)
    assert status(host.phone)["playing"] is True and not silent(hbox)
    # ... but may move and remove its own.
    guest.ctl("queue", "move", own, "1")
    assert [e["entry_id"] for e in host.queue()][1] == own

    # The host lets guests control: the guest pauses the host's receiver.
    assert host.ctl("jam", "set", "--guests-can-control", "on").strip().endswith("on")
    guest.ctl("pause")
    hbox.ipc.wait_prop("pause", lambda v: v is True)
    # And takes it back: refused again.
    host.ctl("jam", "set", "--guests-can-control", "off")
    assert "host" in guest.refused("play")
    # The host may edit what the guest added.
    host.ctl("queue", "remove", own)
    assert guest.user not in by_title(guest.queue()).values()
    # Only the host ends the jam or kicks.
    assert "only the host" in guest.refused("jam", "end")
    assert "only the host" in guest.refused("jam", "kick", host.user)

    # Leaving: the guest's own session is back as it was, its receiver told so.
    mark = gbox.mark()
    guest.ctl("jam", "leave")
    gbox.wait_for(f"left {host.user}'s jam", since=mark)
    assert guest.queue() == own_before
    assert status(guest.phone)["jam"] is None
    assert "not in a jam" in guest.refused("jam")
    # The host's jam goes on without it.
    assert [m["user"] for m in host.json("jam")["members"]] == [host.user]
    assert by_title(host.queue()) == {TRACKS[0]: host.user, TRACKS[2]: host.user}


def test_three_accounts_kick_end_and_a_host_that_disconnects(
    people: Callable[[], Person],
) -> None:
    host, g1, g2 = people(), people(), people()
    hbox, box1, box2 = host.receiver(), g1.receiver(), g2.receiver()
    code = start_jam(host, "--guests-can-control")
    for g in (g1, g2):
        g.ctl("jam", "join", code.lower().replace("-", ""))  # as typed by hand
    host.ctl("queue", "add", "--search", TRACKS[0])
    g1.ctl("queue", "add", "--search", TRACKS[1])
    g2.ctl("queue", "next", "--search", TRACKS[2])
    want = {TRACKS[0]: host.user, TRACKS[1]: g1.user, TRACKS[2]: g2.user}
    for p in (host, g1, g2):
        assert by_title(p.queue()) == want
    assert host.json("jam")["guests_can_control"] is True

    # The guests may control: g2 plays the shared queue on its own receiver.
    g2.ctl("play", "--device", box2.dev.name)
    box2.ipc.wait_advancing(0.3)
    assert status(g1.phone)["device"]["name"] == box2.dev.name

    # Kicked: g2's receiver stops, the session pauses, g2 cannot come back.
    mark = box2.mark()
    host.ctl("jam", "kick", g2.user)
    box2.wait_for("removed you from the jam", since=mark)
    eventually(lambda: silent(box2))
    st = status(host.phone)
    assert st["playing"] is False and st["device"] is None
    assert "removed you" in g2.refused("jam", "join", code)
    assert status(g2.phone)["jam"] is None
    assert [m["user"] for m in g1.json("jam")["members"]] == [host.user, g1.user]

    # The host's devices disconnect: the jam and its queue stay; g1 plays on.
    hbox.stop()
    eventually(lambda: not g1.json("jam")["members"][0]["devices"] or None)
    g1.ctl("queue", "add", "--search", TRACKS[3])
    g1.ctl("play", "--device", box1.dev.name)
    box1.ipc.wait_advancing(0.3)
    assert by_title(g1.queue())[TRACKS[3]] == g1.user

    # The host ends the jam (from its phone): g1 is told and goes home.
    mark = box1.mark()
    host.ctl("jam", "end")
    box1.wait_for(f"{host.user} ended the jam", since=mark)
    eventually(lambda: silent(box1))
    assert "not in a jam" in g1.refused("jam")
    assert g1.queue() == []  # g1's own session, untouched by the jam
    assert "no jam with that code" in g1.refused("jam", "join", code)
    assert by_title(host.queue())[TRACKS[3]] == g1.user  # the host keeps the queue


def _entries(queue: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["entry_id"], e["track"]["id"], e["added_by"]) for e in queue]


def test_a_guest_adds_url_tracks_to_the_hosts_queue(people: Callable[[], Person]) -> None:
    """`queue add --url` / `queue next --url` / `play --url` as a guest: the remote
    track's row is the host's (every member's devices find it on the shared session),
    the entry says the guest added it; a URL the host has already is that same row."""
    host, guest = people(), people()
    host.receiver()  # `play` needs a device online
    own = f"http://radio.example/{secrets.token_hex(4)}/guest.mp3"
    shared = f"http://radio.example/{secrets.token_hex(4)}/both.ogg"
    host.ctl("queue", "add", "--url", shared)
    code = start_jam(host)
    guest.ctl("jam", "join", code)

    guest.ctl("queue", "add", "--url", own)
    guest.ctl("queue", "next", "--url", shared)
    entries = host.queue()
    assert guest.queue() == entries
    # (A remote track's title is its URL until a player learns its name.)
    got = [(e["track"]["title"], e["added_by"]) for e in entries]
    # `next` with nothing playing puts it first.
    assert got == [(shared, guest.user), (shared, host.user), (own, guest.user)], got
    assert entries[0]["track"]["id"] == entries[1]["track"]["id"]  # the host's row, once
    in_jam = entries[2]["track"]["id"]

    # Without control a guest may not replace what plays, URL or not: one line.
    assert "host" in guest.refused("play", "--url", own, "--no-wait")
    host.ctl("jam", "set", "--guests-can-control", "on")
    radio = f"http://radio.example/{secrets.token_hex(4)}/live"
    guest.ctl("play", "--url", radio, "--no-wait")
    entries = guest.queue()
    assert (radio, guest.user) in [(e["track"]["title"], e["added_by"]) for e in entries]
    # The host's receiver is trying the URL meanwhile (which entry is current, and its
    # failure, may change between the two reads): the entries themselves are the same.
    assert _entries(host.queue()) == _entries(entries)

    # Back home, a guest's URLs are its own again (its session, its rows).
    guest.ctl("jam", "leave")
    guest.ctl("queue", "add", "--url", own)
    mine = guest.queue()
    assert [(e["track"]["title"], e["added_by"]) for e in mine] == [(own, guest.user)]
    assert mine[0]["track"]["id"] != in_jam


def _subsonic(srv: ServerProc, user: str, password: str, method: str, **params: Any) -> Any:
    """One Subsonic call as an app makes it (token and salt), its JSON envelope."""
    salt = secrets.token_hex(6)
    token = hashlib.md5((password + salt).encode(), usedforsecurity=False).hexdigest()
    query = {"u": user, "t": token, "s": salt, "v": "1.16.1", "c": "Symfonium", "f": "json"}
    r = httpx.get(f"{srv.url}/rest/{method}", params={**query, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["subsonic-response"]


def test_a_guests_subsonic_app_is_on_the_jam(people: Callable[[], Person], world: Users) -> None:
    """A guest's Subsonic app reads the jam's queue and saves over it only as the guest's
    role allows (error 50, the queue kept); back home, it is on the guest's own session."""
    host, guest = people(), people()
    host.ctl("queue", "add", "--search", TRACKS[0])
    host.ctl("queue", "add", "--search", TRACKS[1])
    ids = [e["track"]["id"] for e in host.queue()]
    code = start_jam(host)
    guest.ctl("jam", "join", code)
    password = guest.json("app-passwords", "create", "phone")["password"]

    def app(method: str, **params: Any) -> Any:
        return _subsonic(world.srv, guest.user, password, method, **params)

    got = app("getPlayQueue")
    assert got["status"] == "ok", got
    assert [e["id"] for e in got["playQueue"]["entry"]] == ids

    refused = app("savePlayQueue", id=[ids[1]], current=ids[1], position="1500")
    assert refused["status"] == "failed" and refused["error"]["code"] == 50, refused
    assert "host" in refused["error"]["message"]
    assert [e["track"]["id"] for e in host.queue()] == ids

    host.ctl("jam", "set", "--guests-can-control", "on")
    assert app("getPlayQueue")["status"] == "ok"
    saved = app("savePlayQueue", id=[ids[1], ids[0]], current=ids[1], position="1500")
    assert saved["status"] == "ok", saved
    entries = host.queue()
    assert [e["track"]["id"] for e in entries] == [ids[1], ids[0]]
    assert [e["added_by"] for e in entries] == [guest.user, guest.user]
    st = host.json("status")
    assert st["track"]["id"] == ids[1] and not st["playing"] and st["position_ms"] == 1500

    guest.ctl("jam", "leave")
    home = app("getPlayQueue")
    assert home["status"] == "ok" and not home["playQueue"].get("entry"), home


def test_a_guests_mpd_frontend_shows_who_added_what_and_refuses_in_one_line(
    people: Callable[[], Person],
) -> None:
    """python-mpd2 on a guest's `tunehand mpd`: the shared queue with `AddedBy` for every
    entry, an add from it attributed to the guest, and without control a refused
    `pause` is an MPD error naming the host (the queue and playback untouched)."""
    import mpd
    from tests.cli_helpers import LineReader
    from tests.test_mpd import stop_proc

    host, guest = people(), people()
    host.receiver()
    host.ctl("queue", "add", "--search", TRACKS[0])
    code = start_jam(host)
    guest.ctl("jam", "join", code)
    proc = subprocess.Popen(
        guest.phone.cmd("mpd", "--port", "0"),
        env=guest.phone.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = LineReader(proc.stdout).next(30)
        assert line.startswith("mpd frontend listening on 127.0.0.1:"), line
        client = mpd.MPDClient()
        client.timeout = 20
        client.connect("127.0.0.1", int(line.rsplit(":", 1)[1]))
        try:
            found = client.search("title", TRACKS[1])
            assert [f["title"] for f in found] == [TRACKS[1]], found
            client.add(found[0]["file"])
            listed = eventually(lambda: len(q := client.playlistinfo()) == 2 and q)
            assert [(e["title"], e.get("addedby")) for e in listed] == [
                (TRACKS[0], host.user),
                (TRACKS[1], guest.user),
            ], listed
            host.ctl("play")
            eventually(lambda: client.status()["state"] == "play")
            with pytest.raises(mpd.CommandError) as refused:
                client.pause(1)
            assert "host" in str(refused.value), refused.value
            assert client.status()["state"] == "play"
            assert by_title(host.queue()) == {TRACKS[0]: host.user, TRACKS[1]: guest.user}
        finally:
            client.disconnect()
    finally:
        stop_proc(proc)


def test_a_wrong_code_is_refused_and_throttled(people: Callable[[], Person]) -> None:
    # (Last of the module's tests on this server: the throttle it sets off holds the
    # address's next joins back for a while.)
    guest = people()
    lines = [guest.refused("jam", "join", "BCDF-GHJK") for _ in range(8)]
    assert "no jam with that code" in lines[0]
    assert any("try again in" in line for line in lines), lines
    assert "jam join" in ctl(guest.phone, "jam", "join", "--help").stdout


# --- a guest on the other instance (PostgreSQL + Redis) ------------------------------


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_backend: Backend, music: Path
) -> Iterator[tuple[ServerProc, ServerProc]]:
    # Instances of one deployment sign stream links with one key (a guest's receiver on
    # B plays what A signed for the host's session).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, secrets.token_hex(32))
        with two_instances(tmp_path_factory, postgres_backend.store(), music) as both:
            add_users(both[0], ["hostx", "guestx"])
            yield both


def test_a_guest_on_the_other_instance(pair: tuple[ServerProc, ServerProc], tmp_path: Path) -> None:
    a, b = pair
    with short_sock_dir("th-jamx-") as sock_dir:
        host = person(a, "hostx", tmp_path, sock_dir)
        guest = person(b, "guestx", tmp_path, sock_dir)
        hbox, gbox = host.receiver(), guest.receiver()
        try:
            code = start_jam(host)
            host.ctl("play", "--search", TRACKS[0])
            hbox.ipc.wait_advancing(0.3)
            mark = gbox.mark()
            guest.ctl("jam", "join", code)  # on instance B
            gbox.wait_for("joined hostx's jam", since=mark)
            guest.ctl("queue", "add", "--search", TRACKS[1])
            assert by_title(host.queue()) == {TRACKS[0]: "hostx", TRACKS[1]: "guestx"}
            assert "host" in guest.refused("next")
            # The host pushes playback to the guest's receiver, across instances.
            host.ctl("transfer", gbox.dev.name)
            gbox.ipc.wait_advancing(0.3)
            eventually(lambda: silent(hbox))
            # Ending on A sends the guest's devices on B home, paused.
            mark = gbox.mark()
            host.ctl("jam", "end")
            gbox.wait_for("hostx ended the jam", since=mark)
            eventually(lambda: silent(gbox))
            assert guest.queue() == []
            st = status(host.phone)
            assert st["playing"] is False and st["queue_length"] == 2
        finally:
            for r in (hbox, gbox):
                r.stop()
