"""A Subsonic request: its parameters (query string and, for POST, an urlencoded form),
its format, and who sends it (checked from `u`+`t`+`s`, `u`+`p` or `apiKey`).

Parameters repeat (`id=1&id=2`); `one` takes the first. A form body is read whole up to
`MAX_FORM` and parsed by `urllib.parse`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.requests import Request

from tunehand.server import app_passwords, auth, security
from tunehand.server.db import accounts as qa
from tunehand.server.services import Services
from tunehand.server.subsonic.responses import (
    API_VERSION,
    CLIENT_TOO_OLD,
    CONFLICTING_AUTH,
    GENERIC,
    INVALID_API_KEY,
    MISSING,
    SERVER_TOO_OLD,
    WRONG_CREDENTIALS,
    SubsonicError,
)
from tunehand.server.web import client_address, now_ms

MAX_FORM = 1024 * 1024
MAX_VALUE = 4096


@dataclass
class Call:
    request: Request
    services: Services
    params: list[tuple[str, str]]
    fmt: str = "xml"
    who: auth.Principal | None = None
    client: str = ""
    _first: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, v in reversed(self.params):
            self._first[k] = v

    @property
    def principal(self) -> auth.Principal:
        assert self.who is not None
        return self.who

    def one(self, name: str, default: str = "") -> str:
        return self._first.get(name, default)

    def required(self, name: str) -> str:
        value = self._first.get(name, "")
        if not value:
            raise SubsonicError(MISSING, f"Required parameter is missing: {name}")
        return value

    def many(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]

    def int_(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self._first.get(name, "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SubsonicError(GENERIC, f"{name}: must be an integer") from None
        return max(lo, min(hi, value))

    def flag(self, name: str, default: bool) -> bool:
        raw = self._first.get(name, "")
        return default if not raw else raw.lower() == "true"


async def read(request: Request, s: Services) -> Call:
    """The request's parameters, or a `SubsonicError` for a body that cannot be one."""
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            raw = b""
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_FORM:
                    raise SubsonicError(GENERIC, f"the form is larger than {MAX_FORM} bytes")
            try:
                params += parse_qsl(raw.decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                raise SubsonicError(GENERIC, "the form is not UTF-8") from None
    call = Call(request, s, params)
    call.fmt = "json" if call.one("f") == "json" else "xml"
    call.client = call.one("c")[:64]
    for k, v in params:
        if len(v) > MAX_VALUE or "\x00" in v or "\x00" in k:
            problem = SubsonicError(GENERIC, f"{k[:40]}: a parameter is too long or holds NUL")
            problem.fmt = call.fmt
            raise problem
    return call


_VERSION = re.compile(r"(\d{1,4})(?:\.(\d{1,4})){0,2}")


def check_version(raw: str) -> None:
    """The client's `v` against the server's API version, as the Subsonic spec has it:
    another major version is incompatible (an older one: 20, "client must upgrade"; a
    newer one: 30, "server must upgrade"); a `v` that is no version is 10. Apps differ
    in the minor they send (1.13.0 to 1.16.1), and every 1.x call is answered, so the
    minor is not compared. No `v` at all is let through: some apps leave it out."""
    if not raw:
        return
    m = _VERSION.fullmatch(raw.strip())
    if m is None:
        raise SubsonicError(MISSING, f"v: not a version: {raw[:20]!r} (like {API_VERSION})")
    major = int(API_VERSION.split(".")[0])
    if int(m.group(1)) < major:
        raise SubsonicError(
            CLIENT_TOO_OLD,
            f"Incompatible Subsonic REST protocol version. Client must upgrade ({API_VERSION})",
        )
    if int(m.group(1)) > major:
        raise SubsonicError(
            SERVER_TOO_OLD,
            f"Incompatible Subsonic REST protocol version. Server must upgrade ({API_VERSION})",
        )


async def authenticate(call: Call) -> auth.Principal:
    """Who sends the call, from its app password; raises a `SubsonicError` (40 wrong
    credentials, 43 two schemes at once, 44 a wrong apiKey, 10 none given)."""
    given = app_passwords.Given(
        user=call.one("u"),
        password=call.one("p"),
        token=call.one("t"),
        salt=call.one("s"),
        api_key=call.one("apiKey"),
    )
    if given.api_key and (given.user or given.password or given.token):
        raise SubsonicError(CONFLICTING_AUTH, "Multiple conflicting authentication mechanisms")
    if not given.api_key:
        if not given.user:
            raise SubsonicError(MISSING, "Required parameter is missing: u")
        if not given.password and not (given.token and given.salt):
            raise SubsonicError(MISSING, "Required parameter is missing: t and s, or p")
    s = call.services
    address = client_address(call.request)
    try:
        who = await app_passwords.check(
            s.engine, app_passwords.Sealer.of(s.signer), given, address, now_ms()
        )
    except auth.Throttled as exc:
        security.event(security.LOGIN_THROTTLED, user=given.user[:200], address=address)
        raise SubsonicError(
            GENERIC, str(exc), 429, {"Retry-After": str(exc.retry_after_s)}
        ) from None
    except app_passwords.WrongCredentials:
        security.event(security.LOGIN_FAILED, user=given.user[:200], address=address)
        if given.api_key:
            raise SubsonicError(INVALID_API_KEY, "Invalid API key") from None
        raise SubsonicError(WRONG_CREDENTIALS, "Wrong username or password") from None
    wait_s = s.rest_buckets.take(who.account_id)
    if wait_s:
        retry = max(1, math.ceil(wait_s))
        raise SubsonicError(
            GENERIC, "too many requests: slow down", 429, {"Retry-After": str(retry)}
        )
    await _mark_seen(s, who, address)
    call.who = who
    return who


SEEN_EVERY_MS = 60_000
SEEN_KEPT = 10_000


async def _mark_seen(s: Services, who: auth.Principal, address: str) -> None:
    """Record when (and from where) the app was last seen, at most once a minute."""
    now = now_ms()
    if now - s.app_seen_ms.get(who.device_id, 0) < SEEN_EVERY_MS:
        return
    if len(s.app_seen_ms) >= SEEN_KEPT:
        s.app_seen_ms.clear()
    s.app_seen_ms[who.device_id] = now
    async with s.engine.begin() as conn:
        await qa.seen(conn, who.account_id, who.device_id, now, address)
