"""Subscriptions: adding a feed, refreshing every feed on a timer, removing one.

A refresh asks with the feed's ETag and Last-Modified, so an unchanged feed costs a 304.
A feed that fails keeps its episodes and records the error; it is tried again at the
next turn of the timer. Several refreshes run at once (at most `PARALLEL`), each bounded
by the fetcher's size and time limits, so no feed can hold the others up for long.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.errors import QuotaError, StoreError
from tunehand.server.db import podcasts as qp
from tunehand.server.db.engine import unavailable
from tunehand.server.podcasts import feeds
from tunehand.server.podcasts.chapters import EpisodeChapters
from tunehand.server.podcasts.fetch import Feed, Fetcher, FetchError

log = logging.getLogger("tunehand.server.podcasts")

MAX_PODCASTS = 200
"""Subscriptions one account may keep."""
MAX_EPISODES = 500
"""Episodes kept per podcast (the newest)."""
REFRESH_S = 3600
PARALLEL = 4


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Podcasts:
    engine: AsyncEngine
    fetcher: Fetcher
    refresh_s: int = REFRESH_S
    max_podcasts: int = MAX_PODCASTS
    chapters: EpisodeChapters = field(init=False)
    """Episodes' chapter marks, read from the head of their enclosures."""

    def __post_init__(self) -> None:
        self.chapters = EpisodeChapters(self.engine, self.fetcher)

    async def subscribe(self, account_id: int, url: str) -> qp.PodcastRow:
        """Fetch and read the feed at `url` now, then keep it (FetchError, QuotaError)."""
        pid = feeds.podcast_id(account_id, url)
        async with self.engine.connect() as conn:
            known = await qp.get_podcast(conn, account_id, pid)
            most = self.max_podcasts
            if known is None and await qp.count_podcasts(conn, account_id) >= most:
                raise QuotaError(
                    f"this account has {most} podcasts, the most it may keep: remove some"
                )
        got = await self.fetcher.feed(url, None, None)
        parsed = await asyncio.to_thread(feeds.parse, got.body, MAX_EPISODES)
        row = qp.PodcastRow(pid, url, parsed.title, got.etag, got.last_modified, _now_ms(), None)
        await self._store(account_id, row, parsed)
        async with self.engine.connect() as conn:
            stored = [p for p in await qp.list_podcasts(conn, account_id) if p.id == pid]
        return stored[0] if stored else row

    async def _store(self, account_id: int, row: qp.PodcastRow, parsed: feeds.ParsedFeed) -> None:
        eps = [
            qp.EpisodeRow(
                feeds.episode_id(row.id, e.guid),
                row.id,
                e.title,
                e.published_ms,
                e.duration_ms,
                e.url,
                e.mime,
            )
            for e in parsed.episodes
        ]
        async with self.engine.begin() as conn:
            await qp.save_podcast(conn, account_id, row, _now_ms())
            await qp.save_episodes(conn, account_id, eps, MAX_EPISODES)

    async def refresh(self, account_id: int, row: qp.PodcastRow) -> None:
        """Fetch `row`'s feed again (a 304 keeps what is stored); a failure is recorded."""
        try:
            got: Feed = await self.fetcher.feed(row.url, row.etag, row.last_modified)
            if got.not_modified:
                async with self.engine.begin() as conn:
                    await qp.mark_refreshed(conn, account_id, row.id, _now_ms(), None)
                return
            parsed = await asyncio.to_thread(feeds.parse, got.body, MAX_EPISODES)
        except FetchError as exc:
            log.warning("podcast %s: %s", row.id, exc)
            async with self.engine.begin() as conn:
                await qp.mark_refreshed(conn, account_id, row.id, _now_ms(), str(exc))
            return
        new = qp.PodcastRow(
            row.id, row.url, parsed.title, got.etag, got.last_modified, _now_ms(), None
        )
        async with self.engine.connect() as conn:
            if await qp.get_podcast(conn, account_id, row.id) is None:
                return  # removed meanwhile
        await self._store(account_id, new, parsed)

    async def refresh_due(self) -> int:
        """Refresh every podcast not refreshed for `refresh_s`; how many were tried."""
        before = _now_ms() - self.refresh_s * 1000
        async with self.engine.connect() as conn:
            rows = await qp.due(conn, before, 1000)
        gate = asyncio.Semaphore(PARALLEL)

        async def one(account_id: int, row: qp.PodcastRow) -> None:
            async with gate:
                try:
                    await self.refresh(account_id, row)
                except Exception as exc:  # one feed never stops the others
                    if _unavailable(exc):
                        log.warning("podcast %s: the database is unavailable", row.id)
                    else:
                        log.exception("podcast %s: refresh failed", row.id)

        await asyncio.gather(*(one(a, r) for a, r in rows))
        return len(rows)

    async def run(self) -> None:
        """The timer: refresh what is due, then wait a tenth of the interval."""
        pause = max(1.0, self.refresh_s / 10)
        while True:
            try:
                await self.refresh_due()
            except Exception as exc:
                if _unavailable(exc):
                    # Down or restarting: one line; the next round tries again.
                    log.warning("podcast refresh: the database is unavailable")
                else:
                    log.exception("podcast refresh failed")
            await asyncio.sleep(pause)


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, StoreError) or unavailable(exc)
