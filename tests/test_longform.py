"""Long-form listening with a real receiver (mpv, ao=null, read over its IPC socket):
`ctl speed` kept per kind (mpv's `speed`, pitch kept), chapters from the file's marks
(an .m4b made by ffmpeg at test time), an audiobook resuming where it was, and the
sleep timer (`ctl sleep 3s|end|off`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.device_helpers import (
    DeviceDir,
    Receiver,
    World,
    ctl,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    serving_world,
    status,
)

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None or shutil.which("ffmpeg") is None,
    reason="sox and ffmpeg make the test audio",
)

CHAPTERS = (("Opening", 0), ("Middle", 10_000), ("Closing", 20_000))


def make_book(music: Path) -> Path:
    """An .m4b of 30 s, genre Audiobook, with three chapters (ffmpeg's FFMETADATA)."""
    raw = music / "book.m4a.tmp"
    meta = music / "book.meta"
    out = music / "The Book.m4b"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=30",
            "-c:a",
            "aac",
            "-f",
            "mp4",
            str(raw),
        ],
        check=True,
    )
    lines = [";FFMETADATA1", "title=The Book", "artist=Reader", "genre=Audiobook"]
    for i, (title, start) in enumerate(CHAPTERS):
        end = CHAPTERS[i + 1][1] if i + 1 < len(CHAPTERS) else 30_000
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={start}", f"END={end}", f"title={title}"]
    meta.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(raw),
            "-i",
            str(meta),
            "-map_metadata",
            "1",
            "-map_chapters",
            "1",
            "-c",
            "copy",
            "-f",
            "mp4",
            str(out),
        ],
        check=True,
    )
    raw.unlink()
    meta.unlink()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_mpv()
    root = tmp_path_factory.mktemp("longform")
    music = root / "music"
    make_tones(music, ("Music Tone",), album="Tones", duration_s=40)
    make_tones(music / "short", ("Short Tone",), album="Shorts", duration_s=6)
    make_book(music)
    with serving_world(root, music, [f"long{i}" for i in range(8)], "th-long-") as w:
        yield w


@dataclass
class Setup:
    remote: DeviceDir
    box: Receiver
    ids: dict[str, str]


@pytest.fixture
def setup(world: World, tmp_path: Path) -> Iterator[Setup]:
    remote = DeviceDir("laptop", tmp_path / "laptop")
    box = DeviceDir("box", tmp_path / "box")
    login_all(world.srv.url, world.user(), [remote, box])
    ids = {}
    for title in ("Music Tone", "Short Tone", "The Book"):
        found = json.loads(ctl_ok(remote, "search", title, "--json"))
        ids[title] = next(t["id"] for t in found if t["title"] == title)
    r = Receiver.start(box, world.sock_dir)
    try:
        yield Setup(remote, r, ids)
    finally:
        r.stop()
        print(r.lines.text())


def play(s: Setup, title: str) -> None:
    ctl_ok(s.remote, "play", s.ids[title])
    s.box.ipc.wait_prop("path", lambda v: isinstance(v, str) and s.ids[title] in v)


def wait_status(dev: DeviceDir, pred: Any, what: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = status(dev)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what} in {timeout:g} s: {st}")


def test_speed_is_kept_per_kind_with_the_pitch(setup: Setup) -> None:
    s, ipc = setup, setup.box.ipc
    play(s, "Music Tone")
    assert "music plays at 1.5x" in ctl_ok(s.remote, "speed", "1.5")
    ipc.wait_prop("speed", lambda v: v == 1.5)
    assert ipc.get("audio-pitch-correction") is True  # scaletempo: the pitch is kept
    play(s, "The Book")  # long-form: its own speed, still 1
    ipc.wait_prop("speed", lambda v: v == 1.0)
    assert "long-form plays at 2x" in ctl_ok(s.remote, "speed", "2")
    ipc.wait_prop("speed", lambda v: v == 2.0)
    # The session's clock runs at the speaker's speed.
    first = ipc.wait_time_pos(lambda v: v >= 1.0)
    ipc.wait_time_pos(lambda v: v >= first + 4.0)
    st = status(s.remote)
    mpv_now = ipc.time_pos()
    assert mpv_now is not None and st["speed"] == 2.0
    assert abs(st["position_ms"] / 1000 - mpv_now) < 1.0, (st, mpv_now)
    play(s, "Music Tone")
    ipc.wait_prop("speed", lambda v: v == 1.5)
    for bad in ("4", "0.1", "fast", "nan"):
        r = ctl(s.remote, "speed", bad)
        assert r.returncode == 2 and "0.5 to 3.0" in r.stderr, r.stderr


