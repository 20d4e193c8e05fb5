"""MPD commands about the library: lsinfo/listall as an Artist/Album directory tree,
`list` of tag values, and `find`/`search` (type-value pairs or simple filter
expressions) through the server's search, then filtered here exactly as MPD does."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from tunehand.client.http import quote
from tunehand.mpd.frontend import Frontend
from tunehand.mpd.protocol import ACK_ARG, ACK_NO_EXIST, Json, MpdError, song_lines, tag_value

Handler = Callable[[Frontend, list[str]], Awaitable[list[str]]]
Filter = tuple[str, str, str]
"""(tag, operator, value): operator is "==", "!=" or "contains"."""

SEARCHABLE = frozenset({"artist", "album", "title", "any"})
SEARCH_LIMIT = 500
_EXPR = re.compile(r"\(\s*(\w+)\s*(==|!=|contains)\s*(['\"])((?:\\.|(?!\3).)*)\3\s*\)")
_TRAILING = frozenset({"sort", "window", "group", "position"})


def directory(track: Json) -> tuple[str, str]:
    artist = str(track.get("album_artist") or track.get("artist") or "Unknown artist")
    return artist, str(track.get("album") or "Unknown album")


def parse_filters(args: list[str], exact: bool) -> list[Filter]:
    """MPD's filter arguments: `TYPE VALUE ...` pairs or one `(TAG == 'VALUE')` expression
    (several joined by AND); `sort`, `window` and `group` clauses are accepted and ignored."""
    if args and args[0].startswith("("):
        found = _EXPR.findall(args[0])
        if not found:
            raise MpdError(ACK_ARG, f"Unsupported filter expression: {args[0]}")
        return [(t, op, re.sub(r"\\(.)", r"\1", v)) for t, op, _, v in found]
    out: list[Filter] = []
    i = 0
    while i < len(args):
        tag = args[i]
        if tag.casefold() in _TRAILING:
            break
        if i + 1 >= len(args):
            raise MpdError(ACK_ARG, "Incorrect number of filter arguments")
        out.append((tag, "==" if exact else "contains", args[i + 1]))
        i += 2
    return out


def _fields(track: Json, tag: str) -> list[str]:
    t = tag.casefold()
    if t == "any":
        return [tag_value(track, k) for k in ("title", "artist", "album", "albumartist", "genre")]
    if t == "base":
        return ["/".join(directory(track))]
    return [tag_value(track, tag)]


def matches(track: Json, filters: list[Filter], fold: bool) -> bool:
    for tag, op, value in filters:
        want = value.casefold() if fold else value
        got = [v.casefold() if fold else v for v in _fields(track, tag)]
        if tag.casefold() == "base":
            hit = any(g == want or g.startswith(want.rstrip("/") + "/") for g in got)
            if not hit and want not in ("", "/"):
                return False
            continue
        hit = any((want in g) if op == "contains" else (g == want) for g in got)
        if hit == (op == "!="):
            return False
    return True


async def _candidates(fe: Frontend, filters: list[Filter]) -> list[Json]:
    """The tracks a filter can match: the server's search when it covers the tags."""
    tags = {t.casefold() for t, op, _ in filters}
    words = " ".join(v for _, op, v in filters if op != "!=")
    if filters and tags <= SEARCHABLE and words.strip() and len(words) <= 200:
        try:
            got = await fe.rest("GET", f"/v1/search?q={quote(words)}&limit={SEARCH_LIMIT}")
        except MpdError:
            got = None
        if got is not None and len(got["tracks"]) < SEARCH_LIMIT:
            tracks: list[Json] = got["tracks"]
            fe.remember(list(tracks))
            return tracks
    return await fe.library()


async def found(fe: Frontend, args: list[str], exact: bool) -> list[Json]:
    filters = parse_filters(args, exact)
    if not filters:
        raise MpdError(ACK_ARG, "incorrect arguments")
    return [t for t in await _candidates(fe, filters) if matches(t, filters, not exact)]


async def find(fe: Frontend, args: list[str]) -> list[str]:
    return [line for t in await found(fe, args, True) for line in song_lines(t)]


async def search(fe: Frontend, args: list[str]) -> list[str]:
    return [line for t in await found(fe, args, False) for line in song_lines(t)]


async def findadd(fe: Frontend, args: list[str]) -> list[str]:
    await fe.add_tracks([t["id"] for t in await found(fe, args, True)])
    return []


async def searchadd(fe: Frontend, args: list[str]) -> list[str]:
    await fe.add_tracks([t["id"] for t in await found(fe, args, False)])
    return []


async def count(fe: Frontend, args: list[str]) -> list[str]:
    hits = await found(fe, args, True)
    total = sum(int(t.get("duration_ms") or 0) for t in hits) // 1000
    return [f"songs: {len(hits)}", f"playtime: {total}"]


