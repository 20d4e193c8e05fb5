"""The encoder slots a `Transcoder` takes one of per running ffmpeg: counted in the
process (`CountedSlots`, one server process), or files locked with `flock` in a
directory that every worker of one `tunehand serve --workers N` command opens
(`FileSlots`), so the workers share one limit live: a worker may use every slot the
others leave free.

A file slot is held by an open descriptor with `flock(LOCK_EX | LOCK_NB)` on
`slot-I`; closing the descriptor drops it, and so does the kernel when the process
holding it dies (SIGKILL included), so a dead worker frees its slots at once. The
descriptors are close-on-exec: ffmpeg never inherits one. Only held slots keep a
descriptor open.

A release in this process wakes this process's waiters at once (the `Transcoder`'s
condition); a release in another worker is seen by polling: `poll_s` says how often a
queued request tries again (`None`: never, only a local release frees a slot).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

POLL_S = 0.05
"""How often a request queued for an encoder looks for a slot another worker freed
(only while it is queued; a release in its own worker wakes it at once)."""
DIR_NAME = "encoders"


class Slots(Protocol):
    """`size` slots; `take` one (its number) or None when all are held; `give` it back."""

    size: int
    poll_s: float | None

    def take(self) -> int | None: ...

    def give(self, slot: int) -> None: ...


class CountedSlots:
    """The slots of one process: a count."""

    poll_s: float | None = None

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0

    def take(self) -> int | None:
        if self.used >= self.size:
            return None
        self.used += 1
        return 0

    def give(self, slot: int) -> None:
        self.used -= 1


class FileSlots:
    """`size` slot files in `folder`, shared by every process that opens them; `take`
    raises OSError when the folder cannot be used (the `Transcoder` says so in one line)."""

    poll_s: float | None = POLL_S

    def __init__(self, folder: Path, size: int) -> None:
        self.folder = folder
        self.size = size
        self.held: dict[int, int] = {}
        """Slot number -> the descriptor holding its lock, for slots this process holds."""

    def take(self) -> int | None:
        for slot in range(self.size):
            if slot in self.held:
                continue
            path = self.folder / f"slot-{slot}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError:
                os.close(fd)
                raise
            self.held[slot] = fd
            return slot
        return None

    def give(self, slot: int) -> None:
        fd = self.held.pop(slot, None)
        if fd is not None:
            os.close(fd)  # the lock goes with the last descriptor of its open file


def prepare(data_dir: Path) -> Path:
    """The slot folder of the server using `data_dir` (made 0700; its files are 0600).
    Slot files left by a server that stopped are free: a lock dies with its process."""
    folder = data_dir / DIR_NAME
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder
