"""The offline cache end to end: a real server, real devices (mpv, ao=null), real downloads.

`offline add|list|status|remove` against the server (the album by name, sizes and
SHA-256 checked against the music files themselves); a cached file that no longer
matches is fetched again; a download cut in the middle (a proxy that drops the
connection) continues with Range; and the issue's scenario: pin an album, stop the
server, `resume` plays it from the cache through track changes (mpv's own path and
position), commands made offline (keys in a terminal) apply once when the server is
back, and the device reconciles without a jump. Every device gets its own cache dir
(XDG_CACHE_HOME).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pty
import shutil
import subprocess
import termios
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.device_helpers import (
    DeviceDir,
    Lines,
    MpvIpc,
    Receiver,
    World,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    restart_server,
    serving_world,
    status,
    watching,
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TRACKS = ("Cached One", "Cached Two", "Cached Three", "Cached Four")
ALBUM = "Offline Tones"
TRACK_S = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("offline-server")
    music = root / "music"
    make_tones(music, TRACKS, album=ALBUM, duration_s=TRACK_S)
    with serving_world(root, music, [f"off{i}" for i in range(12)], "th-off-") as w:
        yield w


@dataclass
class LiveTui:
    """The TUI's live backend for a device dir, run in the test's event loop: every
    snapshot it publishes, and a wait on them."""

    backend: Any
    snaps: list[Any]
    changed: asyncio.Event
    runner: asyncio.Task[Any]

    async def until(self, pred: Any, what: str, timeout: float = 30.0) -> Any:
        """Wait (on the backend's snapshots, or a short tick for what the player says
        between them) until `pred()` is true; its value."""
        deadline = time.monotonic() + timeout
        while not (got := pred()):
            left = deadline - time.monotonic()
            assert left > 0, f"never: {what}"
            assert not self.runner.done(), self.runner
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
        return got

    async def play_album_here(self, laptop: DeviceDir) -> Any:
        """Once connected, `laptop` plays the album on this device: its agent, once its
        player has a position."""
        await self.until(lambda: self.snaps and self.snaps[-1].connected, "connected")
        await asyncio.to_thread(ctl_ok, laptop, "play", "--album", ALBUM, "--device", "box")
        agent = self.backend._agent
        assert agent is not None
        await self.until(lambda: agent.player is not None, "a player")
        await self.until(agent.player.position_ms, "a position")
        return agent

    async def cut_off(self, proxy: TcpProxy) -> None:
        """Point `proxy` at a port nobody listens on (the network is cut), and wait until
        the device plays on from its cache."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()
        proxy.switch(dead)
        await self.until(
            lambda: any("playing on from the cache" in e.event for e in self.snaps), "off"
        )


@contextlib.asynccontextmanager
async def live_tui(
    box: DeviceDir, monkeypatch: pytest.MonkeyPatch, mpv_options: str = ""
) -> AsyncIterator[LiveTui]:
    """Run the TUI's live backend of `box` (mpv on the null output, plus `mpv_options`
    lines), as the TUI would, and close it at the end."""
    config = box.config_dir / "config.toml"
    config.write_text(config.read_text() + '\n[mpv_options]\nao = "null"\n' + mpv_options)
    for key, value in box.env.items():
        if key.startswith(("TUNEHAND_", "PYTHON_KEYRING", "DBUS_", "XDG_CACHE")):
            monkeypatch.setenv(key, value)
    from tunehand.cli.main import build_parser
    from tunehand.tui.backend_live import LiveBackend

    args = build_parser().parse_args(["--config-dir", str(box.config_dir)])
    backend, _ = LiveBackend.from_args(args)
    snaps: list[Any] = []
    changed = asyncio.Event()

    def seen(snap: Any) -> None:
        snaps.append(snap)
        changed.set()

    runner = asyncio.create_task(backend.run(seen))
    try:
        yield LiveTui(backend, snaps, changed, runner)
    finally:
        await backend.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


def _device(tmp: Path, name: str) -> DeviceDir:
    dev = DeviceDir(name, tmp / name)
    dev.env["XDG_CACHE_HOME"] = str(tmp / f"{name}-cache")
    return dev


