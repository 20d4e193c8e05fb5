"""`tunehand demo` (what `make demo` runs) stops everything it started, however it ends.

The demo runs under real `make`, as the session leader of a fresh pseudo-terminal, the way
`tmux new-window 'make demo'` or `ssh -t host make demo` runs it. Closing the terminal,
SIGTERM or SIGHUP to the demo, or killing it outright must leave no `make`, TUI, server or
receiver behind. Every wait is on a process's exit (pidfd) or on the terminal's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import NO_KEYRING, ROOT
from tests.fixtures_server import child_pids
from tunehand.cli.demo import pick_port
from tunehand.demo import make_demo_library

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("sox") is None, reason="needs make and sox"
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo library, generated once for the module (each demo copies it)."""
    return make_demo_library(tmp_path_factory.mktemp("demo-library") / "music")


class Terminal:
    """A pseudo-terminal whose output is collected by a thread."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.output = b""
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            with self._changed:
                if not chunk:
                    self._changed.notify_all()
                    return
                self.output += chunk
                self._changed.notify_all()

    def wait_for(self, text: bytes, timeout: float = START_TIMEOUT_S) -> None:
        with self._changed:
            ok = self._changed.wait_for(lambda: text in self.output, timeout)
        assert ok, f"{text!r} never showed; the terminal showed:\n{self.output[-3000:]!r}"

    def hang_up(self) -> None:
        os.close(self.master)


@contextlib.contextmanager
def demo_under_make(
    tmp_path: Path, library: Path
) -> Iterator[tuple[Terminal, subprocess.Popen[bytes]]]:
    demo_dir = tmp_path / "demo"
    shutil.copytree(library, demo_dir / "music")
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        f".PHONY: demo\ndemo:\n\t@{sys.executable} -m tunehand demo --dir {demo_dir} --port 0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEHAND_")}
    env.update(NO_KEYRING, PYTHONPATH=str(ROOT / "src"), TERM="xterm-256color")
    term = Terminal()

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    make = subprocess.Popen(
        ["make", "-s", "-f", str(makefile), "demo"],
        stdin=term.slave,
        stdout=term.slave,
        stderr=term.slave,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        preexec_fn=controlling_tty,
    )
    os.close(term.slave)
    try:
        yield term, make
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait()


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out = [pid]
    for child in child_pids(pid):
        out += tree(child)
    return out


def wait_all_gone(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """Wait on each process's pidfd until it has exited; fail naming those still alive."""
    fds = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            ready, _, _ = select.select(list(fds), [], [], max(0.0, left))
            if not ready:
                alive = [_cmdline(p) for p in fds.values()]
                raise AssertionError(f"still running after {timeout:g} s: {alive}")
            for fd in ready:
                del fds[fd]
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return str(pid)


def started(term: Terminal, make: subprocess.Popen[bytes]) -> tuple[int, list[int]]:
    """Wait until the TUI shows the library; the demo's pid and every process of the demo."""
    term.wait_for(b"config dir is")
    term.wait_for(b"Artists")
    (demo,) = child_pids(make.pid)
    procs = tree(make.pid)
    cmds = " | ".join(_cmdline(p) for p in procs)
    assert "serve" in cmds and "receiver" in cmds, cmds
    return demo, procs


def test_closing_the_terminal_ends_the_whole_demo(tmp_path: Path, library: Path) -> None:
    """make holds the session and waits: only the hang-up itself can tell the TUI."""
    with demo_under_make(tmp_path, library) as (term, make):
        _, procs = started(term, make)
        term.hang_up()
        wait_all_gone(procs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_signal_to_the_demo_ends_all_of_it(
    tmp_path: Path, library: Path, sig: signal.Signals
) -> None:
    with demo_under_make(tmp_path, library) as (term, make):
        demo, procs = started(term, make)
        os.kill(demo, sig)
        wait_all_gone(procs)  # make among them


def test_the_demo_port_is_8440_or_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert pick_port(None, default=port) == 0  # taken: the server picks a free port
    assert pick_port(None, default=port) == port  # free again
    assert pick_port(9999) == 9999  # asked for: as asked
