"""The encoder slots the workers of one `serve --workers N` share (`FileSlots`), across
real processes: a slot held in one is refused in the other until given back; a process
killed with SIGKILL frees its slots at once; a `Transcoder` queued for a slot another
process holds gets it when that process gives it back, or is refused with one line.
Each step is driven through a pipe to the other process (no sleeps)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import anyio
import pytest

from tunehand.server import encoder_slots, transcode
from tunehand.server.encoder_slots import CountedSlots, FileSlots
from tunehand.server.transcode import Busy, Transcoder


def _holder(folder: str, size: int, conn: Connection) -> None:
    """Another process: takes or gives slots when told, answering each time."""
    slots = FileSlots(Path(folder), size)
    while True:
        what, slot = conn.recv()
        if what == "take":
            conn.send(slots.take())
        else:
            slots.give(slot)
            conn.send(None)


class Other:
    """The other process and its end of the pipe."""

    def __init__(self, folder: Path, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=_holder, args=(str(folder), size, theirs), daemon=True)
        self.proc.start()
        theirs.close()

    def take(self) -> int | None:
        self.conn.send(("take", 0))
        got: int | None = self.conn.recv()
        return got

    def give(self, slot: int) -> None:
        self.conn.send(("give", slot))
        self.conn.recv()

    def kill(self) -> None:
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(timeout=30)
        assert self.proc.exitcode == -signal.SIGKILL


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return encoder_slots.prepare(tmp_path)


@pytest.fixture
def other(folder: Path) -> Iterator[Other]:
    proc = Other(folder, 2)
    yield proc
    if proc.proc.is_alive():
        proc.kill()


def test_the_folder_is_private(tmp_path: Path) -> None:
    (tmp_path / "encoders").mkdir(mode=0o755)
    folder = encoder_slots.prepare(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    slots = FileSlots(folder, 1)
    assert slots.take() == 0
    assert stat.S_IMODE((folder / "slot-0").stat().st_mode) == 0o600


def test_a_slot_held_in_one_process_is_refused_in_the_other(folder: Path, other: Other) -> None:
    here = FileSlots(folder, 2)
    assert here.take() == 0
    assert other.take() == 1
    assert here.take() is None and other.take() is None  # two slots for both processes
    other.give(1)
    assert here.take() == 1  # the other's release is this one's at once
    assert other.take() is None
    here.give(0)
    assert other.take() == 0


def test_a_killed_process_frees_its_slots(folder: Path, other: Other) -> None:
    assert other.take() == 0 and other.take() == 1
    here = FileSlots(folder, 2)
    assert here.take() is None
    other.kill()  # SIGKILL: no code of its runs; the kernel drops its locks
    assert here.take() == 0 and here.take() == 1


def test_counted_slots_are_a_count() -> None:
    slots = CountedSlots(2)
    assert [slots.take(), slots.take(), slots.take()] == [0, 0, None]
    slots.give(0)
    assert slots.take() == 0


async def test_a_queued_request_gets_the_slot_another_process_frees(
    folder: Path, other: Other
) -> None:
    """The transcoder's queue sees a slot freed in another process (by looking again
    while queued), and past the wait refuses with one line."""
    assert other.take() == 0 and other.take() == 1
    coder = Transcoder(2, "ffmpeg", folder)
    got: list[int] = []
    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            got.append(await coder._acquire())

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert coder.waiting == 1 and not got  # queued: both slots are the other's
        await anyio.to_thread.run_sync(other.give, 1)
    assert got == [1] and coder.running == 1
    await coder._release(1)
    assert other.take() == 1


async def test_a_queued_request_is_refused_when_no_slot_frees(
    folder: Path, other: Other, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcode, "QUEUE_WAIT_S", 0.3)
    assert other.take() == 0
    coder = Transcoder(1, "ffmpeg", folder)
    with pytest.raises(Busy) as refused:
        await coder._acquire()
    message = refused.value.message
    assert message.startswith("all 1 encoders stayed busy for") and "\n" not in message
    assert coder.waiting == 0 and coder.running == 0
