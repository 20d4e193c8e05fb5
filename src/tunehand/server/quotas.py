"""Quota checks for what an account stores (`limits.QUOTAS`), made in the transaction
that adds the row: a new playlist, a like, a remote track (device rows: `auth`; the
queue: the core's `MAX_QUEUE`). Past one the request is refused with `QuotaError`
(HTTP 409 `quota`) and a line saying what to remove."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.errors import QuotaError
from tunehand.server.db.tables import likes, playlists, remote_tracks
from tunehand.server.limits import QUOTAS


async def _room(
    conn: AsyncConnection, table: sa.Table, account_id: int, key: sa.ColumnElement[bool], most: int
) -> bool:
    """Whether the account may add the row `key` names to `table`: it exists already
    (saving it again always fits), or the account keeps fewer than `most` rows."""
    exists = sa.select(sa.literal(1)).where(table.c.account_id == account_id, key)
    if (await conn.execute(exists)).first() is not None:
        return True
    count = sa.select(sa.func.count()).select_from(table).where(table.c.account_id == account_id)
    return int((await conn.execute(count)).scalar_one()) < most


async def room_for_playlist(conn: AsyncConnection, account_id: int, name: str) -> None:
    """A new playlist named `name` fits (saving an existing one always does)."""
    most = QUOTAS.playlists
    if not await _room(conn, playlists, account_id, playlists.c.name == name, most):
        raise QuotaError(f"this account has {most} playlists, the most it may keep: delete some")


async def room_for_like(conn: AsyncConnection, account_id: int, track_id: str) -> None:
    most = QUOTAS.likes
    if not await _room(conn, likes, account_id, likes.c.track_id == track_id, most):
        raise QuotaError(f"this account likes {most} tracks, the most it may keep: unlike some")


async def room_for_remote(conn: AsyncConnection, account_id: int, track_id: str) -> None:
    most = QUOTAS.remote_tracks
    if not await _room(conn, remote_tracks, account_id, remote_tracks.c.id == track_id, most):
        raise QuotaError(f"this account has {most} remote tracks, the most it may keep")
