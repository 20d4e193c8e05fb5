"""Routes of device-code logins: start, poll, review and approve by a logged-in device,
and the small HTML approval page for a browser: user code, user name and password first,
then a page that shows the device that asked (name, address, when) and approves only when
confirmed (RFC 8628 §5.4: a code from a link is never approved unseen).

Errors of the device-code grant answer 400 with the RFC 8628 code (`authorization_pending`,
`slow_down`, `expired_token`, `access_denied`, `invalid_grant`) in the usual error object.
"""

from __future__ import annotations

import base64
import hmac
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tunehand.core import names
from tunehand.errors import AuthError
from tunehand.server import auth, device_code, security
from tunehand.server.db import accounts as qa
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
    device_id: str = ""  # optional: the server mints one when absent
    device_name: str = ""
    device_name_default: bool = False  # a default name: made unique at approval


@dataclass(frozen=True)
class TokenBody:
    device_code: str


@dataclass(frozen=True)
class ReviewBody:
    user_code: str


@dataclass(frozen=True)
class ApproveBody:
    user_code: str
    approve: bool = True


def grant_error(exc: GrantError) -> Response:
    err: dict[str, object] = {"code": exc.code, "message": str(exc)}
    if exc.interval_s:
        err["interval"] = exc.interval_s
    return json({"error": err}, exc.status)


