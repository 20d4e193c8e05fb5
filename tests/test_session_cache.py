"""The sessions a server keeps in memory (`SessionService._states`), in-process on a real
database (SQLite, and PostgreSQL when CI's is set): a command on a session the instance
already knows is one statement; a stale one (another instance wrote meanwhile) is never
written from, and a repeated command_id is still applied once."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.core.commands import Command, Report
from tunehand.core.model import Position, SessionState
from tunehand.server.bus import MemoryBus
from tunehand.server.db import accounts as qa
from tunehand.server.db import jams as qj
from tunehand.server.db import sessions as qs
from tunehand.server.hub import Hub, topic
from tunehand.server.service import SessionService
from tunehand.server.streams import Signer


@pytest.fixture
def url(empty_database: str) -> str:
    return empty_database


class Statements:
    """The SQL statements an engine ran, by their first word."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seen: list[str] = []
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.seen.append(str(args[2]).lstrip().split(None, 1)[0].upper())

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


async def _service(engine: AsyncEngine) -> SessionService:
    hub = Hub(MemoryBus())
    await hub.start()
    return SessionService(engine, hub, Signer(secrets.token_bytes(32)))


@pytest.fixture
def engine(migrated_engine: AsyncEngine) -> AsyncEngine:
    return migrated_engine


