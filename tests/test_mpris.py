"""MPRIS and desktop notifications, end to end on a private D-Bus session bus.

A private `dbus-daemon` (no service activation), a real server, real receivers (mpv,
ao=null) whose DBUS_SESSION_BUS_ADDRESS points at that bus, and the real `playerctl`.
`BusPeer` is the test's own connection to the bus, on an asyncio loop in a thread: it
owns org.freedesktop.Notifications (a fake daemon that records every Notify with its
sender), records the MPRIS `Seeked` signals, and counts every change a player announces
(PropertiesChanged on /org/mpris/MediaPlayer2, `Seeked`, an MPRIS name coming or going).
A device with no bus (the default `device_env`) stands for another machine.

Nothing polls: `BusPeer.until` reads a value (one playerctl call) and, while it is not
the one awaited, waits for the next announced change before reading again; the session
as a whole is followed with `tunehand ctl watch`, and mpv's position through its IPC
(mpv pushes every change). Every wait has a deadline and names the last value seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.audiogen import embed_picture, make_picture, make_track
from tests.device_helpers import (
    DeviceDir,
    Receiver,
    add_users,
    ctl,
    ctl_ok,
    live_tui,
    login_all,
    make_tones,
    require_mpv,
    short_sock_dir,
    status,
    wait_app,
    watching,
)
from tests.fixtures_keyring import _BUS_CONF, _stop
from tests.fixtures_server import ServerProc, launch
from tests.icy_server import STATION, Radio, running_radio

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None
    or shutil.which("playerctl") is None
    or shutil.which("dbus-daemon") is None,
    reason="needs sox, playerctl and dbus-daemon",
)

TRACKS = ("Tone Alpha", "Tone Beta", "Tone Gamma")
TRACK_S = 40
MPRIS = "org.mpris.MediaPlayer2.tunehand"
MPRIS_NS = "org.mpris.MediaPlayer2"
MPRIS_PATH = "/org/mpris/MediaPlayer2"
WAIT_S = 20.0
ART = make_picture(700, 700, (30, 90, 200))
LRC = "[00:00.00]la la alpha\n[00:05.00]second line\n"


# --- the pure parts --------------------------------------------------------------------


def _snap(current: str | None, device: str | None, *, connected: bool = True) -> Any:
    from tunehand.core.model import DeviceInfo, Entry, SessionState
    from tunehand.core.protocol import TrackView
    from tunehand.core.snapshot import Snapshot

    queue = (Entry("e1", "t1"), Entry("e2", "t2"))
    titles = {"e1": "One", "e2": "Two"}
    track = TrackView(current, titles[current], "Ann") if current else None
    devices = (DeviceInfo("d1", "kitchen"), DeviceInfo("d2", "desk"))
    state = SessionState(queue=queue, current=current, active_device=device)
    return Snapshot("d1", connected, state, track, devices, 0, 0)


def test_notices_follow_track_changes_and_handoffs() -> None:
    from tunehand.desktop.notify import Notices

    n = Notices()
    assert n.feed(_snap("e1", "d1", connected=False)) == []
    assert n.feed(_snap("e1", "d1")) == []  # the baseline
    assert n.feed(_snap("e1", "d1")) == []
    assert n.feed(_snap("e2", "d1")) == [("Now playing", "Now playing Two — Ann on kitchen")]
    assert n.feed(_snap("e2", "d2")) == [("Playback moved", "Playback moved to desk")]
    assert n.feed(_snap("e1", None)) == []  # nothing plays anywhere: nothing to say
    assert n.feed(_snap("e2", "d1")) == [("Now playing", "Now playing Two — Ann on kitchen")]


def test_properties_read_what_was_announced_while_a_command_is_in_flight() -> None:
    """A reader asking between the announcement of a prediction and the server's answer
    (playerctl reads all properties afresh) sees the announced value: otherwise the
    answer, equal to what was announced, announces nothing and the reader waits forever."""
    from tunehand.core import session as core
    from tunehand.core.commands import Command
    from tunehand.core.mirror import Mirror
    from tunehand.core.model import SessionState
    from tunehand.core.protocol import StateMsg
    from tunehand.core.snapshot import Snapshot
    from tunehand.desktop.mpris import PlayerIface

    class Agent:  # the parts of the client's agent that PlayerIface reads
        def __init__(self) -> None:
            self.mirror = Mirror()

        def shown(self) -> SessionState:
            return self.mirror.shown(core.Context(0))

        def position_ms(self) -> int:
            return 0

    agent = Agent()
    iface = PlayerIface(agent)  # type: ignore[arg-type]
    announced: list[dict[str, Any]] = []
    iface.emit_properties_changed = announced.append  # type: ignore[method-assign]

    def publish() -> None:
        iface.publish(Snapshot("d1", True, agent.shown(), None, (), 0, 0))

    publish()
    assert iface.Shuffle is False and iface.LoopStatus == "None"
    for op, fields in (("shuffle", {"on": True}), ("repeat", {"mode": "all"})):
        agent.mirror.predict(Command(op=op, command_id=op, **fields), core.Context(0))
    publish()
    assert announced[-1] == {"Shuffle": True, "LoopStatus": "Playlist"}
    assert (iface.Shuffle, iface.LoopStatus) == (True, "Playlist")
    server = core.apply(
        SessionState(), Command(op="shuffle", command_id="x", on=True), core.Context(0)
    )
    agent.mirror.on_state(StateMsg(1, server.state, command_id="shuffle"))
    publish()  # the answer for shuffle came; repeat is still in flight
    assert (iface.Shuffle, iface.LoopStatus) == (True, "Playlist")
    assert len(announced) == 2, announced


async def test_play_with_no_active_device_plays_here_or_names_the_devices() -> None:
    """MPRIS Play with no device active: on a device that plays, it plays there (its
    media key); on one that cannot, the refusal names the devices by name, not id."""
    from dbus_fast import DBusError

    from tunehand.core.commands import Result
    from tunehand.core.mirror import Mirror
    from tunehand.core.model import DeviceInfo, SessionState
    from tunehand.core.protocol import DeviceHello, DevicesMsg
    from tunehand.desktop.mpris import PlayerIface

    class Agent:  # the parts of the client's agent that PlayerIface uses
        def __init__(self, capabilities: tuple[str, ...]) -> None:
            self.device = DeviceHello("d0", "desk", capabilities)
            self.mirror = Mirror()
            self.mirror.on_devices(
                DevicesMsg(
                    (
                        DeviceInfo("d0", "desk", True, capabilities=capabilities),
                        DeviceInfo("d1", "kitchen", True, capabilities=("play",)),
                        DeviceInfo("d2", "den", True, capabilities=("play",)),
                        DeviceInfo("d3", "attic", False, capabilities=("play",)),
                    )
                )
            )
            self.sent: list[tuple[str, dict[str, Any]]] = []

        def shown(self) -> SessionState:
            return SessionState()

        async def command(self, op: str, **fields: Any) -> Result:
            self.sent.append((op, fields))
            if "device_id" in fields:
                return Result("c", "ok")
            return Result("c", "no_device", "no device is active; choose one of: d1, d2")

    play = PlayerIface.Play.__wrapped__  # type: ignore[attr-defined]  # the method, not D-Bus's wrapper
    player = Agent(("play",))
    await play(PlayerIface(player))  # type: ignore[arg-type]
    assert player.sent == [("play", {"device_id": "d0"})]

    remote = Agent(())
    with pytest.raises(DBusError) as exc:
        await play(PlayerIface(remote))  # type: ignore[arg-type]
    assert exc.value.text == "no device is active; play on one of: kitchen, den"
    assert remote.sent == [("play", {})]


def test_track_paths_are_valid_object_paths() -> None:
    from dbus_fast.validators import is_object_path_valid

    from tunehand.desktop.mpris import NO_TRACK, track_path

    assert track_path("e1:0") == "/org/tunehand/track/e1_0"
    assert track_path(None) == NO_TRACK
    for weird in ("", "a-b.c/d", "ü", "0"):
        assert is_object_path_valid(track_path(weird)), weird


# --- the private bus and our peer on it ---------------------------------------------


@dataclass
class Note:
    sender: str
    app: str
    summary: str
    body: str


class BusPeer:
    """The test's connection: a fake notification daemon and a `Seeked` recorder."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.notes: list[Note] = []
        self.seeked: list[int] = []
        self.changes = 0
        """Changes announced by MPRIS players on the bus (see `until`)."""
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.bus: Any = self.run(self._connect())

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> Any:
        from dbus_fast import Message, MessageType, NameFlag, RequestNameReply
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_address=self.address).connect()

        def handle(msg: Message) -> Message | None:
            if msg.message_type == MessageType.METHOD_CALL and msg.member == "Notify":
                app, _, _, summary, body, *_ = msg.body
                with self._cond:
                    self.notes.append(Note(msg.sender or "", app, summary, body))
                    self._cond.notify_all()
                return Message.new_method_return(msg, "u", [len(self.notes)])
            if msg.message_type != MessageType.SIGNAL:
                return None
            if msg.member == "Seeked":
                with self._cond:
                    self.seeked.append(int(msg.body[0]))
                    self.changes += 1
                    self._cond.notify_all()
            elif (msg.member == "PropertiesChanged" and msg.path == MPRIS_PATH) or (
                msg.member == "NameOwnerChanged" and str(msg.body[0]).startswith(MPRIS_NS)
            ):
                with self._cond:
                    self.changes += 1
                    self._cond.notify_all()
            return None

        bus.add_message_handler(handle)
        reply = await bus.request_name("org.freedesktop.Notifications", NameFlag.DO_NOT_QUEUE)
        assert reply == RequestNameReply.PRIMARY_OWNER
        for rule in (
            "type='signal',interface='org.mpris.MediaPlayer2.Player',member='Seeked'",
            "type='signal',interface='org.freedesktop.DBus.Properties',"
            f"member='PropertiesChanged',path='{MPRIS_PATH}'",
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
            f"member='NameOwnerChanged',arg0namespace='{MPRIS_NS}'",
        ):
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
            assert reply.message_type == MessageType.METHOD_RETURN, (rule, reply.body)
        return bus

    def name_owner(self, name: str) -> str:
        from dbus_fast import Message

        async def ask() -> str:
            reply = await self.bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="GetNameOwner",
                    signature="s",
                    body=[name],
                )
            )
            assert reply.body, reply
            return str(reply.body[0])

        owner: str = self.run(ask())
        return owner

    def mark(self) -> tuple[int, int]:
        with self._cond:
            return len(self.notes), len(self.seeked)

    def wait_note(self, pred: Callable[[Note], bool], since: int = 0) -> Note:
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            while True:
                for n in self.notes[since:]:
                    if pred(n):
                        return n
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such notification; got {self.notes[since:]}")
                self._cond.wait(left)

    def wait_seeked(self, pred: Callable[[int], bool], since: int = 0) -> int:
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            while True:
                for us in self.seeked[since:]:
                    if pred(us):
                        return us
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such Seeked; got {self.seeked[since:]}")
                self._cond.wait(left)

    def until(self, fn: Callable[[], Any], pred: Callable[[Any], bool], what: str) -> Any:
        """Read `fn()` (a playerctl call, or anything an MPRIS player's change shows in)
        until `pred` holds: after each miss, wait for the next change a player announces
        on the bus. The count is taken before the read, so a change made while reading
        is never missed."""
        deadline = time.monotonic() + WAIT_S
        while True:
            with self._cond:
                seen = self.changes
            value = fn()
            if pred(value):
                return value
            with self._cond:
                while self.changes == seen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AssertionError(
                            f"{what}: not within {WAIT_S:g} s; last value {value!r}"
                        )
                    self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.call_soon_threadsafe(self.bus.disconnect)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def bus_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("session-bus")
    socket_dir = Path(tempfile.mkdtemp(prefix="th-bus-"))
    conf = tmp / "bus.conf"
    conf.write_text(_BUS_CONF.format(dir=socket_dir))
    with (tmp / "dbus-daemon.log").open("wb") as err:
        proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().decode().strip()
        proc.stdout.close()
        assert address, (tmp / "dbus-daemon.log").read_text()
        yield address
    finally:
        _stop(proc)
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def peer(bus_address: str) -> Iterator[BusPeer]:
    p = BusPeer(bus_address)
    yield p
    p.close()


