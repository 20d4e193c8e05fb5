"""Application passwords: the credentials of Subsonic apps, each one a device of its account.

The Subsonic API authenticates every request by a user name and either the password
(`p=`, plain or `enc:` hex) or `t` = md5(password + `s`), a salt the app picks. The
token scheme needs the password itself on the server, so the account's own password
(kept only as an argon2 hash) can never serve; instead an account makes app passwords:
generated secrets, shown once, kept encrypted (AES-256-GCM, from `cryptography`) under a
key derived from the server's signing secret (`Signer.subkey("app-passwords")`), with the
row's device id as associated data (a secret copied to another row does not decrypt).
The same secret works as an OpenSubsonic `apiKey`. A keyed hash of it (`lookup`) finds
the row of a `p=` or `apiKey=` without decrypting every row.

Each app password is a device row of kind `subsonic`: listed by `ctl devices --all`,
and revoking that device revokes the password (a revoked device's passwords no longer
match). Failures are throttled as logins are, per address, network and user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tunehand.core import names
from tunehand.errors import AuthError, NotFound, QuotaError, UsageError
from tunehand.server import auth
from tunehand.server.db import accounts as qa
from tunehand.server.db import app_passwords as qp
from tunehand.server.limits import network
from tunehand.server.streams import Signer

KIND = "subsonic"
"""The `kind` of an app password's device row."""
MAX_PER_ACCOUNT = 50
MAX_NAME = 64
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
"""No 0/o, 1/l/i: typed on a phone's keyboard, often."""
GROUPS, GROUP_LEN = 4, 6
"""24 characters of 31: about 119 bits."""


class WrongCredentials(AuthError):
    """No live app password matches."""


def generate() -> str:
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN)) for _ in range(GROUPS)
    )


