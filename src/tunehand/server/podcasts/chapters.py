"""The chapter marks of podcast episodes, read from the head of their enclosure.

An episode's file is on its host, not here: the server asks for its first bytes
(`Range: bytes=0-…`, through the podcast fetcher and its limits) and reads the chapters
there (`library.chapters.from_head`): an ID3 tag is read whole (its size is in its first
10 bytes) up to `MAX_HEAD_BYTES`, anything else up to `HEAD_BYTES`. What was found is
kept per (episode, enclosure URL) in a bounded memo of this instance; a host that fails
is asked again after `RETRY_S`. Concurrent asks for one episode share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.db import podcasts as qp
from tunehand.server.library.chapters import Chapter, from_head, id3_size
from tunehand.server.podcasts.fetch import Fetcher, FetchError

log = logging.getLogger("tunehand.server.podcasts")

HEAD_BYTES = 256 * 1024
MAX_HEAD_BYTES = 4 * 1024 * 1024
"""An ID3 tag larger than this (cover art) is not read: the episode has no chapters."""
MEMO = 512
RETRY_S = 60.0
TIMEOUT_S = 10.0


class EpisodeChapters:
    def __init__(self, engine: AsyncEngine, fetcher: Fetcher) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self._memo: OrderedDict[tuple[str, str], tuple[float, tuple[Chapter, ...]]] = OrderedDict()

    async def of(self, episode_id: str) -> tuple[Chapter, ...]:
        """The chapters of `episode_id` (none when it has none, is unknown, or its host
        cannot be read now)."""
        async with self.engine.connect() as conn:
            found = await qp.get_episodes(conn, None, [episode_id])
        ep = found.get(episode_id)
        if ep is None:
            return ()
        key = (ep.id, ep.url)
        hit = self._memo.get(key)
        if hit is not None and (hit[0] == 0.0 or time.monotonic() < hit[0]):
            self._memo.move_to_end(key)
            return hit[1]
        expires = 0.0
        try:
            head = await asyncio.wait_for(self._head(ep.url), TIMEOUT_S)
            marks = await asyncio.to_thread(from_head, head)
        except (FetchError, TimeoutError) as exc:
            log.warning("episode %s: no chapters read: %s", ep.id, exc or "timed out")
            marks, expires = (), time.monotonic() + RETRY_S
        self._memo[key] = (expires, marks)
        while len(self._memo) > MEMO:
            self._memo.popitem(last=False)
        return marks

    async def _head(self, url: str) -> bytes:
        """The first bytes of `url`: the whole ID3 tag it starts with, or HEAD_BYTES."""
        resp = await self.fetcher.open(url, {"range": f"bytes=0-{MAX_HEAD_BYTES - 1}"})
        try:
            if resp.status_code not in (200, 206):
                raise FetchError(f"the episode's host answered {resp.status_code}")
            data = bytearray()
            want, sized = HEAD_BYTES, False
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) >= 10 and not sized:
                    sized = True
                    size = id3_size(bytes(data[:10]))
                    if size is not None:
                        want = min(size, MAX_HEAD_BYTES)
                if len(data) >= want:
                    break
            return bytes(data[:want])
        except (httpx.HTTPError, OSError) as exc:
            raise FetchError(f"reading the episode: {type(exc).__name__}") from exc
        finally:
            await resp.aclose()
