"""Running the session core against the database: commands, reports, device loss.

Every change is one transaction that loads the account's session, applies the pure
core, and compares and sets `version`; after it commits, the new state goes to every
device of the account through the hub. A command's result is stored under its
`command_id`, so a retried or replayed command gets its original result.

Its parts live beside it, each holding the service: `seats.py` (which session an
account is on, and moving its devices when a jam changes), `handoff.py` (transfers),
`device_lists.py` (the device lists devices see) and `warm.py` (the warm next device).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tunehand import wire
from tunehand.core import roles
from tunehand.core import session as core
from tunehand.core.commands import Command, Report, Result, ResultCode, validate
from tunehand.core.model import DeviceInfo, SessionState
from tunehand.core.protocol import DirectiveMsg, StateMsg, TrackView
from tunehand.errors import StoreError
from tunehand.server import device_lists
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.db import library as ql
from tunehand.server.db import podcasts as qp
from tunehand.server.db import sessions as qs
from tunehand.server.db import userdata as qu
from tunehand.server.db.engine import unavailable
from tunehand.server.handoff import Handoff
from tunehand.server.hub import ALL, Hub
from tunehand.server.library.chapters import Chapter
from tunehand.server.library.chapters import chapters as read_chapters
from tunehand.server.longform import LongForm, end_of_entry
from tunehand.server.seats import Seat, Seats
from tunehand.server.streams import Signer, episode_view, track_view
from tunehand.server.warm import Warmth

log = logging.getLogger("tunehand.service")

CAS_RETRIES = 20
TRACK_CACHE_S = 30.0
TRACK_CACHE_SIZE = 20_000
STATE_CACHE_WEIGHT = 200_000
"""Sessions kept in memory, counted as 1 + their queue's length (~30 MB at most)."""


