"""Queries on accounts, devices and tokens. Every device and token query names its account."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.core import names
from tunehand.server.db.tables import (
    account_ids,
    accounts,
    app_passwords,
    devices,
    login_attempts,
    tokens,
)
from tunehand.server.db.upsert import upsert


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class TokenRow:
    hash: str
    kind: str
    account_id: int
    device_id: str
    family: str
    expires_ms: int
    used_ms: int | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    account_id: int
    name: str
    last_seen_ms: int
    address: str
    revoked: bool
    kind: str = "terminal"
    """`web` for a browser tab; `terminal` for the rest (TUI, receiver, ctl, mpd)."""


async def create_account(conn: AsyncConnection, name: str, pw_hash: str, now_ms: int) -> int:
    """A new account; its id was never any other account's (see `tables.account_ids`)."""
    values: dict[str, object] = {"name": name, "password_hash": pw_hash, "created_ms": now_ms}
    if conn.dialect.name == "sqlite":
        got = await conn.execute(sa.insert(account_ids))
        new_pk = got.inserted_primary_key
        assert new_pk is not None
        values["id"] = int(new_pk[0])
        await conn.execute(sa.delete(account_ids).where(account_ids.c.id < values["id"]))
    res = await conn.execute(sa.insert(accounts).values(**values))
    pk = res.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def account_by_name(conn: AsyncConnection, name: str) -> Account | None:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.name == name))).first()
    return Account(row.id, row.name, row.password_hash) if row else None


async def account_by_id(conn: AsyncConnection, account_id: int) -> Account | None:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    return Account(row.id, row.name, row.password_hash) if row else None


async def list_accounts(conn: AsyncConnection) -> list[Account]:
    rows = await conn.execute(sa.select(accounts).order_by(accounts.c.name))
    return [Account(r.id, r.name, r.password_hash) for r in rows]


async def delete_account(conn: AsyncConnection, account_id: int) -> None:
    # Children first, so this works with or without foreign-key cascades.
    from tunehand.server.db import tables as t

    hosted = sa.select(t.jams.c.host_id).where(t.jams.c.host_id == account_id)
    for jt in (t.jam_members, t.jam_kicked):
        await conn.execute(sa.delete(jt).where(jt.c.host_id.in_(hosted)))
    await conn.execute(sa.delete(t.jam_kicked).where(t.jam_kicked.c.account_id == account_id))
    await conn.execute(sa.delete(t.jams).where(t.jams.c.host_id == account_id))
    for table in (
        t.jam_members,
        t.app_passwords,
        t.tokens,
        t.devices,
        t.sessions,
        t.command_results,
        t.playlists,
        t.likes,
        t.history,
        t.remote_tracks,
        t.device_codes,
        t.now_playing,
        t.ratings,
        t.bookmarks,
        t.play_queue_seen,
        t.episodes,
        t.podcasts,
        t.resume_points,
        t.listening,
        t.transfers,
    ):
        await conn.execute(sa.delete(table).where(table.c.account_id == account_id))
    await conn.execute(sa.delete(accounts).where(accounts.c.id == account_id))


async def set_password(conn: AsyncConnection, account_id: int, pw_hash: str) -> None:
    await conn.execute(
        sa.update(accounts).where(accounts.c.id == account_id).values(password_hash=pw_hash)
    )


# --- tokens -----------------------------------------------------------------------


async def insert_token(conn: AsyncConnection, row: TokenRow) -> None:
    await conn.execute(
        sa.insert(tokens).values(
            hash=row.hash,
            kind=row.kind,
            account_id=row.account_id,
            device_id=row.device_id,
            family=row.family,
            expires_ms=row.expires_ms,
            used_ms=row.used_ms,
            revoked=row.revoked,
        )
    )


