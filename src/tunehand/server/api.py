"""REST routes for logins, the session (a mirror of the channel), devices and account data.

Every route but login, refresh and health needs a Bearer access token, and every
query is scoped to that token's account.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand import __version__
from tunehand.core import devices, names
from tunehand.core import session as core_session
from tunehand.core.commands import Command, Result
from tunehand.errors import AuthError
from tunehand.server import auth, quotas, security
from tunehand.server.db import accounts as qa
from tunehand.server.db import userdata as qu
from tunehand.server.hub import REVOKED_DEVICE, REVOKED_FAMILY
from tunehand.server.library.chapters import Chapter
from tunehand.server.limits import QUOTAS
from tunehand.server.web import (
    ApiError,
    body,
    client_address,
    json,
    now_ms,
    path_param,
    principal,
    query_int,
    services,
)

if TYPE_CHECKING:
    from tunehand.server.service import SessionService

MAX_DEVICE_ARG = 200
"""The longest `?device=` (a device name is at most 64 characters, an id less)."""

RESULT_STATUS = {
    "ok": 200,
    "invalid": 422,
    "conflict": 409,
    "not_found": 404,
    "no_device": 409,
    "device_offline": 409,
    "stale_term": 409,
    "empty_queue": 409,
    "rate_limited": 429,
    "unavailable": 503,
    "transfer_failed": 409,
    "forbidden": 403,
}


@dataclass(frozen=True)
class LoginBody:
    user: str
    password: str
    device_id: str = ""  # optional: the server mints one when absent
    device_name: str = ""
    device_name_default: bool = False
    """`device_name` is a default the client made up: made unique within the account."""


@dataclass(frozen=True)
class RefreshBody:
    refresh_token: str
    device_id: str = ""  # lets the same device get a lost rotation's answer again


@dataclass(frozen=True)
class PlaylistBody:
    track_ids: tuple[str, ...]


@dataclass(frozen=True)
class RenameBody:
    name: str


@dataclass(frozen=True)
class RemoteBody:
    url: str
    title: str = ""


def _pair(pair: auth.TokenPair, user: str) -> dict[str, object]:
    answer: dict[str, object] = {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in_s,
        "device_id": pair.device_id,
        "user": user,
    }
    if pair.device_name:
        answer["device_name"] = pair.device_name
    return answer


async def health(request: Request) -> Response:
    return json({"server": "tunehand", "version": __version__, "server_time_ms": now_ms()})


async def login(request: Request) -> Response:
    b = await body(request, LoginBody)
    if len(b.device_id) > 64 or len(b.device_name) > 128:
        raise ApiError(422, "invalid", "device_id: at most 64 characters; device_name at most 128")
    dev = b.device_id or auth.new_device_id()
    address = client_address(request)
    name = names.clean(b.device_name)
    try:
        pair = await auth.login(
            services(request).engine,
            b.user,
            b.password,
            dev,
            name or dev,
            address,
            now_ms(),
            services(request).hash_gate,
            name_default=bool(name) and b.device_name_default,
        )
    except auth.Throttled:
        security.event(security.LOGIN_THROTTLED, user=b.user[:200], address=address)
        raise
    except AuthError:
        security.event(security.LOGIN_FAILED, user=b.user[:200], address=address)
        raise
    return json(_pair(pair, b.user))


async def refresh(request: Request) -> Response:
    b = await body(request, RefreshBody)
    s = services(request)
    pair = await auth.refresh(
        s.engine,
        b.refresh_token,
        now_ms(),
        key=s.signer.subkey("refresh-rotation"),
        device_id=b.device_id,
        grace_ms=s.settings.refresh_grace_s * 1000,
        address=client_address(request),
    )
    return json(_pair(pair, ""))


async def logout(request: Request) -> Response:
    who = await principal(request)
    s = services(request)
    await auth.logout(s.engine, who)
    security.event(security.LOGOUT, user=who.account_name, device=who.device_id)
    await s.hub.revoke(REVOKED_FAMILY, who.account_id, who.family)
    return json({"ok": True})


async def whoami(request: Request) -> Response:
    who = await principal(request)
    return json({"user": who.account_name, "device_id": who.device_id})


async def _chapters(request: Request, track_id: str) -> tuple[Chapter, ...]:
    """The chapter marks of what plays: a library track's file, or the head of an
    episode's enclosure (fetched from its host)."""
    s = services(request)
    if track_id.startswith("e"):
        return await s.podcasts.chapters.of(track_id) if s.podcasts is not None else ()
    return await s.sessions.chapters(track_id)


