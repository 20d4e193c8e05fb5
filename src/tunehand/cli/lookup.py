"""Albums and playlists named on `ctl`'s command line: by id, name or unique prefix.

`--album` and `--playlist` (of `ctl play`, `ctl queue add|next` and `resume`) take what a
user types: an album's id (what `search --json` answers), its title, or the start of
it; a playlist's name or the start of it. Names are compared case- and
accent-insensitively (`pastel` finds "Pastel Blues", `ros` finds "Rosé"). A name that
several match is refused with them listed (names and ids; exit 2); one that none
matches is one line and exit 5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tunehand.client.http import ApiClient, quote
from tunehand.core import names
from tunehand.core.search import normalize
from tunehand.errors import NotFound, UsageError

T = TypeVar("T")
Json = dict[str, Any]

ALBUM_ID = re.compile(r"a[0-9a-f]{20}")
"""How the server's album ids look (`library.album_id`): such an argument is an id."""
SHOWN = 8
"""At most this many candidates in the line that lists them."""


def _key(text: str) -> str:
    return normalize(text) or text.casefold()


def pick(
    what: str,
    asked: str,
    items: Sequence[T],
    name: Callable[[T], str],
    label: Callable[[T], str],
) -> T:
    """The item named `asked`: the one whose name is exactly `asked`, else the one whose
    name equals it ignoring case and accents, else the one it is the start of.
    Several: `UsageError` listing them (exit 2); none: `NotFound` (exit 5)."""
    exact = [i for i in items if name(i) == asked]
    if len(exact) == 1:
        return exact[0]
    key = _key(asked)
    same = [i for i in items if _key(name(i)) == key]
    prefix = [i for i in items if _key(name(i)).startswith(key)]
    for group in (same, prefix):
        if len(group) == 1:
            return group[0]
        if group:
            shown = ", ".join(names.line(label(i)) for i in group[:SHOWN])
            more = f" and {len(group) - SHOWN} more" if len(group) > SHOWN else ""
            raise UsageError(
                f"{what} {asked!r} matches {len(group)}: {shown}{more}; "
                "give more of the name, or the id"
            )
    raise NotFound(f"no {what} {asked!r}")


def album_tracks(api: ApiClient, asked: str) -> list[Json]:
    """The tracks of the album `asked` names (an id, a title or the start of one)."""
    if not ALBUM_ID.fullmatch(asked):
        albums: list[Json] = api.request("GET", "/v1/albums")["albums"]
        by_id = [a for a in albums if a["id"] == asked]
        album = by_id[0] if by_id else pick("album", asked, albums, _title, _album_label)
        asked = str(album["id"])
    tracks: list[Json] = api.request("GET", f"/v1/albums/{quote(asked)}/tracks")["tracks"]
    return tracks


def _title(album: Json) -> str:
    return str(album.get("title") or "")


def _album_label(album: Json) -> str:
    artist = album.get("artist")
    by = f" by {artist}" if artist else ""
    return f"{_title(album)}{by} ({album['id']})"


def playlist(api: ApiClient, asked: str) -> Json:
    """The playlist `asked` names (its name, or the start of it): its name and track ids."""
    lists: list[Json] = api.request("GET", "/v1/playlists")["playlists"]
    found = pick("playlist", asked, lists, _name, _name)
    got: Json = api.request("GET", f"/v1/playlists/{quote(_name(found))}")
    return got


def _name(item: Json) -> str:
    return str(item["name"])