async def token(conn: AsyncConnection, token_hash: str, kind: str) -> TokenRow | None:
    row = (
        await conn.execute(
            sa.select(tokens).where(tokens.c.hash == token_hash, tokens.c.kind == kind)
        )
    ).first()
    if row is None:
        return None
    return TokenRow(
        row.hash,
        row.kind,
        row.account_id,
        row.device_id,
        row.family,
        row.expires_ms,
        row.used_ms,
        bool(row.revoked),
    )


async def mark_used(conn: AsyncConnection, token_hash: str, now_ms: int) -> bool:
    """Mark a refresh token used; False when another request used it first."""
    res = await conn.execute(
        sa.update(tokens)
        .where(tokens.c.hash == token_hash, tokens.c.used_ms.is_(None))
        .values(used_ms=now_ms)
    )
    return res.rowcount == 1


async def revoke_family(conn: AsyncConnection, account_id: int, family: str) -> None:
    await conn.execute(
        sa.update(tokens)
        .where(tokens.c.account_id == account_id, tokens.c.family == family)
        .values(revoked=True)
    )


async def revoke_device_tokens(conn: AsyncConnection, account_id: int, device_id: str) -> None:
    await conn.execute(
        sa.update(tokens)
        .where(tokens.c.account_id == account_id, tokens.c.device_id == device_id)
        .values(revoked=True)
    )


async def purge_expired_tokens(conn: AsyncConnection, now_ms: int) -> int:
    res = await conn.execute(sa.delete(tokens).where(tokens.c.expires_ms < now_ms))
    return int(res.rowcount or 0)


async def purge_devices(conn: AsyncConnection, seen_before_ms: int, now_ms: int) -> int:
    """Delete device rows that can do nothing any more: revoked ones, and ones not seen
    since `seen_before_ms` that hold no live token."""
    live = (
        sa.select(tokens.c.hash)
        .where(
            tokens.c.device_id == devices.c.id,
            tokens.c.account_id == devices.c.account_id,
            tokens.c.revoked.is_(False),
            tokens.c.expires_ms >= now_ms,
        )
        .exists()
    )
    # An app password (a Subsonic app's device) lives until it is revoked.
    password = (
        sa.select(app_passwords.c.device_id)
        .where(app_passwords.c.device_id == devices.c.id)
        .exists()
    )
    stale = sa.and_(devices.c.last_seen_ms < seen_before_ms, ~live, ~password)
    res = await conn.execute(sa.delete(devices).where(sa.or_(devices.c.revoked.is_(True), stale)))
    return int(res.rowcount or 0)


# --- devices ----------------------------------------------------------------------


async def device(conn: AsyncConnection, device_id: str) -> DeviceRow | None:
    row = (await conn.execute(sa.select(devices).where(devices.c.id == device_id))).first()
    if row is None:
        return None
    return DeviceRow(
        row.id, row.account_id, row.name, row.last_seen_ms, row.address, bool(row.revoked), row.kind
    )


async def _hold_names(conn: AsyncConnection, account_id: int) -> None:
    """Hold the account's device names until this transaction ends, so two devices
    naming themselves at once never both read `HOST` as free. PostgreSQL: lock the
    account's row (NO KEY UPDATE leaves other inserts' foreign-key checks alone).
    SQLite: take its write lock now (pysqlite begins a transaction only at its first
    write, so the names read before that could be stale by the time it writes)."""
    if conn.dialect.name == "postgresql":
        held = sa.select(accounts.c.id).where(accounts.c.id == account_id)
        await conn.execute(held.with_for_update(key_share=True))
    else:
        await conn.execute(
            sa.update(accounts).where(accounts.c.id == account_id).values(id=accounts.c.id)
        )