@dataclass(frozen=True, slots=True)
class Sealer:
    """Encrypts and finds app passwords under keys derived from the server's secret."""

    key: bytes
    lookup_key: bytes

    @classmethod
    def of(cls, signer: Signer) -> Sealer:
        return cls(signer.subkey("app-passwords"), signer.subkey("app-password-lookup"))

    def seal(self, device_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, secret.encode(), device_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, device_id: str, blob: str) -> str | None:
        try:
            raw = base64.b64decode(blob)
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], device_id.encode()).decode()
        except (InvalidTag, ValueError):
            return None

    def lookup(self, secret: str) -> str:
        return hmac.new(self.lookup_key, secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Created:
    name: str
    device_id: str
    password: str
    created_ms: int


def clean_name(raw: str) -> str:
    name = names.clean(raw, MAX_NAME)
    if not name or len(raw) > MAX_NAME:
        raise UsageError(f"name: an app password's name has 1 to {MAX_NAME} characters")
    return name


async def create(
    engine: AsyncEngine, sealer: Sealer, account_id: int, raw_name: str, address: str, now_ms: int
) -> Created:
    """A new app password named `raw_name` (cleaned) and its device row."""
    name = clean_name(raw_name)
    password = generate()
    device_id = auth.new_device_id()
    try:
        async with engine.begin() as conn:
            if await qp.named(conn, account_id, name) is not None:
                raise UsageError(f"an app password named {name!r} exists already: revoke it first")
            if await qp.count(conn, account_id) >= MAX_PER_ACCOUNT:
                raise QuotaError(
                    f"this account has {MAX_PER_ACCOUNT} app passwords, the most it may keep:"
                    " revoke some"
                )
            await auth.check_device_room(conn, account_id)
            await qa.upsert_device(conn, account_id, device_id, name, now_ms, address, KIND)
            await qp.insert(
                conn,
                account_id,
                device_id,
                name,
                sealer.seal(device_id, password),
                sealer.lookup(password),
                now_ms,
            )
    except IntegrityError:  # created with the same name at the same moment
        raise UsageError(
            f"an app password named {name!r} exists already: revoke it first"
        ) from None
    return Created(name, device_id, password, now_ms)


async def listed(engine: AsyncEngine, account_id: int) -> list[qp.AppPasswordRow]:
    async with engine.connect() as conn:
        return await qp.by_account(conn, account_id)


async def revoke(engine: AsyncEngine, account_id: int, name: str) -> str:
    """Revoke the account's app password `name`; its device id (to tell the devices)."""
    async with engine.begin() as conn:
        device_id = await qp.named(conn, account_id, name)
        if device_id is None:
            raise NotFound(f"no app password named {name!r}")
        await qa.revoke_device(conn, account_id, device_id)
        await qp.delete(conn, account_id, device_id)
    return device_id


# --- checking a Subsonic request's credentials ----------------------------------------


@dataclass(frozen=True, slots=True)
class Given:
    """The credentials a Subsonic request carries (empty when absent)."""

    user: str = ""
    password: str = ""
    token: str = ""
    salt: str = ""
    api_key: str = ""


def plain(password: str) -> str:
    """`p=` as given: `enc:` and hex, or the password itself."""
    if password.startswith("enc:"):
        try:
            return bytes.fromhex(password[4:]).decode()
        except (ValueError, UnicodeDecodeError):
            return ""
    return password


def _keys(user: str, address: str) -> list[auth.Key]:
    keys = auth.address_keys("subsonic:", address)
    if user:
        keys.append(f"subsonic:user:{user[: auth.MAX_NAME + 1]}@{network(address)}")
    return keys


async def check(
    engine: AsyncEngine, sealer: Sealer, given: Given, address: str, now_ms: int
) -> auth.Principal:
    """The account and device of a right app password, or `WrongCredentials`;
    `auth.Throttled` once an address, network or user failed too often, with the delays
    of logins (`auth.throttle_delay_s`). A failure counts under every key; a success
    clears the address's and the user's counts (not the network's, which others share).

    Unlike a login this is every request of an app, so the counts are read first (no
    write for a request that finds none) and raised after a failure: a burst of parallel
    guesses may all be checked before the first is counted, which against a generated
    secret of about 119 bits changes nothing."""
    keys = _keys(given.user, address)
    counted = False
    async with engine.connect() as conn:
        known = await qa.failures_of(conn, [auth.split_key(k)[0] for k in keys])
        for key, free in map(auth.split_key, keys):
            fails, last = known.get(key, (0, 0))
            counted = counted or fails > 0
            wait_ms = auth.throttle_delay_s(fails, free) * 1000 - (now_ms - last)
            if wait_ms > 0:
                raise auth.Throttled(max(1, wait_ms // 1000))
        row = await _match(conn, sealer, given)
    if row is None:
        async with engine.begin() as conn:
            for key, _ in map(auth.split_key, keys):
                await qa.record_failure(conn, key, now_ms)
        raise WrongCredentials("wrong username or password")
    if counted:
        async with engine.begin() as conn:
            for key, free in map(auth.split_key, keys):
                if free == auth.FREE_FAILURES:  # the address's and the user's own
                    await qa.clear_failures(conn, key)
    return auth.Principal(row.account_id, row.account_name, row.device_id, KIND)


async def _match(conn: AsyncConnection, sealer: Sealer, given: Given) -> qp.AppPasswordRow | None:
    if given.api_key:
        if len(given.api_key) > 200:
            return None
        return await qp.by_lookup(conn, sealer.lookup(given.api_key))
    if len(given.user) > auth.MAX_NAME:
        return None
    if given.password:
        secret = plain(given.password)
        if not secret or len(secret) > 200:
            return None
        row = await qp.by_lookup(conn, sealer.lookup(secret))
        return row if row is not None and row.account_name == given.user else None
    token = given.token.lower()
    if len(token) != 32 or not all(c in "0123456789abcdef" for c in token):
        return None  # an md5 in hex, or no match (a non-ASCII token cannot be compared)
    if not given.salt or len(given.salt) > 200:
        return None
    for row in await qp.by_account_name(conn, given.user):
        secret_ = sealer.open(row.device_id, row.secret)
        if secret_ is None:
            continue
        want = hashlib.md5((secret_ + given.salt).encode(), usedforsecurity=False).hexdigest()
        if hmac.compare_digest(want, token):
            return row
    return None
