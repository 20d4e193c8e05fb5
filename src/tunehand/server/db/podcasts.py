"""An account's podcast subscriptions, their episodes, and its long-form resume points.

Every query names the account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import episodes, listening, podcasts
from tunehand.server.db.tables import resume_points as points_table
from tunehand.server.db.upsert import upsert

MAX_RESUME_POINTS = 5000
"""Resume points kept per account (the most recently heard)."""


@dataclass(frozen=True)
class PodcastRow:
    id: str
    url: str
    title: str
    etag: str | None
    last_modified: str | None
    refreshed_ms: int
    error: str | None
    episodes: int = 0


@dataclass(frozen=True)
class EpisodeRow:
    id: str
    podcast_id: str
    title: str
    published_ms: int | None
    duration_ms: int
    url: str
    mime: str
    podcast: str = ""
    """The podcast's title (filled by `get_episodes`)."""


@dataclass(frozen=True)
class ResumePoint:
    track_id: str
    kind: str
    position_ms: int
    duration_ms: int
    played: bool
    updated_ms: int


def _podcast(r: sa.Row[tuple[object, ...]], count: int = 0) -> PodcastRow:
    return PodcastRow(r.id, r.url, r.title, r.etag, r.last_modified, r.refreshed_ms, r.error, count)


async def list_podcasts(conn: AsyncConnection, account_id: int) -> list[PodcastRow]:
    counts = (
        sa.select(episodes.c.podcast_id, sa.func.count().label("n"))
        .where(episodes.c.account_id == account_id)
        .group_by(episodes.c.podcast_id)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(podcasts, counts.c.n)
        .outerjoin(counts, counts.c.podcast_id == podcasts.c.id)
        .where(podcasts.c.account_id == account_id)
        .order_by(podcasts.c.title, podcasts.c.id)
    )
    return [_podcast(r, int(r.n or 0)) for r in rows]


async def count_podcasts(conn: AsyncConnection, account_id: int) -> int:
    q = sa.select(sa.func.count()).select_from(podcasts).where(podcasts.c.account_id == account_id)
    return int((await conn.execute(q)).scalar_one())


async def get_podcast(conn: AsyncConnection, account_id: int, podcast_id: str) -> PodcastRow | None:
    row = (
        await conn.execute(
            sa.select(podcasts).where(
                podcasts.c.id == podcast_id, podcasts.c.account_id == account_id
            )
        )
    ).first()
    return _podcast(row) if row is not None else None


async def due(conn: AsyncConnection, before_ms: int, limit: int) -> list[tuple[int, PodcastRow]]:
    """Podcasts of any account last refreshed before `before_ms`, oldest first."""
    rows = await conn.execute(
        sa.select(podcasts)
        .where(podcasts.c.refreshed_ms < before_ms)
        .order_by(podcasts.c.refreshed_ms)
        .limit(limit)
    )
    return [(int(r.account_id), _podcast(r)) for r in rows]


async def save_podcast(
    conn: AsyncConnection, account_id: int, row: PodcastRow, now_ms: int
) -> None:
    values = {
        "id": row.id,
        "account_id": account_id,
        "url": row.url,
        "title": row.title,
        "etag": row.etag,
        "last_modified": row.last_modified,
        "added_ms": now_ms,
        "refreshed_ms": row.refreshed_ms,
        "error": row.error,
    }
    update = {k: v for k, v in values.items() if k not in ("id", "account_id", "url", "added_ms")}
    await upsert(conn, podcasts, values, ["id"], update, podcasts.c.account_id == account_id)


async def mark_refreshed(
    conn: AsyncConnection, account_id: int, podcast_id: str, now_ms: int, error: str | None
) -> None:
    await conn.execute(
        sa.update(podcasts)
        .where(podcasts.c.id == podcast_id, podcasts.c.account_id == account_id)
        .values(refreshed_ms=now_ms, error=error)
    )


async def remove_podcast(conn: AsyncConnection, account_id: int, podcast_id: str) -> bool:
    await conn.execute(
        sa.delete(episodes).where(
            episodes.c.podcast_id == podcast_id, episodes.c.account_id == account_id
        )
    )
    done = await conn.execute(
        sa.delete(podcasts).where(podcasts.c.id == podcast_id, podcasts.c.account_id == account_id)
    )
    return bool(done.rowcount)


async def save_episodes(
    conn: AsyncConnection, account_id: int, rows: Sequence[EpisodeRow], keep: int
) -> None:
    """Insert or update `rows`, then keep only the podcast's newest `keep` episodes."""
    for e in rows:
        values = {
            "id": e.id,
            "podcast_id": e.podcast_id,
            "account_id": account_id,
            "title": e.title,
            "published_ms": e.published_ms,
            "duration_ms": e.duration_ms,
            "url": e.url,
            "mime": e.mime,
        }
        update = {k: values[k] for k in ("title", "published_ms", "duration_ms", "url", "mime")}
        await upsert(conn, episodes, values, ["id"], update, episodes.c.account_id == account_id)
    if not rows:
        return
    podcast_id = rows[0].podcast_id
    kept = (
        sa.select(episodes.c.id)
        .where(episodes.c.podcast_id == podcast_id, episodes.c.account_id == account_id)
        .order_by(sa.func.coalesce(episodes.c.published_ms, 0).desc(), episodes.c.id)
        .limit(keep)
    )
    await conn.execute(
        sa.delete(episodes).where(
            episodes.c.podcast_id == podcast_id,
            episodes.c.account_id == account_id,
            episodes.c.id.not_in(kept.scalar_subquery()),
        )
    )