# --- the server and accounts ----------------------------------------------------------


@dataclass
class World:
    srv: ServerProc
    users: list[str]
    sock_dir: Path
    bus: str
    count: int = 0

    def user(self) -> str:
        self.count += 1
        return self.users[self.count - 1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, bus_address: str) -> Iterator[World]:
    require_mpv()
    root = tmp_path_factory.mktemp("mpris-server")
    music = root / "music"
    paths = make_tones(music, TRACKS, album="Tones", duration_s=TRACK_S)
    embed_picture(paths[0], ART)  # the first track has cover art, the others none
    paths[0].with_suffix(".lrc").write_text(LRC)  # and lyrics, the others none
    srv = launch(root, music=music)
    users = [f"mpris{i}" for i in range(16)]
    add_users(srv, users)
    with short_sock_dir("th-mpris-") as sock_dir:
        yield World(srv, users, sock_dir, bus_address)
        srv.stop()


@dataclass
class Account:
    world: World
    remote: DeviceDir
    devices: dict[str, DeviceDir]
    receivers: list[Receiver] = field(default_factory=list)

    def receiver(self, name: str) -> Receiver:
        r = Receiver.start(self.devices[name], self.world.sock_dir)
        self.receivers.append(r)
        return r


@pytest.fixture
def acct(world: World, tmp_path: Path) -> Iterator[Account]:
    """A fresh user: a remote ("laptop", no bus), "r" and "quiet" on the private bus,
    and "far" (no bus: another machine)."""
    user = world.user()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    devs = {n: DeviceDir(n, tmp_path / n) for n in ("r", "quiet", "far")}
    for n in ("r", "quiet"):
        devs[n].env["DBUS_SESSION_BUS_ADDRESS"] = world.bus
    login_all(world.srv.url, user, [remote, *devs.values()])
    (devs["quiet"].config_dir / "config.toml").write_text("notifications = false\n")
    a = Account(world, remote, devs)
    yield a
    for r in a.receivers:
        r.stop()
        print(f"--- {r.lines.label} (exit {r.proc.returncode}):\n{r.lines.text()}")


