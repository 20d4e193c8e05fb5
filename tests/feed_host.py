"""A podcast host for the tests: a real HTTP server on 127.0.0.1 (a thread), standing in
for the internet at the boundary.

It serves what a test puts in `files` (with an ETag each, answering 304 to a matching
If-None-Match, and Range requests with 206), redirects (`redirects`), and two hostile
paths: `/slow.xml` (headers, then one byte every 0.2 s) and `/huge.xml` (megabytes
with no Content-Length). Every request is logged (`requests`) so a test can wait on one.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int


@dataclass
class FeedHost:
    port: int = 0
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    huge_bytes: int = 8 * 1024 * 1024
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes, mime: str = "application/rss+xml") -> None:
        with self._cond:
            self.files[path] = (body, mime)

    def log(self, entry: Seen) -> None:
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()

    def wait(self, pred: Callable[[Seen], bool], timeout: float = 20.0) -> Seen:
        """The first logged request (from the start) for which `pred` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.requests:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such request in {timeout:g} s: {self.requests}")
                self._cond.wait(left)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _handler(host: FeedHost) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _done(self, status: int) -> None:
            host.log(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, status))

        def do_GET(self) -> None:
            path = self.path
            if path in host.redirects:
                self.send_response(302)
                self.send_header("Location", host.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._done(302)
                return
            if path == "/slow.xml":
                self._slow()
                return
            if path == "/huge.xml":
                self._huge()
                return
            with host._cond:
                found = host.files.get(path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._done(404)
                return
            body, mime = found
            tag = etag_of(body)
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                self._done(304)
                return
            status, start, end = 200, 0, len(body)
            m = _RANGE.match(self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                end = min(len(body), int(m.group(2)) + 1 if m.group(2) else len(body))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._done(416)
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", tag)
            self.send_header("Last-Modified", "Mon, 07 Dec 2026 10:00:00 GMT")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
            self.end_headers()
            with suppress(OSError):
                self.wfile.write(body[start:end])
            self._done(status)

        def _slow(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self._done(200)
            try:
                for _ in range(300):  # a host that dribbles (a peer, not a test waiting)
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            self.close_connection = True

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Connection", "close")
            self.end_headers()
            self._done(200)
            chunk = b"<item><title>x</title></item>" * 2000
            sent = 0
            try:
                self.wfile.write(b"<?xml version='1.0'?><rss><channel><title>big</title>")
                while sent < host.huge_bytes:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            self.close_connection = True

    return Handler


@contextmanager
def feed_host() -> Iterator[FeedHost]:
    host = FeedHost()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(host))
    server.daemon_threads = True
    host.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def rss(title: str, episodes: list[tuple[str, str, str, str]]) -> bytes:
    """An RSS 2.0 podcast feed: episodes as (guid, title, RFC 822 date, enclosure URL)."""
    items = "".join(
        f"""<item><guid>{g}</guid><title>{t}</title><pubDate>{d}</pubDate>
<enclosure url="{u}" type="audio/ogg" length="1000"/>
<itunes:duration>1:00</itunes:duration></item>"""
        for g, t, d, u in episodes
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
<channel><title>{title}</title><link>http://example.invalid/</link>
<description>A test podcast</description>{items}</channel></rss>""".encode()


def atom(title: str, episodes: list[tuple[str, str, str, str]]) -> bytes:
    """An Atom feed: entries as (id, title, RFC 3339 date, enclosure URL)."""
    entries = "".join(
        f"""<entry><id>{g}</id><title>{t}</title><updated>{d}</updated>
<link rel="enclosure" href="{u}" type="audio/ogg" length="1000"/></entry>"""
        for g, t, d, u in episodes
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{title}</title>
<id>urn:test:{title}</id><updated>2026-12-01T00:00:00Z</updated>{entries}</feed>""".encode()
