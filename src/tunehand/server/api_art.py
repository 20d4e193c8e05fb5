"""The cover-art route: `GET /v1/art/{art_id}?size=N&exp=..&sig=..`, a signed picture.

Like stream URLs, art URLs carry no account token (an image viewer, a desktop shell
reading MPRIS or a terminal image protocol fetch them with no headers); they are signed
and expire (see `streams`). The picture is resized to the next of `art.SIZES` at or above
`size` (512 when not given), answered with a strong ETag (the art id is a content hash,
so the ETag never needs the bytes) and long-lived private caching, and kept resized in
the server's `ArtCache`. A picture that cannot be read is a 404, one that cannot be
decoded a 422, both as JSON errors.
"""

from __future__ import annotations

import asyncio
import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.errors import MediaError
from tunehand.server.db import library as ql
from tunehand.server.library import art
from tunehand.server.revocation import link_allowed
from tunehand.server.web import error, path_param, query_int, services

ART_ID_RE = re.compile(r"^c[0-9a-f]{32}$")
CACHE_CONTROL = "private, max-age=86400, immutable"


def _etag(art_id: str, size: int) -> str:
    return f'"{art_id}-{size}"'


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def cover(request: Request) -> Response:
    art_id = path_param(request, "art_id", 64)
    s = services(request)
    exp = request.query_params.get("exp", "")
    sig = request.query_params.get("sig", "")
    if not s.signer.verify_art(art_id, exp, sig, int(time.time())):
        return error(403, "forbidden", "the art link is forged or expired")
    if not await link_allowed(s.signer, s.links, sig, request.query_params):
        return error(403, "forbidden", "the art link is another device's, or it was revoked")
    if not ART_ID_RE.match(art_id):
        return error(404, "not_found", f"no picture {art_id}")
    size = art.snap_size(query_int(request, "size", art.DEFAULT_SIZE, 1, art.SIZES[-1]))
    etag = _etag(art_id, size)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    key = (art_id, size)
    cached = s.art.get(key)
    if cached is None:
        async with s.engine.connect() as conn:
            sources = await ql.art_sources(conn, art_id)
        if not sources:
            return error(404, "not_found", f"no picture {art_id}: rescan the library")
    if isinstance(cached, str):
        return error(422, "bad_picture", cached)
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)  # the id is the content's hash
    if cached is None:
        try:
            cached = await asyncio.to_thread(_render, sources, art_id, size)
        except MediaError as exc:
            return error(404, "not_found", str(exc))
        s.art.put(key, cached)
        if isinstance(cached, str):
            return error(422, "bad_picture", cached)
    return Response(cached.data, media_type=cached.mime, headers=headers)


def _render(sources: list[tuple[str, str | None]], art_id: str, size: int) -> art.Picture | str:
    """The resized picture, or the reason it cannot be decoded (a string, cached as such).

    Raises MediaError when no source can be read any more (not cached: a rescan or a
    remounted drive may bring it back).
    """
    problem = "the picture is gone: rescan the library"
    for track_path, file in sources:
        try:
            data = art.load(track_path, file, art_id)
        except MediaError as exc:
            problem = str(exc)
            continue
        try:
            return art.resize(data, size)
        except MediaError as exc:
            return str(exc)
    raise MediaError(problem)


routes = [Route("/v1/art/{art_id}", cover, methods=["GET", "HEAD"])]
