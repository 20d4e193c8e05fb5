"""`tunehand mpd` driven by python-mpd2 (the MPD client library many clients are built
on), against a real server with cover art in its library and a real `tunehand mpd`
process: outputs with ids that never change, play with no device active, library
rescans, cover art in binary chunks, stored playlist edits, the queue commands that
were missing, client-to-client messages, and the options the session has no notion of
(answered as MPD answers a player without them, never with a wrong success).

The fixtures (`start_mpd`, the fake playing devices) are tests.test_mpd's, on this
module's own server.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

import mpd
from tests.audiogen import make_track
from tests.cli_helpers import FakePlayer, UserPool
from tests.fixtures_server import Backend, ServerProc, launch
from tests.test_art import _library
from tests.test_mpd import Mpd, start_mpd

__all__ = ["start_mpd"]  # the fixture, used here on this module's server

TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[ServerProc]:
    """A server of its own: `update` adds tracks to its library, and some have covers."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    root = tmp_path_factory.mktemp("mpd-clients")
    s = launch(root, music=_library(root), store=backend.store())
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pool(srv: ServerProc) -> UserPool:
    return UserPool(srv, "mpdc")


@pytest.fixture
def clients() -> Iterator[Callable[[Mpd], mpd.MPDClient]]:
    made: list[mpd.MPDClient] = []

    def connect(m: Mpd) -> mpd.MPDClient:
        c = mpd.MPDClient()
        c.timeout = TIMEOUT_S
        c.idletimeout = TIMEOUT_S
        c.connect("127.0.0.1", m.port)
        made.append(c)
        return c

    yield connect
    for c in made:
        with contextlib.suppress(mpd.ConnectionError, OSError):
            c.disconnect()


def _outputs(c: mpd.MPDClient) -> dict[str, dict[str, Any]]:
    return {o["outputname"]: o for o in c.outputs()}


