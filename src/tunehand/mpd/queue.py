"""MPD commands about the queue (the session's queue) and the stored playlists (the
account's playlists over REST)."""

from __future__ import annotations

import datetime
import os
import random

from tunehand.client.http import quote
from tunehand.mpd.frontend import Frontend
from tunehand.mpd.library import found, matches, parse_filters, tracks_under
from tunehand.mpd.player import Handler, _arity
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_EXIST,
    ACK_NO_EXIST,
    Json,
    MpdError,
    parse_range,
    song_lines,
    to_int,
)


async def _songs(fe: Frontend, positions: range | None = None) -> list[str]:
    st = fe.state
    tracks = await fe.queue_tracks()
    lines: list[str] = []
    for pos, e in enumerate(st.queue):
        if positions is None or pos in positions:
            lines += song_lines(tracks[e.track_id], pos, fe.song_id(e.entry_id), fe.adder(e))
    return lines


async def playlistinfo(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if not args:
        return await _songs(fe)
    return await _songs(fe, parse_range(args[0], len(fe.state.queue)))


async def playlistid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if not args:
        return await _songs(fe)
    entry = fe.entry_of(to_int(args[0]))
    pos = [e.entry_id for e in fe.state.queue].index(entry)
    return await _songs(fe, range(pos, pos + 1))


async def plchanges(fe: Frontend, args: list[str]) -> list[str]:
    """Everything when the version differs (the session keeps no per-entry history)."""
    _arity(args, 1, 2)
    if to_int(args[0]) == fe.state.version:
        return []
    return await _songs(fe)


async def plchangesposid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 2)
    st = fe.state
    if to_int(args[0]) == st.version:
        return []
    out: list[str] = []
    for pos, e in enumerate(st.queue):
        out += [f"cpos: {pos}", f"Id: {fe.song_id(e.entry_id)}"]
    return out


async def _track_id(fe: Frontend, uri: str) -> str:
    """A library track id as it is, or an http(s) URL made a remote track."""
    if uri.startswith(("http://", "https://")):
        got = await fe.rest("POST", "/v1/tracks/remote", {"url": uri})
        return str(got["id"])
    if not uri:
        raise MpdError(ACK_ARG, "Malformed URI")
    track = await fe.track(uri)
    return str(track["id"])


async def add(fe: Frontend, args: list[str]) -> list[str]:
    """A track id, an http(s) URL, or a library directory (every track under it)."""
    _arity(args, 1, 2)
    where = args[1] if len(args) > 1 else None
    uri = args[0]
    if not uri.startswith(("http://", "https://")) and uri not in fe.tracks:
        under = await tracks_under(fe, uri)
        if under:
            await fe.add_tracks([t["id"] for t in under], where)
            return []
    await fe.add_tracks([await _track_id(fe, uri)], where)
    return []


async def addid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 2)
    new = await fe.add_tracks([await _track_id(fe, args[0])], args[1] if len(args) > 1 else None)
    return [f"Id: {fe.song_id(new[0])}"] if new else []


