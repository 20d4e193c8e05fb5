"""Limits on what strangers can do before logging in, on a real server: a burst of
parallel password guesses, device-code starts per address, and the approval address a
device is told when the server sits behind a TLS-terminating proxy.

Failures count per address and every test talks from 127.0.0.1, so each test starts a
server of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.fixtures_server import ServerProc
from tests.test_api import add_users, db_url, run_async, unique
from tunehand.server.auth import FREE_FAILURES
from tunehand.server.db.engine import open_engine
from tunehand.server.db.tables import device_codes, login_attempts
from tunehand.server.device_code import MAX_PENDING, STARTS_PER_ADDRESS
from tunehand.server.web import now_ms

pytestmark = pytest.mark.every_backend

BURST = 24


async def test_a_parallel_burst_of_wrong_passwords_gets_only_a_few_guesses(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    user = unique("burst")
    await asyncio.to_thread(add_users, srv, user)

    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as http:

        async def guess(i: int) -> httpx.Response:
            body = {"user": user, "password": f"wrong-{i}", "device_id": f"burst{i}"}
            return await http.post("/v1/auth/login", json=body)

        burst = [asyncio.create_task(guess(i)) for i in range(BURST)]
        answers = await asyncio.gather(*burst)
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {401, 429}, statuses
    checked = statuses.count(401)
    # Each attempt is counted before its password is hashed: only the free ones (and
    # at most the few that read the count in the same instant) are ever checked.
    assert 1 <= checked <= FREE_FAILURES + 2, statuses
    refused = [r for r in answers if r.status_code == 429]
    assert refused and all(int(r.headers["Retry-After"]) >= 1 for r in refused)


def test_the_right_password_is_refused_until_the_delay_has_passed(
    start_server: Callable[..., ServerProc],
) -> None:
    """A right password during the delay is refused like a wrong one, so a guesser
    learns nothing. The failures are written to the server's store with the time of
    now (a burst on a busy machine can take longer than the 2 s delay it earns, which
    made this check race the clock), so the delay is certain to be running."""
    srv = start_server()
    user = unique("waits")
    add_users(srv, user)
    failures = FREE_FAILURES + 5  # a delay of 2 ** 6 = 64 s

    async def fail_many() -> None:
        engine = open_engine(db_url(srv))
        try:
            async with engine.begin() as conn:
                row = {
                    "key": f"user:{user}@127.0.0.0/24",
                    "failures": failures,
                    "last_ms": now_ms(),
                }
                await conn.execute(sa.insert(login_attempts), [row])
        finally:
            await engine.dispose()

    run_async(fail_many)
    body = {"user": user, "password": "secret-pw", "device_id": "waits-ok"}
    right = httpx.post(srv.url + "/v1/auth/login", json=body)
    assert right.status_code == 429, right.text
    assert right.json()["error"]["code"] == "rate_limited"
    assert 30 <= int(right.headers["Retry-After"]) <= 64
    # The refusal took nothing back from the count: the next try is refused as well.
    again = httpx.post(srv.url + "/v1/auth/login", json=body)
    assert again.status_code == 429, again.text


async def test_a_parallel_burst_of_wrong_user_codes_gets_only_a_few_guesses(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    user = unique("codeburst")
    await asyncio.to_thread(add_users, srv, user)
    token = (await asyncio.to_thread(srv.login, user))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=srv.url, timeout=60, headers=headers) as http:
        started = (await http.post("/v1/auth/device", json={"device_id": "burst-new"})).json()

        async def guess(i: int) -> httpx.Response:
            wrong = "BCDF" + "".join("GHJK"[(i >> s) & 3] for s in (0, 2, 4, 6))
            return await http.post("/v1/auth/device/approve", json={"user_code": wrong})

        answers = await asyncio.gather(*(guess(i) for i in range(BURST)))
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) <= {404, 429}, statuses
        assert 1 <= statuses.count(404) <= FREE_FAILURES + 2, statuses
        # The right code is throttled too now: the burst bought nothing.
        r = await http.post("/v1/auth/device/approve", json={"user_code": started["user_code"]})
        assert r.status_code == 429, r.text


def test_a_right_password_clears_the_count_it_made(start_server: Callable[..., ServerProc]) -> None:
    srv = start_server()
    user = unique("clear")
    add_users(srv, user)
    for i in range(FREE_FAILURES + 3):
        r = httpx.post(
            srv.url + "/v1/auth/login",
            json={"user": user, "password": "secret-pw", "device_id": f"ok{i}"},
        )
        assert r.status_code == 200, (i, r.text)


def test_device_code_starts_are_limited_per_address(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    for i in range(STARTS_PER_ADDRESS):
        r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": f"dc{i}"})
        assert r.status_code == 200, (i, r.text)
    r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": "one-too-many"})
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert "from this address" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 600
    # Logging in with a password from the same address is not affected.
    user = unique("dcpw")
    add_users(srv, user)
    r = httpx.post(
        srv.url + "/v1/auth/login",
        json={"user": user, "password": "secret-pw", "device_id": "pw"},
    )
    assert r.status_code == 200, r.text


def test_device_code_starts_are_limited_server_wide(
    start_server: Callable[..., ServerProc],
) -> None:
    """README: "10,000 waiting server-wide (then 429 with Retry-After)". All but one of
    them are put in the server's database directly (as strangers from many addresses
    would have left them); expired and decided codes do not count."""
    srv = start_server()
    now = int(time.time() * 1000)

    def row(i: int, **kw: Any) -> dict[str, Any]:
        return {
            "code_hash": f"h{i}",
            "user_code": f"U{i:07d}",
            "device_id": f"w{i}",
            "device_name": f"w{i}",
            "created_ms": now,
            "expires_ms": now + 600_000,
            "interval_s": 5,
            "last_poll_ms": None,
            "status": "pending",
            "account_id": None,
        } | kw

    rows = [row(i) for i in range(MAX_PENDING - 1)]
    rows.append(row(MAX_PENDING, expires_ms=now - 1))  # expired: not waiting
    rows.append(row(MAX_PENDING + 1, status="denied"))  # decided: not waiting

    async def fill() -> None:
        engine = open_engine(db_url(srv))
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(device_codes), rows)
        finally:
            await engine.dispose()

    run_async(fill)
    r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": "the-last-one"})
    assert r.status_code == 200, r.text
    r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": "one-too-many"})
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert "waiting" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["Retry-After"]) <= 600


FORWARDED = {"Host": "music.example.org", "X-Forwarded-Proto": "https"}


def test_behind_a_trusted_tls_proxy_the_approval_address_is_https(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server(extra_args=("--trust-proxy", "127.0.0.1"))
    r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": "proxied"}, headers=FORWARDED)
    assert r.status_code == 200, r.text
    assert r.json()["verification_uri"] == "https://music.example.org/approve"


def test_an_untrusted_peer_cannot_change_the_approval_scheme(
    start_server: Callable[..., ServerProc],
) -> None:
    srv = start_server()
    r = httpx.post(srv.url + "/v1/auth/device", json={"device_id": "direct"}, headers=FORWARDED)
    assert r.status_code == 200, r.text
    assert r.json()["verification_uri"] == "http://music.example.org/approve"
