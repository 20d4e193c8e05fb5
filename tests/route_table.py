"""Every HTTP route the server serves and every message its channel reads, classified.

The route list is the one of the application `tunehand serve` runs: `create_app`'s
Starlette app, walked through its mounts (`served_endpoints`). The channel's message
types are the table the server decodes them with (`CLIENT_TYPES`, behind
`wire.decode_client`) and the one it encodes its answers from (`SERVER_TYPES`).
`tests/test_isolation.py` and `tests/test_bad_input.py` build their matrices from these
tables, and fail naming a route or message type that is served but not classified here,
or classified here but no longer served: a route or message added later is covered (or
the suite says what to add) the day it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.routing import BaseRoute, Route, WebSocketRoute

from tunehand.core.protocol import CLIENT_TYPES, SERVER_TYPES
from tunehand.server.app import create_app
from tunehand.server.services import Settings

Endpoint = tuple[str, str]
"""(method, path template with bare parameters: "/v1/playlists/{name}")."""


@dataclass(frozen=True)
class Kind:
    access: Literal["public", "token", "signed", "subsonic"]
    """`public`: nothing needed (logins, health, the approval page, which checks a
    password); `token`: an account's bearer token; `signed`: a signed, expiring URL and
    no token (streams, cover art), the same for every account; `subsonic`: an app
    password in the Subsonic parameters (`/rest/{method}`: each method is classified in
    `SUBSONIC` below)."""
    body: Literal["json", "form", "none"]
    """What the route reads: a JSON object (fuzzed by test_bad_input), an HTML form, or
    nothing."""
    scope: Literal["account", "server", "none"]
    """`account`: the account's own things (isolation-checked, with account A's ids in
    the path when it takes one); `server`: the server's library, shared by all."""
    as_b: int | None = None
    """For `token` routes: the status account B gets when the path and body name account
    A's things (`World.path`/`World.body` in test_isolation)."""
    as_guest: int | None = None
    """... and the status B gets as a guest of A's jam (None: the same as `as_b`): it
    shares A's session (queue, now playing, device names) and nothing else of A."""


