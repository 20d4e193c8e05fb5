"""The older Subsonic methods many apps still call: browsing by directory
(`getMusicDirectory`), `search2`, `getAlbumList` and `getStarred`. They answer from the
same queries as their ID3 successors, with albums shaped as directories (`Child` with
`isDir`): an artist's directory holds its albums, an album's its songs."""

from __future__ import annotations

from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.db import subsonic_state as qst
from tunehand.server.subsonic import browse, views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import NOT_FOUND, Payload, SubsonicError
from tunehand.server.subsonic.userdata import starred_things


async def get_music_directory(call: Call) -> Payload:
    sid = call.required("id")
    account = call.principal.account_id
    key = views.artist_key(sid)
    async with call.services.engine.connect() as conn:
        if key is not None:
            found = await ql.artists(conn, [key])
            if not found:
                raise SubsonicError(NOT_FOUND, f"Directory not found: {sid[:80]}")
            albums = await qs.artist_albums(conn, key)
            stars, rated = await qst.marks(conn, account, [sid, *(a.id for a in albums)])
            out: Payload = {
                "id": sid,
                "name": found[0].name,
                "parent": str(views.FOLDER_ID),
                "child": [views.album_child(a, stars, rated) for a in albums],
            }
        else:
            agg = await qs.albums_by_id(conn, [sid])
            if not agg:
                raise SubsonicError(NOT_FOUND, f"Directory not found: {sid[:80]}")
            songs = await ql.album_tracks(conn, sid)
            stars, rated = await qst.marks(conn, account, [sid, *(t.view.id for t in songs)])
            out = {
                "id": sid,
                "name": agg[0].name,
                "parent": views.artist_id(agg[0].artist_key),
                "child": [views.song(t, stars, rated) for t in songs],
            }
    if sid in stars:
        out["starred"] = views.iso(stars[sid])
    if sid in rated:
        out["userRating"] = rated[sid]
    return {"directory": out}


async def search2(call: Call) -> Payload:
    artists, albums, songs, stars, rated = await browse.search(call)
    return {
        "searchResult2": {
            "artist": [_artist(views.artist(a, stars, rated)) for a in artists],
            "album": [views.album_child(a, stars, rated) for a in albums],
            "song": [views.song(t, stars, rated) for t in songs],
        }
    }


def _artist(out: Payload) -> Payload:
    """The older API's `Artist`: no album count."""
    out.pop("albumCount", None)
    return out


async def get_album_list(call: Call) -> Payload:
    albums, stars, rated = await browse.album_list(call)
    return {"albumList": {"album": [views.album_child(a, stars, rated) for a in albums]}}


async def get_starred(call: Call) -> Payload:
    artists, albums, songs, stars, rated = await starred_things(call)
    return {
        "starred": {
            "artist": [_artist(views.artist(a, stars, rated)) for a in artists],
            "album": [views.album_child(a, stars, rated) for a in albums],
            "song": [views.song(t, stars, rated) for t in songs],
        }
    }