@pytest.fixture
def pair(world: World, tmp_path: Path) -> tuple[DeviceDir, DeviceDir]:
    """A fresh user with a remote ("laptop") and a playing device ("box"), logged in."""
    laptop, box = _device(tmp_path, "laptop"), _device(tmp_path, "box")
    login_all(world.srv.url, world.user(), [laptop, box])
    return laptop, box


def _music_sha(world: World) -> dict[str, str]:
    """SHA-256 of every music file, by title (the file names hold the titles)."""
    out = {}
    for p in world.music.iterdir():
        for t in TRACKS:
            if p.stem.endswith(t):
                out[t] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _listed(dev: DeviceDir) -> list[dict[str, Any]]:
    r = dev.run("offline", "list", "--json")
    assert r.returncode == 0, r.stderr
    got: list[dict[str, Any]] = json.loads(r.stdout)
    return got


def _ok(dev: DeviceDir, *args: str) -> subprocess.CompletedProcess[str]:
    r = dev.run(*args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


# --- pinning, listing, status, removing ---------------------------------------------


def test_offline_add_list_status_remove(world: World, pair: tuple[DeviceDir, DeviceDir]) -> None:
    _, box = pair
    r = _ok(box, "offline", "add", "--album", "offline t")  # a name's start, any case
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"kept {len(TRACKS)} of {len(TRACKS)} tracks offline"), lines
    for i, title in enumerate(TRACKS, 1):
        assert any(line.startswith(f"{i}/{len(TRACKS)} {title} (") for line in lines), lines
    listed = _listed(box)
    shas = _music_sha(world)
    assert {t["title"]: t["sha256"] for t in listed} == shas
    for t in listed:
        path = Path(t["path"])
        assert path.is_file() and str(path).startswith(box.env["XDG_CACHE_HOME"]), path
        assert path.stat().st_size == t["size"]
        assert t["pinned"] == [f"album:{t['album_id']}"]
    st = json.loads(_ok(box, "offline", "status", "--json").stdout)
    assert st["tracks"] == len(TRACKS)
    assert st["pinned_bytes"] == sum(t["size"] for t in listed) > 0
    assert st["limit_bytes"] == 2048 * 1024 * 1024
    again = _ok(box, "offline", "add", "--album", ALBUM)  # hashed again, nothing fetched
    assert again.stderr.count("(already here)") == len(TRACKS), again.stderr
    r = _ok(box, "offline", "remove", "--album", "Offline")
    assert r.stdout.strip() == f"removed {len(TRACKS)} tracks from the offline cache"
    assert _listed(box) == []
    assert not any(Path(t["path"]).exists() for t in listed)


def test_offline_bad_input_is_one_line(pair: tuple[DeviceDir, DeviceDir]) -> None:
    _, box = pair
    r = box.run("offline", "add")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "give one of --album, --playlist, --liked, --episode IDs or TRACK_IDs" in r.stderr
    r = box.run("offline", "add", "--album", "no such album")
    assert r.returncode == 5 and r.stderr == "tunehand: no album 'no such album'\n", r.stderr
    r = box.run("offline", "remove", "--playlist", "nothing")
    assert r.returncode == 5 and "no playlist 'nothing' is kept offline" in r.stderr, r.stderr


def test_a_corrupted_cached_file_is_fetched_again(
    world: World, pair: tuple[DeviceDir, DeviceDir]
) -> None:
    _, box = pair
    _ok(box, "offline", "add", "--album", ALBUM)
    victim = next(t for t in _listed(box) if t["title"] == TRACKS[1])
    path = Path(victim["path"])
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, and the mtime put back: only the hash tells
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = _ok(box, "offline", "add", "--album", ALBUM)
    assert "did not match its hash, fetched again" in r.stderr, r.stderr
    assert r.stderr.count("(already here)") == len(TRACKS) - 1, r.stderr
    after = next(t for t in _listed(box) if t["title"] == TRACKS[1])
    got = hashlib.sha256(Path(after["path"]).read_bytes()).hexdigest()
    assert got == after["sha256"] == _music_sha(world)[TRACKS[1]]


