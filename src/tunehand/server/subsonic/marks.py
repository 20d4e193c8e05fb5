"""Subsonic methods on an account's ratings and bookmarks: `setRating` (a song, album or
artist, 1 to 5, 0 removes it; shown as `userRating`) and `getBookmarks`,
`createBookmark`, `deleteBookmark` (a position in a song, with a comment). Both are kept
per account, in the database."""

from __future__ import annotations

from tunehand.core import names
from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.db import subsonic_state as qst
from tunehand.server.subsonic import views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import GENERIC, NOT_FOUND, Payload, SubsonicError
from tunehand.server.web import now_ms

MAX_COMMENT = 500


async def _exists(call: Call, sid: str) -> bool:
    async with call.services.engine.connect() as conn:
        key = views.artist_key(sid)
        if key is not None:
            return bool(await ql.artists(conn, [key]))
        if sid.startswith("a"):
            return bool(await qs.albums_by_id(conn, [sid]))
        return await ql.get(conn, sid) is not None


async def set_rating(call: Call) -> Payload:
    sid = call.required("id")
    raw = call.required("rating")
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 5:
        raise SubsonicError(GENERIC, "rating: a whole number from 0 (none) to 5")
    if not await _exists(call, sid):
        raise SubsonicError(NOT_FOUND, f"Not found: {sid[:80]}")
    account = call.principal.account_id
    async with call.services.engine.begin() as conn:
        full = int(raw) and await qst.count_ratings(conn, account) >= qst.MAX_RATINGS
        if full and not await qst.ratings_among(conn, account, [sid]):
            raise SubsonicError(GENERIC, f"an account keeps at most {qst.MAX_RATINGS} ratings")
        await qst.set_rating(conn, account, sid, int(raw), now_ms())
    return {}


async def get_bookmarks(call: Call) -> Payload:
    who = call.principal
    async with call.services.engine.connect() as conn:
        marks = await qst.bookmarks_of(conn, who.account_id)
        found = await ql.get_many(conn, [b.track_id for b in marks])
        stars, rated = await qst.marks(conn, who.account_id, list(found))
    out = [
        {
            "position": b.position_ms,
            "username": who.account_name,
            "comment": b.comment,
            "created": views.iso(b.created_ms),
            "changed": views.iso(b.changed_ms),
            "entry": views.song(found[b.track_id], stars, rated),
        }
        for b in marks
        if b.track_id in found
    ]
    return {"bookmarks": {"bookmark": out}}


async def create_bookmark(call: Call) -> Payload:
    sid = call.required("id")
    position = call.int_("position", -1, -1, 7 * 24 * 3600 * 1000)
    if position < 0:
        raise SubsonicError(GENERIC, "position: the position in the song, in ms")
    comment = names.clean(call.one("comment"), MAX_COMMENT)
    who = call.principal
    async with call.services.engine.begin() as conn:
        if await ql.get(conn, sid) is None:
            raise SubsonicError(NOT_FOUND, f"Song not found: {sid[:80]}")
        full = await qst.count_bookmarks(conn, who.account_id) >= qst.MAX_BOOKMARKS
        if full and all(b.track_id != sid for b in await qst.bookmarks_of(conn, who.account_id)):
            raise SubsonicError(GENERIC, f"an account keeps at most {qst.MAX_BOOKMARKS} bookmarks")
        await qst.save_bookmark(conn, who.account_id, sid, position, comment, now_ms())
    return {}


async def delete_bookmark(call: Call) -> Payload:
    """Delete the account's bookmark of `id`; none there is no error (an app retrying
    a delete gets the same answer)."""
    sid = call.required("id")
    async with call.services.engine.begin() as conn:
        await qst.delete_bookmark(conn, call.principal.account_id, sid)
    return {}
