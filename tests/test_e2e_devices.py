"""End to end with real playing devices: a real server, real receivers with mpv (ao=null).

Covers play on the only online device, transfer back and forth (make-before-break,
position kept), an aborted transfer, `resume` pulling and leaving, an empty `resume`,
the active device killed, a server restart mid-playback, the offline journal, and a
receiver stopped with SIGTERM. One server for the module; each test has its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device_helpers import (
    DeviceDir,
    Lines,
    Receiver,
    Watch,
    World,
    ctl,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    restart_server,
    serving_world,
    status,
    watching,
)

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TRACKS = ("Long Tone One", "Long Tone Two", "Long Tone Three")
TRACK_S = 40


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_mpv()
    root = tmp_path_factory.mktemp("devices-server")
    music = root / "music"
    make_tones(music, TRACKS, album="Long Tones", duration_s=TRACK_S)
    with serving_world(root, music, [f"dev{i}" for i in range(32)], "th-mpv-") as w:
        yield w


@dataclass
class Account:
    """One user with a `ctl` device and receivers (stopped at teardown)."""

    world: World
    user: str
    tmp: Path
    remote: DeviceDir
    receivers: list[Receiver] = field(default_factory=list)
    devices: dict[str, DeviceDir] = field(default_factory=dict)

    def device(self, name: str) -> DeviceDir:
        return self.devices[name]

    def receiver(self, name: str) -> Receiver:
        r = Receiver.start(self.devices[name], self.world.sock_dir)
        self.receivers.append(r)
        return r


@pytest.fixture
def acct(world: World, tmp_path: Path) -> Iterator[Account]:
    """A fresh user with a remote ("laptop") and three device dirs r1, r2, r3, logged in."""
    user = world.user()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    devs = {n: DeviceDir(n, tmp_path / n) for n in ("r1", "r2", "r3")}
    login_all(world.srv.url, user, [remote, *devs.values()])
    a = Account(world, user, tmp_path, remote, devices=devs)
    yield a
    for r in a.receivers:
        r.stop()
        # Shown by pytest only when the test failed: what every device said.
        print(f"--- {r.lines.label} (exit {r.proc.returncode}):\n{r.lines.text()}")


def play(acct: Account, *args: str) -> None:
    ctl_ok(acct.remote, "play", "--search", TRACKS[0], *args)


# --- 1. play on the only online device ---------------------------------------------


def test_play_uses_the_only_online_receiver(acct: Account) -> None:
    r1 = acct.receiver("r1")
    with watching(acct.remote) as w:
        mark = r1.mark()
        play(acct)
        st = w.wait(lambda s: s["playing"] and s["device"] is not None)
    assert st["device"] == {"id": r1.dev.device_id(), "name": "r1"}
    line = r1.wait_for(f"playing {TRACKS[0]} — Tester at", since=mark)
    assert "0:0" in line, line
    first, later = r1.ipc.wait_advancing(1.0)
    assert later >= first + 1.0
    s = status(acct.remote)
    assert s["device"]["name"] == "r1" and s["playing"] is True
    assert s["track"]["title"] == TRACKS[0]
    # The session's clock runs with the speaker's.
    mpv_now = r1.ipc.time_pos()
    assert mpv_now is not None
    assert abs(s["position_ms"] / 1000 - mpv_now) < 0.5, (s, mpv_now)


def playing_on(acct: Account, name: str, at_least_s: float = 1.5) -> Receiver:
    """Start receiver `name`, play the first track on it, and wait until mpv has played
    `at_least_s` seconds of it."""
    r = acct.receiver(name)
    mark = r.mark()
    play(acct, "--device", name)
    r.wait_for("playing", since=mark)
    r.ipc.wait_time_pos(lambda v: v >= at_least_s, timeout=15)
    return r


def transfer_and_check(acct: Account, src: Receiver, dst: Receiver, target: str) -> None:
    """`ctl transfer target` while `src` plays: `dst` takes over from where `src` was."""
    before = src.ipc.time_pos()
    entry = status(acct.remote)["entry_id"]
    assert before is not None
    src_mark, dst_mark = src.mark(), dst.mark()
    ctl_ok(acct.remote, "transfer", target)
    s = status(acct.remote)
    assert s["device"] == {"id": dst.dev.device_id(), "name": dst.dev.name}, s
    assert s["playing"] is True and s["entry_id"] == entry, s
    assert s["position_ms"] >= before * 1000 - 300, (s["position_ms"], before)
    dst.wait_for("playback moved here", since=dst_mark)
    # The target's own clock starts where the source was, not at 0, and runs.
    first = dst.ipc.wait_time_pos(lambda _: True)
    assert first >= before - 0.3, (first, before)
    assert first <= before + 2.0, (first, before)
    dst.ipc.wait_time_pos(lambda v: v >= first + 0.5)
    assert dst.ipc.get("pause") is False
    # The source stopped: mpv is idle and the receiver said why.
    src.wait_for("playback moved to another device", since=src_mark)
    assert src.ipc.wait_prop("idle-active", lambda v: v is True, timeout=5) is True


# --- 1b. a device that starts takes nothing ---------------------------------------


def test_starting_a_device_never_takes_playback(acct: Account) -> None:
    """README: "Starting a device never takes playback from another one"."""
    from tests.device_helpers import PASSWORD

    r1 = playing_on(acct, "r1")
    token = acct.world.srv.login(acct.user, PASSWORD)["access_token"]

    def session() -> dict[str, Any]:
        r = httpx.get(
            acct.world.srv.url + "/v1/session", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        state: dict[str, Any] = r.json()["state"]
        return state

    before = session()
    assert before["active_device"] == r1.dev.device_id() and before["position"]["playing"]
    r1_mark = r1.mark()
    r2 = acct.receiver("r2")  # returns once it is connected and has the session
    # Whatever r2 might send once connected has reached the server by the time r1 has
    # played on for another second.
    r1.ipc.wait_advancing(1.0)
    after = session()
    assert (after["active_device"], after["term"]) == (before["active_device"], before["term"])
    assert after["position"]["playing"] is True
    assert "moved to another device" not in "\n".join(r1.lines.log[r1_mark:])
    assert r2.ipc.get("idle-active") is True
    assert "playing" not in r2.lines.text() and "moved here" not in r2.lines.text()
    devices = {d["name"]: d for d in status_devices(acct)}
    assert devices["r2"]["online"] is True


def status_devices(acct: Account) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(ctl_ok(acct.remote, "devices", "--json"))
    return out


# --- 2. transfer back and forth -----------------------------------------------------


def test_transfer_back_and_forth_keeps_the_position(acct: Account) -> None:
    r1 = playing_on(acct, "r1")
    r2 = acct.receiver("r2")
    transfer_and_check(acct, r1, r2, "r2")  # by name
    now = r2.ipc.time_pos() or 0.0
    r2.ipc.wait_time_pos(lambda v: v >= now + 0.8)
    transfer_and_check(acct, r2, r1, r1.dev.device_id())  # by id
    transfer_and_check(acct, r1, r2, r2.dev.device_id())


# --- 3. a target that never gets ready ----------------------------------------------


def test_transfer_to_a_device_that_never_gets_ready_is_aborted(acct: Account) -> None:
    from tests.device_helpers import PASSWORD, FakeDevice

    r1 = playing_on(acct, "r1")
    fake_id = "dfake" + acct.user
    token = acct.world.srv.login(acct.user, PASSWORD, fake_id)["access_token"]
    fake = FakeDevice(acct.world.srv.url, token, fake_id, "fake")
    try:
        before = status(acct.remote)
        mark = r1.mark()
        t0 = time.monotonic()
        r = ctl(acct.remote, "transfer", "fake")
        took = time.monotonic() - t0
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "aborted" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert 2.5 <= took <= 4.5, took
        prepare = fake.wait_message(lambda m: m.get("action") == "prepare")
        assert prepare["entry_id"] == before["entry_id"]
    finally:
        fake.close()
    after = status(acct.remote)
    assert after["device"] == before["device"] and after["playing"] is True
    # The music never stopped on r1.
    now = r1.ipc.time_pos()
    assert now is not None
    r1.ipc.wait_time_pos(lambda v: v >= now + 0.5)
    assert "moved to another device" not in "\n".join(r1.lines.log[mark:])


# --- 4. resume pulls playback here and leaves it paused -----------------------------


def start_resume(acct: Account, name: str, *extra: str) -> Receiver:
    """`tunehand resume` as device `name`, without a terminal (it just plays)."""
    res = Receiver.start(
        acct.device(name), acct.world.sock_dir, *extra, command="resume", wait_connected=False
    )
    acct.receivers.append(res)
    return res


def wait_active(acct: Account, w: Watch, proc: Receiver, timeout: float = 10.0) -> None:
    """Wait (on `ctl watch`) until `proc`'s device is active and playing."""
    name = proc.dev.name
    try:
        w.wait(lambda s: (s["device"] or {}).get("name") == name and s["playing"], timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{proc.lines.label}:\n{proc.lines.text()}") from None


def test_resume_pulls_playback_from_a_playing_receiver(acct: Account) -> None:
    r1 = playing_on(acct, "r1")
    r1_mark = r1.mark()
    with watching(acct.remote) as w:
        res = start_resume(acct, "r2")
        res.wait_for("playback moved here", timeout=15)
        wait_active(acct, w, res)
    r1.wait_for("playback moved to another device", since=r1_mark)
    first, _ = res.ipc.wait_advancing(1.0)
    assert first >= 1.0, first  # continued from r1's position, not from 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_resume_leaves_the_session_paused_at_its_position(
    acct: Account, sig: signal.Signals
) -> None:
    r1 = playing_on(acct, "r1")
    # Pulling a paused session is a plain activation, without the prepare/ready round.
    ctl_ok(acct.remote, "pause")
    paused_at = status(acct.remote)["position_ms"] / 1000
    assert paused_at >= 1.4, paused_at
    with watching(acct.remote) as w:
        res = start_resume(acct, "r2")
        wait_active(acct, w, res)
    first, _ = res.ipc.wait_advancing(1.0)
    assert paused_at - 0.3 <= first <= paused_at + 1.0, (first, paused_at)
    last = res.ipc.time_pos()
    assert last is not None
    res.signal(sig)
    assert res.wait_exit() == 0, res.lines.text()
    s = status(acct.remote)
    assert s["playing"] is False and s["track"]["title"] == TRACKS[0], s
    assert abs(s["position_ms"] - last * 1000) <= 300, (s["position_ms"], last)
    # Another device continues from that point.
    left_at = s["position_ms"] / 1000
    r1_mark = r1.mark()
    ctl_ok(acct.remote, "play", "--device", "r1")
    r1.wait_for("playing", since=r1_mark)
    start = r1.ipc.wait_time_pos(lambda _: True)
    assert left_at - 0.3 <= start <= left_at + 1.0, (start, left_at)
    r1.ipc.wait_time_pos(lambda v: v >= start + 0.5)


