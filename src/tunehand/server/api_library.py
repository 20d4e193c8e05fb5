"""REST routes for the library: search, browse, track details, rescans and the streams.

Stream URLs are signed and expire; they carry no account token, so mpv can fetch
them with no headers (see `streams`). `quality=high|low` (not signed: it opens nothing
more than the signed track) makes a stream an Opus transcode, from `t=` seconds, its
timestamps starting there (a player shows the track's position).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.routing import Route

from tunehand.core import search as search_text
from tunehand.server.api_podcasts import stream_episode
from tunehand.server.db import accounts as qa
from tunehand.server.db import library as ql
from tunehand.server.db import userdata as qu
from tunehand.server.digests import wants_sha256
from tunehand.server.revocation import link_allowed
from tunehand.server.streams import track_view
from tunehand.server.transcode import (
    OPUS,
    RETRY_AFTER_S,
    Busy,
    TranscodeError,
    TranscodeResponse,
)
from tunehand.server.web import (
    ApiError,
    body,
    error,
    json,
    path_param,
    principal,
    query_int,
    services,
)

MAX_QUERY = 200
GROUP_LIMIT = 20
"""With `groups=1`, at most this many artists, albums and playlists besides the tracks."""


async def search(request: Request) -> Response:
    who = await principal(request)
    q = request.query_params.get("q", "")
    if not q.strip() or len(q) > MAX_QUERY:
        raise ApiError(422, "invalid", f"q: give 1 to {MAX_QUERY} characters to search for")
    limit = query_int(request, "limit", 50, 1, 500)
    groups = request.query_params.get("groups", "") not in ("", "0")
    s = services(request)
    async with s.engine.connect() as conn:
        found = await ql.find(conn, q, limit)
        if groups:
            artists, albums = await ql.find_groups(conn, q, GROUP_LIMIT)
            lists = await qu.list_playlists(conn, who.account_id)
    now_s = int(time.time())
    answer: dict[str, object] = {"tracks": [track_view(s.signer, t, now_s) for t in found]}
    if groups:
        words = search_text.query_words(q)
        answer["artists"] = artists
        answer["albums"] = albums
        answer["playlists"] = [
            {"name": p.name, "tracks": len(p.track_ids)}
            for p in lists
            if search_text.score(words, p.name, "", "") is not None
        ][:GROUP_LIMIT]
    return json(answer)


async def artists(request: Request) -> Response:
    await principal(request)
    async with services(request).engine.connect() as conn:
        rows = await ql.artists(conn)
    return json({"artists": rows})


async def artist_albums(request: Request) -> Response:
    await principal(request)
    key = path_param(request, "artist")
    async with services(request).engine.connect() as conn:
        rows = await ql.albums(conn, key)
    if not rows:
        raise ApiError(404, "not_found", f"no artist {key!r}")
    return json({"albums": rows})


async def albums(request: Request) -> Response:
    await principal(request)
    async with services(request).engine.connect() as conn:
        rows = await ql.albums(conn)
    return json({"albums": rows})


async def album_tracks(request: Request) -> Response:
    await principal(request)
    album = path_param(request, "album")
    s = services(request)
    async with s.engine.connect() as conn:
        found = await ql.album_tracks(conn, album)
    if not found:
        raise ApiError(404, "not_found", f"no album {album!r}")
    now_s = int(time.time())
    return json({"tracks": [track_view(s.signer, t, now_s) for t in found]})


async def track(request: Request) -> Response:
    who = await principal(request)
    track_id = path_param(request, "track_id")
    views = await services(request).sessions.tracks(who.account_id, [track_id])
    if track_id not in views:
        raise ApiError(404, "not_found", f"no track {track_id}")
    return json(views[track_id])


async def lyrics(request: Request) -> Response:
    """A track's lyrics: `{track_id, synced, lines: [{time_ms, text}], source}` (no lines
    and source null when it has none); 404 when the track is not the account's to see."""
    who = await principal(request)
    track_id = path_param(request, "track_id")
    s = services(request)
    async with s.engine.connect() as conn:
        stored = await ql.get(conn, track_id)
        remote = {} if stored else await qu.remotes(conn, who.account_id, [track_id])
    if stored is None and track_id not in remote:
        raise ApiError(404, "not_found", f"no track {track_id}")
    found = await s.lyrics.for_track(stored) if stored is not None else None
    if found is None:
        return json({"track_id": track_id, "synced": False, "lines": [], "source": None})
    return json({"track_id": track_id, **found.lyrics.to_json(), "source": found.source})


async def rescan(request: Request) -> Response:
    await principal(request)
    lib = services(request).library
    if not lib.folders:
        raise ApiError(409, "no_folders", "the server has no music folders: start it with --music")
    if lib.scanning:
        return json({"scanning": True}, 202)
    summary = await lib.rescan()
    return json({"scanning": False, "summary": summary})


@dataclass(frozen=True)
class RescanTracksBody:
    track_ids: list[str]


MAX_RESCAN_TRACKS = 10_000


