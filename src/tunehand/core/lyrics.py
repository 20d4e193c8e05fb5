"""Lyrics as every part shows them: lines with a time (synced) or without (plain).

Owns `Lyrics` and `LyricLine`, the LRC parser (`parse_lrc`: `[mm:ss.xx]` stamps, several
on one line, `[offset:±ms]`, metadata tags ignored), the line playing at a position
(`line_at`), and the JSON form the server, `ctl lyrics --json` and the clients share:
`{synced, lines: [{time_ms, text}]}` (`time_ms` is null on plain lyrics).
No I/O: the server reads files and asks LRCLIB; the clients fetch over the API.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

MAX_LINES = 2_000
MAX_LINE_CHARS = 500
MAX_TEXT_CHARS = 200_000
"""Lyrics past these bounds are cut: a tag or a file cannot make a huge answer."""

_STAMP = re.compile(r"\[(\d{1,3}):(\d{1,2})(?:[.:](\d{1,3}))?\]")
_TAG = re.compile(r"^\[([A-Za-z#]+):(.*)\]\s*$")


@dataclass(frozen=True, slots=True)
class LyricLine:
    time_ms: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Lyrics:
    synced: bool
    lines: tuple[LyricLine, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "synced": self.synced,
            "lines": [{"time_ms": ln.time_ms, "text": ln.text} for ln in self.lines],
        }

    @property
    def text(self) -> str:
        """The words alone, one line each (MPRIS `xesam:asText`, Subsonic `getLyrics`)."""
        return "\n".join(ln.text for ln in self.lines)


def from_json(obj: object) -> Lyrics | None:
    """Lyrics from their JSON form; None when it is not that form."""
    if not isinstance(obj, dict) or not isinstance(obj.get("lines"), list):
        return None
    synced = obj.get("synced") is True
    lines: list[LyricLine] = []
    for raw in obj["lines"][:MAX_LINES]:
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
            return None
        t = raw.get("time_ms")
        if synced and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            return None
        lines.append(LyricLine(t if synced else None, raw["text"][:MAX_LINE_CHARS]))
    return Lyrics(synced, tuple(lines))


def _clean(text: str) -> str:
    return "".join(c for c in text if c.isprintable() or c == "\t").strip()[:MAX_LINE_CHARS]


def plain(text: str) -> Lyrics:
    """Untimed lyrics from text, one line per line (a blank line kept as a break)."""
    lines = [_clean(ln) for ln in text[:MAX_TEXT_CHARS].splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return Lyrics(False, tuple(LyricLine(None, ln) for ln in lines[:MAX_LINES]))


def parse_lrc(text: str) -> Lyrics:
    """LRC text: synced when at least one line has a time stamp, else plain lines.

    `[00:12.34][01:02.00]words` gives the words at both times; `[offset:+500]` shifts
    every stamp earlier by 500 ms (LRC's sign: positive means the lyrics come sooner).
    Tags such as `[ar:...]` are dropped; untimed lines among timed ones are dropped.
    """
    text = text[:MAX_TEXT_CHARS].lstrip("\ufeff")
    offset = 0
    timed: list[tuple[int, int, str]] = []
    for n, raw in enumerate(text.splitlines()):
        line = raw.strip()
        stamps: list[int] = []
        while True:
            m = _STAMP.match(line)
            if m is None:
                break
            frac = m.group(3) or "0"
            ms = int(frac.ljust(3, "0")[:3]) if len(frac) <= 3 else 0
            stamps.append((int(m.group(1)) * 60 + int(m.group(2))) * 1000 + ms)
            line = line[m.end() :]
        if stamps:
            words = _clean(line)
            timed.extend((t, n, words) for t in stamps)
            continue
        tag = _TAG.match(line)
        if tag is not None and tag.group(1).lower() == "offset":
            try:
                offset = int(tag.group(2).strip())
            except ValueError:
                offset = 0
    if not timed:
        return plain("\n".join(ln for ln in text.splitlines() if _TAG.match(ln.strip()) is None))
    timed.sort()
    return Lyrics(
        True,
        tuple(LyricLine(max(0, t - offset), words) for t, _, words in timed[:MAX_LINES]),
    )


def is_lrc(text: str) -> bool:
    """Whether text has LRC time stamps (a Vorbis LYRICS tag often does)."""
    return any(_STAMP.match(ln.strip()) for ln in text[:MAX_TEXT_CHARS].splitlines())


def from_text(text: str) -> Lyrics:
    """Lyrics from a tag's text: LRC when it is stamped, plain lines otherwise."""
    return parse_lrc(text) if is_lrc(text) else plain(text)


def line_at(lyrics: Lyrics, position_ms: int) -> int | None:
    """The index of the line sung at `position_ms` (the last one started), or None
    before the first line and for plain lyrics."""
    if not lyrics.synced or not lyrics.lines:
        return None
    times = [ln.time_ms or 0 for ln in lyrics.lines]
    i = bisect_right(times, position_ms) - 1
    return i if i >= 0 else None
