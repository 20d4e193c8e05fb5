"""Keeping a long-running headless process small in memory (Linux; a no-op elsewhere).

libmpv links about 230 shared libraries (every codec, filter and output ffmpeg and mpv
were built with). Loading them touches some 45 MB of their pages once, for relocation
and constructors; those pages then stay mapped, counted in the process's RSS, though
playing audio uses a few MB of them. `release_startup_pages()` returns free malloc
memory to the system and asks the kernel to page out (`MADV_PAGEOUT`, Linux 5.4+) the
clean, read-only, file-backed mappings: their pages are unchanged copies of the files,
so they are simply reclaimed, and what is really used comes back on first touch.
`MADV_PAGEOUT` never destroys data (unlike `MADV_DONTNEED`, which would zero a private
anonymous mapping if one took a listed range between reading smaps and the call), and
pages that other processes also map are left alone. On an older kernel the call fails
and nothing happens.

`tune_malloc()` (glibc) caps the per-thread malloc arenas (it must run before mpv starts
its threads) and fixes the mmap threshold at its default. Left dynamic, glibc raises it
when a large mmapped block is freed: mpv frees such buffers when a track closes, from
the next track on they come from the heap, and there they stay once freed (about 10 MB
more from the second track on).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys

log = logging.getLogger("tunehand.residency")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MADV_PAGEOUT = 21
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library the interpreter runs on, when it is glibc on Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library's among them
        libc.mallopt  # noqa: B018  glibc's (musl has neither): AttributeError
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc


def tune_malloc(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas (glibc's default: 8 per core) and a fixed mmap
    threshold; False when this is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_ARENA_MAX, arenas) == 1
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and ok)


def _clean_file_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, end) of every private, read-only, file-backed mapping with no anonymous
    (copied-on-write) page: dropping its pages loses nothing."""
    out: list[tuple[int, int]] = []
    span: tuple[int, int] | None = None
    for line in smaps.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and ":" not in head:  # a mapping's first line
            span = None
            fields = rest.split(maxsplit=4)
            path = fields[4].strip() if len(fields) == 5 else ""
            perms = fields[0]
            read_only_private = len(perms) == 4 and perms[1] == "-" and perms[3] == "p"
            if read_only_private and path.startswith("/") and not path.endswith("(deleted)"):
                start, _, end = head.partition("-")
                span = (int(start, 16), int(end, 16))
        elif head == "Anonymous:" and span is not None:
            if rest.split()[0] == "0":
                out.append(span)
            span = None
    return out


def release_startup_pages() -> int:
    """Return free heap to the system and drop the pages of clean read-only file
    mappings; the KiB of RSS released (0 when not on Linux with glibc)."""
    libc = _libc()
    if libc is None:
        return 0
    before = _rss_kib()
    libc.malloc_trim(0)
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
            spans = _clean_file_mappings(f.read())
    except OSError as exc:
        log.debug("cannot read /proc/self/smaps: %s", exc)
        return 0
    for start, end in spans:
        libc.madvise(start, end - start, MADV_PAGEOUT)
    released = max(0, before - _rss_kib())
    log.debug("released %d KiB of start-up pages (%d mappings)", released, len(spans))
    return released


def _rss_kib() -> int:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
