"""Jams: a host's session opened to other accounts.

`start` makes the host's session shareable under an invite code (eight letters from
the device codes' alphabet, shown `ABCD-EFGH`); `join` puts a guest account's devices
on the host's session (the guest's own session is paused where it was and kept aside),
`leave`, `kick` and `end` put them back on their own. What a guest may do is decided
in the core (`tunehand.core.roles`), from the seat the session service reads
(`SessionService.seat`). Wrong codes are throttled per address, network and account
like device codes, so the 20^8 code space is out of reach; a kicked account cannot
join that jam again.

Every change is committed first, then announced to every instance (`Hub.jam_changed`),
which moves the devices it holds of the accounts named and sends them the session
they are on now.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunehand.errors import StoreError
from tunehand.server import auth
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.db import jams as qj
from tunehand.server.device_code import new_user_code, normalize, shown
from tunehand.server.service import SessionService
from tunehand.server.web import ApiError

MAX_GUESTS = 100
"""Guests of one jam at once."""


@dataclass(frozen=True, slots=True)
class Member:
    user: str
    devices: tuple[str, ...]
    """The names of its devices online now."""


@dataclass(frozen=True, slots=True)
class JamView:
    host: str
    members: tuple[Member, ...]
    code: str
    guests_can_control: bool


def _not_in_jam() -> ApiError:
    return ApiError(404, "not_found", "not in a jam: `tunehand ctl jam start` or `jam join CODE`")


async def info(sessions: SessionService, account_id: int) -> JamView:
    seat = await sessions.seat(account_id)
    if not seat.in_jam:
        raise _not_in_jam()
    async with sessions.engine.connect() as conn:
        jam = await qj.by_host(conn, seat.session)
    if jam is None:
        raise _not_in_jam()
    members = []
    for member, user in ((jam.host_id, jam.host), *jam.guests):
        online = await sessions.hub.presence.devices(member)
        names = tuple(d.name for d in await sessions.devices(member) if d.id in online)
        members.append(Member(user, names))
    return JamView(jam.host, tuple(members), shown(jam.code), jam.guests_can_control)


async def start(sessions: SessionService, host_id: int, guests_can_control: bool) -> str:
    """The jam's code (the one running already, if the account hosts one)."""
    engine = sessions.engine
    async with engine.begin() as conn:
        host = await qj.host_of(conn, host_id)
        if host is not None and host != host_id:
            jam = await qj.by_host(conn, host)
            name = jam.host if jam else "another account"
            raise ApiError(409, "conflict", f"you are in {name}'s jam: `ctl jam leave` first")
        if host == host_id:
            jam = await qj.by_host(conn, host_id)
            assert jam is not None
            return shown(jam.code)
        for _ in range(8):
            code = new_user_code()
            if await qj.create(conn, host_id, code, guests_can_control, now_ms()):
                break
        else:
            raise StoreError("could not pick a free jam code; try again")
    await sessions.hub.jam_changed([host_id], "")
    return shown(code)