def _until_outputs(c: mpd.MPDClient, pred: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
    """Wait for the outputs to satisfy `pred`: each round waits for an `output` event."""
    deadline = time.monotonic() + TIMEOUT_S
    while not pred(_outputs(c)):
        assert time.monotonic() < deadline, _outputs(c)
        c.idle("output")


def _ack(exc: pytest.ExceptionInfo[mpd.CommandError]) -> str:
    return str(exc.value)


def _ids(c: mpd.MPDClient) -> dict[str, str]:
    """Track id by title, over the whole library."""
    return {s["title"]: s["file"] for s in c.listallinfo() if "file" in s}


# --- outputs ------------------------------------------------------------------------------


def test_outputs_are_devices_that_play_with_ids_that_never_change(
    srv: ServerProc, start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=2)
    room0, room1 = m.players
    srv.login(m.user)  # a REST login: it cannot play, it is no output
    c = clients(m)
    assert c.mpd_version == "0.23.5"
    outs = _outputs(c)
    # The frontend's own device and REST logins are no outputs; numbered in name order.
    assert set(outs) == {"room0", "room1"}
    assert (outs["room0"]["outputid"], outs["room1"]["outputid"]) == ("0", "1")
    assert outs["room0"]["attribute"] == "device=online"
    # A new device that sorts first gets the next id: kitchen stays where it was.
    tok = srv.login(m.user)
    new = FakePlayer(srv.url, tok["access_token"], tok["device_id"], "aaa-new").start()
    m.players.append(new)
    _until_outputs(c, lambda o: "aaa-new" in o)
    outs = _outputs(c)
    assert [outs[n]["outputid"] for n in ("room0", "room1", "aaa-new")] == ["0", "1", "2"]
    # An offline device is listed, disabled, and says so; enabling it names it.
    room1.close()
    _until_outputs(c, lambda o: "room1 (offline)" in o)
    gone = _outputs(c)["room1 (offline)"]
    assert (gone["outputid"], gone["outputenabled"], gone["attribute"]) == (
        "1",
        "0",
        "device=offline",
    )
    with pytest.raises(mpd.CommandError) as exc:
        c.enableoutput(1)
    assert "room1 is offline" in _ack(exc)
    assert room1.device_id not in _ack(exc)
    # Back online without the "play" capability (another kind of login on its id).
    mute = FakePlayer(srv.url, room1.token, room1.device_id, "room1", capabilities=()).start()
    m.players.append(mute)
    _until_outputs(c, lambda o: "room1 (cannot play)" in o)
    assert _outputs(c)["room1 (cannot play)"]["attribute"] == "device=cannot-play"
    with pytest.raises(mpd.CommandError) as exc:
        c.enableoutput(1)
    assert "room1 cannot play" in _ack(exc)
    mute.close()
    _until_outputs(c, lambda o: "room1 (offline)" in o)
    with pytest.raises(mpd.CommandError) as exc:
        c.enableoutput(7)
    assert _ack(exc) == "[50@0] {enableoutput} No such audio output"
    # Enabling transfers there; disabling the active output pauses it and shows it off.
    c.add(_ids(c)["Red flac"])
    c.enableoutput(0)
    room0.wait_state(lambda s: s["active_device"] == room0.device_id)
    c.play()
    room0.wait_state(lambda s: s["position"]["playing"])
    assert _outputs(c)["room0"]["outputenabled"] == "1"
    c.disableoutput(0)
    room0.wait_state(lambda s: not s["position"]["playing"])
    assert _outputs(c)["room0"]["outputenabled"] == "0"
    assert c.status()["state"] == "pause"
    c.toggleoutput(0)  # enabled again (the session stays paused, as MPD's would)
    assert _outputs(c)["room0"]["outputenabled"] == "1"
    # A restart keeps every id (they are kept in the config dir).
    c.disconnect()
    m.restart()
    c2 = clients(m)
    outs = _outputs(c2)
    assert [outs[n]["outputid"] for n in ("room0", "room1 (offline)", "aaa-new")] == [
        "0",
        "1",
        "2",
    ]


def test_play_with_no_device_active(
    srv: ServerProc, start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    # Several devices, none active, no default: the refusal names them.
    m = start_mpd(players=2)
    c = clients(m)
    c.add(_ids(c)["Red flac"])
    with pytest.raises(mpd.CommandError) as exc:
        c.play()
    assert "no device is active; enable one of the outputs: room0, room1" in _ack(exc)
    assert not any(p.device_id in _ack(exc) for p in m.players)
    c.pause()  # nothing plays: pause is a no-op, as MPD's
    c.clear()
    c.play()  # an empty queue: MPD does nothing
    assert c.status()["state"] == "stop"
    for call, args in ((c.next, ()), (c.previous, ()), (c.seekcur, (1,))):
        with pytest.raises(mpd.CommandError) as exc:
            call(*args)
        assert _ack(exc).endswith("Not playing") and _ack(exc).startswith("[55@0]"), _ack(exc)


def test_play_goes_to_the_last_active_device_then_the_default_output(
    srv: ServerProc, start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=3, args=("--default-output", "room2"))
    room0, room1, room2 = m.players
    c = clients(m)
    c.add(_ids(c)["Red flac"])
    c.play()  # no device was ever active here: the default output
    room2.wait_state(lambda s: s["active_device"] == room2.device_id and s["position"]["playing"])
    c.enableoutput(int(_outputs(c)["room0"]["outputid"]))
    room0.wait_state(lambda s: s["active_device"] == room0.device_id)
    # room0 goes away (the session pauses, no device is active) and comes back.
    room0.close()
    room1.wait_state(lambda s: s["active_device"] is None)
    back = FakePlayer(srv.url, room0.token, room0.device_id, "room0").start()
    m.players.append(back)
    _until_outputs(c, lambda o: "room0" in o)
    c.play()  # the last active device, before the default output
    back.wait_state(lambda s: s["active_device"] == back.device_id and s["position"]["playing"])


# --- the library: rescans and cover art -------------------------------------------------------


def test_update_rescans_the_library(
    srv: ServerProc, start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    songs = int(c.stats()["songs"])
    make_track(srv.music / "New Band" / "New", "01 new", "ogg", title="Brand new", album="New")
    c.command_list_ok_begin()
    c.update()
    c.status()
    job, status = c.command_list_end()
    assert status["updating_db"] == job == "1"
    events: set[str] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while "updating_db" in c.status():  # each round waits for an `update` event
        assert time.monotonic() < deadline
        events |= set(c.idle("update", "database"))
    events |= set(c.idle("update", "database")) if "database" not in events else set()
    assert {"update", "database"} <= events
    assert int(c.stats()["songs"]) == songs + 1
    assert c.search("title", "brand new")[0]["title"] == "Brand new"
    assert c.rescan() == "2"  # rescan is update (the server rescans what changed)


def _updated(c: mpd.MPDClient, job: str) -> None:
    """Wait for update `job` to end: each round waits for an `update` event."""
    deadline = time.monotonic() + TIMEOUT_S
    while c.status().get("updating_db") == job:
        assert time.monotonic() < deadline, "the update did not end"
        c.idle("update")


def _titles(c: mpd.MPDClient) -> set[str]:
    return {s["title"] for s in c.listallinfo() if "file" in s}


def test_update_and_rescan_with_a_path_scan_that_subtree_only(
    srv: ServerProc, start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    blue = c.search("title", "Blue one")[0]
    blue_dir = (
        f"{blue.get('albumartist') or blue.get('artist') or 'Unknown artist'}/{blue['album']}"
    )
    assert any(d.get("directory") == blue_dir for d in c.lsinfo(blue_dir.split("/")[0]))
    plain_file = c.search("title", "Plain one")[0]["file"]
    album_dir, plain_dir = srv.music / "Blue Band" / "Blue Album", srv.music / "Plain"
    make_track(album_dir, "03 third", "ogg", title="Third song", album="Blue")
    extra = make_track(plain_dir, "02 plain two", "ogg", title="Plain two", album="Plain")

    # The album's directory: its folder is scanned, the other folder is not.
    _updated(c, c.update(blue_dir))
    titles = _titles(c)
    assert "Third song" in titles and "Plain two" not in titles, titles
    # A song's file: its folder is scanned (rescan is update, with a path too).
    _updated(c, c.rescan(plain_file))
    assert "Plain two" in _titles(c)

    # Removed files go only when their folder is scanned; an artist is a directory too.
    extra.unlink()
    make_track(album_dir, "04 fourth", "ogg", title="Fourth song", album="Blue")
    _updated(c, c.update(plain_file))
    titles = _titles(c)
    assert "Plain two" not in titles and "Fourth song" not in titles, titles
    _updated(c, c.update(blue_dir.split("/")[0]))
    assert {"Third song", "Fourth song", "Plain one"} <= _titles(c)

    with pytest.raises(mpd.CommandError) as exc:
        c.update("No Such Artist/Nothing")
    assert _ack(exc) == "[50@0] {update} No such directory"


def test_albumart_and_readpicture_send_the_cover_in_chunks(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    ids = _ids(c)
    art = c.albumart(ids["Red flac"])["binary"]
    assert Image.open(io.BytesIO(art)).size == (512, 512)  # the server's default size
    c.binarylimit(100)  # many small chunks, joined by the client
    assert c.albumart(ids["Red mp3"])["binary"] == art  # the same cover
    pic = c.readpicture(ids["Red ogg"])
    assert (pic["type"], pic["binary"]) == ("image/jpeg", art)
    assert Image.open(io.BytesIO(c.albumart(ids["Blue one"])["binary"])).size == (512, 384)
    with pytest.raises(mpd.CommandError) as exc:
        c.albumart(ids["Plain one"])
    assert _ack(exc) == "[50@0] {albumart} No file exists"
    assert c.readpicture(ids["Plain one"]) == {}  # no picture: an empty answer
    with pytest.raises(mpd.CommandError) as exc:
        c.binarylimit(10)
    assert "[2@0] {binarylimit}" in _ack(exc)


# --- playlists and the queue -------------------------------------------------------------------


def test_stored_playlist_edits(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    ids = _ids(c)
    a, b, d, e = (ids[t] for t in ("Red flac", "Red mp3", "Blue one", "Blue two"))
    for t in (a, b, d, e):
        c.playlistadd("mine", t)
    c.playlistdelete("mine", 1)
    assert c.listplaylist("mine") == [a, d, e]
    c.playlistmove("mine", 0, 2)
    assert c.listplaylist("mine") == [d, e, a]
    with pytest.raises(mpd.CommandError) as exc:
        c.playlistdelete("mine", 5)
    assert _ack(exc).startswith("[2@0] {playlistdelete}")
    c.rename("mine", "ours")
    assert [p["playlist"] for p in c.listplaylists()] == ["ours"]
    c.playlistadd("other", a)
    with pytest.raises(mpd.CommandError) as exc:
        c.rename("ours", "other")
    assert _ack(exc) == "[56@0] {rename} Playlist already exists"
    with pytest.raises(mpd.CommandError) as exc:
        c.rename("nope", "x")
    assert _ack(exc) == "[50@0] {rename} No such playlist"
    c.searchaddpl("other", "title", "blue")
    assert c.listplaylist("other") == [a, d, e]
    c.playlistclear("ours")
    assert c.listplaylist("ours") == []
    assert {p["playlist"] for p in c.listplaylists()} == {"ours", "other"}
    with pytest.raises(mpd.CommandError) as exc:
        c.playlistclear("nope")
    assert _ack(exc) == "[50@0] {playlistclear} No such playlist"


def test_queue_search_swap_and_priorities(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    ids = _ids(c)
    for t in ("Red flac", "Blue one", "Red mp3"):
        c.add(ids[t])
    assert c.playlist() == [f"file: {ids[t]}" for t in ("Red flac", "Blue one", "Red mp3")]
    found = c.playlistsearch("title", "red")  # any case, part of the value
    assert [(s["title"], s["pos"]) for s in found] == [("Red flac", "0"), ("Red mp3", "2")]
    assert [s["title"] for s in c.playlistfind("title", "Blue one")] == ["Blue one"]
    assert c.playlistfind("title", "blue one") == []  # find is exact
    c.swap(0, 2)
    assert [s["title"] for s in c.playlistinfo()] == ["Red mp3", "Blue one", "Red flac"]
    first, _, last = (s["id"] for s in c.playlistinfo())
    c.swapid(first, last)
    assert [s["title"] for s in c.playlistinfo()] == ["Red flac", "Blue one", "Red mp3"]
    with pytest.raises(mpd.CommandError) as exc:
        c.swap(0, 9)
    assert _ack(exc) == "[2@0] {swap} Bad song index"
    c.prio(0, "0:2")  # every song has priority 0
    c.prioid(0, first)
    with pytest.raises(mpd.CommandError) as exc:
        c.prio(5, "0")
    assert _ack(exc).startswith("[2@0] {prio} prio: the session has no priorities")
    with pytest.raises(mpd.CommandError) as exc:
        c.prio(300, "0")
    assert _ack(exc) == "[2@0] {prio} Priority out of range: 300"
    with pytest.raises(mpd.CommandError) as exc:
        c.prioid(0, "999")
    assert _ack(exc) == "[50@0] {prioid} No such song"


def test_list_group_and_stats(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=1)
    c = clients(m)
    grouped = c.list("album", "group", "artist")
    red = [g for g in grouped if g.get("album") == "Red"]
    assert len(red) == 1 and red[0]["artist"]  # each album with its group's value
    raw = m.raw().cmd("list album group artist")
    assert raw[-1] == "OK"
    heads = [x for x in raw if x.startswith("Artist: ")]
    assert len(heads) == len(set(heads))  # a group's line comes once, before its albums
    with pytest.raises(mpd.CommandError):
        c.list("album", "group", "nosuchtag")
    stats = c.stats()
    assert stats["playtime"] == "0"
    c.add(_ids(c)["Red flac"])
    c.play()
    m.players[0].wait_state(lambda s: s["position"]["playing"])
    # playtime counts whole seconds played: no event says one has passed, so poll.
    deadline = time.monotonic() + TIMEOUT_S
    while int(c.stats()["playtime"]) < 1:
        assert time.monotonic() < deadline
        c.ping()
    assert int(c.stats()["playtime"]) <= int(c.stats()["uptime"]) + 1


# --- messages between clients --------------------------------------------------------------


def test_subscribe_channels_and_messages(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    a, b = clients(m), clients(m)
    a.subscribe("chat")
    assert b.channels() == ["chat"]
    assert b.idle("subscription") == ["subscription"]
    b.sendmessage("chat", "hello there")
    assert a.idle("message") == ["message"]
    assert a.readmessages() == [{"channel": "chat", "message": "hello there"}]
    assert a.readmessages() == []
    with pytest.raises(mpd.CommandError) as exc:
        a.subscribe("chat")
    assert _ack(exc) == "[56@0] {subscribe} already subscribed to this channel"
    with pytest.raises(mpd.CommandError) as exc:
        a.subscribe("no spaces")
    assert _ack(exc) == "[2@0] {subscribe} invalid channel name"
    with pytest.raises(mpd.CommandError) as exc:
        b.sendmessage("nobody", "x")
    assert _ack(exc) == "[50@0] {sendmessage} nobody is subscribed to this channel"
    a.unsubscribe("chat")
    assert b.channels() == []
    with pytest.raises(mpd.CommandError) as exc:
        a.unsubscribe("chat")
    assert _ack(exc) == "[50@0] {unsubscribe} not subscribed to this channel"


# --- what the session has no notion of ---------------------------------------------------------


def test_options_the_session_lacks_are_refused_not_faked(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=0)
    c = clients(m)
    c.consume(0)
    c.crossfade(0)
    c.replay_gain_mode("off")
    assert c.replay_gain_status() == "off"
    assert c.listpartitions() == [{"partition": "default"}]
    c.partition("default")
    for call, args, ack in (
        (c.consume, (1,), "[2@0] {consume} consume: the session keeps played songs"),
        (c.crossfade, (3,), "[2@0] {crossfade} crossfade: the devices play gaplessly"),
        (c.replay_gain_mode, ("track",), "[2@0] {replay_gain_mode} replay_gain_mode: "),
        (c.replay_gain_mode, ("loud",), "[2@0] {replay_gain_mode} Unrecognized replay gain"),
        (c.single, ("oneshot",), "[2@0] {single} single oneshot: the session cannot stop"),
        (c.partition, ("other",), "[50@0] {partition} partition does not exist"),
    ):
        with pytest.raises(mpd.CommandError) as exc:
            call(*args)
        assert _ack(exc).startswith(ack), _ack(exc)
    status = c.status()
    assert (status["consume"], status["single"]) == ("0", "0")
    assert "xfade" not in status
    commands = set(c.commands())
    assert {"albumart", "readpicture", "update", "playlistdelete", "swap", "subscribe"} <= commands


# --- the real `mpc` on the same commands ------------------------------------------------------


@pytest.mark.skipif(shutil.which("mpc") is None, reason="needs mpc (apt mpc)")
def test_mpc_update_searchplay_albumart_and_options(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    m = start_mpd(players=1)
    room = m.players[0]
    c = clients(m)
    ids = _ids(c)
    m.mpc("--wait", "update")  # returns once `updating_db` is gone (it waits on idle)
    assert "updating_db" not in c.status()
    for t in ("Red flac", "Blue one", "Red mp3"):
        c.add(ids[t])
    out = m.mpc("searchplay", "Blue one")  # playlistsearch, then play that position
    assert "[playing] #2/3" in out
    room.wait_state(lambda s: s["position"]["playing"])
    art = subprocess.run(
        ["mpc", "-h", "127.0.0.1", "-p", str(m.port), "albumart", ids["Red flac"]],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=True,
    ).stdout
    assert art == c.albumart(ids["Red flac"])["binary"]
    assert m.mpc("replaygain").strip() == "replay_gain_mode: off"
    refused = m.mpc_run("consume", "on")
    assert refused.returncode != 0 and "played songs" in refused.stderr
    assert m.mpc("channels") == ""


# --- bad arguments --------------------------------------------------------------------------

ODD_ARGS = (
    [],
    [""],
    ["", "0"],
    ["x"],
    ["1"],
    ["-1"],
    ["0:1"],
    ["1:"],
    ["9999"],
    ["x", "y"],
    ["1", "2", "3"],
)
NOT_SWEPT = frozenset({"close", "password", "idle", "noidle", "update", "rescan"})


def test_every_command_answers_odd_arguments_with_one_line(
    start_mpd: Callable[..., Mpd], clients: Callable[[Mpd], mpd.MPDClient]
) -> None:
    """Each command, with no, junk, negative, range and too many arguments: an answer or
    one ACK line, never an internal error, and the connection stays."""
    m = start_mpd(players=0)
    c = clients(m)
    ids = _ids(c)
    c.add(ids["Red flac"])
    c.playlistadd("mine", ids["Red flac"])
    r = m.raw()
    names = [x.split(": ", 1)[1] for x in r.cmd("commands")[:-1]]
    assert len(names) > 80
    for name in names:
        if name in NOT_SWEPT or name.startswith("command_list"):
            continue
        for args in ODD_ARGS:
            line = " ".join([name, *(f'"{a}"' for a in args)])
            out = r.cmd(line)
            assert out[-1] == "OK" or out[-1].startswith("ACK ["), (line, out)
            assert "internal error" not in out[-1], (line, out)
            assert "not a tunehand server" not in out[-1], (line, out)  # a request to no route
        assert r.cmd("ping") == ["OK"]
