"""REST routes for scrobbling (see `scrobbling`): the account's services.

- `GET /v1/scrobble`: `{services: [{name, url, user, created_ms, queued}]}`;
- `PUT /v1/scrobble/listenbrainz` `{token, url?}`: checked with ListenBrainz first;
- `POST /v1/scrobble/lastfm/start`: `{token, url}`, the page where the user approves;
- `POST /v1/scrobble/lastfm/finish` `{token}`: 409 `authorization_pending` until the user
  approved, then the session is kept (the device-code login's shape);
- `DELETE /v1/scrobble/{name}`.
Tokens and session keys are never answered, logged or kept in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.server import scrobble_clients as sc
from tunehand.server.scrobbling import SERVICES, Scrobbler
from tunehand.server.web import ApiError, body, json, path_param, principal, services

MAX_TOKEN = 200


@dataclass(frozen=True)
class ListenBrainzBody:
    token: str
    url: str = sc.LISTENBRAINZ_URL


@dataclass(frozen=True)
class LastfmBody:
    token: str


def _scrobbler(request: Request) -> Scrobbler:
    return services(request).scrobbler


def _check_url(url: str) -> str:
    if (
        not url.startswith(("http://", "https://"))
        or len(url) > 500
        or any(c.isspace() for c in url)
    ):
        raise ApiError(422, "invalid", "url: an http(s) URL")
    return url.rstrip("/")


async def listing(request: Request) -> Response:
    who = await principal(request)
    return json({"services": await _scrobbler(request).list(who.account_id)})


async def add_listenbrainz(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, ListenBrainzBody)
    token = b.token.strip()
    if not token or len(token) > MAX_TOKEN or not token.isprintable():
        raise ApiError(422, "invalid", f"token: 1 to {MAX_TOKEN} printable characters")
    url = _check_url(b.url)
    try:
        user = await sc.listenbrainz_user(url, token)
    except sc.Unavailable as exc:
        raise ApiError(502, "unavailable", f"ListenBrainz at {url}: {exc}") from None
    except sc.ScrobbleError:
        raise ApiError(422, "invalid", "ListenBrainz refused the token") from None
    await _scrobbler(request).add(who.account_id, "listenbrainz", url, user, token)
    return json({"name": "listenbrainz", "url": url, "user": user})


def _lastfm(request: Request) -> tuple[Scrobbler, None]:
    s = _scrobbler(request)
    if s.lastfm is None:
        raise ApiError(
            409,
            "not_configured",
            "this server has no Last.fm API key: set lastfm_api_key and lastfm_api_secret"
            " in its server.toml",
        )
    return s, None


async def lastfm_start(request: Request) -> Response:
    await principal(request)
    s, _ = _lastfm(request)
    app = s.lastfm
    assert app is not None
    try:
        got = await sc.lastfm_call(app.url, app.key, app.secret, "auth.getToken", {})
    except sc.Unavailable as exc:
        raise ApiError(502, "unavailable", f"Last.fm: {exc}") from None
    except sc.ScrobbleError as exc:
        raise ApiError(502, "refused", f"Last.fm refused: {exc}") from None
    token = got.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise ApiError(502, "refused", "Last.fm sent no token")
    page = f"{app.auth_url}?{urlencode({'api_key': app.key, 'token': token})}"
    return json({"token": token, "url": page}, headers={"Cache-Control": "no-store"})


async def lastfm_finish(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, LastfmBody)
    s, _ = _lastfm(request)
    app = s.lastfm
    assert app is not None
    if not b.token or len(b.token) > MAX_TOKEN or not b.token.isprintable():
        raise ApiError(422, "invalid", "token: the one /v1/scrobble/lastfm/start gave")
    try:
        got = await sc.lastfm_call(
            app.url, app.key, app.secret, "auth.getSession", {"token": b.token}
        )
    except sc.Pending:
        raise ApiError(409, "authorization_pending", "not approved on Last.fm yet") from None
    except sc.Unavailable as exc:
        raise ApiError(502, "unavailable", f"Last.fm: {exc}") from None
    except sc.ScrobbleError as exc:
        raise ApiError(422, "invalid", f"Last.fm refused: {exc}") from None
    session = got.get("session")
    key = session.get("key") if isinstance(session, dict) else None
    user = session.get("name") if isinstance(session, dict) else None
    if not isinstance(key, str) or not key or len(key) > MAX_TOKEN:
        raise ApiError(502, "refused", "Last.fm sent no session")
    await s.add(who.account_id, "lastfm", app.url, str(user or ""), key)
    return json({"name": "lastfm", "url": app.url, "user": str(user or "")})


async def remove(request: Request) -> Response:
    who = await principal(request)
    name = path_param(request, "name")
    if name not in SERVICES or not await _scrobbler(request).remove(who.account_id, name):
        raise ApiError(404, "not_found", f"no scrobbling to {name!r} here")
    return json({"removed": name})


routes = [
    Route("/v1/scrobble", listing),
    Route("/v1/scrobble/listenbrainz", add_listenbrainz, methods=["PUT"]),
    Route("/v1/scrobble/lastfm/start", lastfm_start, methods=["POST"]),
    Route("/v1/scrobble/lastfm/finish", lastfm_finish, methods=["POST"]),
    Route("/v1/scrobble/{name}", remove, methods=["DELETE"]),
]
