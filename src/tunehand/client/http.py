"""A small blocking HTTP client for one-shot commands (`ctl`, `login`), on http.client.

It stays light on purpose (`tunehand ctl status` must start fast): no httpx here.
It adds the Bearer token, refreshes an expiring access token transparently (one
refresh in flight per device, across processes), and maps every failure to the
project's errors: unreachable server (exit 4), refused login (exit 3), not found (5), and
a URL that is not a tunehand server's root (`http://host:port/v1`: exit 2).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

from tunehand.client.config import stored_device_id
from tunehand.client.credentials import (
    Credentials,
    CredentialStore,
    not_logged_in,
    refresh_lock,
)
from tunehand.client.http11 import Http11, MalformedResponse
from tunehand.errors import (
    AuthError,
    CommandRefused,
    NotFound,
    ProtocolError,
    ServerUnreachable,
    TunehandError,
    UsageError,
)

TIMEOUT_S = 10.0
REFRESH_MARGIN_S = 30.0


_URL_RE = re.compile(
    r"^(https?)://(\[[0-9a-fA-F:.]+\]|[^/:\[\]@?#\s]+)(?::(\d{1,5}))?(/[^?#\s]*)?$"
)
_API_SEGMENT_RE = re.compile(r"/v\d+(?:/|$)")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def split_server_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of a server URL; UsageError when it is not one."""
    match = _URL_RE.match(url.strip().rstrip("/"))
    port = int(match.group(3)) if match and match.group(3) else None
    if match is None or (port is not None and not 0 < port < 65536):
        raise UsageError(f"server URL must look like http://HOST:PORT, not {url[:80]!r}")
    scheme, host = match.group(1), match.group(2).strip("[]")
    return scheme, host, port or (443 if scheme == "https" else 80), (match.group(4) or "")


def check_server_url(url: str) -> str:
    split_server_url(url)
    return url.strip().rstrip("/")


_LOOPBACK = frozenset(("localhost", "127.0.0.1", "::1"))


def same_server(a: str, b: str) -> bool:
    """Whether two server URLs name the same server: scheme, host, port and path; the case
    of the scheme and host, a default port and the spelling of this machine's loopback
    address (localhost, 127.0.0.1, ::1) do not matter."""

    def key(url: str) -> tuple[str, str, int, str]:
        scheme, host, port, prefix = split_server_url(url)
        host = host.lower()
        return scheme.lower(), "loopback" if host in _LOOPBACK else host, port, prefix.rstrip("/")

    try:
        return key(a) == key(b)
    except UsageError:
        return False


