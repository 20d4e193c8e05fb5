"""Device-code logins (RFC 8628 style): a new device asks for a code, shows its short
user code, and polls; a logged-in device of an account (or that account's password on
the server's approval page) approves it, and the next poll gets a new token family.

A device code is a long secret stored only as its SHA-256 hash; a user code is eight
letters from an alphabet without vowels or look-alike digits. Codes expire (10 minutes
by default) and are used once. Guessing user codes is throttled per address and per
account with the growing delays of password logins, so the 20^8 code space is out of
reach.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.core import names
from tunehand.errors import AuthError, StoreError
from tunehand.server import auth
from tunehand.server.db import accounts as qa
from tunehand.server.db import device_codes as dq
from tunehand.server.limits import HashGate, network

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels, no digits: nothing to misread
USER_CODE_LEN = 8
INTERVAL_S = 5
SLOW_DOWN_S = 5
KEEP_EXPIRED_MS = 3600 * 1000  # answer "expired_token" (not "unknown") for an hour
FORGET_FAILURES_MS = 24 * 3600 * 1000
STARTS_PER_ADDRESS = 20
"""New codes one address may ask for per `START_WINDOW_MS`."""
START_WINDOW_MS = 10 * 60 * 1000
STARTS_PER_NETWORK = 60
"""... and one network (/24, /64) may ask for: one host can hold many of its addresses."""
MAX_PENDING = 10_000
"""Codes waiting for an answer at once, server-wide: a bound on what strangers can store."""


class GrantError(AuthError):
    """A device-code answer other than tokens; `code` is the RFC 8628 error code."""

    def __init__(self, status: int, code: str, message: str, interval_s: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.interval_s = interval_s


@dataclass(frozen=True, slots=True)
class Started:
    device_code: str
    user_code: str  # shown as XXXX-XXXX
    expires_in_s: int
    interval_s: int


def new_user_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    return "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(USER_CODE_LEN))


def normalize(raw: str) -> str:
    """ "wdjb-mjht", "WDJB MJHT" -> "WDJBMJHT"; "" when it cannot be a user code."""
    code = "".join(c for c in raw.upper() if c not in "- ")
    ok = len(code) == USER_CODE_LEN and all(c in ALPHABET for c in code)
    return code if ok else ""


def shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


async def start(
    engine: AsyncEngine,
    device_id: str,
    device_name: str,
    ttl_s: int,
    now_ms: int,
    address: str = "",
    name_default: bool = False,
) -> Started:
    """A new pending code. Anyone may ask (it is how a new device begins), so asking is
    limited per address (`STARTS_PER_ADDRESS` per 10 minutes) and server-wide
    (`MAX_PENDING`); beyond either the answer is 429 with Retry-After."""
    async with engine.begin() as conn:
        # Counted and inserted in one transaction, the count raised first (a row lock
        # until the end): parallel starts from one address never read the same count.
        net = network(address)
        limits = [(f"dcstart:{address}", STARTS_PER_ADDRESS, "this address")]
        if net != address:
            limits.append((f"dcstart-net:{net}", STARTS_PER_NETWORK, "this network"))
        for key, most, where in limits:
            count, window_start = await qa.count_in_window(conn, key, now_ms, START_WINDOW_MS)
            if count > most:
                raise auth.Throttled(
                    max(1, (window_start + START_WINDOW_MS - now_ms) // 1000),
                    f"too many device-code logins from {where}",
                )
        await dq.purge_expired(conn, now_ms - KEEP_EXPIRED_MS)
        if await dq.count_pending(conn, now_ms) >= MAX_PENDING:
            raise auth.Throttled(60, "too many device-code logins are waiting")
        name = names.clean(device_name)
        for _ in range(8):
            device_code = "thd_" + secrets.token_urlsafe(32)
            user_code = new_user_code()
            if await dq.insert(
                conn,
                auth.token_hash(device_code),
                user_code,
                device_id,
                name or device_id,
                now_ms,
                now_ms + ttl_s * 1000,
                INTERVAL_S,
                address,
                name_default=bool(name) and name_default,
            ):
                return Started(device_code, shown(user_code), ttl_s, INTERVAL_S)
    raise StoreError("could not pick a free user code; try again")


async def poll(
    engine: AsyncEngine, device_code: str, address: str, now_ms: int, kind: str = "terminal"
) -> tuple[auth.TokenPair, str]:
    """Tokens and the account name once approved (the device registered as `kind`);
    otherwise raise the RFC 8628 answer."""
    refusal: GrantError | None = None
    async with engine.begin() as conn:
        row = await dq.by_hash(conn, auth.token_hash(device_code)) if device_code else None
        if row is None:
            raise GrantError(400, "invalid_grant", "unknown device code: start the login again")
        if row.status == "used":
            raise GrantError(400, "invalid_grant", "this code was already used")
        if row.expires_ms < now_ms:
            raise GrantError(400, "expired_token", "the code has expired: start the login again")
        if row.status == "denied":
            raise GrantError(400, "access_denied", "the login was denied")
        if row.status == "pending":
            too_soon = row.last_poll_ms is not None and (
                now_ms - row.last_poll_ms < row.interval_s * 1000
            )
            interval = row.interval_s + (SLOW_DOWN_S if too_soon else 0)
            await dq.polled(conn, row.code_hash, now_ms, interval)
            if too_soon:
                refusal = GrantError(
                    400, "slow_down", f"polling too fast: wait {interval} s", interval
                )
            else:
                refusal = GrantError(400, "authorization_pending", "waiting for approval", interval)
        else:
            if row.account_id is None or not await dq.consume(conn, row.code_hash):
                raise GrantError(400, "invalid_grant", "this code was already used")
            account = await qa.account_by_id(conn, row.account_id)
            if account is None:
                raise GrantError(400, "access_denied", "the approving account no longer exists")
            try:
                pair = await auth.start_family(
                    conn,
                    account.id,
                    row.device_id,
                    row.device_name,
                    address,
                    now_ms,
                    kind,
                    row.name_default,
                )
            except AuthError as exc:
                raise GrantError(400, "access_denied", str(exc)) from None
            return pair, account.name
    assert refusal is not None
    raise refusal


async def _forget_old_failures(engine: AsyncEngine, keys: list[str], now_ms: int) -> None:
    async with engine.begin() as conn:
        for key in keys:
            fails, last = await qa.failures(conn, key)
            if fails and now_ms - last > FORGET_FAILURES_MS:
                await qa.clear_failures(conn, key)


@dataclass(frozen=True, slots=True)
class Pending:
    """What the approving side is shown before it confirms: the device that asked."""

    user_code: str  # shown as XXXX-XXXX
    device_id: str
    device_name: str
    address: str
    asked_ms: int
    expires_ms: int


async def _decide(
    engine: AsyncEngine,
    user_code: str,
    account_id: int,
    decision: str,
    address: str,
    now_ms: int,
) -> Pending:
    """Find a pending code for `account_id` and, unless `decision` is "" (only look),
    mark it "approved" or "denied".

    Wrong codes count against the address and the account; a right code never clears
    them (else an attacker could reset the count with codes of their own).

    Like a password, every attempt is counted before the code is looked up (so a
    parallel burst sees itself and gets only the free attempts); a code that exists then
    takes back its own count, and only that.
    """
    keys: list[auth.Key] = [*auth.address_keys("code-", address), f"code-acct:{account_id}"]
    await _forget_old_failures(engine, [auth.split_key(k)[0] for k in keys], now_ms)
    code = normalize(user_code)
    async with engine.begin() as conn:
        await auth.begin_attempts(conn, keys, now_ms)
    refusal: GrantError | None = None
    async with engine.begin() as conn:
        row = await dq.by_user_code(conn, code) if code else None
        if row is None:
            refusal = GrantError(
                404, "not_found", "no such code: check the code the new device shows"
            )
        else:
            for key in keys:
                await qa.undo_attempt(conn, auth.split_key(key)[0])
            other = await qa.device(conn, row.device_id)
            if row.expires_ms < now_ms:
                refusal = GrantError(
                    400, "expired_token", "this code has expired: start the login again"
                )
            elif row.status != "pending":
                refusal = GrantError(400, "invalid_grant", "this code was already used")
            elif other is not None and other.account_id != account_id:
                refusal = GrantError(
                    409, "conflict", "that device belongs to another account: log it out there"
                )
            elif decision and not await dq.decide(conn, row.code_hash, decision, account_id):
                refusal = GrantError(400, "invalid_grant", "this code was already used")
    if refusal is not None:
        raise refusal
    assert row is not None
    return Pending(
        shown(row.user_code),
        row.device_id,
        names.clean(row.device_name),
        row.address,
        row.created_ms,
        row.expires_ms,
    )


async def review(
    engine: AsyncEngine, user_code: str, account_id: int, address: str, now_ms: int
) -> Pending:
    """The device behind a pending code, for `account_id` to confirm (RFC 8628 §5.4:
    a code alone, say from a link someone sent, is never approved unseen). Looking
    counts like approving: wrong codes are throttled the same way."""
    return await _decide(engine, user_code, account_id, "", address, now_ms)


async def approve(
    engine: AsyncEngine,
    user_code: str,
    account_id: int,
    allow: bool,
    address: str,
    now_ms: int,
) -> Pending:
    """Approve (or deny) a pending code for `account_id`; returns the device that asked."""
    decision = "approved" if allow else "denied"
    return await _decide(engine, user_code, account_id, decision, address, now_ms)


async def password_account(
    engine: AsyncEngine,
    name: str,
    password: str,
    address: str,
    now_ms: int,
    gate: HashGate | None = None,
) -> qa.Account:
    """The approval page's password check: the throttling and timing of a login, and the
    per-address (and per-network) count of wrong codes."""
    addr_keys = auth.address_keys("code-", address)
    await _forget_old_failures(engine, [auth.split_key(k)[0] for k in addr_keys], now_ms)
    async with engine.begin() as conn:
        await auth.check_throttle(conn, addr_keys, now_ms)
    return await auth.check_password(engine, name, password, address, now_ms, gate)
