"""REST routes for podcasts (subscriptions and episodes), long-form resume points
(`/v1/continue`), and the stream of an episode (its enclosure, fetched by the server).

An episode's stream link is the same signed, device-bound `/v1/stream/{id}` link as a
track's (`api_library.stream` hands episode ids here): the server fetches the enclosure
itself, under the fetcher's limits, passing Range on, so mpv can seek.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tunehand.errors import NotFound
from tunehand.server.db import podcasts as qp
from tunehand.server.podcasts.fetch import FetchError
from tunehand.server.podcasts.service import Podcasts
from tunehand.server.web import ApiError, body, error, json, path_param, principal, services

MAX_CONTINUE = 50
PASSED_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "repr-digest",
)
"""Passed on from the episode's host; its `Repr-Digest` (RFC 9530), when it gives one, is
what the offline cache checks its copy against (else the size, and a hash made there)."""


@dataclass(frozen=True)
class SubscribeBody:
    url: str


def _podcasts(request: Request) -> Podcasts:
    p = services(request).podcasts
    if p is None:
        raise ApiError(503, "unavailable", "podcasts are not running on this server")
    return p


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def podcast_json(p: qp.PodcastRow) -> dict[str, object]:
    return {
        "id": p.id,
        "title": p.title,
        "url": p.url,
        "episodes": p.episodes,
        "refreshed_ms": p.refreshed_ms,
        "error": p.error,
    }


async def list_podcasts(request: Request) -> Response:
    who = await principal(request)
    async with services(request).engine.connect() as conn:
        rows = await qp.list_podcasts(conn, who.account_id)
    return json({"podcasts": [podcast_json(p) for p in rows]})


async def subscribe(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, SubscribeBody)
    try:
        row = await _podcasts(request).subscribe(who.account_id, b.url.strip())
    except FetchError as exc:
        raise ApiError(422, "feed_error", str(exc)) from exc
    return json(podcast_json(row), 201)


async def _own(request: Request, account_id: int) -> qp.PodcastRow:
    pid = path_param(request, "podcast_id")
    async with services(request).engine.connect() as conn:
        row = await qp.get_podcast(conn, account_id, pid)
    if row is None:
        raise NotFound(f"no podcast {pid}")
    return row


async def unsubscribe(request: Request) -> Response:
    who = await principal(request)
    row = await _own(request, who.account_id)
    async with services(request).engine.begin() as conn:
        await qp.remove_podcast(conn, who.account_id, row.id)
    return json({"removed": row.id})


async def episodes(request: Request) -> Response:
    who = await principal(request)
    row = await _own(request, who.account_id)
    async with services(request).engine.connect() as conn:
        eps = await qp.list_episodes(conn, who.account_id, row.id)
        points = await qp.resume_points(conn, who.account_id, [e.id for e in eps])
    out = []
    for e in eps:
        p = points.get(e.id)
        out.append(
            {
                "id": e.id,
                "title": e.title,
                "published": _iso(e.published_ms),
                "duration_ms": e.duration_ms or (p.duration_ms if p else 0),
                "position_ms": p.position_ms if p else 0,
                "played": bool(p and p.played),
            }
        )
    return json({"podcast": podcast_json(row), "episodes": out})


async def in_progress(request: Request) -> Response:
    """What the account has in progress: long-form items started and not played."""
    who = await principal(request)
    s = services(request)
    async with s.engine.connect() as conn:
        points = await qp.in_progress(conn, who.account_id, MAX_CONTINUE)
    views = await s.sessions.tracks(who.account_id, [p.track_id for p in points])
    items = [
        {
            "id": p.track_id,
            "title": views[p.track_id].title,
            "kind": p.kind,
            "position_ms": p.position_ms,
            "duration_ms": p.duration_ms or views[p.track_id].duration_ms,
            "updated_ms": p.updated_ms,
        }
        for p in points
        if p.track_id in views  # a removed podcast's episodes are gone
    ]
    return json({"items": items})


async def stream_episode(request: Request, episode_id: str) -> Response:
    """The enclosure of `episode_id`, fetched by the server (the link was checked)."""
    s = services(request)
    async with s.engine.connect() as conn:
        found = await qp.get_episodes(conn, None, [episode_id])
    ep = found.get(episode_id)
    if ep is None:
        return error(404, "not_found", f"no episode {episode_id}")
    if s.podcasts is None:
        return error(503, "unavailable", "podcasts are not running on this server")
    headers = {}
    for name in ("range", "if-range"):
        if name in request.headers:
            headers[name] = request.headers[name]
    try:
        upstream = await s.podcasts.fetcher.open(ep.url, headers)
    except FetchError as exc:
        return error(502, "upstream", f"the episode's host: {exc}")
    if upstream.status_code not in (200, 206, 416):
        await upstream.aclose()
        return error(502, "upstream", f"the episode's host answered {upstream.status_code}")
    passed = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
    passed["Cache-Control"] = "private"
    if request.method == "HEAD" or upstream.status_code == 416:
        await upstream.aclose()
        return Response(b"", upstream.status_code, passed)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:  # also when the player goes away mid-stream
            await upstream.aclose()

    return StreamingResponse(relay(), upstream.status_code, passed)


routes = [
    Route("/v1/podcasts", list_podcasts),
    Route("/v1/podcasts", subscribe, methods=["POST"]),
    Route("/v1/podcasts/{podcast_id}", unsubscribe, methods=["DELETE"]),
    Route("/v1/podcasts/{podcast_id}/episodes", episodes),
    Route("/v1/continue", in_progress),
]