async def upsert_device(
    conn: AsyncConnection,
    account_id: int,
    device_id: str,
    name: str,
    now_ms: int,
    address: str,
    kind: str | None = None,
    *,
    default: bool = False,
) -> str:
    """Register or refresh a device of this account (another account's device is left
    alone); answer the name it has.

    `name` is the name the device asks for. One the user gave (`default` False) is kept
    as given, even when another device has it; a default the client made up (`HOST`,
    `HOST-mpd`) gets `-2`, `-3`, ... when another device of the account has it. The
    name is set only when the device asks for another one than last time, so a default
    made unique stays as it is and a rename (`ctl devices rename`) outlives reconnects.
    `kind` is set when given (a login says what logs in); a channel's registration gives
    none and keeps it.
    """
    row = (
        await conn.execute(
            sa.select(devices.c.name, devices.c.asked_name, devices.c.asked_default).where(
                devices.c.id == device_id, devices.c.account_id == account_id
            )
        )
    ).first()
    if row is not None and row.asked_name == name and bool(row.asked_default) == default:
        final = str(row.name)
    elif default:
        await _hold_names(conn, account_id)
        others = await conn.execute(
            sa.select(devices.c.name).where(
                devices.c.account_id == account_id,
                devices.c.id != device_id,
                devices.c.revoked.is_(False),
            )
        )
        final = names.unique(name, {str(r.name) for r in others})
    else:
        final = name
    seen: dict[str, object] = {
        "name": final,
        "asked_name": name,
        "asked_default": default,
        "last_seen_ms": now_ms,
        "address": address,
    }
    if kind is not None:
        seen["kind"] = kind
    await upsert(
        conn,
        devices,
        {"id": device_id, "account_id": account_id, **seen},
        ["id"],
        {**seen, "revoked": False},
        where=devices.c.account_id == account_id,
    )
    return final


async def rename_device(conn: AsyncConnection, account_id: int, device_id: str, name: str) -> bool:
    """Rename a (not revoked) device of this account; False when it has none by that id."""
    res = await conn.execute(
        sa.update(devices)
        .where(
            devices.c.id == device_id,
            devices.c.account_id == account_id,
            devices.c.revoked.is_(False),
        )
        .values(name=name)
    )
    return bool(res.rowcount)


async def touch_device(conn: AsyncConnection, account_id: int, device_id: str, now_ms: int) -> None:
    await conn.execute(
        sa.update(devices)
        .where(devices.c.id == device_id, devices.c.account_id == account_id)
        .values(last_seen_ms=now_ms)
    )


async def seen(
    conn: AsyncConnection, account_id: int, device_id: str, now_ms: int, address: str
) -> None:
    """A device without a channel (a Subsonic app) was seen now, from `address`."""
    await conn.execute(
        sa.update(devices)
        .where(devices.c.id == device_id, devices.c.account_id == account_id)
        .values(last_seen_ms=now_ms, address=address)
    )


async def list_devices(conn: AsyncConnection, account_id: int) -> list[DeviceRow]:
    rows = await conn.execute(
        sa.select(devices)
        .where(devices.c.account_id == account_id, devices.c.revoked.is_(False))
        .order_by(devices.c.name)
    )
    return [
        DeviceRow(r.id, r.account_id, r.name, r.last_seen_ms, r.address, bool(r.revoked), r.kind)
        for r in rows
    ]


async def list_devices_of(
    conn: AsyncConnection, account_ids: Sequence[int]
) -> dict[int, list[DeviceRow]]:
    """`list_devices` of several accounts (a jam's members) in one query."""
    out: dict[int, list[DeviceRow]] = {a: [] for a in account_ids}
    if not out:
        return out
    rows = await conn.execute(
        sa.select(devices)
        .where(devices.c.account_id.in_(list(out)), devices.c.revoked.is_(False))
        .order_by(devices.c.name)
    )
    for r in rows:
        out[r.account_id].append(
            DeviceRow(
                r.id, r.account_id, r.name, r.last_seen_ms, r.address, bool(r.revoked), r.kind
            )
        )
    return out


async def device_addresses(conn: AsyncConnection, account_id: int) -> list[str]:
    """The last addresses of the account's devices (not revoked)."""
    rows = await conn.execute(
        sa.select(devices.c.address)
        .where(devices.c.account_id == account_id, devices.c.revoked.is_(False))
        .distinct()
    )
    return [r.address for r in rows if r.address]


