"""Helpers for end-to-end tests with real playing devices (receivers with mpv, ao=null).

`DeviceDir` is one device identity (a config dir logged in with the insecure token file);
`Receiver` runs `tunehand receiver` and reads its log lines with deadlines; `MpvIpc`
talks to a receiver's mpv over its `input-ipc-server` socket and waits on observed
properties (mpv pushes every change, so nothing polls); `Watch` runs `tunehand ctl watch`
and waits until its JSON lines satisfy a predicate; `FakeDevice` is a raw websocket
device that says it plays but never answers a transfer's `prepare`.

Nothing here sleeps to wait for a condition: every wait is on a queue, a condition
variable or a socket read with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fixtures_server import ServerProc, launch, tunehand_cmd

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "secret-pw"
CLI_TIMEOUT_S = 60.0

_CLEARED = (
    "PYTHON_KEYRING_BACKEND",
    "TUNEHAND_TOKEN",
    "TUNEHAND_CONFIG_DIR",
    "TUNEHAND_DEBUG",
    "TUNEHAND_DATA_DIR",
    "TUNEHAND_DATABASE_URL",
    "TUNEHAND_REDIS_URL",
)


_CACHE_HOME: list[str] = []


def _cache_home() -> str:
    """One temporary user cache dir for this test run's devices (their offline caches,
    one folder per config dir inside), removed at exit: never the real ~/.cache."""
    if not _CACHE_HOME:
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="tunehand-cache-")
        atexit.register(shutil.rmtree, path, True)
        _CACHE_HOME.append(path)
    return _CACHE_HOME[0]


def device_env() -> dict[str, str]:
    """Our env without tunehand's variables and without any keyring (token files only)."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["XDG_CACHE_HOME"] = _cache_home()
    env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/nonexistent"
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


# --- a device identity -------------------------------------------------------------