def test_chapters_from_the_file(setup: Setup) -> None:
    s, ipc = setup, setup.box.ipc
    play(s, "Music Tone")
    r = ctl(s.remote, "chapter", "next")
    assert r.returncode == 5 and "no chapters" in r.stderr, r.stderr
    play(s, "The Book")
    st = status(s.remote)
    assert st["chapters"] == [{"title": t, "start_ms": ms} for t, ms in CHAPTERS]
    assert st["chapter"] == 0
    assert "chapter 2: Middle" in ctl_ok(s.remote, "chapter", "next")
    ipc.wait_time_pos(lambda v: 10.0 <= v < 14.0)
    wait_status(s.remote, lambda st: st["chapter"] == 1, "in chapter 2")
    ctl_ok(s.remote, "chapter", "next")
    ipc.wait_time_pos(lambda v: 20.0 <= v < 24.0)
    r = ctl(s.remote, "chapter", "next")
    assert r.returncode == 5 and "last chapter" in r.stderr, r.stderr
    # Within 3 s of a chapter's start, prev goes to the one before.
    assert "chapter 2: Middle" in ctl_ok(s.remote, "chapter", "prev")
    ipc.wait_time_pos(lambda v: 10.0 <= v < 13.0)
    assert "Middle" in ctl_ok(s.remote, "status")


def test_an_audiobook_resumes_where_it_was(setup: Setup) -> None:
    s, ipc = setup, setup.box.ipc
    play(s, "The Book")
    ipc.wait_time_pos(lambda v: v >= 5.0)
    play(s, "Music Tone")
    items = json.loads(ctl_ok(s.remote, "continue", "--json"))
    assert [(i["id"], i["kind"]) for i in items] == [(s.ids["The Book"], "audiobook")], items
    kept = items[0]["position_ms"]
    assert kept >= 5000 and items[0]["title"] == "The Book"
    # Music is not long-form: it keeps no place of its own.
    play(s, "The Book")
    first = ipc.wait_time_pos(lambda v: True)
    assert first >= kept / 1000 - 1.0, (first, kept)


def test_sleep_timer_pauses_after_a_time_or_at_the_end(setup: Setup) -> None:
    s, ipc = setup, setup.box.ipc
    play(s, "Music Tone")
    assert "pausing at" in ctl_ok(s.remote, "sleep", "3s")
    wait_status(s.remote, lambda st: not st["playing"], "paused")
    ipc.wait_prop("pause", lambda v: v is True)
    # `end`: the session stops at the end of the current entry, at the next one's start.
    play(s, "Short Tone")
    ctl_ok(s.remote, "queue", "add", s.ids["Music Tone"])
    assert "end of this one" in ctl_ok(s.remote, "sleep", "end")
    st = wait_status(
        s.remote,
        lambda st: st["track"] and st["track"]["id"] == s.ids["Music Tone"] and not st["playing"],
        "paused at the next entry",
    )
    assert st["position_ms"] < 1500, st
    ipc.wait_prop("pause", lambda v: v is True)
    # `off` cancels; a timer that cannot be read is a usage error.
    ctl_ok(s.remote, "sleep", "off")
    for bad in ("soon", "0", "25h"):
        r = ctl(s.remote, "sleep", bad)
        assert r.returncode == 2 and "30m, 1h, 90s, end or off" in r.stderr, r.stderr