def _read_pty(fd: int, until: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read a pty's output until `until(all of it)` holds or it ends (EOF/EIO)."""
    out = b""
    deadline = time.monotonic() + timeout
    while not until(out):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the terminal showed nothing matching in {timeout:g} s: {out!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer of the pty is gone
            break
        if not chunk:
            break
        out += chunk
    return out


def test_resume_in_a_terminal_ends_its_status_line_with_a_newline(acct: Account) -> None:
    """The status line is redrawn in place (\r); after quitting, the shell's prompt must
    start on a line of its own, also when the session's last change redraws it."""
    ctl_ok(acct.remote, "queue", "add", "--search", TRACKS[0])
    dev = acct.device("r3")
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            dev.cmd("resume", "--mpv-option", "ao=null"),
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=dev.env,
            start_new_session=True,
        )
        os.close(slave)
        slave = -1
        try:

            def keys_read(out: bytes) -> bool:
                """Playing here, and the terminal is in cbreak mode: keys are read."""
                cbreak = not termios.tcgetattr(master)[3] & termios.ICANON
                return cbreak and b"vol " in out and b"\xe2\x96\xb6" in out  # "▶"

            shown = _read_pty(master, keys_read, 30)
            os.write(master, b"q")
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
            shown += _read_pty(master, lambda out: False, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert stderr == "", stderr
    text = shown.decode("utf-8", errors="replace")
    assert text.endswith("\r\n"), repr(text[-200:])  # the pty turns "\n" into "\r\n"
    last = text[:-2].rsplit("\r\x1b[K", 1)[-1]
    assert TRACKS[0] in last and "vol " in last, repr(text[-200:])
    assert status(acct.remote)["playing"] is False  # quitting left the session paused


@pytest.mark.parametrize("command", ["resume", "receiver"])
def test_a_device_given_a_url_that_is_not_the_server_root_exits_2(
    acct: Account, command: str
) -> None:
    """No channel at `.../v1/channel` from the start: a wrong URL, said at once, not
    retried for ever as a server that went away."""
    url = acct.world.srv.url
    r = acct.device("r3").run(command, "--server", url + "/v1", "--mpv-option", "ao=null")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.splitlines()[-1] == (
        f"tunehand: {url}/v1 is not a tunehand server root (try {url})"
    ), r.stderr


def test_resume_keys_in_a_terminal(acct: Account) -> None:
    """`resume` in a terminal (a pty): space, n/p, arrows, +/=/- and q, each seen by
    another device (`ctl watch`) as the session change it makes."""
    r1 = acct.receiver("r1")
    mark = r1.mark()
    play(acct, "--device", "r1")
    for title in TRACKS[1:]:
        ctl_ok(acct.remote, "queue", "add", "--search", title)
    r1.wait_for("playing", since=mark)
    master, slave = pty.openpty()
    dev = acct.device("r2")
    ipc = acct.world.sock_dir / f"r2-{os.urandom(3).hex()}.sock"
    proc = subprocess.Popen(
        dev.cmd("resume", "--mpv-option", "ao=null", "--mpv-option", f"input-ipc-server={ipc}"),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
        env=dev.env,
    )
    os.close(slave)
    # Read the status line it keeps redrawing, so the terminal never fills up.
    screen: list[bytes] = []
    drain = threading.Thread(target=_read_all, args=(master, screen), daemon=True)
    drain.start()
    assert proc.stderr is not None
    res = Receiver(dev, proc, ipc, Lines(proc.stderr, "resume r2"))
    acct.receivers.append(res)

    with watching(acct.remote) as w:
        wait_active(acct, w, res)
        # Keys count once the terminal is raw (typed before, the line discipline holds or
        # drops them): wait for that, as seen on our side of the pty.
        deadline = time.monotonic() + 15
        while termios.tcgetattr(master)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "resume never took the terminal"
            time.sleep(0.02)

        def key(k: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 10) -> Any:
            since = w.mark()
            os.write(master, k.encode())
            return w.wait(pred, timeout, since=since)

        st = key(" ", lambda s: not s["playing"])
        st = key(" ", lambda s: s["playing"])
        vol = st["volume"]
        key("-", lambda s: s["volume"] == vol - 5)
        key("+", lambda s: s["volume"] == vol)
        key("=", lambda s: s["volume"] == min(100, vol + 5))
        first = st["track"]["title"]
        second = key("n", lambda s: s["track"]["title"] != first)["entry_id"]
        key("p", lambda s: s["track"]["title"] == first and s["entry_id"] != second)
        res.ipc.wait_time_pos(lambda v: v >= 6.0, timeout=15)
        # Seeks show as a jump of 5 s, which playing alone cannot make within 3 s.
        at = status(acct.remote)["position_ms"]
        fwd = key("\x1b[C", lambda s: s["position_ms"] >= at + 4_500, timeout=3)
        assert fwd["position_ms"] <= at + 5_000 + 1_500, (at, fwd)
        at = status(acct.remote)["position_ms"]
        back = key("\x1b[D", lambda s: s["position_ms"] <= at - 4_000, timeout=3)
        assert back["position_ms"] >= at - 5_000 - 300, (at, back)
        since = w.mark()
        os.write(master, b"q")
        assert proc.wait(timeout=20) == 0, res.lines.text()
        st = w.wait(lambda s: not s["playing"], since=since)
    assert st["track"]["title"] == first
    drain.join(timeout=10)
    os.close(master)
    shown = b"".join(screen).decode(errors="replace")
    assert first in shown, shown[-500:]  # the one-line status
    assert "Traceback" not in res.lines.text() + shown


def _read_all(fd: int, into: list[bytes]) -> None:
    """Read a pty's output until its other side is gone (EIO)."""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


# --- 5. resume with nothing to resume -----------------------------------------------


def test_resume_with_an_empty_queue_exits_1_with_one_line(acct: Account) -> None:
    r = acct.device("r3").run("resume", "--mpv-option", "ao=null", timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("tunehand: nothing to resume: the queue is empty"), lines
    assert "tunehand resume --search QUERY" in lines[0], lines


def test_the_advice_with_no_device_online_works_when_followed(acct: Account) -> None:
    """`ctl play --search` with no device online names the command that plays it here, and
    that command (`resume` with the same arguments) does: no loop of advice."""
    line = ctl(acct.remote, "play", "--search", TRACKS[1])
    assert line.returncode == 5, line
    err = line.stderr.strip()
    assert err.startswith("tunehand: no device is online: play here with"), err
    advised = f"`tunehand resume --search {TRACKS[1]}`"
    assert advised in err, err
    # Following it: `resume --search ...` plays that track here.
    with watching(acct.remote) as w:
        r3 = start_resume(acct, "r3", "--search", TRACKS[1])
        wait_active(acct, w, r3)
    r3.ipc.wait_advancing(0.5)
    st = status(acct.remote)
    assert st["device"]["name"] == "r3" and st["playing"] is True, st
    assert st["track"]["title"] == TRACKS[1], st
    # With a device playing elsewhere, `resume --search` pulls the session here and plays it.
    r1 = acct.receiver("r1")
    with watching(acct.remote) as w:
        ctl_ok(acct.remote, "transfer", "r1")
        wait_active(acct, w, r1)
    r3.stop()
    with watching(acct.remote) as w:
        r2 = start_resume(acct, "r2", "--search", TRACKS[0])
        wait_active(acct, w, r2)
    r2.ipc.wait_advancing(0.5)
    st = status(acct.remote)
    assert st["device"]["name"] == "r2" and st["track"]["title"] == TRACKS[0], st
    queue = json.loads(ctl_ok(acct.remote, "queue", "--json"))["entries"]
    titles = [e["track"]["title"] for e in queue]
    assert titles.count(TRACKS[1]) == 1 and TRACKS[0] in titles, titles


# --- 6. the active device killed ----------------------------------------------------


@pytest.mark.parametrize(
    "sig",
    [signal.SIGKILL, signal.SIGSTOP],
    ids=["killed", "frozen-no-tcp-close"],
)
def test_killed_receiver_leaves_the_session_paused_where_it_was(
    acct: Account, sig: signal.Signals
) -> None:
    """Killed, its connection closes; frozen (SIGSTOP: a lid closed, a network gone), the
    connection stays open and silent, and the server's pings find it gone (within 8 s)."""
    r1 = playing_on(acct, "r1", at_least_s=2.0)
    r2 = acct.receiver("r2")
    with watching(acct.remote) as w:
        mark = w.mark()
        last = r1.ipc.time_pos()
        assert last is not None
        t0 = time.monotonic()
        r1.proc.send_signal(sig)
        try:
            st = w.wait(lambda s: not s["playing"] and s["device"] is None, 12, since=mark)
        finally:
            r1.proc.kill()  # a frozen one too (SIGKILL ends a stopped process)
        noticed = time.monotonic() - t0
    assert noticed <= 10, noticed  # README: "within about 7 s"
    assert st["track"]["title"] == TRACKS[0]
    s = status(acct.remote)
    assert s["device"] is None and s["playing"] is False
    assert last * 1000 <= s["position_ms"] <= last * 1000 + noticed * 1000 + 500, (
        s["position_ms"],
        last,
        noticed,
    )
    paused_at = s["position_ms"] / 1000
    mark2 = r2.mark()
    ctl_ok(acct.remote, "play", "--device", "r2")
    r2.wait_for("playing", since=mark2)
    start = r2.ipc.wait_time_pos(lambda _: True)
    assert paused_at - 0.3 <= start <= paused_at + 1.0, (start, paused_at)
    r2.ipc.wait_time_pos(lambda v: v >= start + 0.5)


# --- 9. receiver stopped with SIGTERM -----------------------------------------------


def test_receiver_sigterm_leaves_the_session_paused_at_its_position(acct: Account) -> None:
    r1 = playing_on(acct, "r1")
    last = r1.ipc.time_pos()
    assert last is not None
    r1.signal(signal.SIGTERM)
    assert r1.wait_exit() == 0, r1.lines.text()
    assert "receiver stopped" in r1.lines.text()
    s = status(acct.remote)
    assert s["playing"] is False and s["track"]["title"] == TRACKS[0], s
    assert abs(s["position_ms"] - last * 1000) <= 300, (s["position_ms"], last)


# --- 7. server restart mid-playback -------------------------------------------------


def test_server_restart_mid_playback(acct: Account) -> None:
    world = acct.world
    r1 = playing_on(acct, "r1")
    mark = r1.mark()
    assert world.srv.stop() == 0
    r1.wait_for("connection to the server lost", since=mark)
    # The music goes on locally while the server is away.
    r1.ipc.wait_advancing(1.0)
    r = ctl(acct.remote, "status")
    assert r.returncode == 4, (r.returncode, r.stderr)
    world.srv = restart_server(world.srv)
    r1.wait_for("connected to the server", since=mark, timeout=30)
    s1 = status(acct.remote)
    mpv1 = r1.ipc.time_pos()
    assert s1["device"] == {"id": r1.dev.device_id(), "name": "r1"} and s1["playing"], s1
    assert mpv1 is not None, r1.lines.text()
    assert abs(s1["position_ms"] / 1000 - mpv1) < 0.5, (s1["position_ms"], mpv1)
    r1.ipc.wait_time_pos(lambda v: v >= mpv1 + 1.0)
    s2 = status(acct.remote)
    assert s2["position_ms"] >= s1["position_ms"] + 800, (s1, s2)
    mpv2 = r1.ipc.time_pos()
    assert mpv2 is not None and abs(s2["position_ms"] / 1000 - mpv2) < 0.5, (s2, mpv2)


# --- 8. commands made while the server is down --------------------------------------


async def _event(agent: Any, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the agent never said {needle!r}"
        ev: str = await asyncio.wait_for(agent.events.get(), left)
        if needle in ev:
            return ev


async def test_commands_made_while_the_server_is_down_are_applied_once_in_order(
    world: World, tmp_path: Path
) -> None:
    from tests.device_helpers import PASSWORD
    from tunehand.client.agent import Agent
    from tunehand.core.protocol import DeviceHello

    user = world.user()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    await asyncio.to_thread(login_all, world.srv.url, user, [remote])
    dev_id = "dtui" + user
    token = (await asyncio.to_thread(world.srv.login, user, PASSWORD, dev_id))["access_token"]

    async def get_token() -> str:
        return str(token)

    agent = Agent(
        server=world.srv.url,
        token=get_token,
        device=DeviceHello(dev_id, "tui", ()),
        player_factory=None,
    )
    runner = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.first_state.wait(), 15)
        before = await asyncio.to_thread(status, remote)
        assert before["volume"] != 37
        await asyncio.to_thread(world.srv.stop)
        await _event(agent, "connection to the server lost")
        down = await asyncio.to_thread(ctl, remote, "volume", "50")
        assert down.returncode == 4, (down.returncode, down.stderr)
        # Several commands, replayed in the order they were made, each applied once.
        made = [("volume", {"value": 37}), ("repeat", {"mode": "all"}), ("volume", {"value": 38})]
        cmds = []
        for op, fields in made:
            cmds.append(asyncio.create_task(agent.command(op, **fields)))
            await _event(agent, f"offline: {op}")
        assert not any(c.done() for c in cmds)
        world.srv = await asyncio.to_thread(restart_server, world.srv)
        results = [await asyncio.wait_for(c, 30) for c in cmds]
        assert all(r.ok for r in results), results
        assert [r.version for r in results] == [before["version"] + i for i in (1, 2, 3)]
        assert await agent.wait_for(lambda st: st.version >= results[-1].version, 10)
        after = await asyncio.to_thread(status, remote)
        assert (after["volume"], after["repeat"]) == (38, "all"), after
        assert after["version"] == before["version"] + 3, after
        assert agent.mirror.state.volume == 38
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await agent.channel.close()


def test_ctl_play_in_a_terminal_offers_to_play_here(acct: Account) -> None:
    """No device online, `ctl play` in a terminal of a machine with libmpv: it asks, and
    "y" plays the track here (`tunehand resume` with the same arguments, in its place)."""
    dev = acct.device("r3")
    (dev.config_dir / "config.toml").write_text(
        (dev.config_dir / "config.toml").read_text() + '\n[mpv_options]\nao = "null"\n'
    )
    master, slave = os.openpty()
    proc = subprocess.Popen(
        dev.cmd("ctl", "play", "--search", TRACKS[2]),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dev.env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        seen = b""
        with watching(acct.remote) as w:
            while b"[Y/n]" not in seen:
                ready, _, _ = select.select([master], [], [], 30)
                assert ready, f"no question within 30 s: {seen!r}"
                seen += os.read(master, 4096)
            assert f"`tunehand resume --search {TRACKS[2]}`".encode() in seen, seen
            os.write(master, b"y\n")
            w.wait(lambda s: (s["device"] or {}).get("name") == "r3" and s["playing"], 20)
        st = status(acct.remote)
        assert st["track"]["title"] == TRACKS[2], st
    finally:
        proc.terminate()
        proc.wait(20)
        os.close(master)
