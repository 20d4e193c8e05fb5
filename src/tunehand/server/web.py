"""HTTP plumbing shared by the API modules: JSON answers, bodies, auth, error mapping.

Every error is a JSON body `{"error": {"code", "message"}}` with a 4xx status (503
when the database is down); nothing ever answers with a traceback.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tunehand import wire
from tunehand.errors import AuthError, NotFound, ProtocolError, StoreError, UsageError
from tunehand.server import auth
from tunehand.server.services import Services

T = TypeVar("T")
MAX_BODY = 1024 * 1024
log = logging.getLogger("tunehand.api")


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str


def services(request: Request) -> Services:
    s: Services = request.state.services
    return s


def json(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.encode(obj), status, headers, media_type="application/json")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json({"error": {"code": code, "message": message}}, status, headers)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def body(request: Request, type_: type[T]) -> T:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
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
    return wire.decode(raw, type_)


async def principal(request: Request) -> auth.Principal:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise AuthError("not logged in: send Authorization: Bearer TOKEN")
    return await auth.authenticate(services(request).engine, header[7:].strip(), now_ms())


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


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
    if isinstance(exc, StoreError):
        return error(503, "unavailable", str(exc))
    if isinstance(exc, HTTPException):
        return error(exc.status_code, "http", str(exc.detail))
    log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc)
    return error(500, "internal", "internal error")


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit():
        raise ApiError(422, "invalid", f"{name}: must be an integer")
    return max(lo, min(hi, int(raw)))


def path_param(request: Request, name: str, max_len: int = 200) -> str:
    value: Any = request.path_params.get(name, "")
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(422, "invalid", f"{name}: must be 1 to {max_len} characters")
    return value