def test_an_interrupted_download_resumes_with_range(world: World, tmp_path: Path) -> None:
    size = next(p for p in world.music.iterdir() if p.stem.endswith(TRACKS[2])).stat().st_size
    with TcpProxy.to_url(world.srv.url) as proxy:
        box = _device(tmp_path, "box")  # it knows the server through the proxy only
        login_all(proxy.url, world.user(), [box])
        track = json.loads(_ok(box, "ctl", "search", TRACKS[2], "--json").stdout)[0]
        proxy.cut_after = size // 2  # the answer's headers and about half the file
        cut = box.run("offline", "add", track["id"])
        assert cut.returncode == 4, (cut.returncode, cut.stderr)
        last = cut.stderr.strip().splitlines()[-1]
        assert last.startswith("tunehand: cannot reach the server"), cut.stderr
        parts = list(Path(box.env["XDG_CACHE_HOME"]).rglob("*.part"))
        assert len(parts) == 1 and 0 < parts[0].stat().st_size < size, parts
        had = parts[0].stat().st_size
        proxy.cut_after = None
        r = _ok(box, "offline", "add", track["id"])
    assert ", resumed)" in r.stderr, r.stderr
    moved = float(r.stderr.split("(", 2)[-1].split(" MB downloaded")[0])
    assert moved * 1024 * 1024 <= size - had + 0.05 * 1024 * 1024, (moved, size, had)
    (got,) = _listed(box)
    assert got["sha256"] == _music_sha(world)[TRACKS[2]]
    assert not list(Path(box.env["XDG_CACHE_HOME"]).rglob("*.part"))


# --- the scenario: the server goes away, the music does not ----------------


