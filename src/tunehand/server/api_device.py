"""Routes of device-code logins: start, poll, approve by a logged-in device, and the
small HTML approval page (user code, user name, password) for a browser.

Errors of the device-code grant answer 400 with the RFC 8628 code (`authorization_pending`,
`slow_down`, `expired_token`, `access_denied`, `invalid_grant`) in the usual error object.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tunehand.errors import AuthError
from tunehand.server import auth, device_code
from tunehand.server.device_code import GrantError
from tunehand.server.web import (
    ApiError,
    body,
    client_address,
    json,
    now_ms,
    principal,
    services,
)

MAX_FORM = 4096


@dataclass(frozen=True)
class StartBody:
    device_id: str
    device_name: str = ""


@dataclass(frozen=True)
class TokenBody:
    device_code: str


@dataclass(frozen=True)
class ApproveBody:
    user_code: str
    approve: bool = True


def _grant_error(exc: GrantError) -> Response:
    err: dict[str, object] = {"code": exc.code, "message": str(exc)}
    if exc.interval_s:
        err["interval"] = exc.interval_s
    return json({"error": err}, exc.status)


def verification_uri(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/approve"


async def start(request: Request) -> Response:
    b = await body(request, StartBody)
    if not b.device_id or len(b.device_id) > 64 or len(b.device_name) > 128:
        raise ApiError(422, "invalid", "device_id: 1 to 64 characters; device_name at most 128")
    s = services(request)
    started = await device_code.start(
        s.engine,
        b.device_id,
        b.device_name or b.device_id,
        s.settings.device_code_ttl_s,
        now_ms(),
        client_address(request),
    )
    uri = verification_uri(request)
    return json(
        {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?code={started.user_code}",
            "expires_in": started.expires_in_s,
            "interval": started.interval_s,
        }
    )


async def token(request: Request) -> Response:
    b = await body(request, TokenBody)
    try:
        pair, user = await device_code.poll(
            services(request).engine, b.device_code[:200], client_address(request), now_ms()
        )
    except GrantError as exc:
        return _grant_error(exc)
    return json(
        {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in_s,
            "device_id": pair.device_id,
            "user": user,
        }
    )


async def approve(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, ApproveBody)
    try:
        name = await device_code.approve(
            services(request).engine,
            b.user_code[:64],
            who.account_id,
            b.approve,
            client_address(request),
            now_ms(),
        )
    except GrantError as exc:
        return _grant_error(exc)
    return json({"ok": True, "approved": b.approve, "device_name": name, "user": who.account_name})


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunehand: approve a device</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}}
label{{display:block;margin:.8em 0 .2em}}input{{width:100%;padding:.4em;font-size:1.1em}}
button{{margin-top:1em;padding:.5em 1.2em;font-size:1em}}.msg{{padding:.6em;background:#eee}}
</style></head><body>
<h1>Approve a device</h1>
{message}
<form method="post" action="approve">
<label for="user_code">Code shown on the new device</label>
<input id="user_code" name="user_code" value="{code}" autocomplete="off"
 autocapitalize="characters" placeholder="WDJB-MJHT" required>
<label for="user">User name</label>
<input id="user" name="user" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button name="action" value="approve" type="submit">Approve</button>
<button name="action" value="deny" type="submit">Deny</button>
</form></body></html>
"""


def _page(message: str = "", code: str = "", status: int = 200) -> Response:
    msg = f'<p class="msg">{html.escape(message)}</p>' if message else ""
    page = _PAGE.format(message=msg, code=html.escape(code, quote=True))
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'",
    }
    return HTMLResponse(page, status, headers)


async def approve_page(request: Request) -> Response:
    return _page(code=request.query_params.get("code", "")[:16])


async def approve_form(request: Request) -> Response:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            return _page("The form is too large.", status=413)
    try:
        form = parse_qs(raw.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _page("The form could not be read.", status=400)

    def field(name: str) -> str:
        return (form.get(name) or [""])[0]

    code, allow = field("user_code")[:64], field("action") != "deny"
    try:
        name = await device_code.approve_with_password(
            services(request).engine,
            code,
            field("user")[: auth.MAX_NAME + 1],
            field("password")[: auth.MAX_PASSWORD + 1],
            allow,
            client_address(request),
            now_ms(),
            services(request).hash_gate,
        )
    except GrantError as exc:
        return _page(str(exc).capitalize() + ".", code, exc.status)
    except auth.Throttled as exc:
        page = _page(str(exc).capitalize() + ".", code, 429)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    except AuthError as exc:
        return _page(str(exc).capitalize() + ".", code, 401)
    done = f"Approved: {name} is now logged in." if allow else f"Denied: {name} stays logged out."
    return _page(done)


routes = [
    Route("/v1/auth/device", start, methods=["POST"]),
    Route("/v1/auth/device/token", token, methods=["POST"]),
    Route("/v1/auth/device/approve", approve, methods=["POST"]),
    Route("/approve", approve_page, methods=["GET"]),
    Route("/approve", approve_form, methods=["POST"]),
]
