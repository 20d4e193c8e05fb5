"""`tunehand receiver`: a headless device for a box next to a speaker.

It plays what is pushed to it and logs one line per event. SIGINT/SIGTERM stop it
cleanly; if it was playing, the session is left paused at the exact position.

It keeps its memory small (`tunehand.cli.residency`): malloc tuned, and the pages
only start-up touched given back once connected and again once the first track plays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from tunehand.cli import residency
from tunehand.cli.device import build_playing_agent
from tunehand.client.agent import Agent
from tunehand.client.hooks import hooks_for
from tunehand.core.clock import clock
from tunehand.core.snapshot import Snapshot
from tunehand.desktop.service import desktop_for

log = logging.getLogger("tunehand.receiver")

SETTLE_S = 5.0
"""How long after playback first starts here the start-up pages are given back (by then
the track is open, decoding and out to the audio device)."""


class _Trimmer:
    """Give start-up pages back twice: once connected (libmpv is loaded and running),
    and SETTLE_S after playback first starts here (opening a track and the audio
    output touches more, once)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._connected = self._played = False

    def __call__(self, snap: Snapshot) -> None:
        if snap.connected and not self._connected:
            self._connected = True
            self._loop.call_soon(self._release)
        if snap.active_here and snap.state.position.playing and not self._played:
            self._played = True
            self._loop.call_later(SETTLE_S, self._release)

    def _release(self) -> None:
        # ~30 ms of reading /proc and madvise: off the loop, which may have a switch due.
        with contextlib.suppress(RuntimeError):  # the loop's executor is shut down: stopping
            self._loop.run_in_executor(None, residency.release_startup_pages)


class _EventLog:
    """One log line when what this device plays changes."""

    def __init__(self) -> None:
        self.last: tuple[object, ...] | None = None

    def __call__(self, snap: Snapshot) -> None:
        here = snap.active_here
        track = snap.track
        key = (here, track.id if track else None, snap.state.position.playing, snap.connected)
        if key == self.last:
            return
        self.last = key
        if not here:
            return
        if track is None:
            log.info("nothing to play")
            return
        state = "playing" if snap.state.position.playing else "paused"
        log.info(
            "%s %s — %s at %s",
            state,
            track.title,
            track.artist or "Unknown artist",
            clock(snap.position_ms),
        )


async def _run(args: argparse.Namespace) -> int:
    desktop = desktop_for(getattr(args, "config_dir", None))
    hooks = hooks_for(getattr(args, "config_dir", None))
    event_log = _EventLog()
    trimmer = _Trimmer(asyncio.get_running_loop())

    def on_snapshot(snap: Snapshot) -> None:
        event_log(snap)
        trimmer(snap)
        desktop.on_snapshot(snap)
        hooks.on_snapshot(snap)

    agent = build_playing_agent(args, on_snapshot=on_snapshot)
    if await desktop.start(agent):
        log.info("MPRIS: %s on the session bus", desktop.name)
    try:
        return await _serve(agent)
    finally:
        await desktop.close()


async def _serve(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "receiver %s (%s) for %s; Ctrl-C stops it",
        agent.device.name,
        agent.device.id,
        agent.channel.server,
    )
    runner = asyncio.create_task(agent.run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        stopper.cancel()
        runner.result()  # raises the reason it ended (a refused login)
        return 1
    await agent.leave()
    runner.cancel()
    log.info("receiver stopped")
    return 0


def run_receiver(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    residency.tune_malloc()  # before mpv starts its threads
    return asyncio.run(_run(args))