ROUTES: dict[Endpoint, Kind] = {
    ("GET", "/v1/health"): Kind("public", "none", "none"),
    ("POST", "/v1/auth/login"): Kind("public", "json", "none"),
    ("POST", "/v1/auth/refresh"): Kind("public", "json", "none"),
    ("POST", "/v1/auth/logout"): Kind("token", "none", "account", 200),
    ("GET", "/v1/auth/whoami"): Kind("token", "none", "account", 200),
    # Device-code login: a new device has no token yet; the page checks a password.
    ("POST", "/v1/auth/device"): Kind("public", "json", "none"),
    ("POST", "/v1/auth/device/token"): Kind("public", "json", "none"),
    ("POST", "/v1/auth/device/approve"): Kind("token", "json", "account", 404),
    ("POST", "/v1/auth/device/review"): Kind("token", "json", "account", 404),
    ("GET", "/approve"): Kind("public", "none", "none"),
    # The web app's login: the refresh token is a cookie, and refresh and logout read
    # no body (a CSRF header instead; tests/test_web_auth.py).
    ("POST", "/v1/auth/web/login"): Kind("public", "json", "none"),
    ("POST", "/v1/auth/web/refresh"): Kind("public", "none", "none"),
    ("POST", "/v1/auth/web/logout"): Kind("public", "none", "none"),
    ("POST", "/v1/auth/web/device/token"): Kind("public", "json", "none"),
    # The web app's files, the same for everyone.
    ("GET", "/"): Kind("public", "none", "none"),
    ("GET", "/app/{path}"): Kind("public", "none", "none"),
    ("GET", "/manifest.webmanifest"): Kind("public", "none", "none"),
    ("GET", "/sw.js"): Kind("public", "none", "none"),
    ("POST", "/approve"): Kind("public", "form", "none"),
    ("GET", "/v1/session"): Kind("token", "none", "account", 200),
    ("GET", "/v1/session/queue"): Kind("token", "none", "account", 200),
    # A's remote track is not_found for B; a guest of A's jam adds it to A's queue.
    ("POST", "/v1/session/commands"): Kind("token", "json", "account", 404, 200),
    ("GET", "/v1/devices"): Kind("token", "none", "account", 200),
    ("DELETE", "/v1/devices/{device_id}"): Kind("token", "none", "account", 404),
    ("PATCH", "/v1/devices/{device_id}"): Kind("token", "json", "account", 404),  # a rename
    ("GET", "/v1/playlists"): Kind("token", "none", "account", 200),
    ("GET", "/v1/playlists/{name}"): Kind("token", "none", "account", 404),
    ("PUT", "/v1/playlists/{name}"): Kind("token", "json", "account", 404),  # names A's track
    ("DELETE", "/v1/playlists/{name}"): Kind("token", "none", "account", 404),
    ("PATCH", "/v1/playlists/{name}"): Kind("token", "json", "account", 404),  # a rename
    ("GET", "/v1/likes"): Kind("token", "none", "account", 200),
    ("PUT", "/v1/likes/{track_id}"): Kind("token", "none", "account", 404),
    ("DELETE", "/v1/likes/{track_id}"): Kind("token", "none", "account", 404),
    ("GET", "/v1/history"): Kind("token", "none", "account", 200),
    ("POST", "/v1/tracks/remote"): Kind("token", "json", "account", 200),
    ("GET", "/v1/tracks/{track_id}"): Kind("token", "none", "account", 404),
    ("GET", "/v1/tracks/{track_id}/lyrics"): Kind("token", "none", "account", 404),
    # Scrobbling: B's own services only; the checks come before any service is asked.
    ("GET", "/v1/scrobble"): Kind("token", "none", "account", 200),
    ("PUT", "/v1/scrobble/listenbrainz"): Kind("token", "json", "account", 422),
    ("POST", "/v1/scrobble/lastfm/start"): Kind("token", "none", "account", 409),
    ("POST", "/v1/scrobble/lastfm/finish"): Kind("token", "json", "account", 409),
    ("DELETE", "/v1/scrobble/{name}"): Kind("token", "none", "account", 404),
    ("GET", "/v1/autoplay"): Kind("token", "none", "account", 200),
    ("PUT", "/v1/autoplay"): Kind("token", "json", "account", 200),  # B's own switch
    # Radio from A's remote track: not in the library, for anyone.
    ("POST", "/v1/radio"): Kind("token", "json", "account", 404),
    # The library is the server's, shared by every account.
    ("GET", "/v1/search"): Kind("token", "none", "server", 200),
    ("GET", "/v1/artists"): Kind("token", "none", "server", 200),
    ("GET", "/v1/artists/{artist}/albums"): Kind("token", "none", "server", 200),
    ("GET", "/v1/albums"): Kind("token", "none", "server", 200),
    ("GET", "/v1/albums/{album}/tracks"): Kind("token", "none", "server", 200),
    ("POST", "/v1/library/rescan"): Kind("token", "none", "server", 200),
    # Only the folders of the tracks named; A's remote track is no library track.
    ("POST", "/v1/library/rescan/tracks"): Kind("token", "json", "server", 404),
    ("GET", "/v1/stream/{track_id}"): Kind("signed", "none", "server"),
    # Podcasts: B subscribes on its own (the isolation server refuses 127.0.0.1 feeds:
    # 422); a podcast id of A's is not found for B (test_podcasts checks B against A's
    # real podcast, episodes and resume points).
    ("GET", "/v1/podcasts"): Kind("token", "none", "account", 200),
    ("POST", "/v1/podcasts"): Kind("token", "json", "account", 422),
    ("DELETE", "/v1/podcasts/{podcast_id}"): Kind("token", "none", "account", 404),
    ("GET", "/v1/podcasts/{podcast_id}/episodes"): Kind("token", "none", "account", 404),
    ("GET", "/v1/continue"): Kind("token", "none", "account", 200),
    # Listening settings: B sets its own speed and sleep timer (test_longform).
    ("GET", "/v1/listening"): Kind("token", "none", "account", 200),
    ("PUT", "/v1/listening/speed"): Kind("token", "json", "account", 200),
    ("PUT", "/v1/listening/sleep"): Kind("token", "json", "account", 200),
    # Application passwords (Subsonic apps): B makes its own; A's name is not B's.
    ("POST", "/v1/app-passwords"): Kind("token", "json", "account", 200),
    ("GET", "/v1/app-passwords"): Kind("token", "none", "account", 200),
    ("DELETE", "/v1/app-passwords/{name}"): Kind("token", "none", "account", 404),
    # Jams: B is in none (B's own `start` is ended again by the test); A hosts one. As a
    # guest of A's jam B sees it, cannot start, change, end it or kick, and may leave.
    ("GET", "/v1/jam"): Kind("token", "none", "account", 404, 200),
    ("POST", "/v1/jam"): Kind("token", "json", "account", 200, 409),
    ("PATCH", "/v1/jam"): Kind("token", "json", "account", 404, 403),
    ("DELETE", "/v1/jam"): Kind("token", "none", "account", 404, 403),
    ("POST", "/v1/jam/join"): Kind("token", "json", "account", 404),  # a wrong code
    ("POST", "/v1/jam/kick"): Kind("token", "json", "account", 404, 403),  # A's name
    ("POST", "/v1/jam/leave"): Kind("token", "none", "account", 404, 200),
    # The Subsonic API: one route, dispatching on {method} (see SUBSONIC).
    ("GET", "/rest/{method}"): Kind("subsonic", "form", "account"),
    ("POST", "/rest/{method}"): Kind("subsonic", "form", "account"),
    ("GET", "/v1/art/{art_id}"): Kind("signed", "none", "server"),
}