def playerctl(bus: str, *args: str, player: str = "tunehand") -> str:
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus}
    r = subprocess.run(
        ["playerctl", "-p", player, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    return r.stdout.strip() if r.returncode == 0 else f"<exit {r.returncode}: {r.stderr.strip()}>"


def meta(bus: str, player: str = "tunehand") -> str:
    return playerctl(
        bus,
        "metadata",
        "--format",
        "{{title}}|{{artist}}|{{album}}|{{mpris:length}}",
        player=player,
    )


def play_all(acct: Account, device: str) -> None:
    """Play the first track on `device`, with the other two queued after it."""
    ctl_ok(acct.remote, "play", "--search", TRACKS[0], "--device", device)
    for title in TRACKS[1:]:
        ctl_ok(acct.remote, "queue", "add", "--search", title)


def mpris_name(r: Receiver) -> str:
    line = r.wait_for("MPRIS: ", timeout=WAIT_S)
    return line.split("MPRIS: ", 1)[1].split()[0]


# --- tests -------------------------------------------------------------------------------


def test_playerctl_reflects_and_controls_the_session(acct: Account, peer: BusPeer) -> None:
    bus = acct.world.bus
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    assert "tunehand" in playerctl(bus, "-l", player="tunehand").split()
    play_all(acct, "r")
    until = peer.until
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "status")
    m = until(lambda: meta(bus), lambda s: s.startswith(TRACKS[0] + "|"), "metadata")
    _title, artist, album, length = m.split("|")
    assert (artist, album) == ("Tester", "Tones")
    assert abs(int(length) - TRACK_S * 1_000_000) < 1_000_000, length
    trackid = playerctl(bus, "metadata", "--format", "{{mpris:trackid}}").strip(
        "'"
    )  # GVariant print
    assert trackid.startswith("/org/tunehand/track/"), trackid
    first = float(until(lambda: playerctl(bus, "position"), lambda s: s[:1].isdigit(), "pos"))
    # Position is not announced (MPRIS readers ask for it): mpv says when it has played
    # on a second, then MPRIS must show it ran on by at least half of that.
    r.ipc.wait_prop("time-pos", lambda v: v is not None and v >= first + 1.0, timeout=WAIT_S)
    ran = float(playerctl(bus, "position"))
    assert ran >= first + 0.5, ("position runs", first, ran)

    # Controls from playerctl change the session (seen by ctl on another device).
    playerctl(bus, "play-pause")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Paused", "paused")
    assert status(acct.remote)["playing"] is False
    playerctl(bus, "play-pause")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "playing again")
    playerctl(bus, "next")
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[1] + "|"), "next track")
    assert status(acct.remote)["track"]["title"] == TRACKS[1]
    playerctl(bus, "volume", "0.5")
    until(lambda: status(acct.remote)["volume"], lambda v: v == 50, "volume via ctl")
    until(lambda: playerctl(bus, "volume"), lambda s: s.startswith("0.5"), "volume")
    playerctl(bus, "loop", "Playlist")
    until(lambda: playerctl(bus, "loop"), lambda s: s == "Playlist", "loop")
    playerctl(bus, "shuffle", "On")
    until(lambda: playerctl(bus, "shuffle"), lambda s: s == "On", "shuffle")

    # Seeking: SetPosition moves playback, and the jump is announced with Seeked.
    _, seek_mark = peer.mark()
    playerctl(bus, "position", "20")
    us = peer.wait_seeked(lambda v: 19_000_000 <= v <= 25_000_000, since=seek_mark)
    assert us > 0
    until(lambda: float(playerctl(bus, "position")), lambda v: 19.0 <= v <= 25.0, "seeked")

    # Seek is relative, in microseconds: playerctl's "10+" and "5-" from where it is.
    _, seek_mark = peer.mark()
    at = float(playerctl(bus, "position"))
    playerctl(bus, "position", "10+")
    fwd = peer.wait_seeked(lambda v: (at + 9.5) * 1e6 <= v <= (at + 13) * 1e6, since=seek_mark)
    pos = status(acct.remote)["position_ms"]
    assert fwd / 1000 - 500 <= pos <= fwd / 1000 + 3_000, (fwd, pos)
    _, seek_mark = peer.mark()
    playerctl(bus, "position", "5-")
    back = peer.wait_seeked(
        lambda v: fwd - 5.5e6 <= v <= fwd - 5e6 + 3e6 and v < fwd, since=seek_mark
    )
    pos = status(acct.remote)["position_ms"]
    assert back / 1000 - 500 <= pos <= back / 1000 + 3_000, (back, pos)

    # A change made elsewhere shows up in playerctl.
    ctl_ok(acct.remote, "pause")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Paused", "paused elsewhere")
    ctl_ok(acct.remote, "volume", "30")
    until(lambda: playerctl(bus, "volume"), lambda s: s.startswith("0.3"), "volume elsewhere")
    ctl_ok(acct.remote, "play")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "playing elsewhere")