async def join(sessions: SessionService, account_id: int, raw_code: str, address: str) -> str:
    """Put the account's devices on the jam's session; the host's name."""
    engine = sessions.engine
    keys: list[auth.Key] = [*auth.address_keys("jam-", address), f"jam-acct:{account_id}"]
    code = normalize(raw_code)
    now = now_ms()
    async with engine.begin() as conn:
        await auth.begin_attempts(conn, keys, now)  # counted before the code is looked up
    async with engine.begin() as conn:
        host_id = await qj.by_code(conn, code) if code else None
        if host_id is None:
            raise ApiError(404, "not_found", "no jam with that code: check the code the host shows")
        for key in keys:
            await qa.undo_attempt(conn, auth.split_key(key)[0])
    async with engine.begin() as conn:
        jam = await qj.by_host(conn, host_id)
        if jam is None:
            raise ApiError(404, "not_found", "that jam has ended")
        if host_id == account_id:
            raise ApiError(409, "conflict", "this is your own jam")
        if await qj.kicked(conn, host_id, account_id):
            raise ApiError(403, "forbidden", f"{jam.host} removed you from this jam")
        mine = await qj.host_of(conn, account_id)
        if mine == account_id:
            raise ApiError(409, "conflict", "you host a jam: `ctl jam end` first")
        if mine == host_id:
            return jam.host  # joined already
        if mine is not None:
            raise ApiError(409, "conflict", "you are in another jam: `ctl jam leave` first")
        if await qj.count_guests(conn, host_id) >= MAX_GUESTS:
            raise ApiError(409, "conflict", f"this jam is full ({MAX_GUESTS} guests)")
        if not await qj.add_guest(conn, host_id, account_id, now_ms()):
            raise ApiError(409, "conflict", "you are in another jam: `ctl jam leave` first")
    sessions.forget_seats()
    # The guest's own session waits, paused where it was, until it comes back.
    await sessions.lose_in(account_id, None)
    await sessions.hub.jam_changed([account_id, host_id], f"joined {jam.host}'s jam")
    await sessions.publish_devices(host_id)
    return jam.host


async def _back_home(
    sessions: SessionService, host_id: int, guests: tuple[int, ...], notice: str
) -> None:
    """`guests` left the jam of `host_id`: a guest device that played it stops (the
    session pauses there), and their devices go back to their own sessions."""
    sessions.forget_seats()
    for guest in guests:
        for d in await sessions.devices(guest):
            await sessions.lose_in(host_id, d.id)
    await sessions.hub.jam_changed([*guests, host_id], notice)
    await sessions.publish_devices(host_id)
    for guest in guests:
        await sessions.publish_devices(guest)


async def leave(sessions: SessionService, account_id: int) -> str:
    """The host's name of the jam the account left."""
    async with sessions.engine.begin() as conn:
        host_id = await qj.host_of(conn, account_id)
        if host_id is None:
            raise _not_in_jam()
        jam = await qj.by_host(conn, host_id)
        assert jam is not None
        if host_id == account_id:
            raise ApiError(409, "conflict", "you host this jam: `ctl jam end` ends it for everyone")
        await qj.remove_guest(conn, host_id, account_id)
    await _back_home(
        sessions, host_id, (account_id,), f"left {jam.host}'s jam: back to your own session"
    )
    return jam.host


async def _hosted(sessions: SessionService, account_id: int) -> qj.Jam:
    async with sessions.engine.connect() as conn:
        host_id = await qj.host_of(conn, account_id)
        jam = await qj.by_host(conn, host_id) if host_id is not None else None
    if jam is None:
        raise _not_in_jam()
    if jam.host_id != account_id:
        raise ApiError(403, "forbidden", f"only the host ({jam.host}) may do that")
    return jam


async def end(sessions: SessionService, host_id: int) -> None:
    jam = await _hosted(sessions, host_id)
    async with sessions.engine.begin() as conn:
        guests = await qj.end(conn, host_id)
    await _back_home(
        sessions, host_id, guests, f"{jam.host} ended the jam: back to your own session"
    )


async def kick(sessions: SessionService, host_id: int, user: str) -> None:
    jam = await _hosted(sessions, host_id)
    guest = next((a for a, name in jam.guests if name == user), None)
    if guest is None:
        raise ApiError(404, "not_found", f"{user} is not in this jam")
    async with sessions.engine.begin() as conn:
        await qj.kick(conn, host_id, guest)
    await _back_home(
        sessions,
        host_id,
        (guest,),
        f"{jam.host} removed you from the jam: back to your own session",
    )


async def set_control(sessions: SessionService, host_id: int, on: bool) -> None:
    await _hosted(sessions, host_id)
    async with sessions.engine.begin() as conn:
        await qj.set_control(conn, host_id, on)
    sessions.forget_seats()
    await sessions.hub.jam_changed([], "")


__all__ = ["JamView", "Member", "end", "info", "join", "kick", "leave", "start"]
