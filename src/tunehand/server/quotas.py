"""Quota checks for what an account stores (`limits.QUOTAS`), made in the transaction
that adds the row: a new playlist, a like, a remote track (device rows: `auth`; the
queue: the core's `MAX_QUEUE`). Past one the request is refused with `QuotaError`
(HTTP 409 `quota`) and a line saying what to remove."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.errors import QuotaError
from tunehand.server.db.tables import likes, playlists, remote_tracks
from tunehand.server.limits import QUOTAS


async def _count(conn: AsyncConnection, table: sa.Table, account_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(table).where(table.c.account_id == account_id)
    return int((await conn.execute(stmt)).scalar_one())


async def _has(conn: AsyncConnection, stmt: sa.Select[Any]) -> bool:
    return (await conn.execute(stmt)).first() is not None


async def room_for_playlist(conn: AsyncConnection, account_id: int, name: str) -> None:
    """A new playlist named `name` fits (saving an existing one always does)."""
    exists = sa.select(sa.literal(1)).where(
        playlists.c.account_id == account_id, playlists.c.name == name
    )
    most = QUOTAS.playlists
    if not await _has(conn, exists) and await _count(conn, playlists, account_id) >= most:
        raise QuotaError(f"this account has {most} playlists, the most it may keep: delete some")


async def room_for_like(conn: AsyncConnection, account_id: int, track_id: str) -> None:
    exists = sa.select(sa.literal(1)).where(
        likes.c.account_id == account_id, likes.c.track_id == track_id
    )
    most = QUOTAS.likes
    if not await _has(conn, exists) and await _count(conn, likes, account_id) >= most:
        raise QuotaError(f"this account likes {most} tracks, the most it may keep: unlike some")


async def room_for_remote(conn: AsyncConnection, account_id: int, track_id: str) -> None:
    exists = sa.select(sa.literal(1)).where(
        remote_tracks.c.account_id == account_id, remote_tracks.c.id == track_id
    )
    most = QUOTAS.remote_tracks
    if not await _has(conn, exists) and await _count(conn, remote_tracks, account_id) >= most:
        raise QuotaError(f"this account has {most} remote tracks, the most it may keep")
