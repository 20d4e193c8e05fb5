"""REST routes for autoplay and radio (see `radio`).

- `GET /v1/autoplay` `{on}`, `PUT /v1/autoplay` `{on}`: the account's switch;
- `POST /v1/radio` `{track_ids}` or `{artist}`: `{track_ids}`, a queue of tracks that
  fit (the first seed first; for an artist, up to 5 of its tracks first); the client
  plays it (`ctl radio`), as any queue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.core import search
from tunehand.server.db import library as ql
from tunehand.server.db.tables import tracks
from tunehand.server.radio import RADIO_SIZE, SEEDS, pick
from tunehand.server.web import ApiError, body, json, principal, services

MAX_SEEDS = 500


@dataclass(frozen=True)
class AutoplayBody:
    on: bool


@dataclass(frozen=True)
class RadioBody:
    track_ids: tuple[str, ...] = ()
    artist: str | None = None


async def get_autoplay(request: Request) -> Response:
    who = await principal(request)
    return json({"on": await services(request).autoplay.enabled(who.account_id)})


async def put_autoplay(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, AutoplayBody)
    await services(request).autoplay.set(who.account_id, b.on)
    return json({"on": b.on})


async def radio(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, RadioBody)
    if bool(b.track_ids) == bool(b.artist):
        raise ApiError(422, "invalid", "give track_ids or artist (one of them)")
    if len(b.track_ids) > MAX_SEEDS or any(len(t) > 64 for t in b.track_ids):
        raise ApiError(422, "invalid", f"track_ids: at most {MAX_SEEDS} ids")
    if b.artist is not None and not 1 <= len(b.artist) <= 200:
        raise ApiError(422, "invalid", "artist: 1 to 200 characters")
    s = services(request)
    rng = random.Random()
    async with s.engine.connect() as conn:
        if b.artist:
            key = search.normalize(b.artist)
            ids: list[tuple[str, str]] = [
                (r.id, r.artist)
                for r in await conn.execute(
                    sa.select(tracks.c.id, tracks.c.artist).where(
                        sa.or_(tracks.c.artist_key == key, tracks.c.artist == b.artist)
                    )
                )
            ]
            if not ids:
                found = await ql.find(conn, b.artist, 200)
                ids = [(t.view.id, t.view.artist) for t in found]
            seeds = [tid for tid, artist in ids if search.normalize(artist) == key]
            if not seeds:
                raise ApiError(404, "not_found", f"no artist {b.artist!r} in the library")
            rng.shuffle(seeds)
            seeds = seeds[:SEEDS]
        else:
            known = await ql.get_many(conn, list(b.track_ids))
            seeds = [t for t in b.track_ids if t in known]
            if not seeds:
                raise ApiError(404, "not_found", "none of those tracks is in the library")
    # An artist's radio starts with a few of its tracks; a track's or an album's with the
    # first one (the album's other tracks are its seeds: the picks are what fits them).
    first = seeds if b.artist else seeds[:1]
    picks = await pick(s.engine, who.account_id, seeds, count=RADIO_SIZE - len(first), rng=rng)
    return json({"track_ids": [*first, *picks]})


routes = [
    Route("/v1/autoplay", get_autoplay),
    Route("/v1/autoplay", put_autoplay, methods=["PUT"]),
    Route("/v1/radio", radio, methods=["POST"]),
]