async def rescan_tracks(request: Request) -> Response:
    """Rescan only the folders that hold these tracks (each with its subfolders; a music
    folder itself without them): what MPD's `update PATH` asks for."""
    await principal(request)
    b = await body(request, RescanTracksBody)
    if not b.track_ids or len(b.track_ids) > MAX_RESCAN_TRACKS:
        raise ApiError(422, "invalid", f"track_ids: give 1 to {MAX_RESCAN_TRACKS} track ids")
    s = services(request)
    lib = s.library
    if not lib.folders:
        raise ApiError(409, "no_folders", "the server has no music folders: start it with --music")
    async with s.engine.connect() as conn:
        stored = await ql.get_many(conn, [t for t in b.track_ids if len(t) <= 64])
    if not stored:
        raise ApiError(404, "not_found", "none of these tracks is in the library")
    if lib.scanning:
        return json({"scanning": True}, 202)
    summary = await lib.rescan([t.path for t in stored.values()])
    return json({"scanning": False, "summary": summary})


async def stream(request: Request) -> Response:
    track_id = path_param(request, "track_id")
    exp = request.query_params.get("exp", "")
    sig = request.query_params.get("sig", "")
    s = services(request)
    if not s.signer.verify(track_id, exp, sig, int(time.time())):
        return error(403, "forbidden", "the stream link is forged or expired")
    if not await link_allowed(s.signer, s.links, sig, request.query_params):
        return error(403, "forbidden", "the stream link is another device's, or it was revoked")
    if track_id.startswith("e"):  # a podcast episode: its enclosure, through this server
        return await stream_episode(request, track_id)
    kbps, offset_s = _quality(request)
    async with s.engine.connect() as conn:
        stored = await ql.get(conn, track_id)
    if stored is None:
        return error(404, "not_found", f"no track {track_id}")
    try:
        st = await asyncio.to_thread(os.stat, stored.path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return error(404, "not_found", "the file is gone: rescan the library")
    if kbps:
        if request.method == "HEAD":
            return Response(media_type=OPUS.mime, headers={"Accept-Ranges": "none"})
        holder = request.query_params.get("d", "")  # the device the link is bound to
        async with s.engine.connect() as conn:
            device = await qa.device(conn, holder) if holder else None
        try:
            job = await s.transcoder.open(
                stored.path,
                OPUS,
                kbps,
                offset_s,
                keep_time=True,
                holder=holder,
                account=str(device.account_id) if device is not None else "",
            )
        except Busy as exc:
            return error(503, "busy", exc.message, {"Retry-After": str(RETRY_AFTER_S)})
        except TranscodeError as exc:
            return error(503, "no_transcoder", exc.message)
        return TranscodeResponse(job)
    headers = {"Cache-Control": "private"}
    if wants_sha256(request.headers.get("want-repr-digest")):
        try:
            headers |= await s.digests.headers(stored.path, st.st_size, st.st_mtime_ns)
        except OSError:
            return error(404, "not_found", "the file is gone: rescan the library")
    response = FileResponse(stored.path, media_type=stored.mime, headers=headers, stat_result=st)
    return _range_refusal(request, response, st.st_size) or response


QUALITY_KBPS = {"original": 0, "high": 160, "low": 64}
"""`/v1/stream?quality=`: the Opus bitrate of each quality (0: the original file)."""
MAX_OFFSET_S = 24 * 3600


def _quality(request: Request) -> tuple[int, float]:
    """The Opus bitrate asked by `quality=` (0 for the original) and the offset `t=`
    (seconds, a transcode starts there)."""
    q = request.query_params.get("quality", "original")
    if q not in QUALITY_KBPS:
        raise ApiError(422, "invalid", "quality: original, high or low")
    raw = request.query_params.get("t", "")
    offset = 0.0
    if raw:
        try:
            offset = float(raw)
        except ValueError:
            offset = -1.0
        if not 0 <= offset <= MAX_OFFSET_S:  # also refuses nan
            raise ApiError(422, "invalid", f"t: seconds from 0 to {MAX_OFFSET_S}")
    return QUALITY_KBPS[q], offset


def _range_refusal(request: Request, response: FileResponse, size: int) -> Response | None:
    """FileResponse's own refusal of a Range header it cannot serve, as a JSON error like
    every other (it answers those in plain text); None when it will serve the request."""
    http_range = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if http_range is None or (if_range is not None and not response._should_use_range(if_range)):
        return None
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        return error(400, "invalid", f"Range: {exc.content}")
    except RangeNotSatisfiable:
        message = f"Range: the file has {size} bytes"
        return error(416, "range_not_satisfiable", message, {"Content-Range": f"bytes */{size}"})
    return None


routes = [
    Route("/v1/search", search),
    Route("/v1/artists", artists),
    Route("/v1/artists/{artist}/albums", artist_albums),
    Route("/v1/albums", albums),
    Route("/v1/albums/{album}/tracks", album_tracks),
    Route("/v1/tracks/{track_id}", track),
    Route("/v1/tracks/{track_id}/lyrics", lyrics),
    Route("/v1/library/rescan", rescan, methods=["POST"]),
    Route("/v1/library/rescan/tracks", rescan_tracks, methods=["POST"]),
    Route("/v1/stream/{track_id}", stream, methods=["GET", "HEAD"]),
]
