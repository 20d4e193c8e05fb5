"""Content digests of library files, for clients that keep a copy (the offline cache).

A client that sends `Want-Repr-Digest: sha-256=1` on a stream request (RFC 9530) gets
the whole file's SHA-256 in `Repr-Digest: sha-256=:BASE64:` and its size in
`X-Content-Size`, whatever part of it a Range asked for: what a resumed download
checks its result against. Nobody else pays for hashing: the digest is computed only
when asked, off the event loop, and kept per (path, size, mtime) in a small bounded
memo of this instance (a changed file is hashed again).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import OrderedDict

MAX_ENTRIES = 4096
CHUNK = 1 << 20


def wants_sha256(header: str | None) -> bool:
    """Whether a `Want-Repr-Digest` header asks for sha-256 (with a non-zero preference)."""
    if not header:
        return False
    for item in header.split(",")[:16]:
        name, _, pref = item.strip().partition("=")
        if name.strip().lower() == "sha-256" and pref.strip() not in ("0", ""):
            return True
    return False


def file_sha256(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


class FileDigests:
    """SHA-256 of files by (path, size, mtime_ns), computed in a thread, bounded LRU."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._memo: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._max = max_entries

    async def sha256(self, path: str, size: int, mtime_ns: int) -> bytes:
        key = (path, size, mtime_ns)
        got = self._memo.get(key)
        if got is None:
            got = await asyncio.to_thread(file_sha256, path)
            self._memo[key] = got
            while len(self._memo) > self._max:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return got

    async def headers(self, path: str, size: int, mtime_ns: int) -> dict[str, str]:
        digest = await self.sha256(path, size, mtime_ns)
        b64 = base64.b64encode(digest).decode()
        return {"Repr-Digest": f"sha-256=:{b64}:", "X-Content-Size": str(size)}