def quote(value: str) -> str:
    """Percent-encode a path segment or query value (like urllib's quote(safe=""))."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode("utf-8"))


class HttpClient:
    """Requests to one server, with no credentials (login, health)."""

    def __init__(self, server: str, *, ca_file: str | None = None, timeout_s: float = TIMEOUT_S):
        self.server = check_server_url(server)
        scheme, self._host, self._port, prefix = split_server_url(self.server)
        self._https = scheme == "https"
        self._prefix = prefix.rstrip("/")
        self.ca_file = ca_file
        self._timeout = timeout_s
        self._conn: Http11 | None = None

    def _connection(self) -> Http11:
        if self._conn is None:
            ctx = None
            if self._https:
                import ssl

                ctx = ssl.create_default_context(cafile=self.ca_file)
            self._conn = Http11(self._host, self._port, self._timeout, ctx)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, raw = self._exchange(method, path, headers, data)
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as exc:
            if status == 404:
                raise self._not_a_server_root(path) from None
            raise ProtocolError(
                f"the server at {self.server} sent a reply that is not JSON"
            ) from exc
        if status == 404 and error_message(payload, "")[0] != "not_found":
            # A tunehand server says "not_found" for a missing device, track...; any other
            # 404 means there is no such API here: a wrong path in the URL, another server.
            raise self._not_a_server_root(path)
        return status, payload

    def _not_a_server_root(self, path: str) -> UsageError:
        return not_a_server_root(self.server, path)

    def get_bytes(self, path: str, accept: str = "*/*") -> tuple[int, bytes]:
        """GET `path` (a signed URL's path and query: no token) and return the raw body."""
        return self._exchange("GET", path, {"Accept": accept}, None)

    def _exchange(
        self, method: str, path: str, headers: dict[str, str], data: bytes | None
    ) -> tuple[int, bytes]:
        for attempt in (0, 1):
            conn = self._connection()
            try:
                status, raw = conn.exchange(method, self._prefix + path, headers, data)
                break
            except MalformedResponse as exc:
                self.close()
                raise ProtocolError(f"the server at {self.server} sent a bad reply: {exc}") from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if attempt == 1:
                    raise ServerUnreachable(
                        f"the server at {self.server} closed the connection"
                    ) from exc
            except OSError as exc:
                self.close()
                reason = exc.strerror or str(exc)
                if type(exc).__module__ == "ssl":
                    why = getattr(exc, "reason", None) or exc
                    reason = f"TLS failed: {why}"
                    if why == "CERTIFICATE_VERIFY_FAILED":
                        reason += " (a private CA? give it with --ca-file or ca_file in config)"
                if isinstance(exc, TimeoutError):
                    reason = "timed out"
                raise ServerUnreachable(
                    f"cannot reach the server at {self.server}: {reason}"
                ) from exc
        return status, raw


def not_a_server_root(server: str, path: str) -> UsageError:
    """`server` answered 404 for the API at `path`: it does not lead to a tunehand API.
    Suggest the root: the URL without its path, or up to its `/v1`."""
    server = check_server_url(server)
    prefix = split_server_url(server)[3].rstrip("/")
    if not prefix:
        return UsageError(
            f"{server} is not a tunehand server, or an older one without {path.split('?', 1)[0]}"
        )
    base = server[: len(server) - len(prefix)]
    api = _API_SEGMENT_RE.search(prefix)
    root = base + (prefix[: api.start()] if api else "")
    return UsageError(f"{server} is not a tunehand server root (try {root})")


def error_message(payload: Any, default: str) -> tuple[str, str]:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        return str(err.get("code", "error")), str(err.get("message", default))
    return "error", default


def raise_for(status: int, payload: Any) -> None:
    """Map an error answer to the project's exceptions (and so to exit codes)."""
    if status < 400:
        return
    code, message = error_message(payload, f"the server answered {status}")
    if status in (401, 403):
        raise AuthError(message)
    if status == 404:
        raise NotFound(message)
    if status == 429:
        raise CommandRefused("rate_limited", message)
    if status == 503:
        raise ServerUnreachable(message)
    if status >= 500:
        raise TunehandError(f"the server failed: {message}")
    raise CommandRefused(code, message)


class ApiClient:
    """Authenticated requests for a logged-in device."""

    def __init__(
        self,
        server: str,
        store: CredentialStore,
        config_dir: Path,
        *,
        ca_file: str | None = None,
    ) -> None:
        self.http = HttpClient(server, ca_file=ca_file)
        self.store = store
        self.config_dir = config_dir
        self._creds: Credentials | None = None

    def credentials(self) -> Credentials:
        if self._creds is None:
            creds = self.store.load()
            if creds is None:
                raise AuthError(not_logged_in(self.store, self.http.server))
            if creds.server and not same_server(creds.server, self.http.server):
                # Tokens belong to the server that issued them: never sent to another one,
                # and so never deleted because another one refused them. A URL that is no
                # server root at all (`.../v1`, another web server) is said as such.
                with contextlib.suppress(ServerUnreachable, ProtocolError):
                    self.http.request("GET", "/v1/health")
                raise AuthError(
                    f"not logged in to {self.http.server}: this device is logged in to "
                    f"{creds.server} (log in elsewhere with another --config-dir)"
                )
            self._creds = creds
        return self._creds

    def _refresh(self, stale: Credentials) -> Credentials:
        with refresh_lock(self.config_dir):
            # Another process may have refreshed while we waited for the lock.
            current = self.store.load() or stale
            if current.access_token != stale.access_token and not _expiring(current):
                self._creds = current
                return current
            if not current.refresh_token:
                raise AuthError("the access token has expired: log in again")
            status, payload = self.http.request(
                "POST",
                "/v1/auth/refresh",
                {"refresh_token": current.refresh_token, "device_id": current.device_id},
            )
            if status == 401:
                self.store.delete()
                _, message = error_message(payload, "logged out")
                raise AuthError(message)
            raise_for(status, payload)
            fresh = current._replace(
                access_token=payload["access_token"],
                refresh_token=payload["refresh_token"],
                access_expires_at=time.time() + float(payload["expires_in"]),
            )
            self.store.save(fresh)
            self._creds = fresh
            return fresh

    def access_token(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        creds = self.credentials()
        return (self._refresh(creds) if _expiring(creds) else creds).access_token

    def _authorized(self, method: str, path: str, body: object) -> tuple[int, Any]:
        """Send with a fresh token; on a 401, refresh once and send again."""
        creds = self.credentials()
        if _expiring(creds):
            creds = self._refresh(creds)
        status, payload = self.http.request(method, path, body, creds.access_token)
        if status == 401 and creds.refresh_token:
            creds = self._refresh(creds)
            status, payload = self.http.request(method, path, body, creds.access_token)
        return status, payload

    def device_id(self) -> str:
        """This device's id: the one the server minted at login (kept in the config
        dir), or, with a token from elsewhere (`TUNEHAND_TOKEN` on a fresh config dir),
        the token's own device as the server names it."""
        found = stored_device_id(self.config_dir)
        if found is not None:
            return found
        me = self.request("GET", "/v1/auth/whoami")
        device = me.get("device_id") if isinstance(me, dict) else None
        if not isinstance(device, str) or not device:
            raise AuthError("not logged in: this device has no id yet: run `tunehand login URL`")
        return device

    def request(self, method: str, path: str, body: object = None) -> Any:
        """Send a request; return the JSON answer, or raise the mapped error."""
        status, payload = self._authorized(method, path, body)
        raise_for(status, payload)
        return payload

    def request_status(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """Like `request`, but hand back error answers instead of raising (commands)."""
        status, payload = self._authorized(method, path, body)
        if status in (401, 403) or status >= 500:
            raise_for(status, payload)
        return status, payload


def _expiring(creds: Credentials) -> bool:
    return creds.access_expires_at - REFRESH_MARGIN_S < time.time()