_TAG_NAMES = ("Artist", "Album", "Title", "AlbumArtist", "Genre", "Date", "Track", "Disc")


def _tag_name(tag: str) -> str:
    return next((n for n in _TAG_NAMES if n.casefold() == tag.casefold()), tag)


def _groups(args: list[str]) -> tuple[list[str], list[str]]:
    """Split `list`'s arguments after the tag: the filter, and the `group TAG` tags."""
    groups: list[str] = []
    rest = list(args)
    while len(rest) >= 2 and rest[-2].casefold() == "group":
        groups.insert(0, rest[-1])
        rest = rest[:-2]
    if rest and rest[-1].casefold() == "group":
        raise MpdError(ACK_ARG, "Group type expected")
    return rest, groups


async def list_(fe: Frontend, args: list[str]) -> list[str]:
    """Tag values, optionally grouped (`list album group albumartist`): a group's value
    line comes before the values in it, as MPD sends them."""
    if not args:
        raise MpdError(ACK_ARG, 'too few arguments for "list"')
    tag, (rest, groups) = args[0], _groups(args[1:])
    if tag.casefold() == "file":
        raise MpdError(ACK_ARG, "list file is not supported")
    for g in groups:
        tag_value({}, g)  # an unknown tag is refused
    if len(rest) == 1 and not rest[0].startswith("("):
        if tag.casefold() != "album":
            raise MpdError(ACK_ARG, 'should be "Album" for 3 arguments')
        rest = ["artist", rest[0]]
    filters = parse_filters(rest, True)
    tracks = await fe.library()
    rows = {
        (*(tag_value(t, g) for g in groups), tag_value(t, tag))
        for t in tracks
        if matches(t, filters, False)
    }
    lines: list[str] = []
    last: tuple[str, ...] | None = None
    for row in sorted(rows, key=lambda r: tuple(v.casefold() for v in r)):
        head = row[:-1]
        for i, g in enumerate(groups):
            if last is None or last[: i + 1] != head[: i + 1]:
                lines.append(f"{_tag_name(g)}: {head[i]}")
        last = head
        lines.append(f"{_tag_name(tag)}: {row[-1]}")
    return lines


async def tracks_under(fe: Frontend, uri: str) -> list[Json]:
    """Library tracks in directory `uri` ("", "Artist" or "Artist/Album")."""
    uri = uri.strip("/")
    out = []
    for t in await fe.library():
        artist, album = directory(t)
        if uri in ("", artist, f"{artist}/{album}"):
            out.append(t)
    return out


async def lsinfo(fe: Frontend, args: list[str]) -> list[str]:
    uri = args[0].strip("/") if args else ""
    tracks = await fe.library()
    if uri and uri in {t["id"] for t in tracks}:
        return song_lines(next(t for t in tracks if t["id"] == uri))
    lines: list[str] = []
    seen: set[str] = set()
    for t in tracks:
        artist, album = directory(t)
        if uri == "":
            name = artist
        elif uri == artist:
            name = f"{artist}/{album}"
        elif uri == f"{artist}/{album}":
            lines += song_lines(t)
            continue
        else:
            continue
        if name not in seen:
            seen.add(name)
            lines.append(f"directory: {name}")
    if uri == "":
        for p in (await fe.rest("GET", "/v1/playlists"))["playlists"]:
            lines.append(f"playlist: {p['name']}")
    elif not lines:
        raise MpdError(ACK_NO_EXIST, "No such directory")
    return lines


async def _listall(fe: Frontend, args: list[str], info: bool) -> list[str]:
    uri = args[0].strip("/") if args else ""
    tracks = await tracks_under(fe, uri)
    if uri and not tracks:
        raise MpdError(ACK_NO_EXIST, "No such directory")
    lines: list[str] = []
    dirs: set[str] = set()
    for t in tracks:
        artist, album = directory(t)
        for d in (artist, f"{artist}/{album}"):
            if d not in dirs and len(d) > len(uri):
                dirs.add(d)
                lines.append(f"directory: {d}")
        lines += song_lines(t) if info else [f"file: {t['id']}"]
    return lines


async def listall(fe: Frontend, args: list[str]) -> list[str]:
    return await _listall(fe, args, False)


async def listallinfo(fe: Frontend, args: list[str]) -> list[str]:
    return await _listall(fe, args, True)


HANDLERS: dict[str, Handler] = {
    "find": find,
    "search": search,
    "findadd": findadd,
    "searchadd": searchadd,
    "count": count,
    "list": list_,
    "lsinfo": lsinfo,
    "listall": listall,
    "listallinfo": listallinfo,
}