def _read_all(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def _wait(pred: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll `pred` (a check of a real process's state) until it gives a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_resume_plays_the_pinned_album_from_the_cache_while_the_server_is_down(
    world: World, pair: tuple[DeviceDir, DeviceDir]
) -> None:
    require_mpv()
    laptop, box = pair
    _ok(box, "offline", "add", "--album", ALBUM)
    files = {Path(t["path"]).name: t for t in _listed(box)}
    titles = {t["title"]: name for name, t in files.items()}
    order = [titles[t] for t in TRACKS]  # the album's files in play order

    # The box plays the album once online (the session as last known is kept), and stops.
    rec = Receiver.start(box, world.sock_dir)
    try:
        mark = rec.mark()
        ctl_ok(laptop, "repeat", "all")
        ctl_ok(laptop, "play", "--album", ALBUM, "--device", "box")
        rec.wait_for(f"playing {TRACKS[0]}", since=mark)
        path = rec.ipc.wait_prop("path", lambda p: bool(p))
        assert Path(path).name == titles[TRACKS[0]], path  # cached: played from its file
    finally:
        rec.stop()
    assert rec.proc.returncode == 0, rec.lines.text()
    world.srv.stop()

    master, slave = pty.openpty()
    ipc_path = world.sock_dir / f"box-{os.urandom(3).hex()}.sock"
    proc = subprocess.Popen(
        box.cmd(
            "resume", "--mpv-option", "ao=null", "--mpv-option", f"input-ipc-server={ipc_path}"
        ),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
        env=box.env,
    )
    os.close(slave)
    screen: list[bytes] = []
    drain = threading.Thread(target=_read_all, args=(master, screen), daemon=True)
    drain.start()
    assert proc.stderr is not None
    res = Receiver(box, proc, ipc_path, Lines(proc.stderr, "resume box"))
    try:
        ipc = _wait(lambda: ipc_path.exists() and res.ipc, "mpv's IPC socket")
        first = ipc.wait_prop("path", lambda p: bool(p) and Path(p).name in files, timeout=15)
        ipc.wait_advancing(0.5)
        # Through a track change, from the cache.
        second = ipc.wait_prop("path", lambda p: p != first and Path(p).name in files, timeout=20)
        ipc.wait_advancing(0.5)
        assert Path(second).name == order[(order.index(Path(first).name) + 1) % len(order)]
        assert b"[offline]" in b"".join(screen)

        deadline = time.monotonic() + 15
        while termios.tcgetattr(master)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "resume never took the terminal"
            time.sleep(0.02)
        # Commands made offline: volume down twice, and the next track.
        os.write(master, b"-")
        ipc.wait_prop("volume", lambda v: v is not None and round(v) == 95)
        os.write(master, b"-")
        ipc.wait_prop("volume", lambda v: v is not None and round(v) == 90)
        before_next = ipc.get("path")
        os.write(master, b"n")
        third = ipc.wait_prop("path", lambda p: p != before_next and Path(p).name in files)
        ipc.wait_advancing(0.3)

        # The server comes back: the session goes on from where the box is, commands once.
        world.srv = restart_server(world.srv)
        st = _wait(
            lambda: (s := status(laptop))["device"] and s["device"]["name"] == "box" and s,
            "the box to hold the session again",
            timeout=40,
        )
        now_path = ipc.get("path")
        pos = ipc.time_pos()
        successor = order[(order.index(Path(now_path).name) + 1) % len(order)]

        def same_place() -> dict[str, Any] | None:
            s = status(laptop)
            here = files[Path(ipc.get("path")).name]["title"]
            return s if s["playing"] and s["track"]["title"] == here else None

        st = _wait(same_place, "the session on the track the box plays")
        assert st["volume"] == 90, st  # two `-` made offline, applied once
        # No jump: mpv went on from where it was (the same file, moving forward, or the
        # next one of the album when that one ended meanwhile).
        later = ipc.get("path")
        assert Path(later).name in (Path(now_path).name, successor), (now_path, later)
        if later == now_path and pos is not None:
            assert ipc.wait_time_pos(lambda v: v >= pos) >= pos
        # `n` made offline moved on one track from where it was pressed, once.
        assert Path(third).name == order[(order.index(Path(before_next).name) + 1) % 4]
        with watching(laptop) as w:  # and the session is live again: a pause from elsewhere
            ctl_ok(laptop, "pause")
            w.wait(lambda s: not s["playing"])
        ipc.wait_prop("pause", lambda p: p is True)
    finally:
        res.stop()
        drain.join(timeout=10)
        os.close(master)
        print(f"--- resume box:\n{res.lines.text()}")
    assert "Traceback" not in res.lines.text()


def test_a_receiver_plays_on_from_the_cache_when_the_server_goes_away(
    world: World, pair: tuple[DeviceDir, DeviceDir]
) -> None:
    require_mpv()
    laptop, box = pair
    _ok(box, "offline", "add", "--album", ALBUM)
    files = {Path(t["path"]).name: t for t in _listed(box)}
    order = [next(n for n, t in files.items() if t["title"] == title) for title in TRACKS]
    rec = Receiver.start(box, world.sock_dir)
    try:
        mark = rec.mark()
        ctl_ok(laptop, "repeat", "all")
        ctl_ok(laptop, "play", "--album", ALBUM, "--device", "box")
        rec.wait_for(f"playing {TRACKS[0]}", since=mark)
        first = rec.ipc.wait_prop("path", lambda p: bool(p) and Path(p).name in files)
        world.srv.stop()
        rec.wait_for("offline: playing on from the cache", since=mark)
        # Two track changes with no server: the second one is the offline queue's own.
        i = order.index(Path(first).name)
        second = rec.ipc.wait_prop("path", lambda p: p != first, timeout=20)
        assert Path(second).name == order[(i + 1) % len(order)], second
        third = rec.ipc.wait_prop("path", lambda p: p not in (first, second), timeout=20)
        assert Path(third).name == order[(i + 2) % len(order)], third
        rec.ipc.wait_advancing(0.3)
        mark = rec.mark()
        world.srv = restart_server(world.srv)
        rec.wait_for("back online: the session goes on from here", timeout=40, since=mark)

        def same_place() -> dict[str, Any] | None:
            s = status(laptop)
            here = files[Path(rec.ipc.get("path")).name]["title"]
            ok = s["playing"] and s["device"]["name"] == "box" and s["track"]["title"] == here
            return s if ok else None

        _wait(same_place, "the session on the track the receiver plays")
    finally:
        rec.stop()
        print(f"--- receiver box:\n{rec.lines.text()}")
    assert "Traceback" not in rec.lines.text()


async def test_the_tui_started_without_a_server_shows_the_cache(
    world: World, pair: tuple[DeviceDir, DeviceDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI's live backend, in-process: started with the server down it has the
    session as last known, paused; play plays it from the cache; its library, search
    and queue answer from what is cached."""
    require_mpv()
    laptop, box = pair
    await asyncio.to_thread(_ok, box, "offline", "add", "--album", ALBUM)
    rec = await asyncio.to_thread(Receiver.start, box, world.sock_dir)
    try:
        mark = rec.mark()
        await asyncio.to_thread(ctl_ok, laptop, "play", "--album", ALBUM, "--device", "box")
        await asyncio.to_thread(rec.wait_for, f"playing {TRACKS[0]}", 15.0, mark)
    finally:
        await asyncio.to_thread(rec.stop)
    await asyncio.to_thread(world.srv.stop)
    try:
        async with live_tui(box, monkeypatch) as tui:
            snap = await tui.until(
                lambda: next((s for s in tui.snaps if "from the cache" in s.event), None),
                "the offline notice",
            )
            assert not snap.connected and snap.track is not None
            assert snap.track.title == TRACKS[0] and not snap.state.position.playing
            found = await tui.backend.search("cached thr")
            assert [t.title for t in found.tracks] == [TRACKS[2]]
            assert [a.title for a in found.albums] == [ALBUM]
            assert [a.name for a in await tui.backend.artists()] == ["Tester"]
            tracks = await tui.backend.album_tracks(found.tracks[0].album_id)
            assert [t.title for t in tracks] == list(TRACKS)
            queue = await tui.backend.queue()
            assert [q.track.title if q.track else None for q in queue] == list(TRACKS)
            play = asyncio.ensure_future(tui.backend.command("play"))
            await tui.until(lambda: tui.snaps[-1].state.position.playing, "playing")
            agent = tui.backend._agent
            assert agent is not None and agent.player is not None
            first = await tui.until(agent.player.position_ms, "a position")
            await tui.until(lambda: (agent.player.position_ms() or 0) > first + 300, "mpv playing")
            play.cancel()
    finally:
        world.srv = await asyncio.to_thread(restart_server, world.srv)


async def test_a_session_paused_offline_never_plays_on_return(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI's live backend (in-process) plays through a proxy that is then cut: it
    goes on offline and is paused there. When the proxy lets it through again, it tells
    the server where it is in one `play` that lands paused: another device's `ctl watch`,
    connected to the server all along, never sees the session play meanwhile (before, a
    `play` then a `pause` went, and the session played between them)."""

    require_mpv()
    with TcpProxy.to_url(world.srv.url) as proxy:
        laptop, box = _device(tmp_path, "laptop"), _device(tmp_path, "box")
        user = world.user()
        login_all(world.srv.url, user, [laptop])
        login_all(proxy.url, user, [box])  # the box reaches the server through the proxy
        await asyncio.to_thread(_ok, box, "offline", "add", "--album", ALBUM)
        async with live_tui(box, monkeypatch) as tui:
            agent = await tui.play_album_here(laptop)
            first = agent.player.position_ms()
            await tui.until(lambda: (agent.player.position_ms() or 0) > first + 300, "mpv playing")
            await tui.cut_off(proxy)
            pausing = asyncio.ensure_future(tui.backend.command("pause"))
            await tui.until(lambda: agent.player.paused(), "mpv paused offline")
            here = agent.player.position_ms()
            assert here is not None

            with watching(laptop) as w:  # on the server all along, from before the return
                mark = w.mark()
                proxy.switch(world.srv.url)
                await tui.until(
                    lambda: any("back online: the session goes on" in s.event for s in tui.snaps),
                    "back online",
                )
                st = await asyncio.to_thread(
                    w.wait,
                    lambda s: (
                        s["device"]
                        and s["device"]["name"] == "box"
                        and not s["playing"]
                        and abs(s["position_ms"] - here) < 1000
                    ),
                    15.0,
                    mark,
                )
                assert st["track"]["title"] in TRACKS
                seen_states = [json.loads(line) for line in w.lines.log[mark:]]
            assert not any(s["playing"] for s in seen_states), seen_states
            assert (await pausing).ok
            assert agent.player.paused() and abs((agent.player.position_ms() or 0) - here) < 300


@pytest.mark.parametrize("how", ["queue next", "play tracks"])
async def test_an_entry_added_offline_is_followed_under_its_server_id_without_a_jump(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Offline (the TUI's live backend behind a cut proxy), a track is put next and
    played, then paused: the entry has an id made here. Back online, the replayed add
    gives it the server's own id; the device follows that entry (same track, same place)
    without mpv loading the file again or seeking (mpv's own events over IPC), and a
    play from elsewhere resumes it where it is. The entry comes from `queue_next` then
    `next`, or from a `play` of tracks (the queue replaced: replayed as an add that
    lands paused)."""

    require_mpv()
    with TcpProxy.to_url(world.srv.url) as proxy:
        laptop, box = _device(tmp_path, "laptop"), _device(tmp_path, "box")
        user = world.user()
        login_all(world.srv.url, user, [laptop])
        login_all(proxy.url, user, [box])
        await asyncio.to_thread(_ok, box, "offline", "add", "--album", ALBUM)
        ids = {t["title"]: t["id"] for t in _listed(box)}
        ipc_path = world.sock_dir / f"tui-{os.urandom(3).hex()}.sock"

        def events_of(ipc: MpvIpc) -> list[str]:
            """mpv's events sent to this connection since the last call."""
            out = []
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = ipc._read_msg(time.monotonic() + 0.3)
                    if "event" in msg:
                        out.append(str(msg["event"]))
            return out

        async with live_tui(box, monkeypatch, f'input-ipc-server = "{ipc_path}"\n') as tui:
            agent = await tui.play_album_here(laptop)
            known = {e.entry_id for e in agent.mirror.state.queue}
            await tui.cut_off(proxy)
            if how == "queue next":
                added = asyncio.ensure_future(
                    tui.backend.command("queue_next", track_ids=[ids[TRACKS[3]]])
                )
                await tui.until(
                    lambda: (
                        agent.offline is not None
                        and agent.offline.state is not None
                        and len(agent.offline.state.queue) == len(TRACKS) + 1
                    ),
                    "the entry added offline",
                )
                nxt = asyncio.ensure_future(tui.backend.command("next"))
            else:
                new_queue = [ids[TRACKS[3]], ids[TRACKS[0]]]
                added = asyncio.ensure_future(
                    tui.backend.command("play", track_ids=new_queue, replace=True)
                )
                nxt = added
            local = await tui.until(
                lambda: (t := agent.player.playing_tag()) not in (None, *known) and t,
                "the added entry playing here",
            )
            ipc = await asyncio.to_thread(MpvIpc, ipc_path)
            path = await asyncio.to_thread(
                ipc.wait_prop, "path", lambda p: bool(p) and Path(p).stem == ids[TRACKS[3]]
            )
            await asyncio.to_thread(ipc.wait_advancing, 0.3)
            pausing = asyncio.ensure_future(tui.backend.command("pause"))
            await tui.until(lambda: agent.player.paused(), "paused offline")
            here = await asyncio.to_thread(ipc.time_pos)
            assert here is not None
            await asyncio.to_thread(events_of, ipc)  # what came before the return

            proxy.switch(world.srv.url)
            await tui.until(
                lambda: any("back online: the session goes on" in s.event for s in tui.snaps),
                "back online",
            )
            st = await asyncio.to_thread(status, laptop)
            server_id = agent.mirror.state.current
            assert server_id is not None and server_id != local, (server_id, local)
            assert agent.player.playing_tag() == server_id
            assert st["track"]["id"] == ids[TRACKS[3]] and st["device"]["name"] == "box", st
            assert not st["playing"] and abs(st["position_ms"] - here * 1000) < 300, (st, here)
            for fut in (added, nxt, pausing):
                assert (await fut).ok
            if how == "play tracks":  # the queue played offline is the server's now
                queue = json.loads(await asyncio.to_thread(ctl_ok, laptop, "queue", "--json"))
                assert [e["track"]["id"] for e in queue["entries"]] == new_queue, queue
            # A play from elsewhere: mpv resumes the same file where it is, nothing reloads.
            await asyncio.to_thread(ctl_ok, laptop, "play")
            await asyncio.to_thread(ipc.wait_prop, "pause", lambda p: p is False)
            moved = await asyncio.to_thread(ipc.wait_advancing, 0.3)
            assert moved[0] >= here - 0.05, (moved, here)
            assert await asyncio.to_thread(ipc.get, "path") == path
            events = await asyncio.to_thread(events_of, ipc)
            assert not {"start-file", "end-file", "file-loaded", "seek"} & set(events), events
            ipc.close()