async def get_session(request: Request) -> Response:
    who = await principal(request)
    sessions = services(request).sessions
    session, state = await sessions.view(who.account_id)
    msg = await sessions.state_message(session, state)
    devices = await sessions.devices_view(who.account_id)
    seat = await sessions.seat(who.account_id)
    marks = await _chapters(request, msg.track.id) if msg.track is not None else ()
    return json(
        {
            "state": msg.state,
            "track": msg.track,
            "devices": devices,
            "server_time_ms": now_ms(),
            "jam": {"role": seat.role} if seat.in_jam else None,
            "chapters": [{"title": c.title, "start_ms": c.start_ms} for c in marks],
        }
    )


async def get_queue(request: Request) -> Response:
    who = await principal(request)
    sessions = services(request).sessions
    session, state = await sessions.view(who.account_id)
    views = await sessions.tracks(session, [e.track_id for e in state.queue])
    playing = (await sessions.state_message(session, state)).track
    if playing is not None:
        views[playing.id] = playing  # with what its player learnt (a radio's live title)
    order = state.play_order()
    entries = [
        {
            "entry_id": e.entry_id,
            "track": views.get(e.track_id),
            "track_id": e.track_id,
            "current": e.entry_id == state.current,
            "added_by": e.added_by,
            "autoplay": core_session.is_autoplay(e.entry_id),
        }
        for e in state.queue
    ]
    return json(
        {"version": state.version, "current": state.current, "order": order, "entries": entries}
    )


async def post_command(request: Request) -> Response:
    who = await principal(request)
    cmd = await body(request, Command)
    sessions = services(request).sessions
    name = request.query_params.get("device")
    if name is not None:
        cmd = replace(cmd, device_id=await _named_device(sessions, who.account_id, cmd, name))
    res: Result = await sessions.execute(who.account_id, cmd, None)
    session, state = await sessions.view(who.account_id)
    msg = await sessions.state_message(session, state)
    answer: dict[str, object] = {"result": res, "state": msg.state, "track": msg.track}
    if not res.ok:  # every 4xx answer carries the usual error object too
        answer["error"] = {"code": res.code, "message": res.message}
    return json(answer, RESULT_STATUS.get(res.code, 400))


async def _named_device(sessions: SessionService, account_id: int, cmd: Command, name: str) -> str:
    """The id of the device `?device=` names (id, exact name or unique name prefix; the
    rule of `core.devices`), so that `ctl transfer NAME` is one request."""
    if not 1 <= len(name) <= MAX_DEVICE_ARG or "\x00" in name:
        raise ApiError(422, "invalid", f"device: must be 1 to {MAX_DEVICE_ARG} characters")
    found = await sessions.devices_view(account_id)
    listed = [(d.id, d.name, d.online) for d in found]
    i = devices.pick(listed, name)
    if i is None:
        raise ApiError(404, "not_found", devices.unknown(listed, name))
    if cmd.op == "transfer" and not found[i].online:
        raise ApiError(409, "device_offline", f"device {found[i].name} is offline")
    return found[i].id


async def get_devices(request: Request) -> Response:
    who = await principal(request)
    return json({"devices": await services(request).sessions.devices_view(who.account_id)})


