"""Library search text: normalizing, the stored search key, and ranking. Pure, stdlib only.

How search works end to end:

- Each track stores `search_key(...)`: its normalized fields joined by spaces, with a
  leading and trailing space (" sigur ros agaetis byrjun svefn g englar ").
- A query is split by `query_words`; the database keeps rows whose key matches
  `LIKE '% word%'` for every word, i.e. every query word is a prefix of some word of some
  field. Normalized words hold only letters and digits, so they never contain the LIKE
  wildcards "%" and "_" and need no escaping.
- `score` applies the same prefix rule in Python and ranks the candidates.

Matching is accent-, case- and punctuation-insensitive and prefix-only: "ros" finds
"Sigur Rós", "gur" does not find "Sigur".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

MAX_QUERY_WORDS = 8

# Letters that NFKD does not decompose into a base letter plus a combining mark.
_FOLD = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ß": "ss",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "þ": "th",
        "ı": "i",
    }
)
_NON_ALNUM = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Casefold, strip accents, and turn each run of non-alphanumerics into one space.

    >>> normalize("Sigur Rós — Ágætis byrjun!")
    'sigur ros agaetis byrjun'
    """
    folded = text.casefold().translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", folded)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_ALNUM.sub(" ", bare).strip()


def query_words(q: str) -> list[str]:
    """The normalized, non-empty words of a query, the first `MAX_QUERY_WORDS` of them.

    Duplicates are kept so that `score` can still see "la la land" as an exact title.
    """
    return normalize(q).split()[:MAX_QUERY_WORDS]


def search_key(title: str, artist: str, album: str, album_artist: str) -> str:
    """The text stored per track and matched with `LIKE '% word%'` for each query word.

    Normalized artist, album artist (when it differs from the artist), album and title,
    separated by single spaces, with a leading and a trailing space.
    """
    parts = [normalize(artist)]
    if normalize(album_artist) != parts[0]:
        parts.append(normalize(album_artist))
    parts += [normalize(album), normalize(title)]
    return " " + " ".join(p for p in parts if p) + " "


# Ranking weights. A word's points depend on the best field it is a prefix of; the field
# tier dominates (gaps of 100 exceed the whole-word bonus plus the position penalty).
_TITLE, _ARTIST, _ALBUM = 300, 200, 100
_WHOLE_WORD = 20  # the query word is a whole field word, not only a prefix of one
_MAX_POSITION_PENALTY = 19  # one point per earlier word in the field, capped
# The whole query equal to a whole field beats anything else: 8 words * 320 < 10_000.
_EXACT = {_TITLE: 30_000, _ARTIST: 20_000, _ALBUM: 10_000}


def score(
    words: Sequence[str],
    title: str,
    artist: str,
    album: str,
    album_artist: str = "",
) -> int | None:
    """Rank one track for a query; higher is better, None if it does not match.

    `words` come from `query_words`. The track matches if every word is a prefix of some
    word of title, artist, album or album artist (the same rule as the SQL `LIKE`). Its
    score is:

    - 30_000 / 20_000 / 10_000 if the whole query equals the whole title / artist / album;
    - plus, for each query word, points for the best field word it is a prefix of:
      title 300, artist or album artist 200, album 100; +20 if it is the whole word;
      minus the word's position in its field (capped at 19), so earlier words rank higher.

    So an exact field match beats any prefix match, a title word beats an artist word beats
    an album word, and more query words landing in the title rank higher.
    """
    fields = (
        (_TITLE, normalize(title)),
        (_ARTIST, normalize(artist)),
        (_ARTIST, normalize(album_artist)),
        (_ALBUM, normalize(album)),
    )
    split = [(tier, text.split()) for tier, text in fields]
    total = 0
    for word in words:
        best: int | None = None
        for tier, field_words in split:
            for position, field_word in enumerate(field_words):
                if field_word.startswith(word):
                    points = tier - min(position, _MAX_POSITION_PENALTY)
                    if field_word == word:
                        points += _WHOLE_WORD
                    if best is None or points > best:
                        best = points
        if best is None:
            return None
        total += best
    if words:
        query = " ".join(words)
        total += max(
            (_EXACT[tier] for tier, text in fields if text and text == query),
            default=0,
        )
    return total


WHOLE_WORD_BONUS = _WHOLE_WORD


def index_words(
    title: str, artist: str, album: str, album_artist: str = ""
) -> tuple[dict[str, int], dict[str, int]]:
    """What a text index keeps of one item so that a database ranks it as `score` does.

    Returns `(words, exact)`: `words` maps each field word to its best points for a query
    word that is a prefix of it (tier minus capped position; a query word equal to it
    adds `WHOLE_WORD_BONUS`), `exact` maps each whole normalized field to its bonus. For
    query words `ws` the score is, if every `w` is a prefix of some key of `words`:
    sum over `w` of max(points + bonus if equal) plus `exact.get(" ".join(ws), 0)`,
    which is exactly `score(ws, title, artist, album, album_artist)`.

    >>> index_words("La la land", "", "", "")
    ({'la': 300, 'land': 298}, {'la la land': 30000})
    """
    fields = (
        (_TITLE, normalize(title)),
        (_ARTIST, normalize(artist)),
        (_ARTIST, normalize(album_artist)),
        (_ALBUM, normalize(album)),
    )
    words: dict[str, int] = {}
    exact: dict[str, int] = {}
    for tier, text in fields:
        for position, word in enumerate(text.split()):
            points = tier - min(position, _MAX_POSITION_PENALTY)
            if points > words.get(word, -1):
                words[word] = points
        if text and _EXACT[tier] > exact.get(text, -1):
            exact[text] = _EXACT[tier]
    return words, exact


def prefix_end(word: str) -> str | None:
    """The least string after every string that starts with `word` (code point order),
    or None when there is none: `word <= s < prefix_end(word)` iff `s.startswith(word)`.

    >>> prefix_end("blue")
    'bluf'
    """
    if not word:
        return None
    last = ord(word[-1])
    if last >= 0x10FFFF:
        return prefix_end(word[:-1])
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return word[:-1] + chr(nxt)
