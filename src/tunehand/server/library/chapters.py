"""A file's chapter marks, read with mutagen: MP4/M4B (Nero `chpl`, as ffmpeg writes),
ID3 `CHAP` frames (MP3), and Vorbis comments `CHAPTER001=00:00:00.000` /
`CHAPTER001NAME=` (Ogg, FLAC, Opus). Read when a client asks (the current track of
`GET /v1/session`), cached by path and mtime. `from_head` reads them from the first
bytes of a file that is not here (a podcast episode's enclosure)."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Any

import mutagen
import mutagen.id3
import mutagen.mp4

MAX_CHAPTERS = 1000
CACHE = 256
_VORBIS = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$")


@dataclass(frozen=True)
class Chapter:
    start_ms: int
    title: str


_cache: dict[tuple[str, int], tuple[Chapter, ...]] = {}


def chapters(path: str) -> tuple[Chapter, ...]:
    """The chapters of the file at `path`, in order (none when it has none or cannot be
    read)."""
    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError:
        return ()
    hit = _cache.get(key)
    if hit is not None:
        return hit
    try:
        found = _read(path)
    except Exception:  # a broken file has no chapters; mutagen raises many kinds
        found = ()
    if len(_cache) >= CACHE:
        _cache.clear()
    _cache[key] = found
    return found


def from_head(data: bytes) -> tuple[Chapter, ...]:
    """The chapters in the first bytes of a file (a podcast episode's, fetched from its
    host): an ID3 tag at the start (MP3), else whatever mutagen makes of what is there
    (an Ogg file's comments are near its start; an MP4's `moov` only when it comes first).
    None when nothing can be read."""
    try:
        if data[:3] == b"ID3":
            cls: Any = mutagen.id3.ID3
            return _id3(cls(io.BytesIO(data)))
        f: Any = mutagen.File(io.BytesIO(data))
        return _marks(f) if f is not None else ()
    except Exception:  # a cut or broken file has no chapters; mutagen raises many kinds
        return ()


def id3_size(head: bytes) -> int | None:
    """The whole size of the ID3v2 tag a file starts with (header, footer), from its
    first 10 bytes, or None when it starts with none."""
    if len(head) < 10 or head[:3] != b"ID3":
        return None
    raw = head[6:10]
    if any(b & 0x80 for b in raw):
        return None
    size = (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _id3(id3: Any) -> tuple[Chapter, ...]:
    out: list[Chapter] = []
    for frame in id3.getall("CHAP"):
        title = ""
        sub = frame.sub_frames.get("TIT2") if frame.sub_frames else None
        if sub is not None and sub.text:
            title = str(sub.text[0])
        out.append(Chapter(int(frame.start_time), title))
    out.sort(key=lambda c: c.start_ms)
    return tuple(out[:MAX_CHAPTERS])


def _read(path: str) -> tuple[Chapter, ...]:
    f: Any = mutagen.File(path)
    if f is None:
        return ()
    return _marks(f)


def _marks(f: Any) -> tuple[Chapter, ...]:
    out: list[Chapter] = []
    if isinstance(f, mutagen.mp4.MP4) and f.chapters:
        out = [Chapter(int(c.start * 1000), str(c.title or "")) for c in f.chapters]
    elif isinstance(f.tags, mutagen.id3.ID3):
        return _id3(f.tags)
    elif f.tags is not None and hasattr(f.tags, "keys"):
        tags = {str(k).upper(): v for k, v in f.tags.items()}
        for n in range(1, MAX_CHAPTERS):
            raw = tags.get(f"CHAPTER{n:03d}")
            if not raw:
                break
            m = _VORBIS.match(str(raw[0] if isinstance(raw, list) else raw))
            if m is None:
                continue
            h, mi, s, frac = m.groups()
            ms = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1000 + int((frac or "0").ljust(3, "0"))
            name = tags.get(f"CHAPTER{n:03d}NAME")
            title = str(name[0] if isinstance(name, list) else name) if name else ""
            out.append(Chapter(ms, title))
    out.sort(key=lambda c: c.start_ms)
    return tuple(out[:MAX_CHAPTERS])
