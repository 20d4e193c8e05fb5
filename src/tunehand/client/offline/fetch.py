"""Downloads into the offline cache: resumable, checked, one process per track at a time.

A track is fetched from its signed stream URL (the original file) with
`Want-Repr-Digest: sha-256=1`, so the server says the whole file's SHA-256 and size
whatever range is asked. A partial download (`<id>.part`) is continued with
`Range: bytes=N-`; a server that answers the whole file instead starts it over. The
result must have the announced size and hash, else it is removed and fetched once more
from the start; only then does it get its final name and enter the index. An
exclusive lock per track (`fcntl.flock`) keeps two processes of one config dir from
writing the same file. A podcast episode (an id `e…`) streams through the server from
its enclosure, which the server does not hash: when no `Repr-Digest` comes with it,
its size (the `Content-Range` total, or the `Content-Length` of a whole answer) is
checked, its SHA-256 is computed here and recorded, and from then on the copy is
checked against that like a track's. Cover art comes along (once per picture). The transport is the
standard library's `http.client` (a receiver that caches ahead stays light), read as it
comes, so a cut keeps every byte that arrived.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tunehand.client.offline.store import Store, art_id_of, meta_of
from tunehand.errors import ServerUnreachable, TunehandError

TIMEOUT_S = 30.0
EXTENSIONS = {
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
CHUNK = 256 * 1024
_REPR_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/=]+):")

Progress = Callable[[int, int], None]
"""(bytes of the file here, its size): called as a download goes."""


class FetchError(TunehandError):
    """A track could not be cached (one line: why)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Fetched:
    track_id: str
    path: Path
    size: int
    how: str
    """"cached" (already here and checked), "fetched", "resumed" or "refetched" (the
    copy here did not match its hash)."""
    transferred: int = 0
    """Bytes that came over the network for it."""