class SessionService:
    def __init__(self, engine: AsyncEngine, hub: Hub, signer: Signer) -> None:
        self.engine = engine
        self.hub = hub
        self.signer = signer
        self._serial = engine.dialect.name == "sqlite"
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._global = asyncio.Lock()
        self._locks: dict[int, asyncio.Lock] = {}
        self._history_marker: dict[int, str] = {}
        self._fanning: set[asyncio.Future[None]] = set()
        self._track_cache: dict[
            tuple[int, tuple[str, ...]], tuple[float, dict[str, TrackView]]
        ] = {}
        self._states: dict[int, SessionState] = {}
        """The last version of each account's session this instance wrote or read, while
        no newer one is known: a command on it needs no read first (see `_try_execute`)."""
        self._states_weight = 0
        self.longform = LongForm()
        self.seats = Seats(self)
        self.warm = Warmth(self)
        self.handoff = Handoff(self)
        hub.on_transfer_reply = self.handoff.on_transfer_reply
        hub.on_version = self._on_version
        hub.on_jam = self.seats.on_jam
        self.on_commit: Callable[[int, SessionState], None] | None = None
        """Told of every committed change (scrobbling follows plays through it)."""

    def _lock(self, account_id: int) -> asyncio.Lock:
        """SQLite has one writer: serialise all writes; otherwise one writer per account here."""
        if self._serial:
            return self._global
        return self._locks.setdefault(account_id, asyncio.Lock())

    # --- the sessions kept in memory ---------------------------------------------
    #
    # What is kept is always a session exactly as it was stored at its version: what this
    # instance read or committed, or a newer version another instance fanned out through
    # the bus. An attempt to write forgets it until it is known to have committed, and a
    # kept version is never replaced by an older one. A kept session can be stale (the
    # moment the bus takes; an account with no device here hears nothing of the others'
    # changes): so it is only ever trusted to say yes. A write from it is a
    # compare-and-set on `version`, refused when stale (the entry is forgotten and the
    # command applied again on a fresh read); a refusal, or a report it would turn down,
    # is decided again on a fresh read. Nothing is written or refused from a stale copy.

    def _recall(self, account_id: int) -> SessionState | None:
        return self._states.get(account_id)

    def kept(self, account_id: int) -> SessionState | None:
        """The session as this instance last knew it (maybe stale), if it does."""
        return self._recall(account_id)

    def _remember(self, account_id: int, state: SessionState) -> None:
        """Keep `state`, unless a newer version is kept already (heard on the bus while
        this one was being written)."""
        known = self._states.get(account_id)
        if known is not None and known.version >= state.version:
            return
        self._forget(account_id)
        if state.version <= 0:
            return
        weight = 1 + len(state.queue)
        if self._states_weight + weight > STATE_CACHE_WEIGHT:
            self._states.clear()
            self._states_weight = 0
        self._states[account_id] = state
        self._states_weight += weight

    def _forget(self, account_id: int) -> None:
        old = self._states.pop(account_id, None)
        if old is not None:
            self._states_weight -= 1 + len(old.queue)

    def _on_version(self, account_id: int, version: int, payload: bytes) -> None:
        """A state went out through the bus (from here or another instance): keep it if
        it is newer than the one kept, so the account's next command here needs no read."""
        known = self._states.get(account_id)
        if known is not None and known.version >= version:
            return  # most often our own change coming back
        try:
            state = wire.decode(payload, StateMsg).state
        except Exception:  # not a state message: just do not keep it
            state = None
        if state is None or state.version != version:
            self._forget(account_id)
        else:
            self._remember(account_id, state)

    # --- seats: which session an account is on (jams) ------------------------------

    async def seat(self, account_id: int) -> Seat:
        """The account's seat, kept a few seconds (`Seats.seat`)."""
        return await self.seats.seat(account_id)

    def forget_seats(self) -> None:
        self.seats.forget_seats()

    async def rehome(self, accounts: Sequence[int], notice: str) -> None:
        """Put the devices here of `accounts` on the session each is on now (`Seats.rehome`)."""
        await self.seats.rehome(accounts, notice)

    async def view(self, account_id: int) -> tuple[int, SessionState]:
        """The session the account is on (its own or a jam's) and its stored state."""
        session = (await self.seat(account_id)).session
        return session, await self.state(session)

    async def _online(self, seat: Seat) -> list[str]:
        """Devices that can play of every account on the seat's session."""
        if len(seat.members) <= 1:
            return await self.hub.online(seat.session, "play")
        found = await asyncio.gather(*(self.hub.online(a, "play") for a in seat.members))
        return [d for ds in found for d in ds]

    # --- reading ----------------------------------------------------------------

    async def state(self, account_id: int) -> SessionState:
        """The stored session, read now (a device's `hello`, a resync, the HTTP API); it
        is kept, so the account's next command needs no read."""
        async with self.engine.connect() as conn:
            state = await qs.load(conn, account_id)
        self._remember(account_id, state)
        return state

    async def tracks(self, account_id: int, ids: Sequence[str]) -> dict[str, TrackView]:
        """Views of library and remote tracks, with fresh signed stream (and art) URLs."""
        now_s = int(time.time())
        async with self.engine.connect() as conn:
            stored = await ql.get_many(conn, ids)
            remote = await qu.remotes(conn, account_id, [i for i in ids if i not in stored])
            eps = await qp.get_episodes(conn, account_id, [i for i in ids if i not in stored])
            out = {tid: track_view(self.signer, s, now_s) for tid, s in stored.items()}
            for rid, (url, title) in remote.items():
                out[rid] = TrackView(id=rid, title=title or url, url=url)
            for eid, e in eps.items():
                out[eid] = episode_view(self.signer, e, now_s)
            li = await qp.listening_of(conn, account_id) if out else qp.Listening()
            if li.music_speed != 1.0 or li.long_speed != 1.0:
                long = await self.longform.kinds(conn, account_id, list(out))
                for tid, view in out.items():
                    speed = li.long_speed if tid in long else li.music_speed
                    out[tid] = replace(view, speed=speed)
        return out

    async def _cached_tracks(self, account_id: int, ids: tuple[str, ...]) -> dict[str, TrackView]:
        """`tracks`, kept TRACK_CACHE_S: every change of a playing session names the same
        current and next track, and their views (and signed URLs, valid for hours) need
        not be read and signed again for each."""
        key = (account_id, ids)
        now = time.monotonic()
        hit = self._track_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            views = await self.tracks(account_id, ids)
        except Exception as exc:
            # A committed change must still reach the devices: an older view (its URLs
            # are valid for hours) beats a version nobody hears of.
            if hit is None or not unavailable(exc):
                raise
            return hit[1]
        if len(self._track_cache) >= TRACK_CACHE_SIZE:
            self._track_cache.clear()
        self._track_cache[key] = (now + TRACK_CACHE_S, views)
        return views

    async def state_message(self, account_id: int, state: SessionState) -> StateMsg:
        cur = state.current_entry
        nxt = state.entry(state.next_entry_id())
        ids = [e.track_id for e in (cur, nxt) if e is not None]
        views = await self._cached_tracks(account_id, tuple(ids)) if ids else {}
        track = views.get(cur.track_id) if cur else None
        info = state.stream
        if (
            track is not None
            and info is not None
            and cur is not None
            and info.entry_id == cur.entry_id
            and qu.is_remote_id(track.id)
        ):
            track = replace(
                track,
                title=info.title or track.title,
                artist=info.artist or track.artist,
                album=info.album or track.album,
                duration_ms=info.duration_ms or track.duration_ms,
            )
        return StateMsg(state.version, state, track, views.get(nxt.track_id) if nxt else None)

    async def devices(self, account_id: int) -> tuple[DeviceInfo, ...]:
        """The account's own devices (`device_lists.devices`)."""
        return await device_lists.devices(self, account_id)

    async def devices_view(self, account_id: int) -> tuple[DeviceInfo, ...]:
        """The devices an account sees, a jam's too (`device_lists.devices_view`)."""
        return await device_lists.devices_view(self, account_id)

    async def publish_devices(self, account_id: int) -> None:
        """Send the account's session its device list (`device_lists.publish_devices`)."""
        await device_lists.publish_devices(self, account_id)

    async def publish_device(self, account_id: int, device_id: str) -> None:
        """Send a patch of one device (`device_lists.publish_device`)."""
        await device_lists.publish_device(self, account_id, device_id)

    # --- writing ----------------------------------------------------------------

    async def execute(self, account_id: int, cmd: Command, sender: str | None) -> Result:
        """Apply a command once; a repeated `command_id` returns the first result."""
        problem = validate(cmd)
        if problem is not None:  # before any query: a too long command_id cannot be stored
            return Result(cmd.command_id, "invalid", problem, 0)
        seat = await self.seat(account_id)
        if cmd.op == "transfer" and cmd.device_id:
            why = roles.refusal(SessionState(), cmd, seat.role, seat.user, seat.guests_can_control)
            if why is not None:
                return Result(cmd.command_id, "forbidden", why, 0)
            return await self.handoff.run(seat, cmd, sender)
        return await self._execute(seat, cmd, sender)

    async def _execute(self, seat: Seat, cmd: Command, sender: str | None) -> Result:
        for _ in range(CAS_RETRIES):
            try:
                done = await self._try_execute(seat, cmd, sender)
            except IntegrityError:
                done = None  # the same command_id committed concurrently: read its result
            except (OperationalError, PoolTimeout) as exc:
                raise StoreError("the database is unavailable: try again") from exc
            if done is not None:
                return done
        return Result(cmd.command_id, "conflict", "too much contention: try again", 0)

    def _hot(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for a command or a report: on PostgreSQL in autocommit (no BEGIN
        and COMMIT round trips; the compare-and-set on `version` makes the write safe), on
        SQLite a transaction (its writes are serialised anyway)."""
        return self.engine.begin() if self._serial else self._autocommit.connect()

    async def _try_execute(self, seat: Seat, cmd: Command, sender: str | None) -> Result | None:
        account_id = seat.session
        written: core.Outcome | None = None
        """Set once the change is surely in the database: from then on it must fan out,
        even if this task is cancelled (its device disconnected) or handing back the
        connection fails before `_publish`."""
        try:
            async with self._lock(account_id):
                known = self._recall(account_id)
                self._forget(account_id)  # until this attempt is known to have committed
                async with self._hot() as conn:
                    if known is None:
                        prior, state = await qs.load_for_command(conn, account_id, cmd.command_id)
                        if prior is not None:
                            self._remember(account_id, state)
                            return prior
                    else:
                        # One round trip instead of two: no read. A repeated command_id
                        # is caught by the insert of its result, which then undoes the
                        # whole write (IntegrityError), and the retry reads the first
                        # result.
                        state = known
                    out = await self._apply(conn, seat, state, cmd, sender)
                    if known is not None and not out.result.ok:
                        return None  # perhaps only refused because `known` is stale: read it
                    first = out.result.ok and not self._serial and state.version == 0
                    if not out.result.ok:
                        await qs.save_result(conn, account_id, out.result, now_ms())
                    elif not first:
                        if not await qs.commit_command(
                            conn, account_id, state.version, out.state, out.result, now_ms(), state
                        ):
                            return None
                        if not self._serial:
                            written = out  # in autocommit the statement was the commit
                if first:  # the account's first change inserts its row: a transaction
                    async with self.engine.begin() as tx:
                        if not await qs.commit_command(
                            tx, account_id, state.version, out.state, out.result, now_ms(), state
                        ):
                            return None
                self._remember(account_id, out.state)
        except (Exception, asyncio.CancelledError):  # or the database dropped right after
            if written is not None:
                self._fan_out_later(account_id, written.state, written.directives, cmd.command_id)
            raise
        if out.result.ok:
            await self._publish(account_id, out.state, out.directives, cmd.command_id)
        return out.result

    async def _apply(
        self,
        conn: AsyncConnection,
        seat: Seat,
        state: SessionState,
        cmd: Command,
        sender: str | None,
    ) -> core.Outcome:
        """The core's answer to `cmd`, or a refusal for a track or device that is not there."""
        account_id = seat.session
        durations, missing = await self._durations(conn, account_id, cmd.track_ids)
        if missing:
            res = Result(cmd.command_id, "not_found", "no such track: " + missing[0], 0)
            return core.Outcome(state, res)
        if cmd.device_id is not None:
            dev = await qa.device(conn, cmd.device_id)
            if dev is None or dev.account_id not in seat.members or dev.revoked:
                return core.Outcome(state, Result(cmd.command_id, "not_found", "no such device", 0))
        ctx = core.Context(
            now_ms(),
            durations,
            await self._online(seat),
            secrets.randbits(32),
            sender,
            seat.user,
            seat.role,
            seat.guests_can_control,
        )
        out = core.apply(state, cmd, ctx)
        if not out.changed:
            return out
        new = await self.longform.settle(conn, account_id, state, out.state, ctx.now_ms)
        if new is out.state:
            return out
        # A long-form item made current starts where the account left it.
        directives = tuple(
            replace(d, position_ms=new.position.position_ms)
            if d.action == "start" and d.entry_id == new.current
            else d
            for d in out.directives
        )
        return replace(out, state=new, directives=directives)

    async def resync_local(self) -> None:
        """After the bus was down, send every device connected here the current state."""
        for account_id in self.hub.local_accounts():
            session, state = await self.view(account_id)
            self.hub.push_local(account_id, wire.encode(await self.state_message(session, state)))

    async def _durations(
        self, conn: AsyncConnection, account_id: int, track_ids: Sequence[str]
    ) -> tuple[dict[str, int], list[str]]:
        if not track_ids:
            return {}, []
        stored = await ql.get_many(conn, track_ids)
        durations = {tid: s.view.duration_ms for tid, s in stored.items()}
        rest = [t for t in track_ids if t not in durations]
        if rest:
            remote = await qu.remotes(conn, account_id, rest)
            durations.update(dict.fromkeys(remote, 0))
            eps = await qp.get_episodes(conn, account_id, rest)
            durations.update({eid: e.duration_ms for eid, e in eps.items()})
        return durations, [t for t in track_ids if t not in durations]

    async def report(self, account_id: int, device_id: str, rep: Report) -> ResultCode:
        account_id = (await self.seat(account_id)).session
        async with self._lock(account_id):
            state = self._recall(account_id)
            if state is not None:
                new, code = core.apply_report(state, device_id, rep, core.Context(now_ms()))
                if code != "ok" or (rep.version or 0) > state.version or rep.term > state.term:
                    state = None  # a refusal, or the device knows newer: read it
            if state is None:
                async with self._hot() as conn:
                    state = await qs.load(conn, account_id)
                self._remember(account_id, state)
                new, code = core.apply_report(state, device_id, rep, core.Context(now_ms()))
            if new.version == state.version:
                return code  # most reports: the position is where observers predict it
            self._forget(account_id)
            async with self.engine.begin() as conn:
                ended = rep.entry_id if rep.event == "ended" else None
                new = await self.longform.settle(conn, account_id, state, new, now_ms(), ended)
                if ended or new.current != state.current:
                    new = await self._sleep_at_end(conn, account_id, state, new, ended)
                if not await qs.compare_and_set(conn, account_id, state.version, new, state):
                    return "conflict"
                await self._record_history(conn, account_id, device_id, state, new, rep)
            self._remember(account_id, new)
        await self._publish(account_id, new, ())
        return code

    async def _sleep_at_end(
        self,
        conn: AsyncConnection,
        account_id: int,
        old: SessionState,
        new: SessionState,
        ended: str | None,
    ) -> SessionState:
        """`ctl sleep end`: the entry it waited for ended, so the session pauses (at the
        start of the next entry) and the timer is spent."""
        li = await qp.listening_of(conn, account_id)
        paused = end_of_entry(li, old, new, ended, now_ms())
        if paused is None:
            return new
        await qp.save_listening(conn, account_id, replace(li, sleep_entry=None))
        return paused

    async def chapters(self, track_id: str) -> tuple[Chapter, ...]:
        """The chapter marks of a library track's file (none for other items)."""
        if not track_id.startswith("t"):
            return ()
        async with self.engine.connect() as conn:
            stored = await ql.get(conn, track_id)
        if stored is None:
            return ()
        return await asyncio.to_thread(read_chapters, stored.path)

    def forget_tracks(self, account_id: int) -> None:
        """Drop this account's cached track views (their speed changed)."""
        for key in [k for k in self._track_cache if k[0] == account_id]:
            del self._track_cache[key]

    async def _record_history(
        self,
        conn: AsyncConnection,
        account_id: int,
        device_id: str,
        old: SessionState,
        new: SessionState,
        rep: Report,
    ) -> None:
        """A track enters the history when it starts being heard."""
        cur = new.current_entry
        if cur is None or not (new.position.playing and new.position.rate > 0):
            return
        if self._history_marker.get(account_id) == cur.entry_id:
            return
        self._history_marker[account_id] = cur.entry_id
        await qu.add_history(conn, account_id, cur.track_id, device_id, now_ms())

    async def device_lost(self, account_id: int, device_id: str) -> None:
        """The device's channel is gone: if it played the session it is on, pause that."""
        await self.lose_in((await self.seat(account_id)).session, device_id)

    async def lose_in(
        self, account_id: int, device_id: str | None, lost_at: int | None = None
    ) -> None:
        """If `device_id` plays the session of `account_id`, pause it where it is now (a
        device gone, or moved to another session by a jam). None: whichever plays."""
        lost_at = now_ms() if lost_at is None else lost_at
        async with self._lock(account_id):
            self._forget(account_id)
            async with self.engine.begin() as conn:
                state = await qs.load(conn, account_id)
                gone = state.active_device if device_id is None else device_id
                new = None if gone is None else core.device_lost(state, gone, lost_at)
                if new is not None:
                    new = await self.longform.settle(conn, account_id, state, new, lost_at)
                if new is None or not await qs.compare_and_set(
                    conn, account_id, state.version, new, state
                ):
                    return
            self._remember(account_id, new)
        await self._publish(account_id, new, ())

    async def _publish(
        self,
        account_id: int,
        state: SessionState,
        directives: Sequence[core.Directive],
        command_id: str | None = None,
    ) -> None:
        """Fan out a committed change. If the caller is cancelled meanwhile (a channel's
        command task is, when its device disconnects), what is left goes out in the
        background: otherwise the account's other devices would never get that version.
        (A message caught mid-send may go out twice; devices drop states not newer.)"""
        if self.on_commit is not None:
            self.on_commit(account_id, state)
        self.warm.observe(account_id, state)
        sent: list[int] = []
        try:
            await self._fan_out(account_id, state, directives, command_id, sent)
        except asyncio.CancelledError:
            self._fan_out_later(account_id, state, directives, command_id, sent)
            raise

    def _fan_out_later(
        self,
        account_id: int,
        state: SessionState,
        directives: Sequence[core.Directive],
        command_id: str | None,
        sent: list[int] | None = None,
    ) -> None:
        """Fan out in the background what a cancelled task committed (and has not sent)."""
        task = asyncio.ensure_future(
            self._fan_out(account_id, state, directives, command_id, [] if sent is None else sent)
        )
        self._fanning.add(task)
        task.add_done_callback(self._fanned)

    def _fanned(self, task: asyncio.Future[None]) -> None:
        self._fanning.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not fan out a change: %r", task.exception())

    async def _fan_out(
        self,
        account_id: int,
        state: SessionState,
        directives: Sequence[core.Directive],
        command_id: str | None,
        sent: list[int],
    ) -> None:
        """The directives, then the state; `sent` counts what went out (a retry skips it).
        The state names its version to the bus: other instances keep it (see `_on_version`)."""
        msg = replace(await self.state_message(account_id, state), command_id=command_id)
        out = [
            (
                d.device_id,
                0,
                wire.encode(
                    DirectiveMsg(
                        d.action, d.term, d.entry_id, d.position_ms, d.at_ms, d.playing, msg.track
                    )
                ),
            )
            for d in directives
        ]
        out.append((ALL, state.version, wire.encode(msg)))
        for to, version, payload in out[len(sent) :]:
            await self.hub.send(account_id, payload, to=to, version=version)
            sent.append(1)
