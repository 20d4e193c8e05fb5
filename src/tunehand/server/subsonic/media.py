"""Subsonic methods that answer bytes: `stream` and `download` (the original file, with
Range), and `getCoverArt` (resized like `/v1/art`, from the same cache).

`stream` serves the original whatever `format` and `maxBitRate` ask (transcoding comes
later); it says so by the file's own Content-Type.
"""

from __future__ import annotations

import asyncio
import os
import stat

from starlette.responses import FileResponse, Response

from tunehand.errors import MediaError
from tunehand.server.api_art import CACHE_CONTROL, _render
from tunehand.server.api_library import _range_refusal
from tunehand.server.db import library as ql
from tunehand.server.library import art
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import GENERIC, NOT_FOUND, SubsonicError


async def stream(call: Call) -> Response:
    track_id = call.required("id")
    async with call.services.engine.connect() as conn:
        stored = await ql.get(conn, track_id)
    if stored is None:
        raise SubsonicError(NOT_FOUND, f"Song not found: {track_id[:80]}")
    try:
        st = await asyncio.to_thread(os.stat, stored.path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise SubsonicError(NOT_FOUND, "the file is gone: rescan the library")
    response = FileResponse(
        stored.path,
        media_type=stored.mime,
        headers={"Cache-Control": "private"},
        stat_result=st,
    )
    return _range_refusal(call.request, response, st.st_size) or response


async def download(call: Call) -> Response:
    response = await stream(call)
    if isinstance(response, FileResponse):
        name = os.path.basename(response.path)
        response.headers["Content-Disposition"] = _disposition(name)
    return response


def _disposition(name: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


async def _art_id(call: Call, sid: str) -> str | None:
    """The picture of a cover id (`c…`), an album or a song."""
    if sid.startswith("c"):
        return sid
    async with call.services.engine.connect() as conn:
        if sid.startswith("a") and not sid.startswith("ar"):
            songs = await ql.album_tracks(conn, sid)
            return next((t.art_id for t in songs if t.art_id), None)
        stored = await ql.get(conn, sid)
    return stored.art_id if stored else None


async def get_cover_art(call: Call) -> Response:
    sid = call.required("id")
    art_id = await _art_id(call, sid)
    if art_id is None:
        raise SubsonicError(NOT_FOUND, f"Cover art not found: {sid[:80]}")
    size = art.snap_size(call.int_("size", art.DEFAULT_SIZE, 1, art.SIZES[-1]))
    s = call.services
    cached = s.art.get((art_id, size))
    if cached is None:
        async with s.engine.connect() as conn:
            sources = await ql.art_sources(conn, art_id)
        if not sources:
            raise SubsonicError(NOT_FOUND, f"Cover art not found: {sid[:80]}")
        try:
            cached = await asyncio.to_thread(_render, sources, art_id, size)
        except MediaError as exc:
            raise SubsonicError(NOT_FOUND, str(exc)) from None
        s.art.put((art_id, size), cached)
    if isinstance(cached, str):
        raise SubsonicError(GENERIC, cached)
    headers = {"ETag": f'"{art_id}-{size}"', "Cache-Control": CACHE_CONTROL}
    return Response(cached.data, media_type=cached.mime, headers=headers)
