"""Helpers for end-to-end tests that run the real `tunehand` CLI as subprocesses.

`Device` is one client config dir (one device identity) with the env its commands run
in: by default the private gnome-keyring of the `secret_service` fixture, so logins go
to a real OS keyring. `FakePlayer` is a small websocket device that says it can play
(what a receiver would be), for commands that need an online or active device.
`LineReader` reads a long-running process's output line by line with a deadline.
Nothing here sleeps to wait: every wait is on a process, a queue or a condition.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fixtures_server import ServerProc, tunehand_cmd

ROOT = Path(__file__).resolve().parent.parent
CLI_TIMEOUT_S = 60.0
PASSWORD = "secret-pw"

# Variables of the test runner's own environment that would change what a CLI run does.
_CLEARED = (
    "PYTHON_KEYRING_BACKEND",
    "TUNEHAND_TOKEN",
    "TUNEHAND_CONFIG_DIR",
    "TUNEHAND_DEBUG",
    "TUNEHAND_DATA_DIR",
    "TUNEHAND_DATABASE_URL",
    "TUNEHAND_REDIS_URL",
)

NO_KEYRING = {
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent",
    "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
}


def client_env(keyring: Mapping[str, str], config_dir: Path, **extra: str) -> dict[str, str]:
    """The env of a CLI run: ours without tunehand's variables, the keyring's, the config dir.

    `tests` is put on PYTHONPATH so a test keyring backend (tests.hanging_keyring) loads.
    """
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(keyring)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["TUNEHAND_CONFIG_DIR"] = str(config_dir)
    env.update(extra)
    return env


def error_line(r: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert that a run failed with `code` and exactly one line on stderr; return it."""
    assert r.returncode == code, (
        f"exit {r.returncode}, wanted {code}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    )
    return one_line(r.stderr)


def one_line(text: str) -> str:
    """Assert that `text` is exactly one non-empty line (and no traceback); return it."""
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"not one line: {text!r}"
    assert text.endswith("\n"), text
    return lines[0]


@dataclass
class Device:
    """One client identity: a config dir and the env its CLI runs use."""

    config_dir: Path
    env: dict[str, str]
    server: str = ""
    server_log: list[str] | None = None
    """The server's output, shown when a command fails unexpectedly."""

    def _log_tail(self) -> str:
        if not self.server_log:
            return ""
        return "\nserver log (last lines):\n" + "\n".join(self.server_log[-15:])

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tunehand_cmd(*args),
            input=input,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run a command that must succeed without complaint; return its stdout."""
        r = self.run(*args, input=input)
        assert r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr!r}{self._log_tail()}"
        assert r.stderr == "", f"{args}: {r.stderr!r}{self._log_tail()}"
        return r.stdout

    def fails(self, code: int, *args: str, input: str | None = None) -> str:
        """Run a command that must fail with `code` and one line on stderr; return the line."""
        return error_line(self.run(*args, input=input), code)

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def ctl(self, *args: str) -> str:
        return self.ok("ctl", *args)

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.json("ctl", "status")
        return st

    def queue(self) -> dict[str, Any]:
        q: dict[str, Any] = self.json("ctl", "queue")
        return q

    def login(
        self,
        server: str,
        user: str,
        password: str = PASSWORD,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        r = self.run(
            "login",
            server,
            "--user",
            user,
            "--password-stdin",
            *extra,
            input=password + "\n",
            env=env,
        )
        if r.returncode == 0:
            self.server = server
        return r

    def device_id(self) -> str:
        return (self.config_dir / "device-id").read_text().strip()

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            tunehand_cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=ROOT,
        )


def files_containing(root: Path, needles: Iterable[str]) -> list[Path]:
    """Every file under `root` whose bytes contain one of `needles`."""
    wanted = [n.encode() for n in needles if n]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in wanted):
                found.append(path)
    return found


_EOF = "\x00eof"


class LineReader:
    """Lines of a stream, read by a daemon thread, handed out with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(_EOF)

    def next(self, timeout: float = 15.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout:g} s; seen: {self.seen}") from None
        if line == _EOF:
            raise AssertionError(f"the stream ended; seen: {self.seen}")
        self.seen.append(line)
        return line


@dataclass
class FakePlayer:
    """A device on the session channel that can play (like a receiver), driven by the test.

    It records every message; `wait_for` blocks on a condition until a predicate over the
    latest state (or the messages) holds. `report_playing` tells the server the audio is
    audible, as a real player does once mpv starts.
    """

    url: str
    token: str
    device_id: str
    name: str
    capabilities: tuple[str, ...] = ("play",)
    on_prepare: str = "ready"
    """How it answers a transfer's `prepare`: "ready", "failed" or "ignore"."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] | None = None
    closed: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ws: Any = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self, timeout: float = 15.0) -> FakePlayer:
        from websockets.sync.client import connect

        ws_url = "ws://" + self.url.removeprefix("http://") + "/v1/channel"
        self._ws = self._stack.enter_context(connect(ws_url, open_timeout=timeout))
        self._ws.send(
            json.dumps(
                {
                    "type": "auth",
                    "token": self.token,
                    "device": {
                        "id": self.device_id,
                        "name": self.name,
                        "capabilities": list(self.capabilities),
                    },
                }
            )
        )
        threading.Thread(target=self._pump, daemon=True, name=f"player-{self.name}").start()
        self.wait_message(lambda m: m.get("type") == "hello", timeout)
        return self

    def _pump(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self._ws:
                msg = json.loads(raw)
                if msg.get("type") == "directive" and msg.get("action") == "prepare":
                    self._answer_prepare(msg)
                with self._cond:
                    self.messages.append(msg)
                    if msg.get("type") == "hello" and msg.get("state"):
                        self.state = msg["state"]["state"]
                    elif msg.get("type") == "state" and (
                        self.state is None or msg["version"] > self.state["version"]
                    ):
                        self.state = msg["state"]
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _answer_prepare(self, msg: dict[str, Any]) -> None:
        if self.on_prepare == "ready":
            self._ws.send(json.dumps({"type": "ready", "transfer_id": msg["transfer_id"]}))
        elif self.on_prepare == "failed":
            self._ws.send(
                json.dumps(
                    {"type": "failed", "transfer_id": msg["transfer_id"], "message": "no audio"}
                )
            )

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
                if left <= 0 or self.closed:
                    raise AssertionError(f"{self.name}: no such message; got {self.messages}")
                self._cond.wait(left)

    def wait_state(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.state is None or not pred(self.state):
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"{self.name}: state never matched; last {self.state}")
                self._cond.wait(left)
            return self.state

    def report_playing(self, position_ms: int = 0) -> None:
        """Say the current entry is audible from `position_ms` now (rate 1)."""
        with self._cond:
            st = self.state
        assert st is not None and st["active_device"] == self.device_id, st
        report = {
            "term": st["term"],
            "entry_id": st["current"],
            "position_ms": position_ms,
            "at_ms": time.time_ns() // 1_000_000,
            "playing": True,
            "rate": 1.0,
        }
        self._ws.send(json.dumps({"type": "report", "report": report}))

    def wait_closed(self, timeout: float = 15.0) -> None:
        """Block until the server closed the channel."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.closed, timeout), f"{self.name}: still open"

    def close(self) -> None:
        self._stack.close()
        self.wait_closed()


def new_device_id() -> str:
    return "d" + secrets.token_hex(10)


def add_users(srv: ServerProc, names: Iterable[str], password: str = PASSWORD) -> None:
    """Create users in the running server's database, as `admin add-user` does, in-process.

    `admin add-user` costs a second of imports per user; these tests make a user each, so
    they use the server's own account code directly. test_e2e_login covers the real command.
    """
    import asyncio

    from tunehand.server import auth
    from tunehand.server.db import accounts
    from tunehand.server.db.engine import default_url, open_engine

    async def run() -> None:
        pw_hash = await auth.hash_password(password)
        engine = open_engine(srv.database or default_url(srv.data_dir))
        try:
            async with engine.begin() as conn:
                for name in names:
                    await accounts.create_account(conn, name, pw_hash, time.time_ns() // 10**6)
        finally:
            await engine.dispose()

    asyncio.run(run())


class UserPool:
    """Fresh users of one server, made in batches ahead of time: one per test."""

    def __init__(self, srv: ServerProc, prefix: str, batch: int = 16) -> None:
        self.srv, self.prefix, self.batch = srv, prefix, batch
        self.ready: list[str] = []
        self.count = 0

    def take(self) -> str:
        if not self.ready:
            names = [f"{self.prefix}{self.count + i}" for i in range(self.batch)]
            self.count += self.batch
            add_users(self.srv, names)
            self.ready = names
        return self.ready.pop(0)