def test_mpris_follows_the_session_when_another_device_plays(acct: Account, peer: BusPeer) -> None:
    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    far = acct.receiver("far")
    assert mpris_name(r) == MPRIS
    ctl_ok(acct.remote, "play", "--search", TRACKS[2], "--device", "far")
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[2] + "|"), "metadata")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "status")
    playerctl(bus, "pause")
    until(lambda: status(acct.remote)["playing"], lambda p: p is False, "far paused")
    assert status(acct.remote)["device"]["name"] == far.dev.name
    # "far" has no session bus: it stays off quietly.
    assert "MPRIS" not in far.lines.text() and "bus" not in far.lines.text().lower()


def test_play_with_no_device_active_plays_on_the_receiver_whose_key_it_is(
    acct: Account, peer: BusPeer
) -> None:
    """Two devices that play are online and none is active: playerctl's play on the
    receiver's own bus name (its media key) plays there, not a `choose one of` error."""
    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    far = acct.receiver("far")
    play_all(acct, "far")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "playing on far")
    far.stop()  # it leaves: the session pauses there, and no device is active
    until(lambda: status(acct.remote)["device"], lambda d: d is None, "no device active")
    acct.receiver("far")  # back online (a second device that plays), still not active
    devices = json.loads(ctl_ok(acct.remote, "devices", "--json"))
    assert {d["name"] for d in devices if d["online"]} >= {"r", "far"}, devices
    assert status(acct.remote)["device"] is None
    out = playerctl(bus, "play")
    assert not out.startswith("<exit"), out
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "playing")
    st = status(acct.remote)
    assert st["device"]["name"] == "r" and st["track"]["title"] == TRACKS[0], st
    r.ipc.wait_prop("time-pos", lambda v: v is not None and v > 0, timeout=WAIT_S)