async def delete_device(request: Request) -> Response:
    who = await principal(request)
    device_id = path_param(request, "device_id", 64)
    s = services(request)
    async with s.engine.begin() as conn:
        dev = await qa.device(conn, device_id)
        if dev is None or dev.account_id != who.account_id:
            raise ApiError(404, "not_found", f"no device {device_id}")
        await qa.revoke_device(conn, who.account_id, device_id)
    security.event(
        security.DEVICE_REVOKED, user=who.account_name, device=device_id, by=who.device_id
    )
    await s.hub.revoke(REVOKED_DEVICE, who.account_id, device_id)
    await s.sessions.publish_device(who.account_id, device_id)
    return json({"ok": True})


async def rename_device(request: Request) -> Response:
    """Rename a device of the account (`ctl devices rename`, the web app's rename); the
    account's devices see it at once (a devices patch)."""
    who = await principal(request)
    device_id = path_param(request, "device_id", 64)
    b = await body(request, RenameBody)
    name = names.clean(b.name)
    if not name or len(b.name) > 64:
        raise ApiError(422, "invalid", "name: must be 1 to 64 printable characters")
    s = services(request)
    async with s.engine.begin() as conn:
        if not await qa.rename_device(conn, who.account_id, device_id, name):
            raise ApiError(404, "not_found", f"no device {device_id}")
    await s.sessions.publish_device(who.account_id, device_id)
    devices = await s.sessions.devices(who.account_id)
    return json(next(d for d in devices if d.id == device_id))


async def list_playlists(request: Request) -> Response:
    who = await principal(request)
    async with services(request).engine.connect() as conn:
        lists = await qu.list_playlists(conn, who.account_id)
    return json(
        {
            "playlists": [
                {"name": p.name, "tracks": len(p.track_ids), "updated_ms": p.updated_ms}
                for p in lists
            ]
        }
    )


async def get_playlist(request: Request) -> Response:
    who = await principal(request)
    name = path_param(request, "name")
    s = services(request)
    async with s.engine.connect() as conn:
        p = await qu.playlist(conn, who.account_id, name)
    if p is None:
        raise ApiError(404, "not_found", f"no playlist named {name!r}")
    views = await s.sessions.tracks(who.account_id, p.track_ids)
    return json(
        {"name": p.name, "track_ids": p.track_ids, "tracks": [views.get(t) for t in p.track_ids]}
    )


def _new_playlist_name(raw: str) -> str:
    """A playlist name as kept: control and format characters dropped, trimmed."""
    name = names.clean(raw, 200)
    if not name or len(raw) > 200:
        raise ApiError(422, "invalid", "name: a playlist name has 1 to 200 characters")
    return name


async def put_playlist(request: Request) -> Response:
    """PUT: create or replace, under the name as kept (see `names.clean`)."""
    who = await principal(request)
    name = _new_playlist_name(path_param(request, "name"))
    b = await body(request, PlaylistBody)
    if len(b.track_ids) > QUOTAS.playlist_entries:
        raise ApiError(422, "invalid", f"track_ids: at most {QUOTAS.playlist_entries}")
    s = services(request)
    known = await s.sessions.tracks(who.account_id, b.track_ids)
    missing = [t for t in b.track_ids if t not in known]
    if missing:
        raise ApiError(404, "not_found", f"no such track: {missing[0]}")
    async with s.engine.begin() as conn:
        await quotas.room_for_playlist(conn, who.account_id, name)
        await qu.save_playlist(conn, who.account_id, name, b.track_ids, now_ms())
    return json({"ok": True})


async def rename_playlist(request: Request) -> Response:
    """PATCH {"name": NEW}: rename one of the account's playlists (tracks and order kept)."""
    who = await principal(request)
    name = path_param(request, "name")
    new_name = _new_playlist_name((await body(request, RenameBody)).name)
    try:
        async with services(request).engine.begin() as conn:
            outcome = await qu.rename_playlist(conn, who.account_id, name, new_name, now_ms())
    except sa.exc.IntegrityError:  # renamed to the same new name at the same moment
        outcome = "conflict"
    if outcome == "not_found":
        raise ApiError(404, "not_found", f"no playlist named {name!r}")
    if outcome == "conflict":
        raise ApiError(409, "conflict", f"a playlist named {new_name!r} exists already")
    return json({"ok": True})


