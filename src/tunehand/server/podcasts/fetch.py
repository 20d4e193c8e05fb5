"""The server's own HTTP fetches of podcast feeds and enclosures, made safe against
hostile hosts.

A feed URL and its enclosures are given by users (and by whoever writes the feed), so
every fetch here is bounded: http(s) only; every address a host name resolves to must be
public (`ip.is_global`) unless the server runs with `--allow-private-feeds`, checked
when the connection is made (httpcore's network backend, so a redirect, or a name that
resolves elsewhere the second time, cannot slip past); redirects followed by hand, at
most `MAX_REDIRECTS`, a loop named as one; a feed is read to at most `FEED_MAX_BYTES`
within `FEED_TIMEOUT_S` in all. feedparser never fetches anything itself: it gets bytes.

    FetchError     one line saying why a URL gave nothing usable (a user sees it)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from tunehand.errors import TunehandError

MAX_REDIRECTS = 5
FEED_MAX_BYTES = 5 * 1024 * 1024
FEED_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 15.0
MAX_URL = 2048
USER_AGENT = "tunehand (podcasts)"


class FetchError(TunehandError):
    """A feed or an enclosure could not be fetched; str() says why in one line."""


class Refused(FetchError):
    """The host resolves to an address this server does not fetch from."""


def check_url(url: str) -> httpx.URL:
    """`url` parsed, if it is an http(s) URL with a host (else FetchError)."""
    if len(url) > MAX_URL:
        raise FetchError(f"the URL is longer than {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError("only http and https URLs with a host can be fetched")
    return parsed


def public(address: str) -> bool:
    """Whether `address` (an IP) is on the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses allowed: the name is resolved here, every address it
    gives is checked, and the connection goes to a checked address (the TLS name stays
    the host's)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise FetchError(f"cannot resolve {host}") from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise FetchError(f"cannot resolve {host}")
        if not self.allow_private:
            for a in addresses:
                if not public(a):
                    raise Refused(
                        f"{host} is a private or local address ({a}); the server fetches"
                        " those only when started with --allow-private-feeds"
                    )
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx over an httpcore pool whose network backend is `GuardedBackend`."""

    def __init__(self, allow_private: bool, max_connections: int = 32) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=max_connections,
            network_backend=GuardedBackend(allow_private),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            resp = await self._pool.handle_async_request(req)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc) or "timed out", request=request) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc) or "cannot connect", request=request) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise httpx.TransportError(str(exc) or "the connection failed") from exc
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_Body(resp),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@dataclass(frozen=True)
class Feed:
    """What a feed fetch gave: `body` is empty when the server answered 304."""

    url: str
    body: bytes
    etag: str | None
    last_modified: str | None
    not_modified: bool = False


def _say(exc: BaseException) -> str:
    if isinstance(exc, FetchError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "the host was too slow"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the host"
    return "the connection failed"


class Fetcher:
    """The fetches of one server process (one connection pool, closed at shutdown)."""

    def __init__(
        self,
        allow_private: bool,
        *,
        feed_max_bytes: int = FEED_MAX_BYTES,
        feed_timeout_s: float = FEED_TIMEOUT_S,
    ) -> None:
        self.allow_private = allow_private
        self.feed_max_bytes = feed_max_bytes
        self.feed_timeout_s = feed_timeout_s
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(allow_private),
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def open(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """A streamed GET of `url`, redirects followed (at most MAX_REDIRECTS, no loops,
        each hop checked); the caller closes the response. FetchError on failure."""
        seen: set[str] = set()
        current = check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            seen.add(str(current))
            try:
                req = self.client.build_request("GET", current, headers=headers)
                resp = await self.client.send(req, stream=True)
            except (httpx.HTTPError, OSError) as exc:
                raise FetchError(_say(exc.__cause__ or exc)) from exc
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            await resp.aclose()
            location = resp.headers.get("location")
            if not location:
                raise FetchError(f"a redirect ({resp.status_code}) with no Location")
            try:
                nxt = check_url(str(current.join(location)))
            except httpx.InvalidURL as exc:
                raise FetchError("a redirect to something that is not a URL") from exc
            if str(nxt) in seen:
                raise FetchError("the feed redirects in a loop")
            current = nxt
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def feed(self, url: str, etag: str | None, last_modified: str | None) -> Feed:
        """The feed at `url` (at most feed_max_bytes, within feed_timeout_s), or a 304
        when it has not changed since `etag` / `last_modified`."""
        headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml, */*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(self.feed_timeout_s):
                resp = await self.open(url, headers)
                try:
                    return await self._read_feed(resp)
                finally:
                    await resp.aclose()
        except TimeoutError as exc:
            raise FetchError(f"the feed did not arrive within {self.feed_timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise FetchError(_say(exc)) from exc

    async def _read_feed(self, resp: httpx.Response) -> Feed:
        final = str(resp.request.url)
        etag = resp.headers.get("etag")
        modified = resp.headers.get("last-modified")
        if resp.status_code == 304:
            return Feed(final, b"", etag, modified, not_modified=True)
        if resp.status_code != 200:
            raise FetchError(f"the feed's host answered {resp.status_code}")
        declared = resp.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.feed_max_bytes:
            raise FetchError(f"the feed is larger than {self.feed_max_bytes // 1024} KiB")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_raw():
            size += len(chunk)
            if size > self.feed_max_bytes:
                raise FetchError(f"the feed is larger than {self.feed_max_bytes // 1024} KiB")
            chunks.append(chunk)
        return Feed(final, b"".join(chunks), etag, modified)
