"""REST routes for jams (`tunehand ctl jam ...`): start, join, leave, end, kick, set.

Every route acts for the token's account; what a guest may do to the shared session
is decided in the core, not here (see `tunehand.server.jam`).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.server import jam
from tunehand.server.web import body, client_address, json, principal, services


@dataclass(frozen=True)
class StartBody:
    guests_can_control: bool = False


@dataclass(frozen=True)
class SetBody:
    guests_can_control: bool


@dataclass(frozen=True)
class JoinBody:
    code: str


@dataclass(frozen=True)
class KickBody:
    user: str


def _view(v: jam.JamView) -> dict[str, object]:
    return {
        "host": v.host,
        "members": [{"user": m.user, "devices": list(m.devices)} for m in v.members],
        "code": v.code,
        "guests_can_control": v.guests_can_control,
    }


def join_url(request: Request, code: str) -> str:
    """A link that names the jam: `ctl jam join` takes it as well as the code."""
    return str(request.base_url).rstrip("/") + f"/?jam={code}"


async def get_jam(request: Request) -> Response:
    who = await principal(request)
    return json(_view(await jam.info(services(request).sessions, who.account_id)))


async def start_jam(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, StartBody)
    code = await jam.start(services(request).sessions, who.account_id, b.guests_can_control)
    return json({"code": code, "url": join_url(request, code)})


async def set_jam(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, SetBody)
    sessions = services(request).sessions
    await jam.set_control(sessions, who.account_id, b.guests_can_control)
    return json(_view(await jam.info(sessions, who.account_id)))


async def end_jam(request: Request) -> Response:
    who = await principal(request)
    await jam.end(services(request).sessions, who.account_id)
    return json({"ok": True})


async def join_jam(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, JoinBody)
    code = b.code[:200]
    host = await jam.join(services(request).sessions, who.account_id, code, client_address(request))
    return json({"host": host})


async def leave_jam(request: Request) -> Response:
    who = await principal(request)
    host = await jam.leave(services(request).sessions, who.account_id)
    return json({"host": host})


async def kick_from_jam(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, KickBody)
    await jam.kick(services(request).sessions, who.account_id, b.user[:200])
    return json({"ok": True})


routes = [
    Route("/v1/jam", get_jam),
    Route("/v1/jam", start_jam, methods=["POST"]),
    Route("/v1/jam", set_jam, methods=["PATCH"]),
    Route("/v1/jam", end_jam, methods=["DELETE"]),
    Route("/v1/jam/join", join_jam, methods=["POST"]),
    Route("/v1/jam/leave", leave_jam, methods=["POST"]),
    Route("/v1/jam/kick", kick_from_jam, methods=["POST"]),
]