# A harmless value for every path parameter, where a test needs a path it can call.
PARAM_SAMPLES: dict[str, str] = {
    "name": "bad-input",
    "device_id": "no-such-device",
    "track_id": "tnosuchtrack",
    "artist": "nobody",
    "album": "anosuchalbum",
    "art_id": "c" + "0" * 32,
    "path": "no-such-file.js",
    "method": "ping",
    "podcast_id": "pnosuchpodcast",
}


@dataclass(frozen=True)
class SubsonicMethod:
    """A Subsonic method (`/rest/{method}`): what it reads, and the Subsonic error code
    account B gets when its parameters name account A's things (None: an `ok` answer, or
    the bytes of the server's library)."""

    scope: Literal["account", "server", "none"]
    as_b: int | None = None
    public: bool = False
    """Answered without credentials (`getOpenSubsonicExtensions`, as the spec allows)."""


SUBSONIC: dict[str, SubsonicMethod] = {
    "ping": SubsonicMethod("none"),
    "getLicense": SubsonicMethod("none"),
    "getOpenSubsonicExtensions": SubsonicMethod("none", public=True),
    "getMusicFolders": SubsonicMethod("server"),
    "getIndexes": SubsonicMethod("server"),  # with the account's stars
    "getArtists": SubsonicMethod("server"),
    "getArtist": SubsonicMethod("server"),
    "getAlbum": SubsonicMethod("server"),
    "getSong": SubsonicMethod("server"),
    "getAlbumList2": SubsonicMethod("account"),  # starred, recent, frequent: the account's
    "getAlbumList": SubsonicMethod("account"),  # the same, as directories
    "getMusicDirectory": SubsonicMethod("server"),  # with the account's stars and ratings
    "search2": SubsonicMethod("server"),
    "getStarred": SubsonicMethod("account"),
    "setRating": SubsonicMethod("account"),  # a library track, rated in B's account
    "getBookmarks": SubsonicMethod("account"),  # B's own
    "createBookmark": SubsonicMethod("account"),  # in B's account
    "deleteBookmark": SubsonicMethod("account"),  # B's own (none is no error)
    "getRandomSongs": SubsonicMethod("server"),
    "search3": SubsonicMethod("server"),
    # The generated library's cover.jpg is random bytes: found, refused as a picture.
    "getCoverArt": SubsonicMethod("server", 0),
    "stream": SubsonicMethod("server"),
    "download": SubsonicMethod("server"),
    "getUser": SubsonicMethod("account", 50),  # A's name: not authorized
    "getPlaylists": SubsonicMethod("account", 50),  # username=A: not authorized
    "getPlaylist": SubsonicMethod("account", 70),
    "createPlaylist": SubsonicMethod("account", 70),  # playlistId of A's: not found
    "updatePlaylist": SubsonicMethod("account", 70),
    "deletePlaylist": SubsonicMethod("account", 70),
    "star": SubsonicMethod("account"),  # a library track, starred in B's account
    "unstar": SubsonicMethod("account"),
    "getStarred2": SubsonicMethod("account"),
    "scrobble": SubsonicMethod("account"),  # into B's history
    "getPlayQueue": SubsonicMethod("account"),  # B's session
    "savePlayQueue": SubsonicMethod("account"),  # into B's session
    "getNowPlaying": SubsonicMethod("account"),  # B's session only
    "startScan": SubsonicMethod("server"),  # any account, as POST /v1/library/rescan
    "getScanStatus": SubsonicMethod("server"),
    "getLyrics": SubsonicMethod("server"),  # the library's, shared
    "getLyricsBySongId": SubsonicMethod("server"),
}


@dataclass(frozen=True)
class Message:
    """A message type the channel reads: the type (and code) of the one answer account B
    gets when it sends one naming account A's things (None: no answer), and the fields of
    one of that type with a wrong field (answered `invalid`; None: it has no fields)."""

    answer: str | None
    bad: dict[str, object] | None
    code: str | None = None
    """The answer's `code`, for a `result` or an `error`."""


