"""`/rest/{method}` and `/rest/{method}.view`, GET and POST: one route that reads the
call, checks its credentials (every method
needs them but `getOpenSubsonicExtensions`) and dispatches to the method's handler.

Every failure is a Subsonic error in the asked format, never a traceback: an unknown
method is error 70 ("not found"), as Navidrome's answer for it is a not-found too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.errors import QuotaError
from tunehand.server.db.engine import unavailable
from tunehand.server.subsonic import (
    browse,
    legacy,
    lyrics,
    marks,
    media,
    params,
    playqueue,
    userdata,
)
from tunehand.server.subsonic.responses import (
    GENERIC,
    NOT_FOUND,
    Payload,
    SubsonicError,
    error,
    render,
)
from tunehand.server.web import services

log = logging.getLogger("tunehand.subsonic")

Handler = Callable[[params.Call], Awaitable[Payload | Response]]

METHODS: dict[str, Handler] = {
    "ping": browse.ping,
    "getLicense": browse.get_license,
    "getOpenSubsonicExtensions": browse.get_extensions,
    "getMusicFolders": browse.get_music_folders,
    "getIndexes": browse.get_indexes,
    "getArtists": browse.get_artists,
    "getArtist": browse.get_artist,
    "getAlbum": browse.get_album,
    "getSong": browse.get_song,
    "getAlbumList2": browse.get_album_list2,
    "getAlbumList": legacy.get_album_list,
    "getMusicDirectory": legacy.get_music_directory,
    "search2": legacy.search2,
    "getStarred": legacy.get_starred,
    "setRating": marks.set_rating,
    "getBookmarks": marks.get_bookmarks,
    "createBookmark": marks.create_bookmark,
    "deleteBookmark": marks.delete_bookmark,
    "getRandomSongs": browse.get_random_songs,
    "search3": browse.search3,
    "getCoverArt": media.get_cover_art,
    "stream": media.stream,
    "download": media.download,
    "getUser": userdata.get_user,
    "getPlaylists": userdata.get_playlists,
    "getPlaylist": userdata.get_playlist,
    "createPlaylist": userdata.create_playlist,
    "updatePlaylist": userdata.update_playlist,
    "deletePlaylist": userdata.delete_playlist,
    "star": userdata.star,
    "unstar": userdata.unstar,
    "getStarred2": userdata.get_starred2,
    "scrobble": userdata.scrobble,
    "getPlayQueue": playqueue.get_play_queue,
    "savePlayQueue": playqueue.save_play_queue,
    "getNowPlaying": playqueue.get_now_playing,
    "startScan": browse.start_scan,
    "getScanStatus": browse.get_scan_status,
    "getLyrics": lyrics.get_lyrics,
    "getLyricsBySongId": lyrics.get_lyrics_by_song_id,
}
PUBLIC = frozenset({"getOpenSubsonicExtensions"})
"""Methods answered without credentials (the spec lets apps ask it before logging in)."""


async def endpoint(request: Request) -> Response:
    method = str(request.path_params.get("method", "")).removesuffix(".view")
    fmt = "json" if request.query_params.get("f") == "json" else "xml"
    try:
        call = await params.read(request, services(request))
        fmt = call.fmt
        params.check_version(call.one("v"))
        handler = METHODS.get(method)
        if handler is None:
            raise SubsonicError(NOT_FOUND, f"Unknown method: {method[:80]}")
        if method not in PUBLIC:
            await params.authenticate(call)
        answer = await handler(call)
    except SubsonicError as exc:
        return error(exc.fmt or fmt, exc)
    except QuotaError as exc:
        return error(fmt, SubsonicError(GENERIC, str(exc)))
    except Exception as exc:
        if unavailable(exc):
            message = "the database is unavailable: try again"
            return error(fmt, SubsonicError(GENERIC, message, 503))
        log.error("unexpected error on %s %s: %r", request.method, method[:80], exc)
        return error(fmt, SubsonicError(GENERIC, "internal error", 500))
    if isinstance(answer, Response):
        return answer
    return render(fmt, answer)


routes = [Route("/rest/{method}", endpoint, methods=["GET", "POST"])]
"""`{method}` matches `ping` and `ping.view` alike (Starlette's default converter takes
anything but a slash)."""
