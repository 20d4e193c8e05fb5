"""Subsonic methods that answer bytes: `stream` (the original file with Range, or a
transcode), `download` (always the original), and `getCoverArt` (resized like `/v1/art`,
from the same cache).

`stream` chooses as Navidrome does: `format=raw` is the original; `format=opus|mp3`
transcodes at `maxBitRate` (or the format's default: Opus 128 kb/s, MP3 192 kb/s); no
format with `maxBitRate=N` sends the original when its bitrate is already at most N kb/s
and Opus at N otherwise; an unknown format is the original. `timeOffset=S` starts a
transcode S seconds in (the original ignores it: use Range).
"""

from __future__ import annotations

import asyncio
import os
import stat

from starlette.responses import FileResponse, Response

from tunehand.errors import MediaError
from tunehand.server import transcode
from tunehand.server.api_art import CACHE_CONTROL, _render
from tunehand.server.api_library import _range_refusal
from tunehand.server.db import library as ql
from tunehand.server.library import art
from tunehand.server.services import Services
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import GENERIC, NOT_FOUND, SubsonicError

DEFAULT_KBPS = {"opus": 128, "mp3": 192}
MAX_OFFSET_S = 24 * 3600


def choose(
    fmt: str, max_kbps: int, original_kbps: int | None
) -> tuple[transcode.Codec, int] | None:
    """The codec and bitrate to transcode to, or None for the original."""
    fmt = fmt.lower()
    if fmt in transcode.CODECS:
        return transcode.CODECS[fmt], max_kbps or DEFAULT_KBPS[fmt]
    if fmt or not max_kbps:  # raw, or a format without an encoder here
        return None
    if original_kbps is not None and original_kbps <= max_kbps:
        return None
    return transcode.OPUS, max_kbps


def original_kbps(size: int, duration_ms: int) -> int | None:
    return size * 8 // duration_ms if duration_ms > 0 else None


async def transcoded(
    s: Services,
    path: str,
    codec: transcode.Codec,
    kbps: int,
    offset_s: float,
    holder: str,
    account: int,
) -> Response:
    """A transcode as a response, or the refusal as a Subsonic error."""
    try:
        job = await s.transcoder.open(
            path, codec, kbps, offset_s, holder=holder, account=str(account)
        )
    except transcode.Busy as exc:
        retry = {"Retry-After": str(transcode.RETRY_AFTER_S)}
        raise SubsonicError(GENERIC, exc.message, 503, retry) from None
    except transcode.TranscodeError as exc:
        raise SubsonicError(GENERIC, exc.message) from None
    return transcode.TranscodeResponse(job)


async def stream(call: Call) -> Response:
    return await _send(call, transcoding=True)


async def _send(call: Call, *, transcoding: bool) -> Response:
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
    if transcoding:
        max_kbps = call.int_("maxBitRate", 0, 0, 10_000)
        kbps = original_kbps(st.st_size, stored.view.duration_ms)
        chosen = choose(call.one("format"), max_kbps, kbps)
        if chosen is not None:
            offset = call.int_("timeOffset", 0, 0, MAX_OFFSET_S)
            if call.request.method == "HEAD":  # what a GET would send, with no encoder run
                return Response(
                    headers={"Cache-Control": "private", "Accept-Ranges": "none"},
                    media_type=chosen[0].mime,
                )
            holder = call.principal.device_id  # the app password's device
            account = call.principal.account_id
            return await transcoded(call.services, stored.path, *chosen, offset, holder, account)
    response = FileResponse(
        stored.path,
        media_type=stored.mime,
        headers={"Cache-Control": "private"},
        stat_result=st,
    )
    return _range_refusal(call.request, response, st.st_size) or response


async def download(call: Call) -> Response:
    response = await _send(call, transcoding=False)
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