async def count_devices(conn: AsyncConnection, account_id: int) -> int:
    """Device rows of the account, revoked ones included (they are rows all the same)."""
    res = await conn.execute(
        sa.select(sa.func.count()).select_from(devices).where(devices.c.account_id == account_id)
    )
    return int(res.scalar_one())


async def revoke_device(conn: AsyncConnection, account_id: int, device_id: str) -> None:
    await conn.execute(
        sa.update(devices)
        .where(devices.c.id == device_id, devices.c.account_id == account_id)
        .values(revoked=True)
    )
    await revoke_device_tokens(conn, account_id, device_id)


# --- login throttling -------------------------------------------------------------


async def failures(conn: AsyncConnection, key: str) -> tuple[int, int]:
    row = (await conn.execute(sa.select(login_attempts).where(login_attempts.c.key == key))).first()
    return (row.failures, row.last_ms) if row else (0, 0)


async def failures_of(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
    """`failures` of several keys in one query (the keys with none are left out)."""
    rows = await conn.execute(sa.select(login_attempts).where(login_attempts.c.key.in_(keys)))
    return {r.key: (r.failures, r.last_ms) for r in rows}


async def record_failure(conn: AsyncConnection, key: str, now_ms: int) -> None:
    await upsert(
        conn,
        login_attempts,
        {"key": key, "failures": 1, "last_ms": now_ms},
        ["key"],
        {"failures": login_attempts.c.failures + 1, "last_ms": now_ms},
    )


async def begin_attempt(conn: AsyncConnection, key: str, now_ms: int) -> tuple[int, int]:
    """Count an attempt under `key` before it is checked; (attempts, previous attempt ms).

    The count is raised first, which takes the row's write lock (SQLite's database lock,
    PostgreSQL's row lock) until the transaction ends, so parallel attempts see each
    other: the n-th of a burst reads n. The caller clears the key on success.
    """
    await upsert(
        conn,
        login_attempts,
        {"key": key, "failures": 1, "last_ms": now_ms},
        ["key"],
        {"failures": login_attempts.c.failures + 1},
    )
    count, last = await failures(conn, key)
    await conn.execute(
        sa.update(login_attempts).where(login_attempts.c.key == key).values(last_ms=now_ms)
    )
    return count, last


async def undo_attempt(conn: AsyncConnection, key: str) -> None:
    """Take back one attempt counted by `begin_attempt` (never below zero)."""
    await conn.execute(
        sa.update(login_attempts)
        .where(login_attempts.c.key == key, login_attempts.c.failures > 0)
        .values(failures=login_attempts.c.failures - 1)
    )


async def count_in_window(
    conn: AsyncConnection, key: str, now_ms: int, window_ms: int
) -> tuple[int, int]:
    """Count one more event under `key` in a fixed window; (count, window start ms).

    Kept in the login-attempts table: `failures` is the count, `last_ms` the start of
    the window, which begins again once `window_ms` has passed. The count is raised by
    one statement before it is read, which takes the row's write lock until the
    transaction ends: parallel callers are serialized on it and each reads its own
    count (the n-th of a burst reads n), never the same one.
    """
    t = login_attempts
    expired = t.c.last_ms <= now_ms - window_ms
    await upsert(
        conn,
        t,
        {"key": key, "failures": 1, "last_ms": now_ms},
        ["key"],
        {
            "failures": sa.case((expired, 1), else_=t.c.failures + 1),
            "last_ms": sa.case((expired, now_ms), else_=t.c.last_ms),
        },
    )
    return await failures(conn, key)


async def purge_attempts(conn: AsyncConnection, before_ms: int) -> int:
    """Forget counts last touched before `before_ms`."""
    res = await conn.execute(sa.delete(login_attempts).where(login_attempts.c.last_ms < before_ms))
    return int(res.rowcount or 0)


async def clear_failures(conn: AsyncConnection, key: str) -> None:
    await conn.execute(sa.delete(login_attempts).where(login_attempts.c.key == key))
