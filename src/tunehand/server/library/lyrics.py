"""Reading a track's lyrics from its file or an `.lrc` file beside it (blocking; mutagen).

Where lyrics are looked for, first found wins:
1. `NAME.lrc` beside `NAME.ext` (LRC: synced when stamped);
2. an ID3 `SYLT` frame (synced; times in ms or MPEG frames);
3. ID3 `USLT`, Vorbis comments `LYRICS` / `UNSYNCEDLYRICS`, MP4 `©lyr`, APEv2 `Lyrics`
   (synced when the text carries LRC stamps, as many taggers write it).

A damaged file, a missing file or an undecodable `.lrc` gives None (no lyrics), never an
error: lyrics are a nicety, the track still plays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mutagen
from mutagen.id3 import ID3

from tunehand.core.lyrics import MAX_LINES, MAX_TEXT_CHARS, LyricLine, Lyrics, from_text, parse_lrc

MAX_LRC_BYTES = 1_000_000
TEXT_KEYS = ("lyrics", "unsyncedlyrics", "\xa9lyr")
"""Vorbis comment and MP4 keys that hold lyrics (compared case-insensitively)."""
MPEG_FRAME_MS = 1152 / 44.1
"""SYLT with timestamps in MPEG frames: 1152 samples at 44.1 kHz."""


def read_lyrics(path: str) -> Lyrics | None:
    """The lyrics of the audio file at `path`, or None when it has none."""
    found = _lrc_beside(Path(path))
    if found is not None:
        return found
    try:
        audio = mutagen.File(path)
    except Exception:  # mutagen's parsers leak all sorts on damaged files
        return None
    tags = getattr(audio, "tags", None) if audio is not None else None
    if tags is None:
        return None
    if isinstance(tags, ID3):
        return _id3(tags)  # mutagen's ID3 is untyped: read through Any
    return _text_tags(tags)


def _lrc_beside(path: Path) -> Lyrics | None:
    lrc = path.with_suffix(".lrc")
    try:
        with lrc.open("rb") as f:
            raw = f.read(MAX_LRC_BYTES)
    except OSError:
        return None
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        found = parse_lrc(text)
        return found if found.lines else None
    return None


def _id3(tags: Any) -> Lyrics | None:
    for frame in tags.getall("SYLT"):
        unit = MPEG_FRAME_MS if getattr(frame, "format", 2) == 1 else 1.0
        pairs = sorted((int(t * unit), str(s)) for s, t in frame.text[:MAX_LINES])
        lines = tuple(LyricLine(t, s.strip()) for t, s in pairs)
        if lines:
            return Lyrics(True, lines)
    for frame in tags.getall("USLT"):
        found = from_text(str(frame.text))
        if found.lines:
            return found
    return None


def _text_tags(tags: Any) -> Lyrics | None:
    try:
        items = list(tags.items())
    except Exception:
        return None
    for key, value in items:
        if not isinstance(key, str) or key.lower() not in (*TEXT_KEYS, "lyrics"):
            continue
        values = value if isinstance(value, list) else [value]
        text = "\n".join(str(v) for v in values)[:MAX_TEXT_CHARS]
        found = from_text(text)
        if found.lines:
            return found
    return None
