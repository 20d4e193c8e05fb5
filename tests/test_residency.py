"""`tunehand.cli.residency`: which mappings may be dropped, and that dropping them is
harmless to a process that goes on using its libraries (mpv included); mpv's built-in
scripts are off unless the user asks for them."""

from __future__ import annotations

import asyncio
import ctypes
import json
import ssl
import sys
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tunehand.cli import residency
from tunehand.player.base import Ended, Failed, PlayerEvent, Ready
from tunehand.player.mpv_player import MpvPlayer

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")

SMAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 100 /usr/bin/python3.11
Rss:                   4 kB
Anonymous:             0 kB
55d0c0001000-55d0c0100000 r-xp 00001000 08:01 100 /usr/bin/python3.11
Anonymous:             0 kB
7f0000000000-7f0000010000 r--p 00100000 08:01 200 /usr/lib/libfoo.so.1
Anonymous:            12 kB
7f0000010000-7f0000020000 rw-p 00110000 08:01 200 /usr/lib/libfoo.so.1
Anonymous:             0 kB
7f0000020000-7f0000030000 r--s 00000000 08:01 300 /dev/shm/segment
Anonymous:             0 kB
7f0000030000-7f0000040000 r--p 00000000 08:01 400 /tmp/gone.so (deleted)
Anonymous:             0 kB
7f0000040000-7f0000050000 rw-p 00000000 00:00 0
Anonymous:            64 kB
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
"""


def test_only_clean_private_read_only_file_mappings_are_dropped() -> None:
    assert residency._clean_file_mappings(SMAPS) == [
        (0x55D0C0000000, 0x55D0C0001000),
        (0x55D0C0001000, 0x55D0C0100000),
    ]


@linux
def test_a_process_goes_on_after_its_pages_are_released() -> None:
    assert residency.release_startup_pages() >= 0
    # Code and read-only data come back on first touch.
    assert json.loads(json.dumps({"a": [1, 2.5]})) == {"a": [1, 2.5]}
    ssl.create_default_context()
    libc = ctypes.CDLL(None)
    assert libc.strlen(b"tunehand") == 8


PLAY_TIMEOUT_S = 30.0
"""Far more than the track's 3 s of playback (ao=null plays in real time)."""


@linux
async def test_mpv_plays_on_after_its_pages_are_released(flac_path: str) -> None:
    events: asyncio.Queue[PlayerEvent] = asyncio.Queue()
    player = MpvPlayer(events.put_nowait, asyncio.get_running_loop(), {"ao": "null"})
    seen: list[PlayerEvent] = []

    async def until(kind: type) -> PlayerEvent:
        try:
            async with asyncio.timeout(PLAY_TIMEOUT_S):
                while True:
                    seen.append(await events.get())
                    if isinstance(seen[-1], kind | Failed):
                        return seen[-1]
        except TimeoutError:
            pytest.fail(f"no {kind.__name__} within {PLAY_TIMEOUT_S:g} s; events: {seen}")

    try:
        assert residency.release_startup_pages() >= 0
        player.load("t", flac_path, position_ms=0, paused=False)
        assert await until(Ready) == Ready("t")
        start = player.position_ms()
        assert start is not None and start < 1000, start
        assert not player.paused()
        # Playing on to the end: the position went from the start past every point.
        assert await until(Ended) == Ended("t")
        assert not any(isinstance(e, Failed) for e in seen), seen
    finally:
        player.close()


def test_builtin_scripts_are_off_unless_asked_for() -> None:
    loop = asyncio.new_event_loop()
    quiet = MpvPlayer(lambda event: None, loop, {"ao": "null"})
    chatty = MpvPlayer(lambda event: None, loop, {"ao": "null", "load-stats-overlay": "yes"})
    try:
        assert quiet._mpv["load-stats-overlay"] is False
        assert quiet._mpv["load-auto-profiles"] in (False, "no")
        assert chatty._mpv["load-stats-overlay"] is True
    finally:
        quiet.close()
        chatty.close()
        loop.close()


@pytest.fixture
def flac_path(tmp_path: Path) -> str:
    return str(make_track(tmp_path, "t", "flac", title="T", duration_s=3.0))