def verification_uri(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/approve"


async def start(request: Request) -> Response:
    b = await body(request, StartBody)
    if len(b.device_id) > 64 or len(b.device_name) > 128:
        raise ApiError(422, "invalid", "device_id: at most 64 characters; device_name at most 128")
    dev = b.device_id or auth.new_device_id()
    s = services(request)
    started = await device_code.start(
        s.engine,
        dev,
        b.device_name or dev,
        s.settings.device_code_ttl_s,
        now_ms(),
        client_address(request),
        name_default=b.device_name_default,
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
        return grant_error(exc)
    return json(
        {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in_s,
            "device_id": pair.device_id,
            "device_name": pair.device_name,
            "user": user,
        }
    )


async def approve(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, ApproveBody)
    address = client_address(request)
    try:
        pending = await device_code.approve(
            services(request).engine,
            b.user_code[:64],
            who.account_id,
            b.approve,
            address,
            now_ms(),
        )
    except GrantError as exc:
        return grant_error(exc)
    _log_decision(b.approve, who.account_name, pending, address)
    return json(
        {
            "ok": True,
            "approved": b.approve,
            "device_name": pending.device_name,
            "user": who.account_name,
        }
    )


async def review(request: Request) -> Response:
    """The device behind a pending code, for a logged-in device to show before it
    approves (`tunehand ctl approve` asks y/N). Wrong codes count as in approving."""
    who = await principal(request)
    b = await body(request, ReviewBody)
    now = now_ms()
    try:
        p = await device_code.review(
            services(request).engine, b.user_code[:64], who.account_id, client_address(request), now
        )
    except GrantError as exc:
        return grant_error(exc)
    return json(
        {
            "user_code": p.user_code,
            "device_id": p.device_id,
            "device_name": p.device_name,
            "address": p.address,
            "asked_ms": p.asked_ms,
            "expires_in": max(0, (p.expires_ms - now) // 1000),
            "user": who.account_name,
        }
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunehand: approve a device</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}}
label{{display:block;margin:.8em 0 .2em}}input{{width:100%;padding:.4em;font-size:1.1em}}
button{{margin-top:1em;padding:.5em 1.2em;font-size:1em}}.msg{{padding:.6em;background:#eee}}
th{{text-align:left;padding-right:1em}}.warn{{padding:.6em;background:#fde8c8}}
</style></head><body>
<h1>Approve a device</h1>
{message}
{content}
</body></html>
"""

_CODE_FORM = """{note}<form method="post" action="approve">
<label for="user_code">Code shown on the new device</label>
<input id="user_code" name="user_code" value="{code}" autocomplete="off"
 autocapitalize="characters" placeholder="WDJB-MJHT" required>
<label for="user">User name</label>
<input id="user" name="user" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button name="action" value="review" type="submit">Continue</button>
</form>
<p>The next page shows the device that asked for the code, to approve or deny.</p>"""

_PREFILLED = """<p class="warn">A link filled in this code. Approve only a device you are
logging in yourself, right now: the next page shows which device asked.</p>
"""

_CONFIRM = """<p>This device asks to be logged in as <b>{user}</b>:</p>
<table>
<tr><th>Name</th><td id="device-name">{name}</td></tr>
<tr><th>Address</th><td id="device-address">{address}</td></tr>
<tr><th>Asked</th><td id="device-asked">{asked}</td></tr>
<tr><th>Code</th><td>{code}</td></tr>
</table>
<p class="warn">If you did not start this login yourself, on a device in front of you,
deny it: approving gives whoever started it access to your account.</p>
<form method="post" action="approve">
<input type="hidden" name="user_code" value="{code}">
<input type="hidden" name="confirm" value="{ticket}">
<button name="action" value="approve" type="submit">Confirm: approve this device</button>
<button name="action" value="deny" type="submit">Deny</button>
</form>"""

CONFIRM_TTL_S = 300
"""How long a confirmation page may wait for its answer."""


def _page(message: str = "", content: str = "", status: int = 200) -> Response:
    msg = f'<p class="msg">{html.escape(message)}</p>' if message else ""
    page = _PAGE.format(message=msg, content=content)
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'",
    }
    return HTMLResponse(page, status, headers)


def _code_page(message: str = "", code: str = "", status: int = 200, note: str = "") -> Response:
    form = _CODE_FORM.format(code=html.escape(code, quote=True), note=note)
    return _page(message, form, status)


def asked_text(asked_ms: int, now: int) -> str:
    """ "2026-12-07 08:00:00 UTC (3 min ago)"."""
    when = datetime.fromtimestamp(asked_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago_s = max(0, (now - asked_ms) // 1000)
    ago = f"{ago_s} s ago" if ago_s < 120 else f"{ago_s // 60} min ago"
    return f"{when} ({ago})"


def _ticket_mac(key: bytes, code: str, account_id: int, exp_s: int) -> str:
    msg = f"tunehand-approve\0{code}\0{account_id}\0{exp_s}".encode()
    return base64.urlsafe_b64encode(hmac.new(key, msg, "sha256").digest()).decode().rstrip("=")


def confirm_ticket(key: bytes, code: str, account_id: int, now_s: int) -> str:
    """What the confirmation page posts back: the account that typed its password, bound
    to this code, for `CONFIRM_TTL_S`. It is also the form's CSRF token."""
    exp_s = now_s + CONFIRM_TTL_S
    code = device_code.normalize(code)
    return f"{account_id}.{exp_s}.{_ticket_mac(key, code, account_id, exp_s)}"


def check_ticket(key: bytes, code: str, ticket: str, now_s: int) -> int | None:
    """The account id of a valid, unexpired ticket for `code`; else None."""
    parts = ticket.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        return None
    account_id, exp_s = int(parts[0]), int(parts[1])
    if exp_s < now_s or len(parts[0]) > 12 or len(parts[1]) > 12:
        return None
    want = _ticket_mac(key, device_code.normalize(code), account_id, exp_s)
    return account_id if hmac.compare_digest(want, parts[2]) else None


def _confirm_page(pending: device_code.Pending, user: str, ticket: str, now: int) -> Response:
    e = html.escape
    content = _CONFIRM.format(
        user=e(user),
        name=e(names.clean(pending.device_name)) or "(no name)",
        address=e(pending.address) or "(unknown)",
        asked=e(asked_text(pending.asked_ms, now)),
        code=e(pending.user_code, quote=True),
        ticket=e(ticket, quote=True),
    )
    return _page("", content)


async def approve_page(request: Request) -> Response:
    code = request.query_params.get("code", "")[:16]
    return _code_page(code=code, note=_PREFILLED if code else "")


async def approve_form(request: Request) -> Response:
    """Two steps: code, user and password show the device that asked (never approve it);
    only the confirmation page's own answer, with its ticket, approves or denies."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            return _code_page("The form is too large.", status=413)
    try:
        form = parse_qs(raw.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return _code_page("The form could not be read.", status=400)

    def field(name: str) -> str:
        return (form.get(name) or [""])[0]

    code = field("user_code")[:64]
    s = services(request)
    address, now = client_address(request), now_ms()
    key = s.signer.subkey("approve-confirm")
    try:
        ticket = field("confirm")[:100]
        if not ticket:
            user = field("user")[: auth.MAX_NAME + 1]
            try:
                account = await device_code.password_account(
                    s.engine,
                    user,
                    field("password")[: auth.MAX_PASSWORD + 1],
                    address,
                    now,
                    s.hash_gate,
                )
            except auth.Throttled as exc:
                security.event(security.LOGIN_THROTTLED, user=user, address=address, page="approve")
                raise exc from None
            except AuthError:
                security.event(security.LOGIN_FAILED, user=user, address=address, page="approve")
                raise
            pending = await device_code.review(s.engine, code, account.id, address, now)
            ticket = confirm_ticket(key, pending.user_code, account.id, now // 1000)
            return _confirm_page(pending, account.name, ticket, now)
        account_id = check_ticket(key, code, ticket, now // 1000)
        if account_id is None:
            return _code_page(
                "This confirmation has expired or is not valid: enter the code again.",
                code,
                400,
            )
        allow = field("action") == "approve"
        pending = await device_code.approve(s.engine, code, account_id, allow, address, now)
        async with s.engine.connect() as conn:
            approver = await qa.account_by_id(conn, account_id)
        _log_decision(allow, approver.name if approver else str(account_id), pending, address)
    except GrantError as exc:
        return _code_page(str(exc).capitalize() + ".", code, exc.status)
    except auth.Throttled as exc:
        page = _code_page(str(exc).capitalize() + ".", code, 429)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    except AuthError as exc:
        return _code_page(str(exc).capitalize() + ".", code, 401)
    name = pending.device_name or pending.device_id
    done = f"Approved: {name} is now logged in." if allow else f"Denied: {name} stays logged out."
    return _page(done)


def _log_decision(allow: bool, user: str, pending: device_code.Pending, address: str) -> None:
    security.event(
        security.DEVICE_CODE_APPROVED if allow else security.DEVICE_CODE_DENIED,
        user=user,
        device=pending.device_id,
        name=pending.device_name,
        asked_from=pending.address,
        address=address,
    )


routes = [
    Route("/v1/auth/device", start, methods=["POST"]),
    Route("/v1/auth/device/token", token, methods=["POST"]),
    Route("/v1/auth/device/approve", approve, methods=["POST"]),
    Route("/v1/auth/device/review", review, methods=["POST"]),
    Route("/approve", approve_page, methods=["GET"]),
    Route("/approve", approve_form, methods=["POST"]),
]