async def delete(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    queue = fe.state.queue
    gone = [queue[i].entry_id for i in parse_range(args[0], len(queue))]
    await fe.run("queue_remove", entry_ids=gone)
    return []


async def deleteid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    await fe.run("queue_remove", entry_ids=[fe.entry_of(to_int(args[0]))])
    return []


async def move(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    queue = fe.state.queue
    moving = [queue[i].entry_id for i in parse_range(args[0], len(queue))]
    await fe.move_to(moving, to_int(args[1]))
    return []


async def moveid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await fe.move_to([fe.entry_of(to_int(args[0]))], to_int(args[1]))
    return []


async def clear(fe: Frontend, args: list[str]) -> list[str]:
    await fe.run("queue_clear")
    return []


async def shuffle(fe: Frontend, args: list[str]) -> list[str]:
    """Reorder the queue itself, or the range START:END of it (random mode is `random`)."""
    _arity(args, 0, 1)
    ids = [e.entry_id for e in fe.state.queue]
    span = parse_range(args[0], len(ids)) if args else range(len(ids))
    part = ids[span.start : span.stop]
    random.Random(os.urandom(8)).shuffle(part)
    await fe.reorder([*ids[: span.start], *part, *ids[span.stop :]])
    return []


async def playlist(fe: Frontend, args: list[str]) -> list[str]:
    """The queue as `POS:file: URI` lines (an old command some clients still send)."""
    return [f"{pos}:file: {e.track_id}" for pos, e in enumerate(fe.state.queue)]


async def _found_in_queue(fe: Frontend, args: list[str], exact: bool) -> list[str]:
    filters = parse_filters(args, exact)
    if not filters:
        raise MpdError(ACK_ARG, "incorrect arguments")
    tracks = await fe.queue_tracks()
    lines: list[str] = []
    for pos, e in enumerate(fe.state.queue):
        t = tracks[e.track_id]
        if matches(t, filters, not exact):
            lines += song_lines(t, pos, fe.song_id(e.entry_id), fe.adder(e))
    return lines


async def playlistsearch(fe: Frontend, args: list[str]) -> list[str]:
    """Songs of the queue whose tags contain the values (any case)."""
    return await _found_in_queue(fe, args, False)


async def playlistfind(fe: Frontend, args: list[str]) -> list[str]:
    return await _found_in_queue(fe, args, True)


async def _swap(fe: Frontend, a: str, b: str) -> None:
    ids = [e.entry_id for e in fe.state.queue]
    i, j = ids.index(a), ids.index(b)
    ids[i], ids[j] = ids[j], ids[i]
    await fe.reorder(ids)


async def swap(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await _swap(fe, fe.entry_at(to_int(args[0])), fe.entry_at(to_int(args[1])))
    return []


async def swapid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await _swap(fe, fe.entry_of(to_int(args[0])), fe.entry_of(to_int(args[1])))
    return []


def _priority(value: str) -> None:
    level = to_int(value)
    if not 0 <= level <= 255:
        raise MpdError(ACK_ARG, "Priority out of range: " + value)
    if level:
        raise MpdError(ACK_ARG, "prio: the session has no priorities (every song has priority 0)")


async def prio(fe: Frontend, args: list[str]) -> list[str]:
    """Every song has priority 0: setting 0 is accepted, any other refused."""
    if len(args) < 2:
        raise MpdError(ACK_ARG, "wrong number of arguments")
    for r in args[1:]:
        parse_range(r, len(fe.state.queue))
    _priority(args[0])
    return []


async def prioid(fe: Frontend, args: list[str]) -> list[str]:
    if len(args) < 2:
        raise MpdError(ACK_ARG, "wrong number of arguments")
    for song in args[1:]:
        fe.entry_of(to_int(song))
    _priority(args[0])
    return []


# --- stored playlists ---------------------------------------------------------------


def _iso(ms: int) -> str:
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


async def listplaylists(fe: Frontend, args: list[str]) -> list[str]:
    lines: list[str] = []
    for p in (await fe.rest("GET", "/v1/playlists"))["playlists"]:
        lines += [f"playlist: {p['name']}", f"Last-Modified: {_iso(int(p['updated_ms']))}"]
    return lines


async def _playlist(fe: Frontend, name: str) -> Json:
    try:
        pl: Json = await fe.rest("GET", f"/v1/playlists/{quote(name)}")
    except MpdError as exc:
        if exc.code == ACK_NO_EXIST:
            raise MpdError(ACK_NO_EXIST, "No such playlist") from exc
        raise
    return pl


async def listplaylist(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 2)
    pl = await _playlist(fe, args[0])
    return [f"file: {t}" for t in pl["track_ids"]]


async def listplaylistinfo(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 2)
    pl = await _playlist(fe, args[0])
    lines: list[str] = []
    for tid, t in zip(pl["track_ids"], pl["tracks"], strict=False):
        lines += song_lines(t or {"id": tid})
    return lines


async def load(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 3)
    pl = await _playlist(fe, args[0])
    ids: list[str] = list(pl["track_ids"])
    if len(args) > 1:
        ids = [ids[i] for i in parse_range(args[1], len(ids))]
    await fe.add_tracks(ids, args[2] if len(args) > 2 else None)
    return []


async def save(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 2)
    name = args[0]
    mode = args[1] if len(args) > 1 else "create"
    if mode not in ("create", "replace", "append"):
        raise MpdError(ACK_ARG, f"Unrecognized save mode: {mode}")
    ids = [e.track_id for e in fe.state.queue]
    try:
        old: list[str] = list((await _playlist(fe, name))["track_ids"])
    except MpdError as exc:
        if exc.code != ACK_NO_EXIST:
            raise
        old = []
        mode = "create"
    else:
        if mode == "create":
            raise MpdError(ACK_EXIST, "Playlist already exists")
    if mode == "append":
        ids = old + ids
    if not ids:
        raise MpdError(ACK_ARG, "the queue is empty: nothing to save")
    await fe.rest("PUT", f"/v1/playlists/{quote(name)}", {"track_ids": ids})
    fe.notify("stored_playlist")
    return []


async def rm(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    await _playlist(fe, args[0])
    await fe.rest("DELETE", f"/v1/playlists/{quote(args[0])}")
    fe.notify("stored_playlist")
    return []


async def playlistadd(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    try:
        old: list[str] = list((await _playlist(fe, args[0]))["track_ids"])
    except MpdError as exc:
        if exc.code != ACK_NO_EXIST:
            raise
        old = []
    tid = await _track_id(fe, args[1])
    await fe.rest("PUT", f"/v1/playlists/{quote(args[0])}", {"track_ids": [*old, tid]})
    fe.notify("stored_playlist")
    return []


async def _store(fe: Frontend, name: str, ids: list[str]) -> None:
    await fe.rest("PUT", f"/v1/playlists/{quote(name)}", {"track_ids": ids})
    fe.notify("stored_playlist")


async def searchaddpl(fe: Frontend, args: list[str]) -> list[str]:
    """Append what `search` finds to a stored playlist (made when missing)."""
    if len(args) < 3:
        raise MpdError(ACK_ARG, "wrong number of arguments")
    try:
        old: list[str] = list((await _playlist(fe, args[0]))["track_ids"])
    except MpdError as exc:
        if exc.code != ACK_NO_EXIST:
            raise
        old = []
    add = [t["id"] for t in await found(fe, args[1:], exact=False)]
    await _store(fe, args[0], [*old, *add])
    return []


async def playlistdelete(fe: Frontend, args: list[str]) -> list[str]:
    """Remove the song at POS (or the range START:END) of a stored playlist."""
    _arity(args, 2, 2)
    ids: list[str] = list((await _playlist(fe, args[0]))["track_ids"])
    gone = parse_range(args[1], len(ids))
    await _store(fe, args[0], [t for i, t in enumerate(ids) if i not in gone])
    return []


async def playlistmove(fe: Frontend, args: list[str]) -> list[str]:
    """Move the song at FROM (or the range START:END) of a stored playlist to TO."""
    _arity(args, 3, 3)
    ids: list[str] = list((await _playlist(fe, args[0]))["track_ids"])
    span = parse_range(args[1], len(ids))
    moving = ids[span.start : span.stop]
    rest = ids[: span.start] + ids[span.stop :]
    to = to_int(args[2])
    if not 0 <= to <= len(rest):
        raise MpdError(ACK_ARG, "Bad song index")
    await _store(fe, args[0], [*rest[:to], *moving, *rest[to:]])
    return []


async def playlistclear(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    await _playlist(fe, args[0])
    await _store(fe, args[0], [])
    return []


async def rename(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await _playlist(fe, args[0])
    try:
        await fe.rest("PATCH", f"/v1/playlists/{quote(args[0])}", {"name": args[1]})
    except MpdError as exc:
        if exc.code == ACK_EXIST:
            raise MpdError(ACK_EXIST, "Playlist already exists") from exc
        raise
    fe.notify("stored_playlist")
    return []


HANDLERS: dict[str, Handler] = {
    "playlistinfo": playlistinfo,
    "playlistid": playlistid,
    "plchanges": plchanges,
    "plchangesposid": plchangesposid,
    "add": add,
    "addid": addid,
    "delete": delete,
    "deleteid": deleteid,
    "move": move,
    "moveid": moveid,
    "clear": clear,
    "shuffle": shuffle,
    "listplaylists": listplaylists,
    "listplaylist": listplaylist,
    "listplaylistinfo": listplaylistinfo,
    "load": load,
    "save": save,
    "rm": rm,
    "playlistadd": playlistadd,
    "playlistdelete": playlistdelete,
    "playlistmove": playlistmove,
    "playlistclear": playlistclear,
    "rename": rename,
    "playlist": playlist,
    "searchaddpl": searchaddpl,
    "playlistsearch": playlistsearch,
    "playlistfind": playlistfind,
    "swap": swap,
    "swapid": swapid,
    "prio": prio,
    "prioid": prioid,
}