def _episode(r: sa.Row[tuple[object, ...]]) -> EpisodeRow:
    return EpisodeRow(r.id, r.podcast_id, r.title, r.published_ms, r.duration_ms, r.url, r.mime)


async def list_episodes(
    conn: AsyncConnection, account_id: int, podcast_id: str
) -> list[EpisodeRow]:
    rows = await conn.execute(
        sa.select(episodes)
        .where(episodes.c.podcast_id == podcast_id, episodes.c.account_id == account_id)
        .order_by(sa.func.coalesce(episodes.c.published_ms, 0).desc(), episodes.c.id)
    )
    return [_episode(r) for r in rows]


async def get_episodes(
    conn: AsyncConnection, account_id: int | None, ids: Sequence[str]
) -> dict[str, EpisodeRow]:
    """Episodes by id (of `account_id`; None: any account's, for a signed stream link,
    whose signature the server made for that account)."""
    wanted = [i for i in ids if i.startswith("e")][:1000]
    if not wanted:
        return {}
    q = (
        sa.select(episodes, podcasts.c.title.label("podcast"))
        .join(podcasts, podcasts.c.id == episodes.c.podcast_id)
        .where(episodes.c.id.in_(wanted))
    )
    if account_id is not None:
        q = q.where(episodes.c.account_id == account_id)
    return {
        r.id: EpisodeRow(
            r.id, r.podcast_id, r.title, r.published_ms, r.duration_ms, r.url, r.mime, r.podcast
        )
        for r in await conn.execute(q)
    }


# --- resume points ---------------------------------------------------------------


def _point(r: sa.Row[tuple[object, ...]]) -> ResumePoint:
    return ResumePoint(
        r.track_id, r.kind, r.position_ms, r.duration_ms, bool(r.played), r.updated_ms
    )


async def resume_points(
    conn: AsyncConnection, account_id: int, ids: Sequence[str]
) -> dict[str, ResumePoint]:
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(points_table).where(
            points_table.c.account_id == account_id, points_table.c.track_id.in_(list(ids))
        )
    )
    return {r.track_id: _point(r) for r in rows}


async def in_progress(conn: AsyncConnection, account_id: int, limit: int) -> list[ResumePoint]:
    rows = await conn.execute(
        sa.select(points_table)
        .where(
            points_table.c.account_id == account_id,
            points_table.c.played == sa.false(),
            points_table.c.position_ms > 0,
        )
        .order_by(points_table.c.updated_ms.desc())
        .limit(limit)
    )
    return [_point(r) for r in rows]


async def save_point(conn: AsyncConnection, account_id: int, p: ResumePoint) -> None:
    values = {
        "account_id": account_id,
        "track_id": p.track_id,
        "kind": p.kind,
        "position_ms": p.position_ms,
        "duration_ms": p.duration_ms,
        "played": p.played,
        "updated_ms": p.updated_ms,
    }
    update = {k: values[k] for k in ("kind", "position_ms", "duration_ms", "played", "updated_ms")}
    await upsert(conn, points_table, values, ["account_id", "track_id"], update)
    kept = (
        sa.select(points_table.c.track_id)
        .where(points_table.c.account_id == account_id)
        .order_by(points_table.c.updated_ms.desc())
        .limit(MAX_RESUME_POINTS)
    )
    await conn.execute(
        sa.delete(points_table).where(
            points_table.c.account_id == account_id,
            points_table.c.track_id.not_in(kept.scalar_subquery()),
        )
    )


# --- listening settings: speeds and the sleep timer --------------------------------


@dataclass(frozen=True)
class Listening:
    music_speed: float = 1.0
    long_speed: float = 1.0
    sleep_at_ms: int | None = None
    sleep_entry: str | None = None


async def listening_of(conn: AsyncConnection, account_id: int) -> Listening:
    row = (
        await conn.execute(sa.select(listening).where(listening.c.account_id == account_id))
    ).first()
    if row is None:
        return Listening()
    return Listening(row.music_speed, row.long_speed, row.sleep_at_ms, row.sleep_entry)


async def save_listening(conn: AsyncConnection, account_id: int, li: Listening) -> None:
    values = {
        "account_id": account_id,
        "music_speed": li.music_speed,
        "long_speed": li.long_speed,
        "sleep_at_ms": li.sleep_at_ms,
        "sleep_entry": li.sleep_entry,
    }
    update = {k: v for k, v in values.items() if k != "account_id"}
    await upsert(conn, listening, values, ["account_id"], update)


async def sleep_due(conn: AsyncConnection, now_ms: int, limit: int) -> list[int]:
    """Accounts whose sleep timer has run out."""
    rows = await conn.execute(
        sa.select(listening.c.account_id)
        .where(listening.c.sleep_at_ms.is_not(None), listening.c.sleep_at_ms <= now_ms)
        .limit(limit)
    )
    return [int(r.account_id) for r in rows]