def test_notifications_on_track_change_and_handoff(acct: Account, peer: BusPeer) -> None:
    r = acct.receiver("r")
    name = mpris_name(r)
    acct.receiver("far")
    since, _ = peer.mark()
    play_all(acct, "r")
    owner = peer.name_owner(name)
    n = peer.wait_note(lambda n: TRACKS[0] in n.body, since)
    assert n.body == f"Now playing {TRACKS[0]} — Tester on r", n
    assert (n.app, n.sender) == ("tunehand", owner)
    ctl_ok(acct.remote, "next")
    n = peer.wait_note(lambda n: TRACKS[1] in n.body, since)
    assert n.body == f"Now playing {TRACKS[1]} — Tester on r", n
    ctl_ok(acct.remote, "transfer", "far")
    n = peer.wait_note(lambda n: n.body.startswith("Playback moved"), since)
    assert n.body == "Playback moved to far", n


def test_notifications_false_sends_none(acct: Account, peer: BusPeer) -> None:
    quiet = acct.receiver("quiet")  # notifications = false; owns the well-known name
    assert mpris_name(quiet) == MPRIS
    loud = acct.receiver("r")  # on the same bus: the instance name, and a control
    loud_name = mpris_name(loud)
    assert loud_name == f"{MPRIS}.instance{loud.proc.pid}"
    quiet_owner, loud_owner = peer.name_owner(MPRIS), peer.name_owner(loud_name)
    since, _ = peer.mark()
    play_all(acct, "quiet")
    peer.wait_note(lambda n: TRACKS[0] in n.body and n.sender == loud_owner, since)
    ctl_ok(acct.remote, "next")
    peer.wait_note(lambda n: TRACKS[1] in n.body and n.sender == loud_owner, since)
    # The quiet receiver saw the same changes (its MPRIS shows them) and said nothing.
    peer.until(
        lambda: meta(acct.world.bus, player="tunehand"),
        lambda s: s.startswith(TRACKS[1] + "|"),
        "quiet metadata",
    )
    senders = {n.sender for n in peer.notes[since:]}
    assert quiet_owner not in senders, peer.notes[since:]