@dataclass
class DeviceDir:
    """One device: its own config dir, logged in to one server as one user."""

    name: str
    config_dir: Path
    env: dict[str, str] = field(default_factory=device_env)

    def cmd(self, *args: str) -> list[str]:
        return tunehand_cmd("--config-dir", str(self.config_dir), *args)

    def run(
        self, *args: str, input: str | None = None, timeout: float = CLI_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(*args),
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    def login_cmd(self, url: str, user: str) -> list[str]:
        return self.cmd(
            "login",
            url,
            "--user",
            user,
            "--password-stdin",
            "--insecure-token-file",
            "--device-name",
            self.name,
        )

    def device_id(self) -> str:
        from tunehand.client.config import device_id

        return device_id(self.config_dir)

    def popen(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(*args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=ROOT,
        )


def login_all(url: str, user: str, devices: list[DeviceDir]) -> None:
    """Log every device in, concurrently (each login is a process start)."""
    procs = []
    for d in devices:
        p = subprocess.Popen(
            d.login_cmd(url, user),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=d.env,
            cwd=ROOT,
        )
        procs.append((d, p))
    for d, p in procs:
        out, err = p.communicate(PASSWORD + "\n", timeout=CLI_TIMEOUT_S)
        assert p.returncode == 0, f"login {d.name}: exit {p.returncode}: {err!r} {out!r}"


def ctl(
    dev: DeviceDir, *args: str, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return dev.run("ctl", *args, timeout=timeout)


def ctl_ok(dev: DeviceDir, *args: str) -> str:
    r = ctl(dev, *args)
    assert r.returncode == 0, f"ctl {args}: exit {r.returncode}: {r.stderr!r}"
    return r.stdout


def status(dev: DeviceDir) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ctl_ok(dev, "status", "--json"))
    return out


# --- reading a process's lines ------------------------------------------------------

_EOF = "\x00eof"


class Lines:
    """Lines of a stream read by a daemon thread; `wait_for` with a deadline and a cursor."""

    def __init__(self, stream: IO[str], label: str) -> None:
        self.label = label
        self.log: list[str] = []
        self.ended = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.log.append(line.rstrip("\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def mark(self) -> int:
        """A cursor: `wait_for(..., since=mark)` only looks at lines printed after it."""
        with self._cond:
            return len(self.log)

    def wait_for(
        self, pred: str | Callable[[str], bool], timeout: float = 15.0, since: int = 0
    ) -> tuple[int, str]:
        """Block until a line (from index `since`) matches; returns (index, line)."""
        test: Callable[[str], bool] = (lambda s: pred in s) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.log):
                    if test(self.log[i]):
                        return i, self.log[i]
                    i += 1
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    why = "ended" if self.ended else f"printed nothing matching in {timeout:g} s"
                    raise AssertionError(
                        f"{self.label} {why} ({pred!r}); output:\n" + "\n".join(self.log)
                    )
                self._cond.wait(left)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.log)


# --- mpv over its IPC socket --------------------------------------------------------


class MpvIpc:
    """A connection to mpv's JSON IPC socket. Requests are answered by `request_id`;
    `wait_prop` observes a property (mpv sends every change) until a predicate holds."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # mpv opens the socket while it initialises, before the device connects to the
        # server: callers connect only after the receiver logged "connected to the server".
        self._sock.settimeout(timeout)
        self._sock.connect(str(path))
        self._buf = b""
        self._next_id = 1
        self._observed: dict[int, Any] = {}
        """The last value of each observation, by its id: a late event of an earlier
        observation of the same property never counts for a new one."""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def _read_msg(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("mpv IPC: no message")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("mpv IPC: no message") from None
            if not chunk:
                raise ConnectionError("mpv IPC: socket closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        if msg.get("event") == "property-change" and msg.get("id") in self._observed:
            self._observed[msg["id"]] = msg.get("data")
        return msg

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        rid = self._next_id
        self._next_id += 1
        self._sock.sendall(json.dumps({"command": list(args), "request_id": rid}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_msg(deadline)
            if msg.get("request_id") == rid:
                if msg.get("error") != "success":
                    raise AssertionError(f"mpv refused {args}: {msg}")
                return msg.get("data")

    def get(self, prop: str) -> Any:
        try:
            return self.command("get_property", prop)
        except AssertionError:  # "property unavailable" (e.g. time-pos while idle)
            return None

    def time_pos(self) -> float | None:
        pos = self.get("time-pos")
        return None if pos is None else float(pos)

    def wait_prop(self, prop: str, pred: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        """Observe `prop` until `pred(value)`; returns the value that satisfied it."""
        oid = self._next_id
        unset = object()
        self._observed[oid] = unset
        self.command("observe_property", oid, prop)
        deadline = time.monotonic() + timeout
        try:
            while True:
                value = self._observed[oid]
                if value is not unset and pred(value):
                    return value
                try:
                    self._read_msg(deadline)
                except TimeoutError:
                    last = None if value is unset else value
                    raise AssertionError(
                        f"mpv {prop} never matched in {timeout:g} s; last {last!r}"
                    ) from None
        finally:
            del self._observed[oid]
            with contextlib.suppress(Exception):
                self.command("unobserve_property", oid)

    def wait_time_pos(self, pred: Callable[[float], bool], timeout: float = 15.0) -> float:
        value = self.wait_prop("time-pos", lambda v: v is not None and pred(float(v)), timeout)
        return float(value)

    def wait_advancing(self, by_s: float = 0.5, timeout: float = 15.0) -> tuple[float, float]:
        """Wait until mpv's clock advances by `by_s` while playing; returns (first, later)."""
        first = self.wait_time_pos(lambda _: True, timeout)
        later = self.wait_time_pos(lambda v: v >= first + by_s, timeout)
        return first, later


# --- processes ----------------------------------------------------------------------


@dataclass
class Receiver:
    """A running `tunehand receiver` (or `tunehand resume`) with an mpv IPC socket."""

    dev: DeviceDir
    proc: subprocess.Popen[str]
    ipc_path: Path
    lines: Lines
    _ipc: MpvIpc | None = None

    @classmethod
    def start(
        cls,
        dev: DeviceDir,
        sock_dir: Path,
        *extra: str,
        command: str = "receiver",
        wait_connected: bool = True,
    ) -> Receiver:
        """Run `tunehand receiver` (or `resume`) as `dev`, with mpv's IPC socket in `sock_dir`."""
        ipc = sock_dir / f"{dev.name}-{os.urandom(3).hex()}.sock"
        proc = dev.popen(
            command,
            "--device-name",
            dev.name,
            "--mpv-option",
            "ao=null",
            "--mpv-option",
            f"input-ipc-server={ipc}",
            *extra,
        )
        assert proc.stderr is not None
        r = cls(dev, proc, ipc, Lines(proc.stderr, f"{command} {dev.name}"))
        if wait_connected:
            r.lines.wait_for("connected to the server", timeout=30)
        return r

    @property
    def ipc(self) -> MpvIpc:
        if self._ipc is None:
            self._ipc = MpvIpc(self.ipc_path)
        return self._ipc

    def wait_for(self, needle: str, timeout: float = 15.0, since: int = 0) -> str:
        return self.lines.wait_for(needle, timeout, since)[1]

    def mark(self) -> int:
        return self.lines.mark()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self._ipc is not None:
            self._ipc.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Watch:
    """`tunehand ctl watch`: its JSON lines, waited on with a predicate and a deadline."""

    def __init__(self, dev: DeviceDir) -> None:
        self.proc = dev.popen("ctl", "watch")
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines = Lines(self.proc.stdout, f"watch {dev.name}")
        self.errors = Lines(self.proc.stderr, f"watch {dev.name} (stderr)")
        # The first line is the state in the server's `hello`: from here on, every change
        # is seen (a test that acts before this could race the watch's connection).
        self.lines.wait_for(lambda _: True, timeout=30)

    def mark(self) -> int:
        return self.lines.mark()

    def wait(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0, since: int = 0
    ) -> dict[str, Any]:
        _, line = self.lines.wait_for(lambda s: pred(json.loads(s)), timeout, since)
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def watching(dev: DeviceDir) -> Iterator[Watch]:
    w = Watch(dev)
    try:
        yield w
    finally:
        w.close()


# --- a device that never gets ready -------------------------------------------------


class FakeDevice:
    """A raw websocket device with capabilities ["play"] that ignores every directive
    (so a transfer to it never gets `ready`)."""

    def __init__(self, url: str, token: str, device_id: str, name: str) -> None:
        from websockets.sync.client import connect

        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect("ws://" + url.removeprefix("http://") + "/v1/channel", open_timeout=15)
        )
        self._ws.send(
            json.dumps(
                {
                    "type": "auth",
                    "token": token,
                    "device": {"id": device_id, "name": name, "capabilities": ["play"]},
                }
            )
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_message(lambda m: m.get("type") == "hello")

    def _pump(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self._ws:
                with self._cond:
                    self.messages.append(json.loads(raw))
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def wait_message(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(f"no such message; got {self.messages}")
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


# --- the server ---------------------------------------------------------------------


def restart_server(srv: ServerProc) -> ServerProc:
    """Start a new server process on the same data dir, music and port as `srv` (stopped)."""
    port = srv.url.rsplit(":", 1)[1]
    new = launch(
        srv.data_dir.parent,
        music=srv.music,
        store=srv.store,
        extra_args=("--port", port),
    )
    assert new.url == srv.url, (new.url, srv.url)
    return new


def add_users(srv: ServerProc, names: list[str]) -> None:
    """Create users in the server's database in-process (faster than `admin add-user`)."""
    from tests.cli_helpers import add_users as _add

    _add(srv, names, PASSWORD)


def require_mpv() -> None:
    """Skip the test (with the reason) when libmpv cannot be loaded here."""
    try:
        import mpv  # noqa: F401
    except (OSError, ImportError):
        import pytest

        pytest.skip("libmpv is not installed")


def make_tones(music: Path, titles: tuple[str, ...], *, album: str, duration_s: int) -> list[Path]:
    """One long Ogg tone per title (track numbers in order, a pitch each) in `music`."""
    from tests.audiogen import make_track

    return [
        make_track(
            music,
            f"{i + 1:02d} {title}",
            "ogg",
            title=title,
            artist="Tester",
            album=album,
            track_no=i + 1,
            duration_s=duration_s,
            freq=300 + 50 * i,
        )
        for i, title in enumerate(titles)
    ]


@contextlib.contextmanager
def short_sock_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory with a short path: mpv's IPC socket paths must fit in
    sun_path (108 bytes), which pytest's tmp_path may not."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(kw_only=True)
class Users:
    """A test module's server (replaced in place when a test restarts it) and its users,
    handed out one per test; test modules add what else their tests share."""

    srv: ServerProc
    users: list[str]
    sock_dir: Path
    count: int = 0

    def user(self) -> str:
        self.count += 1
        return self.users[self.count - 1]


@dataclass(kw_only=True)
class World(Users):
    """`Users`, and the folder the server runs in and the music it serves."""

    root: Path
    music: Path


@contextlib.contextmanager
def serving_world(root: Path, music: Path, users: list[str], sock_prefix: str) -> Iterator[World]:
    """Serve `music` from a server in `root` with `users` added; the server is stopped
    (the one in `World.srv` then, if a test replaced it) when the block ends."""
    srv = launch(root, music=music)
    add_users(srv, users)
    with short_sock_dir(sock_prefix) as sock_dir:
        w = World(srv=srv, root=root, music=music, users=users, sock_dir=sock_dir)
        try:
            yield w
        finally:
            w.srv.stop()


async def wait_app(
    pilot: Any, what: str, predicate: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Let a Textual app run (short pauses) until `predicate()` holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened in {timeout:g} s: {what}")
        await pilot.pause(0.02)


def live_tui(dev: DeviceDir, monkeypatch: Any, cover: Any = None) -> Any:
    """The TUI in-process, as `tunehand --config-dir DIR` builds it for device `dev`
    (its environment, its config dir; `cover` draws cover art, None shows none)."""
    from tunehand.cli.main import build_parser
    from tunehand.tui.app import TunehandApp
    from tunehand.tui.backend_live import LiveBackend

    for key, value in dev.env.items():
        if key.startswith(("TUNEHAND_", "PYTHON_KEYRING", "DBUS_")):
            monkeypatch.setenv(key, value)
    for key in ("TUNEHAND_TOKEN", "TUNEHAND_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    args = build_parser().parse_args(["--config-dir", str(dev.config_dir)])
    backend, settings = LiveBackend.from_args(args)
    return TunehandApp(backend, keys_config=settings.keys, theme=settings.theme, cover=cover)
