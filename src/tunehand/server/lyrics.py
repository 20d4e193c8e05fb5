"""A track's lyrics for the API: from its file (`library.lyrics`), else, when the server's
configuration says `lyrics_online = true`, from LRCLIB (`GET /api/get`).

Answers are kept in memory (bounded): a file's by its mtime, LRCLIB's (found or not) for
an hour, so a TUI following the track or many devices asking cost one look each.
LRCLIB is asked at most `ONLINE_AT_ONCE` at a time, with a short timeout; it being down
means "no lyrics" for a few minutes, never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tunehand import __version__
from tunehand.core.lyrics import Lyrics, parse_lrc, plain
from tunehand.server.db.library import StoredTrack
from tunehand.server.library.lyrics import read_lyrics

LRCLIB_URL = "https://lrclib.net"
CACHE_SIZE = 2_000
ONLINE_TTL_S = 3600.0
ONLINE_ERROR_TTL_S = 300.0
ONLINE_TIMEOUT_S = 5.0
ONLINE_AT_ONCE = 4
MAX_ONLINE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Found:
    lyrics: Lyrics
    source: str
    """"file" (tags or an `.lrc` beside it) or "lrclib"."""


class LyricsSource:
    def __init__(
        self, online: bool = False, lrclib_url: str = LRCLIB_URL, log: Callable[[str], None] = print
    ) -> None:
        self.online = online
        self.lrclib_url = lrclib_url.rstrip("/")
        self.log = log
        self._files: OrderedDict[tuple[str, int], Found | None] = OrderedDict()
        self._remote: OrderedDict[str, tuple[float, Found | None]] = OrderedDict()
        self._gate = asyncio.Semaphore(ONLINE_AT_ONCE)
        self._client: httpx.AsyncClient | None = None

    async def for_track(self, track: StoredTrack) -> Found | None:
        key = (track.view.id, track.mtime_ns)
        if key in self._files:
            self._files.move_to_end(key)
            found = self._files[key]
        else:
            lyrics = await asyncio.to_thread(read_lyrics, track.path)
            found = Found(lyrics, "file") if lyrics is not None else None
            _put(self._files, key, found)
        if found is None and self.online:
            found = await self._lrclib(track)
        return found

    async def _lrclib(self, track: StoredTrack) -> Found | None:
        v = track.view
        if not v.title or not v.artist:
            return None
        key = v.id
        now = time.monotonic()
        hit = self._remote.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        params = {"track_name": v.title, "artist_name": v.artist}
        if v.album:
            params["album_name"] = v.album
        if v.duration_ms:
            params["duration"] = str(round(v.duration_ms / 1000))
        ttl = ONLINE_TTL_S
        found: Found | None = None
        try:
            async with self._gate:
                if self._client is None:
                    self._client = httpx.AsyncClient(
                        timeout=ONLINE_TIMEOUT_S,
                        headers={"User-Agent": f"tunehand/{__version__}"},
                    )
                r = await self._client.get(f"{self.lrclib_url}/api/get", params=params)
            if r.status_code == 200 and len(r.content) <= MAX_ONLINE_BYTES:
                found = _from_lrclib(r.json())
            elif r.status_code != 404:
                ttl = ONLINE_ERROR_TTL_S
                self.log(f"lyrics: LRCLIB answered {r.status_code}")
        except (httpx.HTTPError, ValueError) as exc:
            ttl = ONLINE_ERROR_TTL_S
            self.log(f"lyrics: LRCLIB unreachable ({type(exc).__name__})")
        if len(self._remote) >= CACHE_SIZE:
            self._remote.popitem(last=False)
        self._remote[key] = (now + ttl, found)
        return found

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _from_lrclib(obj: object) -> Found | None:
    if not isinstance(obj, dict):
        return None
    synced, words = obj.get("syncedLyrics"), obj.get("plainLyrics")
    if isinstance(synced, str) and synced.strip():
        lyrics = parse_lrc(synced)
    elif isinstance(words, str) and words.strip():
        lyrics = plain(words)
    else:
        return None
    return Found(lyrics, "lrclib") if lyrics.lines else None


def _put(
    cache: OrderedDict[tuple[str, int], Found | None], key: tuple[str, int], v: Found | None
) -> None:
    if len(cache) >= CACHE_SIZE:
        cache.popitem(last=False)
    cache[key] = v
