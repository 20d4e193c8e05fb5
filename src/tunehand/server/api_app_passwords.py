"""REST routes for an account's application passwords (Subsonic apps).

`POST /v1/app-passwords` `{"name"}` makes one and answers its password, the only time
it is ever shown; `GET /v1/app-passwords` lists them (never the passwords);
`DELETE /v1/app-passwords/{name}` revokes one (as revoking its device does).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.server import app_passwords, security
from tunehand.server.hub import REVOKED_DEVICE
from tunehand.server.web import body, client_address, json, now_ms, path_param, principal, services


@dataclass(frozen=True)
class CreateBody:
    name: str


async def create(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, CreateBody)
    s = services(request)
    made = await app_passwords.create(
        s.engine,
        app_passwords.Sealer.of(s.signer),
        who.account_id,
        b.name,
        client_address(request),
        now_ms(),
    )
    security.event(
        security.APP_PASSWORD_CREATED,
        user=who.account_name,
        device=made.device_id,
        name=made.name,
        by=who.device_id,
        address=client_address(request),
    )
    await s.sessions.publish_device(who.account_id, made.device_id)
    answer = {
        "name": made.name,
        "device_id": made.device_id,
        "password": made.password,
        "created_ms": made.created_ms,
    }
    return json(answer, headers={"Cache-Control": "no-store"})


async def listing(request: Request) -> Response:
    who = await principal(request)
    rows = await app_passwords.listed(services(request).engine, who.account_id)
    return json(
        {
            "app_passwords": [
                {
                    "name": r.name,
                    "device_id": r.device_id,
                    "created_ms": r.created_ms,
                    "last_used_ms": r.last_seen_ms if r.last_seen_ms != r.created_ms else None,
                }
                for r in rows
            ]
        }
    )


async def revoke(request: Request) -> Response:
    who = await principal(request)
    name = path_param(request, "name", app_passwords.MAX_NAME * 4)
    s = services(request)
    device_id = await app_passwords.revoke(s.engine, who.account_id, name)
    security.event(
        security.DEVICE_REVOKED, user=who.account_name, device=device_id, by=who.device_id
    )
    await s.hub.revoke(REVOKED_DEVICE, who.account_id, device_id)
    await s.sessions.publish_device(who.account_id, device_id)
    return json({"ok": True})


routes = [
    Route("/v1/app-passwords", create, methods=["POST"]),
    Route("/v1/app-passwords", listing),
    Route("/v1/app-passwords/{name:path}", revoke, methods=["DELETE"]),
]
