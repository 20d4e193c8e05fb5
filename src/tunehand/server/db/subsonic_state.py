"""What the Subsonic API keeps per account beside the library: the apps' "now playing",
ratings, bookmarks, and the session version each app last saw (the play queue's guard).

Everything here lives in the database, so every worker and instance sees the same, and
every query filters by `account_id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import bookmarks, now_playing, play_queue_seen, ratings
from tunehand.server.db.upsert import upsert

MAX_BOOKMARKS = 1_000
MAX_RATINGS = 100_000


# --- the play queue's guard -----------------------------------------------------------


async def seen_version(conn: AsyncConnection, account_id: int, device_id: str) -> int | None:
    row = (
        await conn.execute(
            sa.select(play_queue_seen.c.version).where(
                play_queue_seen.c.device_id == device_id,
                play_queue_seen.c.account_id == account_id,
            )
        )
    ).first()
    return None if row is None else int(row.version)


async def set_seen(conn: AsyncConnection, account_id: int, device_id: str, version: int) -> None:
    values = {"device_id": device_id, "account_id": account_id, "version": version}
    await upsert(
        conn,
        play_queue_seen,
        values,
        ["device_id"],
        {"version": version},
        where=play_queue_seen.c.account_id == account_id,
    )


# --- now playing ----------------------------------------------------------------------


async def set_now_playing(
    conn: AsyncConnection, account_id: int, device_id: str, track_id: str, now_ms: int
) -> None:
    values = {
        "account_id": account_id,
        "device_id": device_id,
        "track_id": track_id,
        "started_ms": now_ms,
    }
    await upsert(
        conn,
        now_playing,
        values,
        ["account_id", "device_id"],
        {"track_id": track_id, "started_ms": now_ms},
    )


async def clear_now_playing(
    conn: AsyncConnection, account_id: int, device_id: str, track_id: str
) -> None:
    """The app's "now playing" ends when it submits that track as played."""
    await conn.execute(
        sa.delete(now_playing).where(
            now_playing.c.account_id == account_id,
            now_playing.c.device_id == device_id,
            now_playing.c.track_id == track_id,
        )
    )


async def now_playing_of(conn: AsyncConnection, account_id: int) -> list[tuple[str, str, int]]:
    """(device id, track id, started ms) of each app of the account, newest first."""
    rows = await conn.execute(
        sa.select(now_playing)
        .where(now_playing.c.account_id == account_id)
        .order_by(now_playing.c.started_ms.desc())
    )
    return [(r.device_id, r.track_id, int(r.started_ms)) for r in rows]


# --- ratings --------------------------------------------------------------------------


async def set_rating(
    conn: AsyncConnection, account_id: int, item_id: str, rating: int, now_ms: int
) -> None:
    """Rate an item 1 to 5; 0 removes its rating."""
    if rating == 0:
        await conn.execute(
            sa.delete(ratings).where(
                ratings.c.account_id == account_id, ratings.c.item_id == item_id
            )
        )
        return
    values = {"account_id": account_id, "item_id": item_id, "rating": rating, "rated_ms": now_ms}
    await upsert(
        conn, ratings, values, ["account_id", "item_id"], {"rating": rating, "rated_ms": now_ms}
    )


async def count_ratings(conn: AsyncConnection, account_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(ratings).where(ratings.c.account_id == account_id)
    return int((await conn.execute(stmt)).scalar_one())


async def ratings_among(
    conn: AsyncConnection, account_id: int, ids: Sequence[str]
) -> dict[str, int]:
    wanted = list(dict.fromkeys(ids))
    out: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        rows = await conn.execute(
            sa.select(ratings.c.item_id, ratings.c.rating).where(
                ratings.c.account_id == account_id, ratings.c.item_id.in_(wanted[i : i + 500])
            )
        )
        out.update({r.item_id: int(r.rating) for r in rows})
    return out


async def rated_albums(conn: AsyncConnection, account_id: int, offset: int, size: int) -> list[str]:
    """The account's rated albums, highest first (`getAlbumList` type `highest`)."""
    rows = await conn.execute(
        sa.select(ratings.c.item_id)
        .where(
            ratings.c.account_id == account_id,
            ratings.c.item_id.like("a%"),
            ~ratings.c.item_id.like("ar%"),
        )
        .order_by(ratings.c.rating.desc(), ratings.c.rated_ms.desc(), ratings.c.item_id)
        .offset(offset)
        .limit(size)
    )
    return [str(r.item_id) for r in rows]


# --- bookmarks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bookmark:
    track_id: str
    position_ms: int
    comment: str
    created_ms: int
    changed_ms: int


async def bookmarks_of(conn: AsyncConnection, account_id: int) -> list[Bookmark]:
    rows = await conn.execute(
        sa.select(bookmarks)
        .where(bookmarks.c.account_id == account_id)
        .order_by(bookmarks.c.changed_ms.desc(), bookmarks.c.track_id)
    )
    return [
        Bookmark(r.track_id, int(r.position_ms), r.comment, int(r.created_ms), int(r.changed_ms))
        for r in rows
    ]


async def count_bookmarks(conn: AsyncConnection, account_id: int) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(bookmarks)
        .where(bookmarks.c.account_id == account_id)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def save_bookmark(
    conn: AsyncConnection,
    account_id: int,
    track_id: str,
    position_ms: int,
    comment: str,
    now_ms: int,
) -> None:
    values = {
        "account_id": account_id,
        "track_id": track_id,
        "position_ms": position_ms,
        "comment": comment,
        "created_ms": now_ms,
        "changed_ms": now_ms,
    }
    update = {"position_ms": position_ms, "comment": comment, "changed_ms": now_ms}
    await upsert(conn, bookmarks, values, ["account_id", "track_id"], update)


async def delete_bookmark(conn: AsyncConnection, account_id: int, track_id: str) -> bool:
    res = await conn.execute(
        sa.delete(bookmarks).where(
            bookmarks.c.account_id == account_id, bookmarks.c.track_id == track_id
        )
    )
    return bool(res.rowcount)


async def marks(
    conn: AsyncConnection, account_id: int, ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """The account's stars (when, ms) and ratings among `ids`, in one query per 500."""
    from tunehand.server.db.tables import likes

    wanted = list(dict.fromkeys(ids))
    stars: dict[str, int] = {}
    rated: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        starred = sa.select(
            likes.c.track_id.label("id"), likes.c.created_ms.label("v"), sa.literal(1).label("s")
        ).where(likes.c.account_id == account_id, likes.c.track_id.in_(chunk))
        rating = sa.select(
            ratings.c.item_id.label("id"), ratings.c.rating.label("v"), sa.literal(0).label("s")
        ).where(ratings.c.account_id == account_id, ratings.c.item_id.in_(chunk))
        for r in await conn.execute(sa.union_all(starred, rating)):
            (stars if r.s else rated)[r.id] = int(r.v)
    return stars, rated