class Fetcher:
    def __init__(self, store: Store, server: str, *, ca_file: str | None = None) -> None:
        self.store = store
        self.server = server.rstrip("/")
        self._ca_file = ca_file
        self._conn: http.client.HTTPConnection | None = None
        self._conn_key: tuple[str, str] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _url(self, url: str) -> str:
        return url if "://" in url else self.server + url

    def _open(
        self, url: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET `url` on a kept-alive connection (a new one if it dropped)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            if self._conn is None or self._conn_key != key:
                self.close()
                if parts.scheme == "https":
                    import ssl

                    ctx = ssl.create_default_context(cafile=self._ca_file)
                    self._conn = http.client.HTTPSConnection(
                        parts.netloc, timeout=TIMEOUT_S, context=ctx
                    )
                else:
                    self._conn = http.client.HTTPConnection(parts.netloc, timeout=TIMEOUT_S)
                self._conn_key = key
            conn = self._conn
            try:
                conn.request("GET", target, headers=headers)
                return conn, conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server had closed: once more
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def track(
        self, view: dict[str, Any], *, check: bool = False, progress: Progress | None = None
    ) -> Fetched:
        """Make `view`'s track (a track view as the server answers it) a checked file
        of the cache. `check`: hash a copy already here (else size and mtime do)."""
        tid = str(view["id"])
        url = view.get("url")
        if not url or "/v1/stream/" not in str(url):
            raise FetchError(f"track {tid} is not a library track: it cannot be kept offline")
        refetched = False
        with self._locked(tid):
            got = self.store.get(tid)
            if got is not None:
                ok = self.store.verify(tid) if check else self.store.path_for(tid) is not None
                if ok:
                    self.store.touch([tid])
                    self._art(view)
                    return Fetched(tid, got.path, got.size, "cached")
                refetched = True
            result = self._download(tid, self._url(str(url)), view, progress)
        self._art(view)
        if refetched:
            return Fetched(tid, result.path, result.size, "refetched", result.transferred)
        return result

    @contextlib.contextmanager
    def _locked(self, tid: str) -> Iterator[None]:
        lock = self.store.part_path(tid).with_suffix(".lock")
        with open(lock, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _download(
        self, tid: str, url: str, view: dict[str, Any], progress: Progress | None
    ) -> Fetched:
        part = self.store.part_path(tid)
        resumed = part.exists() and part.stat().st_size > 0
        transferred = 0
        for attempt in (0, 1):
            size, digest, ext, n = self._get(part, url, progress, episode=_is_episode(tid))
            transferred += n
            h = _sha256(part)
            if part.stat().st_size == size and h == (digest or h):
                final = self.store.final_path(tid, ext)
                part.replace(final)
                self.store.add(tid, final, h, meta_of(view))
                how = "resumed" if resumed and attempt == 0 else "fetched"
                return Fetched(tid, final, size, how, transferred)
            part.unlink(missing_ok=True)  # not what the server has: once more, whole
        raise FetchError(f"track {tid}: the download does not match the server's size and hash")

    def _get(
        self, part: Path, url: str, progress: Progress | None, *, episode: bool = False
    ) -> tuple[int, str, str, int]:
        """Fetch into `part` (continuing it when it has bytes): (size, sha256 hex, file
        extension, bytes transferred). `episode`: the hash may be unknown ("")."""
        have = part.stat().st_size if part.exists() else 0
        headers = {"Want-Repr-Digest": "sha-256=1"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            _, r = self._open(url, headers)
            try:
                if r.status == 416 and have:
                    r.read()
                    part.unlink(missing_ok=True)  # longer than the file: start over
                    return self._get(part, url, progress, episode=episode)
                if r.status not in (200, 206):
                    body = r.read(64 * 1024)
                    self.close()
                    raise FetchError(_refusal(r.status, body))
                size, digest = _announced_episode(r) if episode else _announced(r)
                start = 0
                if r.status == 206:
                    m = _CONTENT_RANGE.match(r.getheader("content-range", ""))
                    start = int(m.group(1)) if m else -1
                if start != have:  # the whole file came, or another range: from 0
                    start = 0
                ctype = r.getheader("content-type", "").split(";")[0]
                ext = EXTENSIONS.get(ctype, ".audio")
                n = 0
                with open(part, "r+b" if start and part.exists() else "wb") as f:
                    f.seek(start)
                    f.truncate()
                    done = start
                    while chunk := r.read1(CHUNK):  # as it comes: a cut keeps what came
                        f.write(chunk)
                        n += len(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, size)
                if done < size:  # the connection ended early: what came is kept
                    raise ConnectionResetError(f"cut at {done} of {size} bytes")
                return size, digest, ext, n
            finally:
                r.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ServerUnreachable(
                f"cannot reach the server at {self.server}: {type(exc).__name__}"
            ) from exc

    def _art(self, view: dict[str, Any]) -> None:
        art_url = view.get("art_url")
        art_id = art_id_of(art_url)
        if not art_url or art_id is None or self.store.art_path(art_id) is not None:
            return
        try:
            _, r = self._open(self._url(str(art_url)), {})
            with r:
                data = r.read(16 * 1024 * 1024)
                ctype = r.getheader("content-type", "").split(";")[0]
                ok = r.status == 200
        except (OSError, http.client.HTTPException):
            self.close()
            return  # the picture is a nicety: the track is here
        if ok and data:
            self.store.add_art(art_id, data, EXTENSIONS.get(ctype, ".img"))


def _announced(r: http.client.HTTPResponse) -> tuple[int, str]:
    raw_size = r.getheader("x-content-size", "")
    m = _REPR_DIGEST.search(r.getheader("repr-digest", ""))
    if not raw_size.isdigit() or m is None:
        raise FetchError(
            "the server does not say the file's size and hash (an older server?): "
            "it cannot be kept offline"
        )
    try:
        digest = base64.b64decode(m.group(1), validate=True).hex()
    except ValueError as exc:
        raise FetchError("the server sent a malformed Repr-Digest") from exc
    return int(raw_size), digest


def _is_episode(track_id: str) -> bool:
    return track_id.startswith("e")


def _announced_episode(r: http.client.HTTPResponse) -> tuple[int, str]:
    """An episode's size and SHA-256 hex ("" when its host gives no digest)."""
    m = _REPR_DIGEST.search(r.getheader("repr-digest", ""))
    digest = ""
    if m is not None:
        try:
            digest = base64.b64decode(m.group(1), validate=True).hex()
        except ValueError as exc:
            raise FetchError("the server sent a malformed Repr-Digest") from exc
    raw_size = r.getheader("x-content-size", "")
    if not raw_size.isdigit():
        if r.status == 206:
            m2 = _CONTENT_RANGE.match(r.getheader("content-range", ""))
            raw_size = m2.group(3) if m2 else ""
        else:
            raw_size = r.getheader("content-length", "")
    if not raw_size.isdigit():
        raise FetchError("the episode's host does not say how big it is: it cannot be kept offline")
    return int(raw_size), digest


def _refusal(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
        msg = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        msg = None
    return f"the server refused the download ({status}{': ' + str(msg) if msg else ''})"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
