"""`tunehand mpd`: the MPD frontend as a subprocess over a real server, driven by the
real `mpc` client (Debian package `mpc`) and by raw sockets for the framing.

Every test has its own account, a device logged in with the CLI, fake "play" devices
on the session channel (tests.cli_helpers.FakePlayer) and its own `mpd` process.
"""

from __future__ import annotations

import asyncio
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.cli_helpers import NO_KEYRING, Device, FakePlayer, LineReader, UserPool, client_env
from tests.fixtures_server import ServerProc
from tunehand.core.model import DeviceInfo, Entry, Position, SessionState, StreamInfo
from tunehand.mpd.cli import is_loopback
from tunehand.mpd.library import matches, parse_filters
from tunehand.mpd.protocol import (
    MpdError,
    changed_subsystems,
    looks_like_http,
    parse_line,
    status_lines,
)
from tunehand.mpd.server import guess_delay

needs_mpc = pytest.mark.skipif(shutil.which("mpc") is None, reason="needs mpc (apt mpc)")

TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def srv(shared_server: ServerProc) -> ServerProc:
    return shared_server


@pytest.fixture(scope="module")
def pool(srv: ServerProc) -> UserPool:
    return UserPool(srv, "mpd")


class Raw:
    """One MPD connection over a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> str:
        raw = self.file.readline()
        if not raw:
            raise EOFError
        return raw.decode().rstrip("\n")

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\n" for line in lines).encode())

    def reply(self) -> list[str]:
        """Lines up to and including the final OK or ACK."""
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line == "OK" or line.startswith("ACK "):
                return out

    def cmd(self, line: str) -> list[str]:
        self.send(line)
        return self.reply()

    def fields(self, line: str) -> dict[str, str]:
        out = self.cmd(line)
        assert out[-1] == "OK", out
        return dict(x.split(": ", 1) for x in out[:-1])

    def closed(self) -> bool:
        """The server ended the connection (EOF or a reset: it may drop unread input)."""
        try:
            return self.file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class Mpd:
    port: int
    proc: subprocess.Popen[str]
    players: list[FakePlayer]
    password: str | None = None
    raws: list[Raw] = field(default_factory=list)
    user: str = ""
    dev: Device | None = None
    argv: tuple[str, ...] = ()

    def restart(self) -> None:
        """Stop the frontend and start it again on the same config dir and options."""
        assert self.dev is not None
        stop_proc(self.proc)
        self.proc = self.dev.popen(*self.argv)
        assert self.proc.stdout is not None
        line = LineReader(self.proc.stdout).next(30)
        assert line.startswith("mpd frontend listening on 127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])

    def mpc_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        host = f"{self.password}@127.0.0.1" if self.password else "127.0.0.1"
        return subprocess.run(
            ["mpc", "-h", host, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    def mpc(self, *args: str) -> str:
        r = self.mpc_run(*args)
        assert r.returncode == 0, f"mpc {args}: {r.stderr}"
        return r.stdout

    def raw(self) -> Raw:
        r = Raw(self.port)
        self.raws.append(r)
        return r

    def status(self) -> dict[str, str]:
        r = self.raw()
        try:
            return r.fields("status")
        finally:
            r.close()
            self.raws.remove(r)

    def ids(self) -> list[str]:
        return self.mpc("listall").split()


@pytest.fixture
def start_mpd(srv: ServerProc, pool: UserPool, tmp_path: Path) -> Iterator[Callable[..., Mpd]]:
    started: list[Mpd] = []

    def start(players: int = 1, password: str | None = None, args: tuple[str, ...] = ()) -> Mpd:
        user = pool.take()
        cdir = tmp_path / "client"
        dev = Device(cdir, client_env(NO_KEYRING, cdir))
        r = dev.login(srv.url, user, "secret-pw", "--insecure-token-file")
        assert r.returncode == 0, r.stderr
        fakes = []
        for i in range(players):
            tok = srv.login(user)
            fakes.append(FakePlayer(srv.url, tok["access_token"], tok["device_id"], f"room{i}"))
            fakes[-1].start()
        extra: list[str] = []
        if password is not None:
            (tmp_path / "pw").write_text(password + "\n")
            extra = ["--password-file", str(tmp_path / "pw")]
        argv = ("--config-dir", str(cdir), "mpd", "--port", "0", *extra, *args)
        proc = dev.popen(*argv)
        assert proc.stdout is not None
        line = LineReader(proc.stdout).next(30)
        assert line.startswith("mpd frontend listening on 127.0.0.1:"), line
        m = Mpd(int(line.rsplit(":", 1)[1]), proc, fakes, password, user=user, dev=dev, argv=argv)
        started.append(m)
        return m

    yield start
    for m in started:
        for r in m.raws:
            r.close()
        for p in m.players:
            p.close()
        stop_proc(m.proc)


def stop_proc(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- framing, command lists, errors -----------------------------------------------------


# --- the pure protocol pieces ----------------------------------------------------------


def test_parse_line() -> None:
    assert parse_line('find  artist "The \\"X\\" Band"') == ["find", "artist", 'The "X" Band']
    assert parse_line('add ""') == ["add", ""]
    assert parse_line("") == []
    with pytest.raises(MpdError):
        parse_line('add "open')


def test_changed_subsystems_and_status() -> None:
    q = (Entry("e1.0", "t1", 60_000), Entry("e1.1", "t2", 0))
    old = SessionState(version=1, queue=q, current="e1.0")
    dev = (DeviceInfo("d1", "room", True),)
    assert changed_subsystems(old, old, dev, dev) == set()
    titled = replace(old, version=2, stream=StreamInfo("e1.0", "A radio's new song"))
    assert changed_subsystems(old, titled, dev, dev) == {"player"}
    moved = SessionState(
        version=2, queue=q[::-1], current="e1.1", volume=5, shuffle=True, active_device="d1"
    )
    assert changed_subsystems(old, moved, (), dev) == {
        "player",
        "playlist",
        "mixer",
        "options",
        "output",
    }
    playing = SessionState(
        version=3, queue=q, current="e1.0", position=Position(1_000, 10_000, True, 1.0)
    )
    ids = {"e1.0": 7, "e1.1": 8}
    lines = dict(x.split(": ", 1) for x in status_lines(playing, 12_500, ids.__getitem__, 60_000))
    assert lines["state"] == "play"
    assert (lines["song"], lines["songid"], lines["nextsongid"]) == ("0", "7", "8")
    assert (lines["elapsed"], lines["time"], lines["playlist"]) == ("3.500", "3:60", "3")
    assert "song" not in dict(
        x.split(": ", 1) for x in status_lines(SessionState(), 0, ids.__getitem__, 0)
    )


def test_http_lines_and_loopback_and_guess_delays() -> None:
    for line in (
        "POST / HTTP/1.1",
        "get /x?y=1 http/1.0",
        "OPTIONS * HTTP/1.1",
        "Host: 127.0.0.1:6600",
        "origin: https://evil.example",
        "Content-Type: text/plain;charset=UTF-8",
        "Sec-Fetch-Mode: no-cors",
    ):
        assert looks_like_http(line), line
    for line in ("ping", "add http://evil/x", 'find "host: x"', "password a:b", "clear", ""):
        assert not looks_like_http(line), line
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "LocalHost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "192.168.1.2", "example.org"))
    assert [guess_delay(n) for n in range(10)] == [0, 0, 0, 1, 2, 4, 8, 16, 30, 30]


def test_filters() -> None:
    track = {"id": "t1", "title": "Paper Boats", "artist": "The Examples", "year": 2004}
    assert matches(track, parse_filters(["title", "paper"], exact=False), fold=True)
    assert not matches(track, parse_filters(["title", "paper"], exact=True), fold=False)
    expr = parse_filters(["((artist == 'The Examples') AND (date != '1999'))"], exact=True)
    assert expr == [("artist", "==", "The Examples"), ("date", "!=", "1999")]
    assert matches(track, expr, fold=False)
    assert parse_filters(["album", "X", "sort", "Title", "window", "0:1"], exact=True) == [
        ("album", "==", "X")
    ]
    with pytest.raises(MpdError):
        parse_filters(["album"], exact=True)


def test_framing_command_lists_and_bad_commands(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0)
    r = m.raw()
    assert r.greeting == "OK MPD 0.23.5"
    assert r.cmd("ping") == ["OK"]
    assert r.cmd("frobnicate 1 2") == ['ACK [5@0] {frobnicate} unknown command "frobnicate"']
    assert r.cmd("ping") == ["OK"]  # the connection stays
    assert r.cmd('find "artist') == ["ACK [2@0] {} Missing closing '\"'"]
    assert r.cmd("setvol loud")[0].startswith("ACK [2@0] {setvol} ")
    assert r.cmd("playid 99")[0].startswith("ACK [50@0] {playid} ")
    # Command lists: list_OK after each command with the _ok_ form, one OK at the end.
    r.send("command_list_ok_begin", "ping", "getvol", "command_list_end")
    assert r.reply() == ["list_OK", "volume: 100", "list_OK", "OK"]
    r.send("command_list_begin", "ping", "getvol", "command_list_end")
    assert r.reply() == ["volume: 100", "OK"]
    # An error stops the list and names the failing command's index.
    r.send("command_list_ok_begin", "ping", "bogus", "ping", "command_list_end")
    assert r.reply() == ["list_OK", 'ACK [5@1] {bogus} unknown command "bogus"']
    assert r.cmd("ping") == ["OK"]
    # A quoted argument with escapes.
    assert r.cmd('find "title" "no \\"such\\" song"') == ["OK"]
    r.send("close")
    with pytest.raises(EOFError):
        r.line()
    # A line over 64 KiB ends the connection with an ACK.
    big = m.raw()
    big.send("ping " + "x" * 70_000)
    assert big.line().startswith("ACK [2@0] {} line too long")
    with pytest.raises(EOFError):
        big.line()
    assert m.raw().cmd("ping") == ["OK"]  # the server goes on


def test_bad_options_fail_with_one_line(srv: ServerProc, pool: UserPool, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    dev = Device(fresh, client_env(NO_KEYRING, fresh))
    line = dev.fails(2, "mpd", "--password-file", str(tmp_path / "missing"))
    assert line.startswith("tunehand: --password-file: cannot read")
    assert (
        dev.fails(2, "mpd", "--port", "70000")
        == "tunehand: --port: 0 to 65535 (0 picks a free port)"
    )
    assert (
        dev.fails(2, "mpd", "--default-output", " ")
        == "tunehand: --default-output: give the name of a device that plays"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        m_dev = tmp_path / "client"
        d = Device(m_dev, client_env(NO_KEYRING, m_dev))
        user = pool.take()
        assert d.login(srv.url, user, "secret-pw", "--insecure-token-file").returncode == 0
        r = d.run("mpd", "--port", port)
        assert r.returncode == 1, r.stderr
        assert f"tunehand: cannot listen on 127.0.0.1:{port}" in r.stderr
        assert "Traceback" not in r.stderr


@needs_mpc
def test_password(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0, password="s3cret")
    r = m.raw()
    assert r.cmd("status") == ["ACK [4@0] {status} you don't have permission"]
    assert r.cmd("ping") == ["OK"]
    assert r.cmd("password nope") == ["ACK [3@0] {password} incorrect password"]
    assert r.cmd("status")[0].startswith("ACK [4@0]")
    assert r.cmd("password s3cret") == ["OK"]
    assert r.cmd("status")[-1] == "OK"
    assert "volume:100%" in m.mpc("status")  # mpc sends the password from -h PW@HOST
    m.password = "wrong"
    assert m.mpc_run("status").returncode != 0


WRONG = "ACK [3@0] {password} incorrect password"


def _unanswered_after(raws: list[Raw], window_s: float) -> list[Raw]:
    """Those of `raws` that got no line back within `window_s` seconds (the others
    must have answered WRONG)."""
    deadline = time.monotonic() + window_s
    waiting = {r.sock: r for r in raws}
    while waiting and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(waiting), [], [], left)
        for sock in ready:
            assert waiting.pop(sock).line() == WRONG
    return list(waiting.values())


@needs_mpc
def test_wrong_passwords_are_throttled(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0, password="s3cret")
    a = m.raw()
    for _ in range(3):  # the first three are answered at once
        assert a.cmd("password nope") == [WRONG]
    # Then one attempt per address at a time, each waiting 1, 2, 4 ... s: two guesses
    # from two more connections cannot both be answered within 2 s (1 s, then 1 + 2 s).
    b, c = m.raw(), m.raw()
    b.send("password guess1")
    c.send("password guess2")
    late = _unanswered_after([b, c], 2.0)
    assert len(late) >= 1
    assert [x.line() for x in late] == [WRONG] * len(late)  # later, the normal ACK
    # The right password still works after its delay, and resets the count.
    d = m.raw()
    assert d.cmd("password s3cret") == ["OK"]
    assert d.cmd("status")[-1] == "OK"
    assert m.raw().cmd("password nope") == [WRONG]
    assert "volume:100%" in m.mpc("status")


@needs_mpc
def test_http_lines_close_the_connection(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0)
    ids = m.ids()
    m.mpc("add", ids[0])
    before = m.mpc("-f", "%file%", "playlist").split()
    assert before == [ids[0]]
    # A browser's cross-site "simple" POST (text/plain needs no preflight) to the port.
    body = "clear\nadd http://evil/x\n"
    post = m.raw()
    post.sock.sendall(
        (
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:6600\r\nOrigin: https://evil.example\r\n"
            "Content-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )
    assert post.closed()
    # A header line after ordinary commands closes it too, before what follows runs.
    later = m.raw()
    assert later.cmd("ping") == ["OK"]
    later.send("Origin: https://evil.example", "clear")
    assert later.closed()
    assert m.mpc("-f", "%file%", "playlist").split() == before
    assert m.status()["playlistlength"] == "1"
    assert m.raw().cmd("ping") == ["OK"]  # ordinary commands still work


@needs_mpc
def test_http_line_after_the_password_closes_too(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0, password="s3cret")
    r = m.raw()
    assert r.cmd("password s3cret") == ["OK"]
    r.send("GET / HTTP/1.1", "clear")
    assert r.closed()


def test_remote_without_password_is_refused(
    srv: ServerProc, pool: UserPool, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh"
    dev = Device(fresh, client_env(NO_KEYRING, fresh))
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        line = dev.fails(2, "mpd", "--host", host)
        assert line.startswith(f"tunehand: --host {host} reaches beyond loopback"), line
        assert "--password-file" in line and "--allow-remote-without-password" in line
    # Allowed, it warns once and goes on (here to a TEST-NET address it cannot bind,
    # so nothing listens beyond loopback).
    cdir = tmp_path / "client"
    d = Device(cdir, client_env(NO_KEYRING, cdir))
    assert d.login(srv.url, pool.take(), "secret-pw", "--insecure-token-file").returncode == 0
    r = d.run("mpd", "--host", "192.0.2.1", "--port", "0", "--allow-remote-without-password")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("tunehand: warning:")]
    assert warnings == [
        "tunehand: warning: --host 192.0.2.1 without --password-file: "
        "anyone who can connect controls this account's session"
    ]
    assert "tunehand: cannot listen on 192.0.2.1:0" in r.stderr


# --- the queue --------------------------------------------------------------------------


@needs_mpc
def test_add_move_delete_clear(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0)
    ids = m.ids()
    assert len(ids) == 13  # the generated library (12 tagged tracks and an untagged one)
    for tid in ids[:3]:
        m.mpc("add", tid)
    titles = m.mpc("-f", "%file%", "playlist").split()
    assert titles == ids[:3]
    st = m.status()
    assert (st["playlistlength"], st["state"]) == ("3", "stop")
    version = st["playlist"]
    m.mpc("move", "1", "3")  # mpc counts from 1
    assert m.mpc("-f", "%file%", "playlist").split() == [ids[1], ids[2], ids[0]]
    m.mpc("del", "2")
    assert m.mpc("-f", "%file%", "playlist").split() == [ids[1], ids[0]]
    r = m.raw()
    assert r.cmd(f"plchanges {m.status()['playlist']}") == ["OK"]
    info = r.cmd(f"plchanges {version}")
    assert [x for x in info if x.startswith("file: ")] == [f"file: {ids[1]}", f"file: {ids[0]}"]
    # addid answers the new song's id, at the position asked for; ids are stable.
    out = r.fields(f"addid {ids[5]} 0")
    song = out["Id"]
    assert r.fields("playlistid " + song)["file"] == ids[5]
    assert r.fields("playlistinfo 0")["Id"] == song
    r.fields(f"moveid {song} 2")
    assert r.fields("playlistinfo 2")["file"] == ids[5]
    r.fields(f"deleteid {song}")
    assert r.cmd(f"playlistid {song}")[0].startswith("ACK [50@0] {playlistid}")
    # An http(s) URL becomes a remote track.
    r.fields("add https://radio.example/stream.mp3")
    assert int(m.status()["playlistlength"]) == 3
    assert r.cmd("delete 7")[0].startswith("ACK [2@0] {delete}")
    m.mpc("clear")
    assert m.status()["playlistlength"] == "0"
    assert m.mpc("playlist") == ""
    # Ranges: move START:END TO puts the range at TO; shuffle keeps the same songs.
    for tid in ids[:5]:
        m.mpc("add", tid)
    r.fields("move 0:2 3")
    assert m.mpc("-f", "%file%", "playlist").split() == [ids[2], ids[3], ids[4], ids[0], ids[1]]
    r.fields("delete 1:3")
    assert m.mpc("-f", "%file%", "playlist").split() == [ids[2], ids[0], ids[1]]
    m.mpc("shuffle")
    assert sorted(m.mpc("-f", "%file%", "playlist").split()) == sorted([ids[0], ids[1], ids[2]])


# --- playback, against a fake playing device -----------------------------------------------


@needs_mpc
def test_play_pause_next_volume_random_repeat(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=1)
    room = m.players[0]
    ids = m.ids()
    for tid in ids[:3]:
        m.mpc("add", tid)
    out = m.mpc("play")
    assert "[playing] #1/3" in out
    st = room.wait_state(lambda s: s["position"]["playing"])
    assert st["active_device"] == room.device_id
    assert m.mpc("-f", "%file%", "current").strip() == ids[0]
    status = m.status()
    assert (status["state"], status["song"], status["nextsong"]) == ("play", "0", "1")
    assert "[paused]" in m.mpc("pause")
    room.wait_state(lambda s: not s["position"]["playing"])
    assert m.status()["state"] == "pause"
    assert "[paused]  #2/3" in m.mpc("next")  # next keeps the session paused
    assert m.mpc("-f", "%file%", "current").strip() == ids[1]
    assert "#1/3" in m.mpc("prev")
    assert "[playing] #3/3" in m.mpc("play", "3")
    m.mpc("pause")
    m.mpc("seek", "0:01")  # the generated tracks are about 1 s long
    assert m.status()["elapsed"] == "1.000"
    r = m.raw()
    r.fields("seekcur 0.5")
    r.fields("seekcur +0.25")
    assert m.status()["elapsed"] == "0.750"
    r.fields("seek 0 0.125")  # another song: play it from there
    st = m.status()
    assert (st["song"], st["state"], st["elapsed"]) == ("0", "play", "0.125")
    m.mpc("pause")
    assert "volume: 40%" in m.mpc("volume", "40")
    assert room.wait_state(lambda s: s["volume"] == 40)
    assert "volume: 45%" in m.mpc("volume", "+5")
    assert "random: on" in m.mpc("random", "on")
    assert room.wait_state(lambda s: s["shuffle"])
    assert "repeat: on" in m.mpc("repeat", "on")
    assert room.wait_state(lambda s: s["repeat"] == "all")
    assert "single: on" in m.mpc("single", "on")
    assert room.wait_state(lambda s: s["repeat"] == "one")
    st2 = m.status()
    assert (st2["repeat"], st2["single"], st2["random"]) == ("1", "1", "1")
    m.mpc("single", "off")
    assert room.wait_state(lambda s: s["repeat"] == "all")
    m.mpc("repeat", "off")
    assert room.wait_state(lambda s: s["repeat"] == "off")
    m.mpc("stop")
    st3 = m.status()
    assert st3["state"] == "pause" and st3["elapsed"] == "0.000"


# --- the library ----------------------------------------------------------------------


@needs_mpc
def test_search_find_list_and_browse(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0)
    found = m.mpc("-f", "%title%", "search", "title", "paper")
    assert found.splitlines() == ["Paper Boats"]
    first_light = m.mpc("-f", "%title%", "find", "album", "First Light").splitlines()
    assert first_light == ["Morning Song", "Paper Boats", "Signal Fires"]
    assert m.mpc("find", "album", "first light") == ""  # find is exact
    assert "The Examples" in m.mpc("list", "artist").splitlines()
    assert m.mpc("list", "album", "artist", "The Examples").splitlines() == ["First Light"]
    assert m.mpc("list", "title", "album", "First Light").splitlines() == first_light
    r = m.raw()
    expr = r.cmd("find \"(Artist == 'The Examples')\"")
    assert len([x for x in expr if x.startswith("file: ")]) == 3
    assert r.cmd("search any SIGNAL")[0].startswith("file: ")
    assert r.cmd("find nosuchtag x")[0].startswith("ACK [2@0] {find}")
    # The library as a tree of Artist/Album directories.
    top = m.mpc("ls").splitlines()
    assert "The Examples" in top
    assert m.mpc("ls", "The Examples").splitlines() == ["The Examples/First Light"]
    files = m.mpc("ls", "The Examples/First Light").split()
    assert len(files) == 3 and set(files) <= set(m.ids())
    assert r.cmd("lsinfo Nobody")[0].startswith("ACK [50@0] {lsinfo}")
    assert len(r.cmd("listallinfo")) > len(r.cmd("listall")) > 13
    stats = r.fields("stats")
    assert stats["songs"] == "13"
    # findadd/searchadd and adding a directory queue what they match.
    m.mpc("findadd", "album", "First Light")
    m.mpc("searchadd", "title", "paper")
    m.mpc("add", "The Examples")
    assert m.status()["playlistlength"] == "7"


@needs_mpc
def test_stored_playlists(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=0)
    ids = m.ids()
    m.mpc("add", ids[0])
    m.mpc("add", ids[4])
    m.mpc("save", "mine")
    assert m.mpc("lsplaylists").splitlines() == ["mine"]
    r = m.mpc_run("save", "mine")
    assert r.returncode != 0 and "exists" in r.stderr
    assert m.mpc("-f", "%file%", "playlist", "mine").split() == [ids[0], ids[4]]
    raw = m.raw()
    assert raw.fields("listplaylists")["playlist"] == "mine"
    assert [x for x in raw.cmd("listplaylistinfo mine") if x.startswith("file: ")] == [
        f"file: {ids[0]}",
        f"file: {ids[4]}",
    ]
    m.mpc("clear")
    m.mpc("load", "mine")
    assert m.mpc("-f", "%file%", "playlist").split() == [ids[0], ids[4]]
    assert m.mpc("ls").splitlines()[-1] == "mine"  # lsinfo lists playlists too
    m.mpc("rm", "mine")
    assert m.mpc("lsplaylists") == ""
    assert raw.cmd("load mine")[0].startswith("ACK [50@0] {load} No such playlist")


def test_a_line_break_in_a_stored_name_cannot_forge_a_line(
    srv: ServerProc, start_mpd: Callable[..., Mpd]
) -> None:
    """A playlist stored before names were cleaned (the server now cleans them) still
    comes out of `listplaylists` on one line."""
    m = start_mpd(players=0)
    asyncio.run(_store_raw_playlist(srv, m.user, "evil\nOK\r\nplaylist: forged"))
    raw = m.raw()
    out = raw.cmd("listplaylists")
    assert out[-1] == "OK" and "OK" not in out[:-1], out
    assert [x for x in out if x.startswith("playlist: ")] == [
        "playlist: evil OK  playlist: forged"
    ], out


async def _store_raw_playlist(srv: ServerProc, user: str, name: str) -> None:
    from tests.test_api import db_url
    from tunehand.server.db import accounts as qa
    from tunehand.server.db import userdata as qu
    from tunehand.server.db.engine import open_engine

    engine = open_engine(db_url(srv))
    try:
        async with engine.begin() as conn:
            account = await qa.account_by_name(conn, user)
            assert account is not None
            await qu.save_playlist(conn, account.id, name, [], 1)
    finally:
        await engine.dispose()


# --- outputs are the account's devices ------------------------------------------------------


@needs_mpc
def test_outputs_are_devices_and_enable_transfers(start_mpd: Callable[..., Mpd]) -> None:
    m = start_mpd(players=2)
    p0, p1 = m.players
    raw = m.raw()
    outs = raw.cmd("outputs")
    names = [x.split(": ", 1)[1] for x in outs if x.startswith("outputname: ")]
    assert {"room0", "room1"} <= set(names)
    assert "outputenabled: 1" not in outs  # nothing plays yet
    m.mpc("add", m.ids()[0])
    # Two devices could play: `play` must be told where, as the session says.
    assert raw.cmd("play")[0].startswith("ACK [52@0] {play} no device is active")
    m.mpc("enable", str(names.index("room0") + 1))  # mpc numbers outputs from 1
    p0.wait_state(lambda s: s["active_device"] == p0.device_id)
    m.mpc("play")
    p0.wait_state(lambda s: s["position"]["playing"])
    listed = m.mpc("outputs")
    assert "(room0) is enabled" in listed and "(room1) is disabled" in listed
    # Enabling another output hands playback over to that device.
    m.mpc("enable", str(names.index("room1") + 1))
    st = p1.wait_state(lambda s: s["active_device"] == p1.device_id)
    assert st["position"]["playing"]
    assert "(room1) is enabled" in m.mpc("outputs")
    m.mpc("disable", str(names.index("room1") + 1))
    p1.wait_state(lambda s: not s["position"]["playing"])
    assert raw.cmd("enableoutput 9")[0].startswith("ACK [50@0] {enableoutput}")


# --- idle ---------------------------------------------------------------------------------


@needs_mpc
def test_idle_wakes_when_another_client_changes_the_session(
    start_mpd: Callable[..., Mpd],
) -> None:
    m = start_mpd(players=0)
    ids = m.ids()
    a = m.raw()
    a.send("idle mixer playlist")
    m.mpc("volume", "30")  # another client
    assert a.reply() == ["changed: mixer", "OK"]
    a.send("idle options")
    m.mpc("random", "on")
    assert a.reply() == ["changed: options", "OK"]
    a.send("idle player")
    assert a.cmd("noidle") == ["OK"]  # noidle ends it with nothing changed
    assert a.cmd("idle bogus")[0].startswith("ACK [2@0] {idle}")
    # Changes made while not idle are kept for the next idle.
    m.mpc("add", ids[0])
    assert a.cmd("idle playlist") == ["changed: playlist", "OK"]
    # The real `mpc idle`: it waits for the change another client makes. It may connect
    # after a change, so change again until it wakes (each change is a real event).
    waiter = subprocess.Popen(
        ["mpc", "-h", "127.0.0.1", "-p", str(m.port), "idle", "playlist"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(20):
            m.mpc("add", ids[1])
            try:
                out, _ = waiter.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("mpc idle never woke")
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert out.strip() == "playlist"
    # Anything but noidle while idle closes the connection, as MPD does.
    b = m.raw()
    b.send("idle", "status")
    with pytest.raises(EOFError):
        b.line()
