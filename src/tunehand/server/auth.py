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
from collections.abc import Sequence
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tunehand.errors import AuthError, QuotaError, UsageError
from tunehand.server import security
from tunehand.server.db import accounts as q
from tunehand.server.limits import QUOTAS, Busy, HashGate, network

ACCESS_TTL_MS = 15 * 60 * 1000
REFRESH_TTL_MS = 90 * 24 * 3600 * 1000
FREE_FAILURES = 3
NETWORK_FREE_FAILURES = 20
"""Failures from one network (/24, /64) before its delays begin: its hosts share them."""
USER_FREE_FAILURES = 100
"""Failures for one user from networks none of its devices use, before their delays
begin (each network has its own `FREE_FAILURES` for the user besides)."""
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
    device_name: str = ""
    """The name the device got at login (a default made unique); "" on a refresh."""


def new_device_id() -> str:
    """A device id minted at login for a client that proposes none: "d" + 20 hex
    characters (80 random bits), the form the tunehand client stores."""
    return "d" + secrets.token_hex(10)


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


def throttle_delay_s(failures: int, free: int = FREE_FAILURES) -> int:
    """Growing delay after the first `free` failures: 2, 4, 8 ... seconds, capped."""
    if failures < free:
        return 0
    return int(min(MAX_DELAY_S, 2 ** min(30, failures - free + 1)))


Key = str | tuple[str, int]
"""A throttle key, with the failures it allows before its delays begin (FREE_FAILURES
when not given)."""


def split_key(key: Key) -> tuple[str, int]:
    return (key, FREE_FAILURES) if isinstance(key, str) else key


async def begin_attempts(conn: AsyncConnection, keys: Sequence[Key], now_ms: int) -> None:
    """Count an attempt under every key before it is checked, or raise `Throttled` (which
    rolls the count back: a refused attempt guessed nothing). Parallel attempts are
    serialized on the rows, so a burst gets no more than the free attempts."""
    for key, free in map(split_key, keys):
        attempts, last = await q.begin_attempt(conn, key, now_ms)
        wait_ms = throttle_delay_s(attempts - 1, free) * 1000 - (now_ms - last)
        if wait_ms > 0:
            raise Throttled(max(1, wait_ms // 1000))


async def check_throttle(conn: AsyncConnection, keys: Sequence[Key], now_ms: int) -> None:
    for key, free in map(split_key, keys):
        fails, last = await q.failures(conn, key)
        wait_ms = throttle_delay_s(fails, free) * 1000 - (now_ms - last)
        if wait_ms > 0:
            raise Throttled(max(1, wait_ms // 1000))


def address_keys(prefix: str, address: str) -> list[Key]:
    """Throttle keys of a client: its exact address and its network (which its hosts
    share, so it allows more)."""
    keys: list[Key] = [f"{prefix}addr:{address}"]
    net = network(address)
    if net != address:
        keys.append((f"{prefix}net:{net}", NETWORK_FREE_FAILURES))
    return keys


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
    engine: AsyncEngine,
    name: str,
    password: str,
    address: str,
    now_ms: int,
    gate: HashGate | None = None,
) -> q.Account:
    """The account for a right password, with login throttling; an unknown user costs
    the same time as a wrong password.

    Every attempt is counted as a failure *before* the password is checked and the count
    is cleared only when it was right, so a burst of parallel guesses cannot all slip
    through the throttle while the first ones are still being hashed.

    The keys: the address and its network (`address_keys`); the user from this network
    (`FREE_FAILURES`); and, from a network none of the user's devices was seen on, the
    user everywhere (`USER_FREE_FAILURES`). So strangers failing from elsewhere never
    lock the user out of its own networks, while a guesser spread over many networks
    still meets a delay per user. A right password clears the address's and the
    user-and-network's counts, and takes back only its own attempt from the shared ones
    (a network's, the user's), which a guesser could otherwise reset with a login of
    its own. Hashing waits for a slot of `gate` (see `limits.HashGate`).
    """
    name = name[: MAX_NAME + 1]
    net = network(address)
    own: list[Key] = [f"addr:{address}", f"user:{name}@{net}"]
    shared: list[Key] = address_keys("", address)[1:]
    async with engine.begin() as conn:
        account = await q.account_by_name(conn, name) if len(name) <= MAX_NAME else None
        seen = await q.device_addresses(conn, account.id) if account is not None else []
        if net not in {network(a) for a in seen}:
            shared.append((f"user:{name}", USER_FREE_FAILURES))
        await begin_attempts(conn, own + shared, now_ms)
    # Same work for an unknown user as for a wrong password.
    pw_hash = account.password_hash if account else _dummy_hash()
    try:
        if gate is None:
            ok = await _verify(pw_hash, password[:MAX_PASSWORD])
        else:
            async with gate.slot(address):
                ok = await _verify(pw_hash, password[:MAX_PASSWORD])
    except Busy as exc:
        async with engine.begin() as conn:  # not checked: not a guess
            for key, _ in map(split_key, own + shared):
                await q.undo_attempt(conn, key)
        raise Throttled(exc.retry_after_s, str(exc)) from None
    if account is None or not ok:
        raise AuthError("wrong user name or password")
    async with engine.begin() as conn:
        for key, _ in map(split_key, own):
            await q.clear_failures(conn, key)
        for key, _ in map(split_key, shared):
            await q.undo_attempt(conn, key)
    return account


async def check_device_room(conn: AsyncConnection, account_id: int) -> None:
    """Raise `QuotaError` when the account has as many device rows as it may keep."""
    most = QUOTAS.devices
    if await q.count_devices(conn, account_id) >= most:
        raise QuotaError(
            f"this account has {most} devices, the most it may keep: revoke some"
            " (`tunehand ctl revoke`; revoked ones are forgotten within the hour)"
        )


async def start_family(
    conn: AsyncConnection,
    account_id: int,
    device_id: str,
    device_name: str,
    address: str,
    now_ms: int,
    kind: str = "terminal",
    name_default: bool = False,
) -> TokenPair:
    """Register `device_id` (a device of `kind`: see `DeviceRow.kind`) with the account
    and give it a new token family (its earlier tokens are revoked). A `name_default`
    name is made unique within the account (see `upsert_device`)."""
    existing = await q.device(conn, device_id)
    if existing is not None and existing.account_id != account_id:
        raise AuthError("this device id belongs to another account: use another --config-dir")
    if existing is None:
        await check_device_room(conn, account_id)
    name = await q.upsert_device(
        conn, account_id, device_id, device_name, now_ms, address, kind, default=name_default
    )
    await q.revoke_device_tokens(conn, account_id, device_id)
    pair = await _issue(conn, account_id, device_id, secrets.token_hex(8), now_ms)
    return replace(pair, device_name=name)


async def login(
    engine: AsyncEngine,
    name: str,
    password: str,
    device_id: str,
    device_name: str,
    address: str,
    now_ms: int,
    gate: HashGate | None = None,
    kind: str = "terminal",
    name_default: bool = False,
) -> TokenPair:
    """Check a password and start a new token family for `device_id`."""
    account = await check_password(engine, name, password, address, now_ms, gate)
    async with engine.begin() as conn:
        return await start_family(
            conn, account.id, device_id, device_name, address, now_ms, kind, name_default
        )


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
