"""The two scrobbling services' HTTP APIs (documented ones, through httpx).

- ListenBrainz: `POST {url}/1/submit-listens` (`listen_type` `playing_now` or `single`)
  and `GET {url}/1/validate-token`, with `Authorization: Token <token>`.
- Last.fm (API 2.0, `POST` form, signed with the API secret): `auth.getToken`, the user
  approves at `{auth_url}?api_key=..&token=..`, `auth.getSession` gives the session key;
  then `track.updateNowPlaying` and `track.scrobble`.

Errors are `Refused` (the service said no: a bad token, a bad request; not retried) or
`Unavailable` (down, timeout, 5xx, rate limited: retried later). Tokens and keys never
appear in an error's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tunehand import __version__

LISTENBRAINZ_URL = "https://api.listenbrainz.org"
LASTFM_URL = "https://ws.audioscrobbler.com/2.0/"
LASTFM_AUTH_URL = "https://www.last.fm/api/auth/"
TIMEOUT_S = 10.0
LASTFM_PENDING = 14
"""Last.fm's "this token has not been authorized" (yet)."""


class ScrobbleError(Exception):
    pass


class Refused(ScrobbleError):
    """The service refused (bad token, bad data): retrying the same will not help."""


class Unavailable(ScrobbleError):
    """The service could not be reached or is failing now: retry later."""


@dataclass(frozen=True, slots=True)
class Track:
    artist: str
    title: str
    album: str
    duration_ms: int


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT_S, headers={"User-Agent": f"tunehand/{__version__}"})


async def _send(request: httpx.Request) -> httpx.Response:
    async with _client() as http:
        try:
            r = await http.send(request)
        except httpx.HTTPError as exc:
            raise Unavailable(f"unreachable ({type(exc).__name__})") from None
    if r.status_code == 429 or r.status_code >= 500:
        raise Unavailable(f"answered {r.status_code}")
    return r


# --- ListenBrainz ---------------------------------------------------------------------


async def listenbrainz_user(url: str, token: str) -> str:
    """The user a token belongs to; Refused when it is not valid."""
    r = await _send(
        httpx.Request(
            "GET",
            f"{url.rstrip('/')}/1/validate-token",
            headers={"Authorization": f"Token {token}"},
        )
    )
    body = _json(r)
    if r.status_code != 200 or not body.get("valid"):
        raise Refused("the token is not valid")
    return str(body.get("user_name") or "")


async def listenbrainz_submit(
    url: str, token: str, kind: str, track: Track, listened_at_s: int
) -> None:
    meta: dict[str, Any] = {
        "artist_name": track.artist,
        "track_name": track.title,
        "additional_info": {"media_player": "tunehand", "duration_ms": track.duration_ms},
    }
    if track.album:
        meta["release_name"] = track.album
    listen: dict[str, Any] = {"track_metadata": meta}
    if kind == "listen":
        listen["listened_at"] = listened_at_s
    body = {"listen_type": "single" if kind == "listen" else "playing_now", "payload": [listen]}
    r = await _send(
        httpx.Request(
            "POST",
            f"{url.rstrip('/')}/1/submit-listens",
            json=body,
            headers={"Authorization": f"Token {token}"},
        )
    )
    if r.status_code != 200:
        raise Refused(f"answered {r.status_code}")


# --- Last.fm ----------------------------------------------------------------------------


def lastfm_signature(params: Mapping[str, str], secret: str) -> str:
    """Last.fm's `api_sig`: md5 of the parameters (but `format`) sorted by name, each
    name then value, then the secret."""
    raw = "".join(k + params[k] for k in sorted(params) if k not in ("format", "callback"))
    return hashlib.md5((raw + secret).encode(), usedforsecurity=False).hexdigest()


async def lastfm_call(
    url: str, key: str, secret: str, method: str, params: Mapping[str, str]
) -> dict[str, Any]:
    form = {**params, "method": method, "api_key": key}
    form["api_sig"] = lastfm_signature(form, secret)
    form["format"] = "json"
    r = await _send(httpx.Request("POST", url, data=form))
    body = _json(r)
    code = body.get("error")
    if isinstance(code, int):
        if code in (11, 16, 29):  # service offline, temporarily unavailable, rate limit
            raise Unavailable(f"error {code}")
        if code == LASTFM_PENDING:
            raise Pending("not approved yet")
        raise Refused(f"error {code}: {str(body.get('message', ''))[:200]}")
    if r.status_code != 200:
        raise Refused(f"answered {r.status_code}")
    return body


class Pending(Refused):
    """Last.fm: the user has not approved the token yet."""


async def lastfm_submit(
    url: str, key: str, secret: str, session: str, kind: str, track: Track, listened_at_s: int
) -> None:
    params = {"artist": track.artist, "track": track.title, "sk": session}
    if track.album:
        params["album"] = track.album
    if track.duration_ms:
        params["duration"] = str(track.duration_ms // 1000)
    if kind == "listen":
        params["timestamp"] = str(listened_at_s)
        await lastfm_call(url, key, secret, "track.scrobble", params)
    else:
        await lastfm_call(url, key, secret, "track.updateNowPlaying", params)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
