"""Names other clients chose (device names, playlist names): cleaned before they are
kept, and cleaned again before they are shown.

A client may send any text as its device name. Control characters in it would move the
cursor or retitle a terminal (`ctl devices`), a line feed would forge a line of a log or
of the MPD protocol, and bidi overrides such as U+202E make a name read as another. So
`clean` keeps letters, marks, digits, punctuation, symbols and plain spaces: every other
whitespace character becomes a space, the Unicode categories Cc (C0 and C1 controls), Cf (format
characters: bidi overrides and isolates, zero-width characters), Cs, Co and Cn, and the
line and paragraph separators are dropped, and the result is trimmed and cut to `limit`
characters. Markup (Textual's `[bold]`, HTML) is the displaying side's job: it escapes.
"""

from __future__ import annotations

import unicodedata

MAX_NAME = 128
_DROP = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029")


def _filter(text: str) -> str:
    if text.isprintable():  # the common case, at C speed: no Cc, Cf, Cs, Co, Cn, Z* but " "
        return text
    out: list[str] = []
    for ch in text:
        if ch in _SPACES or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif unicodedata.category(ch) not in _DROP:
            out.append(ch)
    return "".join(out)


def clean(text: str, limit: int = MAX_NAME) -> str:
    """`text` without control, format or unassigned characters, trimmed to `limit`."""
    return _filter(text).strip()[:limit].rstrip()


def line(text: str) -> str:
    """Text for one line of a terminal: filtered like `clean` (a line break becomes a
    space), not trimmed or cut."""
    return _filter(text)


def shown(text: str) -> str:
    """Text for a terminal: each line filtered like `clean` (no escape sequence, bidi
    override or stray line break survives), the line breaks and spacing kept."""
    return "\n".join(_filter(line) for line in text.split("\n"))


def unique(base: str, taken: set[str] | frozenset[str], limit: int = MAX_NAME) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first that no name in `taken` equals
    (case-insensitively, as names are resolved), cut so that it fits in `limit`."""
    used = {name.casefold() for name in taken}
    if base[:limit].casefold() not in used:
        return base[:limit]
    n = 2
    while True:
        suffix = f"-{n}"
        name = base[: limit - len(suffix)] + suffix
        if name.casefold() not in used:
            return name
        n += 1