def test_mpris_art_url_is_the_signed_picture(acct: Account, peer: BusPeer) -> None:
    import io

    import httpx
    from PIL import Image

    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    play_all(acct, "r")
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[0] + "|"), "metadata")
    art_url = playerctl(bus, "metadata", "--format", "{{mpris:artUrl}}")
    assert art_url.startswith(acct.world.srv.url + "/v1/art/c"), art_url
    got = httpx.get(art_url)  # what a desktop shell does: no token, just the URL
    assert got.status_code == 200, got.text
    with Image.open(io.BytesIO(got.content)) as img:
        assert img.size == (512, 512)
    playerctl(bus, "next")  # the second track has no art: no artUrl
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[1] + "|"), "next track")
    assert playerctl(bus, "metadata", "--format", "{{mpris:artUrl}}") == ""


def test_mpris_as_text_is_the_tracks_lyrics(acct: Account, peer: BusPeer) -> None:
    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    play_all(acct, "r")
    until(
        lambda: playerctl(bus, "metadata", "--format", "{{title}}|{{xesam:asText}}"),
        lambda s: s == f"{TRACKS[0]}|la la alpha\nsecond line",
        "the lyrics in the metadata",
    )
    playerctl(bus, "next")  # the second track has no lyrics: no asText
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[1] + "|"), "next track")
    assert playerctl(bus, "metadata", "--format", "{{xesam:asText}}") == ""


@pytest.fixture
def web_track(tmp_path: Path) -> Iterator[str]:
    """A generated FLAC on a local HTTP server (what OpenUri gets from a browser)."""
    import functools
    import http.server

    root = tmp_path / "web"
    path = make_track(root, "web tone", "flac", title="Web Tone", duration_s=30)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{path.name.replace(' ', '%20')}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_open_uri_plays_an_http_url_now(acct: Account, peer: BusPeer, web_track: str) -> None:
    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    play_all(acct, "r")
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[0] + "|"), "metadata")
    out = playerctl(bus, "open", web_track)
    assert not out.startswith("<exit"), out
    # Its title is the file's tag and its length the file's, as mpv read them.
    m = until(lambda: meta(bus), lambda s: s.startswith("Web Tone|"), "the URL's title")
    until(
        lambda: meta(bus),
        lambda s: abs(int(s.rsplit("|", 1)[1] or 0) - 30_000_000) < 1_000_000,
        f"the URL's length (was {m})",
    )
    st = status(acct.remote)
    assert st["track"]["title"] == "Web Tone" and st["playing"] is True
    assert abs(st["track"]["duration_ms"] - 30_000) < 1_000, st
    assert st["queue_length"] == len(TRACKS) + 1  # in after the current entry
    # It plays: mpv has played a second of it, and MPRIS shows at least half of that.
    r.ipc.wait_prop("time-pos", lambda v: v is not None and v >= 1.0, timeout=WAIT_S)
    played = float(playerctl(bus, "position"))
    assert played >= 0.5, ("it plays", played)
    # Anything but http(s) is refused with an error, and the session is untouched.
    refused = playerctl(bus, "open", "file:///etc/passwd")
    after = status(acct.remote)
    assert after["queue_length"] == st["queue_length"], (refused, after)
    assert after["track"]["title"] == "Web Tone"


