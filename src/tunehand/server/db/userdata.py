"""An account's own data next to its session: playlists, likes, history, remote tracks.

Every query here filters by `account_id`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.server.db.tables import history, likes, playlists, remote_tracks
from tunehand.server.db.upsert import upsert

HISTORY_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Playlist:
    id: int
    name: str
    track_ids: tuple[str, ...]
    updated_ms: int


def _playlist(r: sa.Row[tuple[object, ...]]) -> Playlist:
    m = r._mapping
    return Playlist(m["id"], m["name"], tuple(json.loads(m["track_ids"])), m["updated_ms"])


async def list_playlists(conn: AsyncConnection, account_id: int) -> list[Playlist]:
    rows = await conn.execute(
        sa.select(playlists).where(playlists.c.account_id == account_id).order_by(playlists.c.name)
    )
    return [_playlist(r) for r in rows]


async def playlist(conn: AsyncConnection, account_id: int, name: str) -> Playlist | None:
    row = (
        await conn.execute(
            sa.select(playlists).where(
                playlists.c.account_id == account_id, playlists.c.name == name
            )
        )
    ).first()
    return _playlist(row) if row else None


async def save_playlist(
    conn: AsyncConnection, account_id: int, name: str, track_ids: Sequence[str], now_ms: int
) -> None:
    blob = json.dumps(list(track_ids))
    await upsert(
        conn,
        playlists,
        {"account_id": account_id, "name": name, "track_ids": blob, "updated_ms": now_ms},
        ["account_id", "name"],
        {"track_ids": blob, "updated_ms": now_ms},
    )


async def rename_playlist(
    conn: AsyncConnection, account_id: int, name: str, new_name: str, now_ms: int
) -> str:
    """Rename the account's playlist `name`: "ok", "not_found", or "conflict" (taken)."""
    if await playlist(conn, account_id, name) is None:
        return "not_found"
    if new_name == name:
        return "ok"
    if await playlist(conn, account_id, new_name) is not None:
        return "conflict"
    await conn.execute(
        sa.update(playlists)
        .where(playlists.c.account_id == account_id, playlists.c.name == name)
        .values(name=new_name, updated_ms=now_ms)
    )
    return "ok"


async def delete_playlist(conn: AsyncConnection, account_id: int, name: str) -> bool:
    res = await conn.execute(
        sa.delete(playlists).where(playlists.c.account_id == account_id, playlists.c.name == name)
    )
    return res.rowcount > 0


async def like(conn: AsyncConnection, account_id: int, track_id: str, now_ms: int) -> None:
    await upsert(
        conn,
        likes,
        {"account_id": account_id, "track_id": track_id, "created_ms": now_ms},
        ["account_id", "track_id"],
    )


async def unlike(conn: AsyncConnection, account_id: int, track_id: str) -> None:
    await conn.execute(
        sa.delete(likes).where(likes.c.account_id == account_id, likes.c.track_id == track_id)
    )


async def liked(conn: AsyncConnection, account_id: int) -> list[str]:
    rows = await conn.execute(
        sa.select(likes.c.track_id)
        .where(likes.c.account_id == account_id)
        .order_by(likes.c.created_ms.desc())
    )
    return [r.track_id for r in rows]


async def add_history(
    conn: AsyncConnection, account_id: int, track_id: str, device_id: str, now_ms: int
) -> None:
    await conn.execute(
        sa.insert(history).values(
            account_id=account_id, track_id=track_id, played_ms=now_ms, device_id=device_id
        )
    )


async def has_history(
    conn: AsyncConnection, account_id: int, track_id: str, device_id: str, played_ms: int
) -> bool:
    """Whether this device already entered this play (an app sending a scrobble again)."""
    row = await conn.execute(
        sa.select(history.c.id)
        .where(
            history.c.account_id == account_id,
            history.c.track_id == track_id,
            history.c.device_id == device_id,
            history.c.played_ms == played_ms,
        )
        .limit(1)
    )
    return row.first() is not None


async def recent(conn: AsyncConnection, account_id: int, limit: int) -> list[tuple[str, int, str]]:
    rows = await conn.execute(
        sa.select(history.c.track_id, history.c.played_ms, history.c.device_id)
        .where(history.c.account_id == account_id)
        .order_by(history.c.played_ms.desc(), history.c.id.desc())
        .limit(limit)
    )
    return [(r.track_id, r.played_ms, r.device_id) for r in rows]


def is_remote_id(track_id: str) -> bool:
    """A remote track's id (`remote_id`), never a library track's (hex digits)."""
    return track_id.startswith("r")


def remote_id(account_id: int, url: str) -> str:
    return "r" + hashlib.sha256(f"{account_id}\x00{url}".encode()).hexdigest()[:20]


async def add_remote(conn: AsyncConnection, account_id: int, url: str, title: str) -> str:
    rid = remote_id(account_id, url)  # the account is part of the id: no clash across accounts
    await upsert(
        conn,
        remote_tracks,
        {"id": rid, "account_id": account_id, "url": url, "title": title},
        ["id"],
    )
    return rid


_REMOTES = sa.select(remote_tracks).where(
    remote_tracks.c.account_id == sa.bindparam("a"),
    remote_tracks.c.id.in_(sa.bindparam("ids", expanding=True)),
)
"""Built once, as `library.get_many`: a session's remote tracks are looked up as often."""


async def remotes(
    conn: AsyncConnection, account_id: int, ids: Sequence[str]
) -> dict[str, tuple[str, str]]:
    wanted = [i for i in ids if is_remote_id(i)]
    if not wanted:
        return {}
    rows = await conn.execute(_REMOTES, {"a": account_id, "ids": wanted[:1000]})
    return {r.id: (r.url, r.title) for r in rows}