MESSAGES: dict[str, Message] = {
    # Once authenticated, another `auth` (even with A's token) changes nothing.
    "auth": Message("error", {"device": "not an object"}, "invalid"),
    "command": Message("result", {"command": {"op": "pause", "command_id": 5}}, "not_found"),
    # B's device does not hold A's playback (nor B's): told to stop.
    "report": Message("error", {"report": {"term": "one"}}, "stale_term"),
    "time": Message("time", {"t0": "now"}),
    "resync": Message("state", {"last_version": "v1"}),
    "ping": Message("pong", None),
    "ready": Message(None, {"transfer_id": 5}),
    "failed": Message(None, {"transfer_id": ["x"], "message": 5}),
}

# What the server may send account B's channel while A's session changes: only answers
# to B's own messages and news of B's own devices. The others speak of a session (its
# state, its directives) or of the server going away.
SERVER_MESSAGES: dict[str, bool] = {
    "hello": True,
    "devices": True,
    "pong": True,
    "result": True,
    "time": True,
    "error": True,
    "state": True,  # B's own session, on B's resync (checked for A's markers)
    "directive": False,  # also `warm`/`unwarm`, to one device of the session's account
    "bye": False,
}


def template_of(path: str) -> str:
    """A route's path with its parameters bare: "/v1/playlists/{name:path}" -> "{name}"."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _walk(routes: list[BaseRoute], prefix: str = "") -> list[Endpoint]:
    out: list[Endpoint] = []
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":  # Starlette answers HEAD wherever GET is
                    out.append((method, template_of(prefix + route.path)))
        elif isinstance(route, WebSocketRoute):
            out.append(("WEBSOCKET", template_of(prefix + route.path)))
        else:
            children = getattr(route, "routes", None)  # Mount, Host, Router
            if children is None:
                raise AssertionError(f"the route table cannot read {route!r}: teach _walk")
            out += _walk(list(children), prefix + getattr(route, "path", ""))
    return out


def served_endpoints(settings: Settings | None = None) -> list[Endpoint]:
    """Every (method, template) the server's application answers, in its order. Building
    the app opens nothing: the database, bus and key come with its lifespan."""
    app = create_app(settings or Settings(data_dir=Path("/nonexistent")))
    return _walk(list(app.routes))


def params_of(template: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", template)


def sample_path(template: str, **values: str) -> str:
    return template.format(**{**PARAM_SAMPLES, **values})


def unclassified(served: list[Endpoint]) -> list[Endpoint]:
    return sorted(set(served) - set(ROUTES))


def gone(served: list[Endpoint]) -> list[Endpoint]:
    return sorted(set(ROUTES) - set(served))


def classification_problems(served: list[Endpoint]) -> list[str]:
    """Every way the tables and what the server serves disagree, one line each."""
    out = [
        f"{m} {p}: served but not classified in tests/route_table.py"
        for m, p in unclassified(served)
    ]
    out += [f"{m} {p}: classified but no longer served" for m, p in gone(served)]
    for (m, p), kind in sorted(ROUTES.items()):
        if kind.access == "token" and kind.as_b is None:
            out.append(f"{m} {p}: a token route needs `as_b`, the status account B gets")
        for param in params_of(p):
            if param not in PARAM_SAMPLES:
                out.append(f"{m} {p}: give {{{param}}} a value in PARAM_SAMPLES")
    from tunehand.server.subsonic.routes import METHODS, PUBLIC

    out += [
        f"subsonic {m}: served but not classified in SUBSONIC" for m in set(METHODS) - set(SUBSONIC)
    ]
    out += [f"subsonic {m}: classified but not served" for m in set(SUBSONIC) - set(METHODS)]
    out += [
        f"subsonic {m}: `public` disagrees with the server's PUBLIC"
        for m, k in SUBSONIC.items()
        if k.public != (m in PUBLIC)
    ]
    out += [
        f"message {t!r}: read by the channel but not classified"
        for t in set(CLIENT_TYPES) - set(MESSAGES)
    ]
    out += [
        f"message {t!r}: classified but not read any more"
        for t in set(MESSAGES) - set(CLIENT_TYPES)
    ]
    out += [
        f"message {t!r}: sent by the server but not classified"
        for t in set(SERVER_TYPES) - set(SERVER_MESSAGES)
    ]
    out += [
        f"message {t!r}: classified but not sent any more"
        for t in set(SERVER_MESSAGES) - set(SERVER_TYPES)
    ]
    return out


SERVED: list[Endpoint] = served_endpoints()
"""At collection time (parametrize needs it then); test_isolation checks that the app
built with a running server's own settings serves the same."""


def endpoints(*access: str) -> list[Endpoint]:
    """The served endpoints of the given access kinds (classified ones only: the
    classification tests name the others)."""
    return sorted(e for e in set(SERVED) if e in ROUTES and ROUTES[e].access in access)
