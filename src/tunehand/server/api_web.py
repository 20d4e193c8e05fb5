"""Login for the web app, with tokens kept as a careful web app keeps them.

The access token goes to the page in the body and lives in its memory only; the
refresh token never reaches the page's script: it is an `HttpOnly` cookie, `SameSite=
Strict`, `Secure` under TLS, sent only to `/v1/auth/web` (`REFRESH_COOKIE`). A request
the cookie authenticates (refresh, logout) must also carry `X-CSRF-Token` with the value
of the readable `th_csrf` cookie (double submit), which is an HMAC of the device id
under the server's key, so a cookie planted from elsewhere cannot match; a cross-site
`Origin` is refused as well. A tab logs in as a device of kind `web`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.core import names
from tunehand.errors import AuthError
from tunehand.server import auth, device_code, security
from tunehand.server.api_device import TokenBody, grant_error
from tunehand.server.db import accounts as qa
from tunehand.server.hub import REVOKED_FAMILY
from tunehand.server.web import (
    ApiError,
    body,
    client_address,
    error,
    json,
    now_ms,
    services,
)

REFRESH_COOKIE = "th_refresh"
CSRF_COOKIE = "th_csrf"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/v1/auth/web"
KIND = "web"


@dataclass(frozen=True)
class WebLoginBody:
    user: str
    password: str
    device_id: str = ""  # the browser's earlier device, reused when it is this account's
    device_name: str = ""
    device_name_default: bool = False
    """`device_name` is the tab's own default ("Chromium on Linux"): made unique within
    the account ("Chromium on Linux-2"), as a terminal's host name is."""


def csrf_token(request: Request, device_id: str) -> str:
    key = services(request).signer.subkey("web-csrf")
    return hmac.new(key, device_id.encode(), "sha256").hexdigest()


def _answer(request: Request, pair: auth.TokenPair, user: str) -> Response:
    csrf = csrf_token(request, pair.device_id)
    resp = json(
        {
            "access_token": pair.access_token,
            "expires_in": pair.expires_in_s,
            "device_id": pair.device_id,
            "user": user,
            "csrf_token": csrf,
        },
        headers={"Cache-Control": "no-store"},
    )
    secure = request.url.scheme == "https"
    max_age = auth.REFRESH_TTL_MS // 1000
    resp.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    resp.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", secure=secure, samesite="strict")
    return resp


def _cleared(resp: Response) -> Response:
    resp.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    resp.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return resp


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser's cross-site request (they always send Origin on POST)
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != own:
        raise ApiError(403, "csrf", "cross-site request refused")


async def login(request: Request) -> Response:
    _same_origin(request)
    b = await body(request, WebLoginBody)
    if len(b.device_id) > 64 or len(b.device_name) > 128:
        raise ApiError(422, "invalid", "device_id: at most 64 characters; device_name at most 128")
    s = services(request)
    address = client_address(request)
    try:
        account = await auth.check_password(
            s.engine, b.user, b.password, address, now_ms(), s.hash_gate
        )
    except auth.Throttled:
        security.event(security.LOGIN_THROTTLED, user=b.user[:200], address=address)
        raise
    except AuthError:
        security.event(security.LOGIN_FAILED, user=b.user[:200], address=address)
        raise
    async with s.engine.begin() as conn:
        device_id = b.device_id
        if device_id:
            known = await qa.device(conn, device_id)
            if known is not None and known.account_id != account.id:
                device_id = ""  # another account's tab in this browser: a device of its own
        device_id = device_id or auth.new_device_id()
        name = names.clean(b.device_name)
        pair = await auth.start_family(
            conn,
            account.id,
            device_id,
            name or "web browser",
            address,
            now_ms(),
            KIND,
            name_default=not name or b.device_name_default,
        )
    return _answer(request, pair, account.name)


async def _cookie_token(request: Request) -> tuple[str, qa.TokenRow]:
    """The refresh cookie and its row, once the CSRF header matches; else refuse."""
    _same_origin(request)
    token = request.cookies.get(REFRESH_COOKIE, "")
    if not token or len(token) > 200:
        raise AuthError("not logged in")
    s = services(request)
    async with s.engine.connect() as conn:
        row = await qa.token(conn, auth.token_hash(token), "refresh")
    if row is None:
        raise AuthError("logged out: the login has expired or was revoked; log in again")
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(request, row.device_id).encode()):
        raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token header")
    return token, row


async def refresh(request: Request) -> Response:
    s = services(request)
    try:
        token, row = await _cookie_token(request)
        pair = await auth.refresh(
            s.engine,
            token,
            now_ms(),
            key=s.signer.subkey("refresh-rotation"),
            device_id=row.device_id,
            grace_ms=s.settings.refresh_grace_s * 1000,
            address=client_address(request),
        )
        async with s.engine.connect() as conn:
            account = await qa.account_by_id(conn, row.account_id)
        if account is None:
            raise AuthError("the account no longer exists")
    except AuthError as exc:
        return _cleared(error(401, "unauthorized", str(exc)))
    return _answer(request, pair, account.name)


async def logout(request: Request) -> Response:
    s = services(request)
    try:
        _, row = await _cookie_token(request)
    except AuthError:
        return _cleared(json({"ok": True}))  # nothing to log out: say so and clear
    async with s.engine.begin() as conn:
        await qa.revoke_family(conn, row.account_id, row.family)
    security.event(security.LOGOUT, account=row.account_id, device=row.device_id)
    await s.hub.revoke(REVOKED_FAMILY, row.account_id, row.family)
    return _cleared(json({"ok": True}))


async def device_token(request: Request) -> Response:
    """`/v1/auth/device/token` for a tab: the same answers while pending; once approved,
    the login answer with the cookies (and the device registered as kind `web`)."""
    _same_origin(request)
    b = await body(request, TokenBody)
    try:
        pair, user = await device_code.poll(
            services(request).engine, b.device_code[:200], client_address(request), now_ms(), KIND
        )
    except device_code.GrantError as exc:
        return grant_error(exc)
    return _answer(request, pair, user)


routes = [
    Route("/v1/auth/web/login", login, methods=["POST"]),
    Route("/v1/auth/web/refresh", refresh, methods=["POST"]),
    Route("/v1/auth/web/logout", logout, methods=["POST"]),
    Route("/v1/auth/web/device/token", device_token, methods=["POST"]),
]
