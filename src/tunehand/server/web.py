"""HTTP plumbing shared by the API modules: JSON answers, bodies, auth, error mapping.

Every error is a JSON body `{"error": {"code", "message"}}` with a 4xx status (503
when the database is down); nothing ever answers with a traceback.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tunehand import wire
from tunehand.errors import (
    AuthError,
    NotFound,
    ProtocolError,
    QuotaError,
    StoreError,
    UsageError,
)
from tunehand.server import auth
from tunehand.server.db.engine import unavailable
from tunehand.server.services import Services
from tunehand.server.streams import Signer

T = TypeVar("T")
MAX_BODY = 1024 * 1024
MAX_ADDRESS = 64
log = logging.getLogger("tunehand.api")
_bind: contextvars.ContextVar[tuple[Signer, str] | None] = contextvars.ContextVar(
    "tunehand_bind", default=None
)
"""The request's token device, once `principal` knew it: the stream and art links of
its answer are bound to that device (`Signer.bind_urls`). Each request runs in a task
(and a context) of its own."""


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str


def services(request: Request) -> Services:
    s: Services = request.state.services
    return s


def json(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = wire.encode(obj)
    bind = _bind.get()
    if bind is not None:
        body = bind[0].bind_urls(body, bind[1])
    return Response(body, status, headers, media_type="application/json")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json({"error": {"code": code, "message": message}}, status, headers)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


NUL_MESSAGE = "text must not contain NUL characters"


def has_nul(value: object) -> bool:
    """True when a string in decoded JSON holds a NUL, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


async def body(request: Request, type_: type[T]) -> T:
    length = request.headers.get("content-length")
    if length is not None and (
        not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY
    ):
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ApiError(400, "invalid", "a JSON body is required")
    try:
        value = wire.decode(raw, type_)
    except RecursionError:  # msgspec's answer to very deeply nested JSON
        raise ApiError(422, "invalid", "malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:  # and to a string that is not UTF-8
        raise ApiError(422, "invalid", "malformed JSON: not valid UTF-8") from None
    if has_nul(wire.to_builtins(value)):
        raise ApiError(422, "invalid", NUL_MESSAGE)
    return value


async def principal(request: Request) -> auth.Principal:
    """Who sends the request; every such request takes a token of its account's bucket
    (`Services.rest_buckets`), past which the answer is 429 with Retry-After."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise AuthError("not logged in: send Authorization: Bearer TOKEN")
    s = services(request)
    who = await auth.authenticate(s.engine, header[7:].strip(), now_ms())
    _bind.set((s.signer, who.device_id))
    wait_s = s.rest_buckets.take(who.account_id)
    if wait_s:
        raise auth.Throttled(max(1, math.ceil(wait_s)), "too many requests: slow down")
    return who


def client_address(request: Request) -> str:
    """The peer's address, cut to what the database keeps (a proxy's X-Forwarded-For can be
    anything)."""
    return (request.client.host if request.client else "")[:MAX_ADDRESS]


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error(exc.status, exc.code, exc.message)
    if isinstance(exc, auth.Throttled):
        return error(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, AuthError):
        return error(401, "unauthorized", str(exc))
    if isinstance(exc, ProtocolError):
        return error(422, "invalid", str(exc))
    if isinstance(exc, UsageError):
        return error(422, "invalid", str(exc))
    if isinstance(exc, NotFound):
        return error(404, "not_found", str(exc))
    if isinstance(exc, QuotaError):
        return error(409, "quota", str(exc))
    if isinstance(exc, StoreError):
        return error(503, "unavailable", str(exc))
    if unavailable(exc):
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return error(503, "unavailable", "the database is unavailable: try again")
    if isinstance(exc, HTTPException):
        return error(exc.status_code, "http", str(exc.detail))
    log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc)
    return error(500, "internal", "internal error")


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:  # also "--5" and "²", which str.isdigit() lets through
        raise ApiError(422, "invalid", f"{name}: must be an integer") from None
    return max(lo, min(hi, value))


def path_param(request: Request, name: str, max_len: int = 200) -> str:
    value: Any = request.path_params.get(name, "")
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(422, "invalid", f"{name}: must be 1 to {max_len} characters")
    if "\x00" in value:
        raise ApiError(422, "invalid", f"{name}: {NUL_MESSAGE}")
    return value