async def delete_playlist(request: Request) -> Response:
    who = await principal(request)
    name = path_param(request, "name")
    async with services(request).engine.begin() as conn:
        if not await qu.delete_playlist(conn, who.account_id, name):
            raise ApiError(404, "not_found", f"no playlist named {name!r}")
    return json({"ok": True})


async def likes(request: Request) -> Response:
    who = await principal(request)
    s = services(request)
    async with s.engine.connect() as conn:
        ids = await qu.liked(conn, who.account_id)
    views = await s.sessions.tracks(who.account_id, ids)
    return json({"tracks": [views[t] for t in ids if t in views]})


async def like(request: Request) -> Response:
    who = await principal(request)
    track_id = path_param(request, "track_id")
    s = services(request)
    if track_id not in await s.sessions.tracks(who.account_id, [track_id]):
        raise ApiError(404, "not_found", f"no track {track_id}")
    async with s.engine.begin() as conn:
        if request.method == "DELETE":
            await qu.unlike(conn, who.account_id, track_id)
        else:
            await quotas.room_for_like(conn, who.account_id, track_id)
            await qu.like(conn, who.account_id, track_id, now_ms())
    return json({"ok": True})


async def history(request: Request) -> Response:
    who = await principal(request)
    limit = query_int(request, "limit", 50, 1, 1000)
    s = services(request)
    async with s.engine.connect() as conn:
        rows = await qu.recent(conn, who.account_id, limit)
    views = await s.sessions.tracks(who.account_id, [r[0] for r in rows])
    return json(
        {
            "history": [
                {"track": views.get(t), "track_id": t, "played_ms": at, "device_id": dev}
                for t, at, dev in rows
            ]
        }
    )


async def add_remote(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, RemoteBody)
    if not b.url.startswith(("http://", "https://")) or len(b.url) > 2000:
        raise ApiError(422, "invalid", "url: must be an http(s) URL of at most 2000 characters")
    svc = services(request)
    # In a jam the row is the host's (the account whose session it is queued on, where
    # every member's devices look it up); the guest reads none of the host's others.
    # A guest never renames a row the host has already: it only gets its id.
    seat = await svc.sessions.seat(who.account_id)
    owner = seat.session
    rid = qu.remote_id(owner, b.url)
    async with svc.engine.begin() as conn:
        if owner != who.account_id and await qu.remotes(conn, owner, [rid]):
            return json({"id": rid})
        await quotas.room_for_remote(conn, owner, rid)
        rid = await qu.add_remote(conn, owner, b.url, names.clean(b.title, 300))
    return json({"id": rid})


routes = [
    Route("/v1/health", health),
    Route("/v1/auth/login", login, methods=["POST"]),
    Route("/v1/auth/refresh", refresh, methods=["POST"]),
    Route("/v1/auth/logout", logout, methods=["POST"]),
    Route("/v1/auth/whoami", whoami),
    Route("/v1/session", get_session),
    Route("/v1/session/queue", get_queue),
    Route("/v1/session/commands", post_command, methods=["POST"]),
    Route("/v1/devices", get_devices),
    Route("/v1/devices/{device_id}", delete_device, methods=["DELETE"]),
    Route("/v1/devices/{device_id}", rename_device, methods=["PATCH"]),
    Route("/v1/playlists", list_playlists),
    # `:path` so a name may hold "/" (sent as %2F, which the router decodes first).
    Route("/v1/playlists/{name:path}", get_playlist),
    Route("/v1/playlists/{name:path}", put_playlist, methods=["PUT"]),
    Route("/v1/playlists/{name:path}", delete_playlist, methods=["DELETE"]),
    Route("/v1/playlists/{name:path}", rename_playlist, methods=["PATCH"]),
    Route("/v1/likes", likes),
    Route("/v1/likes/{track_id}", like, methods=["PUT", "DELETE"]),
    Route("/v1/history", history),
    Route("/v1/tracks/remote", add_remote, methods=["POST"]),
]
