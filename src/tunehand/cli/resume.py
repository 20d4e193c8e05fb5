"""`tunehand resume`: pull the session to this terminal and play in the foreground.

A one-line live status (title, artist, elapsed/duration, play state, device). Keys:
space pause, n/p next/previous, ←/→ seek 5 s, +/- volume, q quit. Quitting (q or
Ctrl-C) leaves the session paused at the exact position for the next device. With
nothing in the session it says so and exits 1. Without a terminal it just plays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Iterator
from typing import Any

from tunehand.cli.ctl import client_for, play_request
from tunehand.cli.ctl_args import play_what_argv
from tunehand.cli.device import build_playing_agent
from tunehand.client.agent import Agent
from tunehand.client.hooks import hooks_for
from tunehand.core import names
from tunehand.core.clock import clock, extrapolate
from tunehand.core.commands import Result
from tunehand.core.snapshot import Snapshot
from tunehand.desktop.service import desktop_for
from tunehand.errors import CommandRefused, ServerUnreachable, TunehandError

CONNECT_TIMEOUT_S = 15.0
KEYS = {
    " ": ("toggle", {}),
    "n": ("next", {}),
    "p": ("prev", {}),
    "\x1b[C": ("seek", {"delta_ms": 5000}),
    "\x1b[D": ("seek", {"delta_ms": -5000}),
    "+": ("volume", {"delta": 5}),
    "=": ("volume", {"delta": 5}),
    "-": ("volume", {"delta": -5}),
}


def status_line(snap: Snapshot, now_ms: int, width: int) -> str:
    st = snap.state
    track = snap.track
    if track is None:
        return "nothing is playing"[:width]
    icon = "▶" if st.position.playing else "⏸"
    p = st.position
    pos = extrapolate(p.position_ms, p.at_ms, p.playing, p.rate, now_ms, track.duration_ms)
    where = snap.device_name(st.active_device) or "no device"
    conn = "" if snap.connected else "  [offline]"
    line = (
        f"{icon} {track.title} — {track.artist or 'Unknown artist'}  "
        f"{clock(pos)}/{clock(track.duration_ms or None)}  vol {st.volume}  on {where}{conn}"
    )
    return names.line(line)[: max(10, width)]  # a device's name: no escape codes


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


class _Screen:
    def __init__(self, agent: Agent, tty: bool) -> None:
        self.agent = agent
        self.tty = tty
        self.snap: Snapshot | None = None
        self.held: list[str] | None = []
        """Events before the pull succeeded: shown after it, dropped if it fails (then
        the error is the one line on stderr)."""
        self.drawn = False
        """A status line is on the terminal without its newline yet."""
        self.closed = False

    def __call__(self, snap: Snapshot) -> None:
        self.snap = snap
        if snap.event and not self.tty:
            if self.held is not None:
                self.held.append(snap.event)
            else:
                print(snap.event, file=sys.stderr, flush=True)
        self.draw()

    def release(self) -> None:
        """The pull succeeded: show the events held until now, and the next ones as they come."""
        held, self.held = self.held or [], None
        for event in held:
            print(event, file=sys.stderr, flush=True)

    def draw(self) -> None:
        if not self.tty or self.snap is None or self.closed:
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = status_line(self.snap, self.agent.server_now(), width)
        sys.stdout.write("\r\x1b[K" + line)
        sys.stdout.flush()
        self.drawn = True

    def close(self) -> None:
        """End the status line (as last drawn) with a newline, so that the shell's prompt,
        or the error line, starts on a line of its own; draw nothing after it."""
        self.closed = True
        if self.drawn:
            self.drawn = False
            sys.stdout.write("\n")
            sys.stdout.flush()


async def _pull(agent: Agent, request: dict[str, Any]) -> None:
    st = agent.mirror.state
    if request:  # `resume TRACK|--search Q|...`: play that here
        if st.queue and st.active_device not in (None, agent.device.id):
            await _checked(agent.pull())
        res = await _checked(agent.command("play", device_id=agent.device.id, **request))
        await agent.wait_for(lambda st: st.version >= res.version, CONNECT_TIMEOUT_S)
        if agent.mirror.state.active_device != agent.device.id:
            await _checked(agent.pull())
        return
    if not st.queue:
        raise TunehandError(
            "nothing to resume: the queue is empty (play something here: `tunehand resume "
            "--search QUERY`, or TRACK_ID, --album ID, --playlist NAME)"
        )
    if st.active_device != agent.device.id:
        res = await agent.pull()
        if not res.ok:
            raise CommandRefused(res.code, res.message)
    if not agent.mirror.state.position.playing:
        res = await agent.command("play")
        if not res.ok:
            raise CommandRefused(res.code, res.message)


async def _checked(pending: Awaitable[Result]) -> Result:
    res = await pending
    if not res.ok:
        raise CommandRefused(res.code, res.message)
    return res


def _play_request(args: argparse.Namespace) -> dict[str, Any]:
    """The tracks `resume` was asked to play (resolved before connecting), or {}."""
    if not play_what_argv(args):
        return {}
    api = client_for(args)
    try:
        return play_request(api, args)
    finally:
        api.http.close()


async def _run(args: argparse.Namespace) -> int:
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    request = await asyncio.to_thread(_play_request, args)
    screen: _Screen | None = None
    desktop = desktop_for(getattr(args, "config_dir", None))
    hooks = hooks_for(getattr(args, "config_dir", None))

    def on_snapshot(snap: Snapshot) -> None:
        if screen is not None:
            screen(snap)
        desktop.on_snapshot(snap)
        hooks.on_snapshot(snap)

    agent = build_playing_agent(args, on_snapshot=on_snapshot)
    screen = _Screen(agent, tty)
    await desktop.start(agent)
    try:
        return await _play(agent, screen, tty, request)
    finally:
        screen.close()
        await desktop.close()


async def _play(agent: Agent, screen: _Screen, tty: bool, request: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    quit_ = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, quit_.set)
    runner = asyncio.create_task(agent.run())
    try:
        waiting = asyncio.create_task(agent.first_state.wait())
        failing = asyncio.create_task(agent.channel.attempt_failed.wait())
        refused = asyncio.create_task(_refused(agent.channel.server))
        done, _ = await asyncio.wait(
            {runner, waiting, failing, refused},
            timeout=CONNECT_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        failing.cancel()
        refused.cancel()
        if runner in done:
            runner.result()
        if waiting in done:
            await _pull(agent, request)
        else:
            waiting.cancel()
            # No server: play the session as last known from the offline cache.
            offline = agent.offline
            if request or offline is None or not offline.start_from_cache():
                raise ServerUnreachable(f"cannot reach the server at {agent.channel.server}")
        screen.release()
        if tty:
            fd = sys.stdin.fileno()
            with _raw_terminal(fd):
                loop.add_reader(fd, _on_key, agent, fd, quit_)
                ticker = asyncio.create_task(_tick(screen))
                try:
                    await _until(quit_, runner)
                finally:
                    loop.remove_reader(fd)
                    ticker.cancel()
        else:
            await _until(quit_, runner)
        await agent.leave()
        return 0
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


async def _refused(server: str) -> None:
    """Return when the server's port refuses a connection (the server is down: no need
    to wait for the channel's own attempt to say so); else never."""
    from tunehand.client.http import split_server_url

    _, host, port, _ = split_server_url(server)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), port), 5)
    except (ConnectionRefusedError, OSError):
        return
    except TimeoutError:
        pass
    else:
        writer.close()
    await asyncio.Event().wait()


async def _until(quit_: asyncio.Event, runner: asyncio.Task[None]) -> None:
    stopper = asyncio.create_task(quit_.wait())
    done, _ = await asyncio.wait({stopper, runner}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if runner in done:
        runner.result()


async def _tick(screen: _Screen) -> None:
    while True:
        await asyncio.sleep(0.25)
        screen.draw()


def _on_key(agent: Agent, fd: int, quit_: asyncio.Event) -> None:
    data = os.read(fd, 16).decode(errors="ignore")
    if not data or "q" in data or "\x03" in data:
        quit_.set()
        return
    action = KEYS.get(data) or KEYS.get(data[:1])
    if action is not None:
        op, fields = action
        task = asyncio.ensure_future(agent.command(op, **fields))
        task.add_done_callback(lambda t: t.exception())


def run_resume(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("tunehand.agent").setLevel(logging.WARNING)
    return asyncio.run(_run(args))
