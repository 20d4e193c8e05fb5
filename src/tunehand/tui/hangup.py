"""Ending the app when it is told to stop or its terminal goes away.

Owns `exit_on_hangup`: while the app runs, SIGHUP and SIGTERM end it as `q` would, and so
does its terminal hanging up (a closed window, a dropped `ssh -t`) even when no SIGHUP
comes: the kernel signals only the session's leader, and a leader such as `make` waits
for its children instead of passing the signal on, which left the app reading an empty
terminal at 100 % of a core. A daemon thread polls the terminal for POLLHUP (it reads
nothing, so the app's own input is untouched).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from textual.app import App

SIGNALS = (signal.SIGHUP, signal.SIGTERM)


@contextlib.contextmanager
def exit_on_hangup(app: App[Any], fd: int = 0) -> Iterator[None]:
    """Within the block, SIGHUP, SIGTERM or a hang-up of terminal `fd` exits `app`."""

    def stop() -> None:
        # From any thread: the app's loop runs `exit`, and this returns at once.
        threading.Thread(target=_exit, args=(app,), daemon=True).start()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    if os.isatty(fd):
        threading.Thread(
            target=_watch, args=(fd, stop), name="tunehand-hangup", daemon=True
        ).start()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit(app: App[Any]) -> None:
    with contextlib.suppress(RuntimeError):  # the app has already stopped
        app.call_from_thread(app.exit)


def _watch(fd: int, stop: Any) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: POLLHUP/POLLERR/POLLNVAL come anyway
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
            stop()
            return