def test_resume_publishes_mpris(acct: Account, peer: BusPeer) -> None:
    bus = acct.world.bus
    until = peer.until
    acct.receiver("far")
    with watching(acct.remote) as w:
        play_all(acct, "far")
        w.wait(lambda s: s["playing"] is True, timeout=WAIT_S)  # playing on far
        since = w.mark()
        r = Receiver.start(acct.devices["r"], acct.world.sock_dir, command="resume")
        acct.receivers.append(r)
        until(lambda: playerctl(bus, "-l"), lambda s: "tunehand" in s.split(), "MPRIS name")
        w.wait(lambda s: (s["device"] or {}).get("name") == "r", WAIT_S, since)  # pulled to r
    assert status(acct.remote)["device"]["name"] == "r"
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "status")
    playerctl(bus, "next")
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[1] + "|"), "next track")


async def test_tui_publishes_mpris(
    acct: Account, peer: BusPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI in-process on `LiveBackend` (as tests/test_tui_e2e.py runs it) owns the
    MPRIS name; playerctl sees what it plays and pauses it."""

    from tunehand.tui.widgets.cover import image_factory

    bus = acct.world.bus
    term = acct.devices["quiet"]  # on the private bus; its config has notifications off
    with (term.config_dir / "config.toml").open("a", encoding="utf-8") as f:
        f.write('\n[mpv_options]\nao = "null"\n')
    acct.receiver("far")
    play_all(acct, "far")
    app = live_tui(term, monkeypatch, cover=image_factory("blocks"))

    async with app.run_test(size=(120, 34)) as pilot:
        await wait_app(
            pilot, "connected", lambda: app.snapshot is not None and app.snapshot.connected
        )
        await asyncio.to_thread(
            peer.until, lambda: meta(bus), lambda s: s.startswith(TRACKS[0] + "|"), "metadata"
        )
        assert await asyncio.to_thread(playerctl, bus, "status") == "Playing"
        # The cover art came from the server through LiveBackend.art.
        await wait_app(
            pilot, "cover shown", lambda: app.main is not None and app.main.cover.display
        )
        assert app.main is not None and app.main.cover.image is not None
        await asyncio.to_thread(playerctl, bus, "pause")
        await wait_app(
            pilot,
            "paused through MPRIS",
            lambda: app.snapshot is not None and not app.snapshot.state.position.playing,
        )
        await app.action_quit()


# --- internet radio: live titles, dead URLs ------------------------------------------------


@pytest.fixture
def radio(tmp_path: Path) -> Iterator[Radio]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    with running_radio(tmp_path / "radio") as r:
        yield r


def test_a_radio_title_is_live_in_status_and_mpris(
    acct: Account, peer: BusPeer, radio: Radio
) -> None:
    """A stand-in station streams with ICY metadata; its title changes mid-stream. The
    receiver's mpv reads it, the receiver reports it, and every device shows it."""
    bus = acct.world.bus
    until = peer.until
    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    url = radio.url + "/live"
    ctl_ok(acct.remote, "play", "--url", url, "--device", "r")  # exits once it plays
    until(lambda: meta(bus), lambda s: s.startswith("First Song|"), "the first title")
    st = status(acct.remote)
    assert (st["track"]["title"], st["track"]["album"]) == ("First Song", STATION), st
    assert st["track"]["duration_ms"] == 0 and st["playing"] is True  # live: no length
    radio.title = "Second Song"
    until(lambda: meta(bus), lambda s: s.startswith("Second Song|"), "the new title")
    assert meta(bus) == f"Second Song||{STATION}|0"
    st = status(acct.remote)
    assert st["track"]["title"] == "Second Song", st
    assert ctl_ok(acct.remote, "status").startswith("▶ Second Song")
    q = json.loads(ctl_ok(acct.remote, "queue", "--json"))
    assert [e["track"]["title"] for e in q["entries"] if e["current"]] == ["Second Song"]
    assert st["error"] is None


def test_a_url_that_cannot_play_is_one_error_and_exit_1(acct: Account, radio: Radio) -> None:
    import socket

    acct.receiver("far")
    ctl_ok(acct.remote, "play", "--search", TRACKS[0], "--device", "far")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/stream"
    cases = (
        (closed, "Connection refused"),
        (radio.url + "/gone", "404"),
        (radio.url + "/page", "unrecognized file format"),
    )
    for url, why in cases:
        r = ctl(acct.remote, "play", "--url", url)
        assert r.returncode == 1, (url, r)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(
            f"tunehand: cannot play {url}: "
        ), r
        assert why in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        st = status(acct.remote)
        assert st["error"] is not None and why in st["error"]["message"], st
        assert "skipped an entry it could not play" in ctl_ok(acct.remote, "status")
    # The session moved past each (the last was the queue's end: it stopped there), and
    # nothing queued was lost.
    st = status(acct.remote)
    assert st["queue_length"] == 1 + len(cases) and st["playing"] is False, st


async def test_the_tui_shows_a_radio_title_live(
    acct: Account, radio: Radio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI (in-process on `LiveBackend`, as tests/test_tui_e2e.py runs it) plays the
    station itself: its now-playing line shows the ICY title, and the next one."""
    term = acct.devices["far"]  # no session bus
    with (term.config_dir / "config.toml").open("a", encoding="utf-8") as f:
        f.write('\n[mpv_options]\nao = "null"\n')
    app = live_tui(term, monkeypatch)

    def shown() -> str:
        snap = app.snapshot
        if app.main is None or snap is None or snap.track is None:
            return ""
        return str(app.main.now.render().renderables[0])  # type: ignore[attr-defined]

    async with app.run_test(size=(120, 34)) as pilot:
        await wait_app(
            pilot, "connected", lambda: app.snapshot is not None and app.snapshot.connected
        )
        url = radio.url + "/live"
        await asyncio.to_thread(ctl_ok, acct.remote, "play", "--url", url, "--device", "far")
        await wait_app(pilot, "the first title", lambda: "First Song" in shown())
        assert f"First Song — Unknown artist · {STATION}" in shown()
        radio.title = "Second Song"
        await wait_app(pilot, "the new title", lambda: "Second Song" in shown())
        st = await asyncio.to_thread(status, acct.remote)
        assert st["track"]["title"] == "Second Song" and st["device"]["name"] == "far", st
        await app.action_quit()


def test_a_guests_mpris_shows_the_jam_and_a_refused_command_is_an_error(
    world: World, acct: Account, peer: BusPeer, tmp_path: Path
) -> None:
    """A guest's receiver on the bus shows the jam's session (the host's track and
    status); a command the guest may not make (no `--guests-can-control`) is a D-Bus
    error that playerctl reports, not a silent no-op; once the host lets guests control,
    the same command pauses the host's device."""
    bus, until = world.bus, peer.until
    host = world.user()
    host_remote = DeviceDir("host-laptop", tmp_path / "host-laptop")
    host_dev = DeviceDir("host-box", tmp_path / "host-box")  # no bus: another machine
    login_all(world.srv.url, host, [host_remote, host_dev])
    host_box = Receiver.start(host_dev, world.sock_dir)
    acct.receivers.append(host_box)
    ctl_ok(host_remote, "play", "--search", TRACKS[1], "--device", "host-box")
    host_box.ipc.wait_advancing(0.3)
    code = json.loads(ctl_ok(host_remote, "jam", "start", "--json"))["code"]

    r = acct.receiver("r")
    assert mpris_name(r) == MPRIS
    mark = r.mark()
    ctl_ok(acct.remote, "jam", "join", code)
    r.wait_for(f"joined {host}'s jam", since=mark)
    until(lambda: meta(bus), lambda s: s.startswith(TRACKS[1] + "|"), "the jam's track")
    until(lambda: playerctl(bus, "status"), lambda s: s == "Playing", "the jam plays")

    for args in (("pause",), ("play-pause",), ("next",)):
        out = playerctl(bus, *args)
        assert out.startswith("<exit ") and not out.startswith("<exit 0"), (args, out)
        assert "host" in out, (args, out)  # the core's one line, through D-Bus
    st = status(host_remote)
    assert st["playing"] is True and st["track"]["title"] == TRACKS[1]
    assert playerctl(bus, "status") == "Playing"

    ctl_ok(host_remote, "jam", "set", "--guests-can-control", "on")
    assert playerctl(bus, "pause") == ""
    until(lambda: status(host_remote)["playing"], lambda p: p is False, "the host's paused")
    host_box.ipc.wait_prop("pause", lambda v: v is True)
    until(lambda: playerctl(bus, "status"), lambda s: s == "Paused", "paused in MPRIS")
