"""A file's chapter marks, read with mutagen: MP4/M4B (Nero `chpl`, as ffmpeg writes),
ID3 `CHAP` frames (MP3), and Vorbis comments `CHAPTER001=00:00:00.000` /
`CHAPTER001NAME=` (Ogg, FLAC, Opus). Read when a client asks (the current track of
`GET /v1/session`), cached by path and mtime."""

from __future__ import annotations

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


def _read(path: str) -> tuple[Chapter, ...]:
    f: Any = mutagen.File(path)
    if f is None:
        return ()
    out: list[Chapter] = []
    if isinstance(f, mutagen.mp4.MP4) and f.chapters:
        out = [Chapter(int(c.start * 1000), str(c.title or "")) for c in f.chapters]
    elif isinstance(f.tags, mutagen.id3.ID3):
        id3: Any = f.tags
        for frame in id3.getall("CHAP"):
            title = ""
            sub = frame.sub_frames.get("TIT2") if frame.sub_frames else None
            if sub is not None and sub.text:
                title = str(sub.text[0])
            out.append(Chapter(int(frame.start_time), title))
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
