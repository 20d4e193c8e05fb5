"""Passwords (argon2id), tokens (opaque, stored hashed) and login throttling.

An access token is short-lived; a refresh token rotates on every use, and using an
already used refresh token again revokes its whole family (that device's login) --
except within a short grace window, from the same client address, while the pair it
was rotated into is still unused (the answer was lost on the network): then the same
pair is answered again. A rotated pair is derived from the old refresh token and the
address that rotated it with a server key (HMAC), so it can be answered again without
keeping any token in clear, and a re-ask from another address finds no pair (the
device id a client sends proves nothing: anyone holding the token can send it).
Only SHA-256 hashes of tokens are stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tunehand.errors import AuthError, UsageError
from tunehand.server import security
from tunehand.server.db import accounts as q

ACCESS_TTL_MS = 15 * 60 * 1000
REFRESH_TTL_MS = 90 * 24 * 3600 * 1000
FREE_FAILURES = 3
MAX_DELAY_S = 300
MAX_NAME = 64
MAX_PASSWORD = 1024

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
_dummy: list[str] = []


def prime() -> None:
    """Make the dummy hash before the first login, so it costs no unknown user extra time."""
    _dummy_hash()


def _dummy_hash() -> str:
    """A real hash to verify against for unknown users (made once)."""
    if not _dummy:
        _dummy.append(_hasher.hash("tunehand-dummy-password"))
    return _dummy[0]


class Throttled(AuthError):
    def __init__(self, retry_after_s: int, what: str = "too many failed attempts") -> None:
        super().__init__(f"{what}: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request or channel acts for."""

    account_id: int
    account_name: str
    device_id: str
    family: str
    expires_ms: int = 0
    """When the access token it came with expires (ms since the epoch)."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in_s: int
    device_id: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "._-@" for c in name):
        raise UsageError("user name: 1 to 64 letters, digits or . _ - @")
    return name


async def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise UsageError("password: must be 1 to 1024 characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(pw_hash: str, password: str) -> bool:
    def run() -> bool:
        try:
            return bool(_hasher.verify(pw_hash, password))
        except Argon2Error:
            return False

    return await asyncio.to_thread(run)


def throttle_delay_s(failures: int) -> int:
    """Growing delay after the first few failures: 2, 4, 8 ... seconds, capped."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(MAX_DELAY_S, 2 ** (failures - FREE_FAILURES + 1)))


