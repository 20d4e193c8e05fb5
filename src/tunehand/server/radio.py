"""Autoplay and radio: tracks that fit, from local signals only.

`pick` scores the library's tracks against seed tracks:
- co-listened: played in this account's history within `NEAR_MS` of a play of a seed
  (3 points per such play, at most 9);
- the same artist (3), the same album artist (2), the same genre (2), a year within 2
  of a seed's (1);
and never a seed, a track already queued, or one of the last `RECENT` played. Ties are
broken by a random draw (seeded by the caller), so two radios of one seed differ.

Autoplay (`Autoplay.observe`, after every committed change): when the account has it on
and the current entry is the last one to play (repeat off), the server appends `BATCH`
picks seeded by the last tracks of the queue, as one `queue_add` command whose id is
made from the session's version, so two instances doing it at once append once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.core.commands import Command
from tunehand.core.model import SessionState
from tunehand.server.db.tables import accounts, history, tracks

log = logging.getLogger("tunehand.radio")

RECENT = 50
NEAR_MS = 30 * 60 * 1000
BATCH = 10
RADIO_SIZE = 50
MAX_CANDIDATES = 5_000
SEEDS = 5
CACHE_S = 30.0


async def pick(
    engine: AsyncEngine,
    account_id: int,
    seeds: Sequence[str],
    *,
    exclude: Sequence[str] = (),
    count: int = BATCH,
    rng: random.Random | None = None,
) -> list[str]:
    """Up to `count` track ids that fit `seeds` (best first)."""
    rng = rng or random.Random()
    t = tracks
    async with engine.connect() as conn:
        seed_rows = (
            await conn.execute(
                sa.select(t.c.id, t.c.artist, t.c.album_artist, t.c.genre, t.c.year).where(
                    t.c.id.in_(list(seeds)[:500])
                )
            )
        ).all()
        if not seed_rows:
            return []
        artists = {r.artist for r in seed_rows if r.artist}
        album_artists = {r.album_artist for r in seed_rows if r.album_artist}
        genres = {r.genre for r in seed_rows if r.genre}
        years = {r.year for r in seed_rows if r.year}
        recent = (
            (
                await conn.execute(
                    sa.select(history.c.track_id)
                    .where(history.c.account_id == account_id)
                    .order_by(history.c.played_ms.desc())
                    .limit(RECENT)
                )
            )
            .scalars()
            .all()
        )
        co = await _co_listened(conn, account_id, [r.id for r in seed_rows])
        near_years = {y + d for y in years for d in range(-2, 3)}
        wanted = [
            t.c.artist.in_(artists),
            t.c.album_artist.in_(album_artists),
            t.c.genre.in_(genres),
            t.c.year.in_(near_years),
            t.c.id.in_(list(co)[:1000]),
        ]
        rows = (
            await conn.execute(
                sa.select(t.c.id, t.c.artist, t.c.album_artist, t.c.genre, t.c.year)
                .where(sa.or_(*wanted))
                .limit(MAX_CANDIDATES)
            )
        ).all()
    skip = {*seeds, *exclude, *recent}
    scored: list[tuple[int, float, str]] = []
    for r in rows:
        if r.id in skip:
            continue
        score = min(co.get(r.id, 0), 3) * 3
        score += 3 if r.artist and r.artist in artists else 0
        score += 2 if r.album_artist and r.album_artist in album_artists else 0
        score += 2 if r.genre and r.genre in genres else 0
        score += 1 if r.year and r.year in near_years else 0
        if score > 0:
            scored.append((-score, rng.random(), r.id))
    scored.sort()
    return [tid for _, _, tid in scored[:count]]


async def _co_listened(conn: Any, account_id: int, seeds: Sequence[str]) -> Counter[str]:
    """Tracks this account played near a play of a seed, and how often."""
    h = history
    plays = (
        (
            await conn.execute(
                sa.select(h.c.played_ms)
                .where(h.c.account_id == account_id, h.c.track_id.in_(list(seeds)))
                .order_by(h.c.played_ms.desc())
                .limit(50)
            )
        )
        .scalars()
        .all()
    )
    out: Counter[str] = Counter()
    for at in plays:
        rows = (
            (
                await conn.execute(
                    sa.select(h.c.track_id).where(
                        h.c.account_id == account_id,
                        h.c.played_ms.between(at - NEAR_MS, at + NEAR_MS),
                    )
                )
            )
            .scalars()
            .all()
        )
        out.update(set(rows))
    for s in seeds:
        out.pop(s, None)
    return out


class Autoplay:
    def __init__(self, engine: AsyncEngine, sessions: Any) -> None:
        self.engine = engine
        self.sessions = sessions
        self._on: dict[int, tuple[float, bool]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._done: dict[int, int] = {}
        """The version each account was last topped up at on this instance."""

    async def enabled(self, account_id: int) -> bool:
        hit = self._on.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.engine.connect() as conn:
            on = bool(
                (
                    await conn.execute(
                        sa.select(accounts.c.autoplay).where(accounts.c.id == account_id)
                    )
                ).scalar()
            )
        if len(self._on) > 10_000:
            self._on.clear()
        self._on[account_id] = (time.monotonic() + CACHE_S, on)
        return on

    async def set(self, account_id: int, on: bool) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                accounts.update().where(accounts.c.id == account_id).values(autoplay=on)
            )
        self._on.pop(account_id, None)

    def observe_later(self, account_id: int, state: SessionState) -> None:
        if not runs_out(state):
            return
        task = asyncio.ensure_future(self._observe(account_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _observe(self, account_id: int, state: SessionState) -> None:
        try:
            if self._done.get(account_id) == state.version or not await self.enabled(account_id):
                return
            self._done[account_id] = state.version
            queued = [e.track_id for e in state.queue]
            order = state.play_order()
            by_id = {e.entry_id: e.track_id for e in state.queue}
            seeds = [by_id[x] for x in order[-SEEDS:] if x in by_id]
            picks = await pick(
                self.engine,
                account_id,
                seeds,
                exclude=queued,
                rng=random.Random(state.version),
            )
            if not picks:
                return
            cmd = Command(
                op="queue_add",
                command_id=f"autoplay-{state.version}",
                track_ids=tuple(picks),
                autoplay=True,
            )
            res = await self.sessions.execute(account_id, cmd, None)
            if res.code not in ("ok", "conflict"):
                log.warning("autoplay: could not append (%s)", res.code)
        except Exception as exc:
            log.warning("autoplay: could not follow a change (%s)", type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def runs_out(state: SessionState) -> bool:
    """The current entry is the last to play (and nothing repeats)."""
    return (
        state.current is not None
        and state.repeat == "off"
        and state.next_entry_id() is None
        and len(state.queue) < 10_000
    )