async def _account(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        account = await qa.create_account(conn, "u" + secrets.token_hex(4), "not-a-hash", 0)
        await qs.compare_and_set(conn, account, 0, SessionState(version=1))
    return account


def _volume(value: int, command_id: str | None = None) -> Command:
    return Command("volume", command_id or secrets.token_hex(8), value=value)


async def test_a_command_on_a_known_session_is_one_statement(engine: AsyncEngine) -> None:
    account = await _account(engine)
    sessions = await _service(engine)
    ran = Statements(engine)
    first = await sessions.execute(account, _volume(10), None)
    assert first.code == "ok" and first.version == 2
    assert "SELECT" in ran.take()  # not known yet: read first
    second = await sessions.execute(account, _volume(20), None)
    assert second.code == "ok" and second.version == 3
    assert "SELECT" not in ran.take()  # known: written without reading
    assert (await sessions.state(account)).volume == 20


async def test_a_repeated_command_on_a_known_session_is_applied_once(
    engine: AsyncEngine,
) -> None:
    account = await _account(engine)
    sessions = await _service(engine)
    cmd = _volume(30)
    first = await sessions.execute(account, cmd, None)
    again = await sessions.execute(account, cmd, None)  # the session is known now
    assert again == first
    state = await sessions.state(account)
    assert state.version == first.version and state.volume == 30
    # A command that was refused is answered the same way again.
    bad = Command("seek", secrets.token_hex(8), position_ms=1000)  # nothing to seek in
    refused = await sessions.execute(account, bad, None)
    assert refused.code != "ok"
    assert (await sessions.execute(account, bad, None)) == refused
    assert (await sessions.state(account)).version == state.version


async def test_a_stale_session_is_read_again_before_a_write(engine: AsyncEngine) -> None:
    """Instance B changes the session; A has not heard (no bus between them here): A's
    next command fails its compare-and-set, reads the session and applies on it."""
    account = await _account(engine)
    a, b = await _service(engine), await _service(engine)
    await a.execute(account, _volume(40), None)  # v2, known to A
    shuffled = await b.execute(account, Command("shuffle", secrets.token_hex(8), on=True), None)
    assert shuffled.code == "ok" and shuffled.version == 3
    res = await a.execute(account, _volume(50), None)
    assert res.code == "ok" and res.version == 4
    state = await a.state(account)
    assert state.version == 4 and state.volume == 50 and state.shuffle  # B's change kept


async def test_a_newer_version_heard_on_the_bus_is_kept(engine: AsyncEngine) -> None:
    """Instance B's change comes to A through the bus as B fans it out: A keeps that
    version, and its next command needs no read."""
    account = await _account(engine)
    a, b = await _service(engine), await _service(engine)
    await a.execute(account, _volume(60), None)  # v2, kept by A
    # B's bus reaches A (as Redis would): A hears what B fans out for the account.
    b.hub.on_version = a.hub.on_version
    await b.hub.bus.subscribe(topic(account))
    await b.execute(account, _volume(61), None)  # v3, heard by A
    kept = a._recall(account)
    assert kept is not None and (kept.version, kept.volume) == (3, 61)
    ran = Statements(engine)
    res = await a.execute(account, _volume(62), None)
    assert res.version == 4 and "SELECT" not in ran.take()
    # Something heard that is not that version's state is not kept, nor the older one.
    assert a.hub.on_version is not None
    a.hub.on_version(account, 9, b"{not a state")
    assert a._recall(account) is None
    res = await a.execute(account, _volume(63), None)
    assert res.version == 5 and "SELECT" in ran.take()


async def test_a_session_read_for_a_device_is_kept_unless_a_newer_one_is(
    engine: AsyncEngine,
) -> None:
    account = await _account(engine)
    a, b = await _service(engine), await _service(engine)
    # A device's hello resolves the account's seat (its own session, or a jam's: kept
    # until a jam changes) and reads the session.
    assert (await a.seat(account)).session == account
    assert (await a.state(account)).version == 1
    ran = Statements(engine)
    await a.execute(account, _volume(70), None)
    assert "SELECT" not in ran.take()
    await b.execute(account, _volume(71), None)  # v3, written by another instance
    a._remember(account, SessionState(version=1))  # an older read must not replace v2
    assert a._recall(account) is not None and a._recall(account).version == 2  # type: ignore[union-attr]
    assert (await a.state(account)).version == 3  # a fresh read replaces it
    ran.take()
    res = await a.execute(account, _volume(72), None)
    assert res.version == 4 and "SELECT" not in ran.take()


async def test_a_refusal_is_never_decided_on_a_stale_session(engine: AsyncEngine) -> None:
    """A's kept session misses B's change (A has no device of the account, so it hears
    nothing): a command that only the stale copy would refuse is applied, and no refusal
    is stored under its command_id."""
    account = await _account(engine)
    a, b = await _service(engine), await _service(engine)
    await a.execute(account, _volume(80), None)  # v2, kept by A
    await b.execute(account, Command("shuffle", secrets.token_hex(8), on=True), None)  # v3
    replace = Command("queue_clear", secrets.token_hex(8), if_version=3)
    res = await a.execute(account, replace, None)
    assert res.code == "ok" and res.version == 4  # not `conflict` from the stale v2
    assert (await a.execute(account, replace, None)) == res  # and that is what is stored


async def test_a_report_is_never_turned_down_on_a_stale_session(engine: AsyncEngine) -> None:
    """A transfer on B makes the device on A the active one with a new term; A has not
    heard of it yet when the device reports: the report is taken, not answered
    `stale_term` (which tells a device to stop)."""
    account = await _account(engine)
    a, b = await _service(engine), await _service(engine)
    assert (await a.state(account)).version == 1  # kept by A
    async with engine.begin() as conn:  # B makes "here" the active device, term 1
        state = await qs.load(conn, account)
        playing = replace(
            state,
            version=2,
            active_device="here",
            term=1,
            position=Position(position_ms=0, at_ms=0, playing=True, rate=1.0),
        )
        assert await qs.compare_and_set(conn, account, 1, playing)
    report = Report(1, None, 5_000, 5_000, True, 1.0, version=2)
    assert await a.report(account, "here", report) == "ok"
    del b


async def test_a_kept_session_never_goes_back_to_an_older_version(engine: AsyncEngine) -> None:
    account = await _account(engine)
    sessions = await _service(engine)
    await sessions.execute(account, _volume(90), None)
    await sessions.execute(account, _volume(91), None)  # v3 kept
    older = SessionState(version=2, volume=90)
    sessions._remember(account, older)
    kept = sessions._recall(account)
    assert kept is not None and (kept.version, kept.volume) == (3, 91)


async def test_a_change_committed_as_its_command_is_cancelled_still_fans_out(
    url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel's command task is cancelled when its device disconnects. On PostgreSQL
    the compare-and-set is its own commit, so a cancellation landing right after it (as
    the connection goes back to the pool) must not keep the account's other devices from
    hearing of the new version."""
    if url.startswith("sqlite"):
        pytest.skip("on SQLite the commit is the last step before the fan-out")
    account = await _account(engine)
    sessions = await _service(engine)
    sent: asyncio.Queue[int] = asyncio.Queue()
    real_send = sessions.hub.send

    async def send(account_id: int, payload: bytes, to: str = "*", version: int = 0) -> None:
        await real_send(account_id, payload, to, version)
        sent.put_nowait(version)

    monkeypatch.setattr(sessions.hub, "send", send)
    await sessions.execute(account, _volume(10), None)  # v2: the session is known now
    assert sent.get_nowait() == 2
    real_commit = qs.commit_command

    async def commit_then_cancelled(*args: Any) -> bool:
        done = await real_commit(*args)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # lands on the next await: handing the connection back
        return done

    monkeypatch.setattr(qs, "commit_command", commit_then_cancelled)
    command = asyncio.create_task(sessions.execute(account, _volume(20), None))
    with pytest.raises(asyncio.CancelledError):
        await command
    assert await asyncio.wait_for(sent.get(), 5) == 3
    assert (await sessions.state(account)).volume == 20


async def test_a_jams_device_list_is_one_query_whatever_its_size(engine: AsyncEngine) -> None:
    """Every device joining a jam sends the list of every member's devices to all of
    them: one query for the whole jam, not one per member (a jam of 50 accounts made
    that 2,500 queries as its devices came online)."""
    members = [await _account(engine) for _ in range(6)]
    host, guests = members[0], members[1:]
    async with engine.begin() as conn:
        assert await qj.create(conn, host, secrets.token_hex(4).upper(), False, 0)
        for g in guests:
            assert await qj.add_guest(conn, host, g, 0)
        for m in members:
            for n in range(2):
                await qa.upsert_device(conn, m, f"d{m}-{n}", f"dev {m}-{n}", 0, "10.0.0.1")
    sessions = await _service(engine)
    for m in members:
        await sessions.hub.presence.join(m, f"d{m}-0", ("play",))
    viewer = guests[0]
    await sessions.seat(viewer)  # kept: what is counted is the device list alone
    ran = Statements(engine)
    devices = await sessions.devices_view(viewer)
    assert ran.take() == ["SELECT"]
    mine = {d.id for d in devices if d.id.startswith(f"d{viewer}-")}
    assert mine == {f"d{viewer}-0", f"d{viewer}-1"}  # its own, online or not
    others = [d for d in devices if not d.id.startswith(f"d{viewer}-")]
    # The other members' devices: the online ones only, by name, no address or time.
    assert sorted(d.id for d in others) == sorted(f"d{m}-0" for m in members if m != viewer)
    assert all(d.online and d.address == "" and d.last_seen_ms == 0 for d in others)