async def begin_attempts(conn: AsyncConnection, keys: list[str], now_ms: int) -> None:
    """Count an attempt under every key before it is checked, or raise `Throttled` (which
    rolls the count back: a refused attempt guessed nothing). Parallel attempts are
    serialized on the rows, so a burst gets no more than the free attempts."""
    for key in keys:
        attempts, last = await q.begin_attempt(conn, key, now_ms)
        wait_ms = throttle_delay_s(attempts - 1) * 1000 - (now_ms - last)
        if wait_ms > 0:
            raise Throttled(max(1, wait_ms // 1000))


async def check_throttle(conn: AsyncConnection, keys: list[str], now_ms: int) -> None:
    for key in keys:
        fails, last = await q.failures(conn, key)
        wait_ms = throttle_delay_s(fails) * 1000 - (now_ms - last)
        if wait_ms > 0:
            raise Throttled(max(1, wait_ms // 1000))


async def _store_pair(
    conn: AsyncConnection,
    access: str,
    refresh: str,
    account_id: int,
    device_id: str,
    family: str,
    now_ms: int,
) -> TokenPair:
    for tok, kind, ttl in ((access, "access", ACCESS_TTL_MS), (refresh, "refresh", REFRESH_TTL_MS)):
        await q.insert_token(
            conn,
            q.TokenRow(
                token_hash(tok), kind, account_id, device_id, family, now_ms + ttl, None, False
            ),
        )
    return TokenPair(access, refresh, ACCESS_TTL_MS // 1000, device_id)


async def _issue(
    conn: AsyncConnection, account_id: int, device_id: str, family: str, now_ms: int
) -> TokenPair:
    access = "tha_" + secrets.token_urlsafe(32)
    refresh = "thr_" + secrets.token_urlsafe(32)
    return await _store_pair(conn, access, refresh, account_id, device_id, family, now_ms)


async def check_password(
    engine: AsyncEngine, name: str, password: str, address: str, now_ms: int
) -> q.Account:
    """The account for a right password, with login throttling per user and per address;
    an unknown user costs the same time as a wrong password.

    Every attempt is counted as a failure *before* the password is checked and the count
    is cleared only when it was right, so a burst of parallel guesses cannot all slip
    through the throttle while the first ones are still being hashed.
    """
    keys = [f"user:{name[:MAX_NAME]}", f"addr:{address}"]
    async with engine.begin() as conn:
        await begin_attempts(conn, keys, now_ms)
        account = await q.account_by_name(conn, name) if len(name) <= MAX_NAME else None
    # Same work for an unknown user as for a wrong password.
    ok = await _verify(account.password_hash if account else _dummy_hash(), password[:MAX_PASSWORD])
    if account is None or not ok:
        raise AuthError("wrong user name or password")
    async with engine.begin() as conn:
        for key in keys:
            await q.clear_failures(conn, key)
    return account


async def start_family(
    conn: AsyncConnection,
    account_id: int,
    device_id: str,
    device_name: str,
    address: str,
    now_ms: int,
) -> TokenPair:
    """Register `device_id` with the account and give it a new token family (its earlier
    tokens are revoked)."""
    existing = await q.device(conn, device_id)
    if existing is not None and existing.account_id != account_id:
        raise AuthError("this device id belongs to another account: use another --config-dir")
    await q.upsert_device(conn, account_id, device_id, device_name, now_ms, address)
    await q.revoke_device_tokens(conn, account_id, device_id)
    return await _issue(conn, account_id, device_id, secrets.token_hex(8), now_ms)


async def login(
    engine: AsyncEngine,
    name: str,
    password: str,
    device_id: str,
    device_name: str,
    address: str,
    now_ms: int,
) -> TokenPair:
    """Check a password and start a new token family for `device_id`."""
    account = await check_password(engine, name, password, address, now_ms)
    async with engine.begin() as conn:
        return await start_family(conn, account.id, device_id, device_name, address, now_ms)


def _rotated(key: bytes, parent: str, address: str) -> tuple[str, str]:
    """The (access, refresh) pair a refresh token rotates into from `address`: the same
    every time."""

    def mac(kind: bytes) -> str:
        msg = b"tunehand-rotation\x00" + kind + b"\x00" + parent.encode()
        digest = hmac.new(key, msg + b"\x00" + address.encode(), "sha256")
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    return "tha_" + mac(b"access"), "thr_" + mac(b"refresh")


async def _answer_again(
    conn: AsyncConnection, row: q.TokenRow, parent: str, key: bytes, address: str, now_ms: int
) -> TokenPair | None:
    """The pair `parent` (of `row`) was rotated into from `address`, when it is still
    live and unused (none when it was rotated from another address)."""
    access, refresh = _rotated(key, parent, address)
    child = await q.token(conn, token_hash(refresh), "refresh")
    acc = await q.token(conn, token_hash(access), "access")
    if child is None or acc is None or child.used_ms is not None:
        return None
    for tok in (child, acc):
        if tok.revoked or tok.family != row.family or tok.expires_ms < now_ms:
            return None
    return TokenPair(access, refresh, max(1, (acc.expires_ms - now_ms) // 1000), row.device_id)


async def refresh(
    engine: AsyncEngine,
    refresh_token: str,
    now_ms: int,
    *,
    key: bytes,
    device_id: str = "",
    grace_ms: int = 0,
    address: str = "",
) -> TokenPair:
    """Rotate a refresh token for a client at `address`. A token used again within
    `grace_ms` from the same address (and naming the same device), whose rotated pair is
    still unused, gets that same pair again; any other reuse revokes the family."""
    async with engine.begin() as conn:
        row = await q.token(conn, token_hash(refresh_token), "refresh")
        if row is None or row.revoked or row.expires_ms < now_ms:
            raise AuthError("logged out: the login has expired or was revoked; log in again")
        pair: TokenPair | None = None
        if row.used_ms is None and await q.mark_used(conn, row.hash, now_ms):
            access, refresh_ = _rotated(key, refresh_token, address)
            pair = await _store_pair(
                conn, access, refresh_, row.account_id, row.device_id, row.family, now_ms
            )
        else:
            used = await q.token(conn, row.hash, "refresh")
            used_ms = used.used_ms if used is not None else None
            if (
                grace_ms > 0
                and device_id == row.device_id
                and used_ms is not None
                and now_ms - used_ms <= grace_ms
            ):
                pair = await _answer_again(conn, row, refresh_token, key, address, now_ms)
            if pair is None:
                await q.revoke_family(conn, row.account_id, row.family)
                security.event(
                    security.REFRESH_REUSED, account=row.account_id, device=row.device_id
                )
    if pair is None:
        raise AuthError("logged out: this login was used from somewhere else; log in again")
    return pair


async def authenticate(engine: AsyncEngine, access_token: str, now_ms: int) -> Principal:
    if not access_token or len(access_token) > 200:
        raise AuthError("not logged in")
    async with engine.connect() as conn:
        row = await q.token(conn, token_hash(access_token), "access")
        if row is None or row.revoked or row.expires_ms < now_ms:
            raise AuthError("the access token is expired or revoked")
        account = await q.account_by_id(conn, row.account_id)
    if account is None:
        raise AuthError("the account no longer exists")
    return Principal(account.id, account.name, row.device_id, row.family, row.expires_ms)


async def logout(engine: AsyncEngine, who: Principal) -> None:
    async with engine.begin() as conn:
        await q.revoke_family(conn, who.account_id, who.family)
