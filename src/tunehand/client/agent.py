"""The device agent (the controller): the only driver on the client.

It feeds the session's messages into a `Mirror`, makes the player match the state
while this device holds playback (`active_device` and `term`), reports the real
position on every discontinuity and every 5 s, carries out transfer directives at
the scheduled server time, keeps the clock offset, queues commands made while the
server is unreachable (replayed once on reconnect, by command id), and publishes an
immutable `Snapshot` to whoever listens (the TUI, `resume`, `receiver`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tunehand.client.channel import Channel
from tunehand.client.directives import Directives
from tunehand.client.offline.playback import OfflineDriver
from tunehand.core import session as core
from tunehand.core.commands import Command, Report, Result, coalesce_replay
from tunehand.core.lyrics import Lyrics
from tunehand.core.mirror import Mirror
from tunehand.core.model import PlayFailure, Position, SessionState, StreamInfo
from tunehand.core.position import PositionModel
from tunehand.core.protocol import (
    CommandMsg,
    DeviceHello,
    DevicesMsg,
    DirectiveMsg,
    ErrorMsg,
    Failed,
    Hello,
    Ready,
    ReportMsg,
    ResultMsg,
    Resync,
    ServerMessage,
    StateMsg,
    TimeReply,
    TimeRequest,
)
from tunehand.core.snapshot import Snapshot
from tunehand.core.timesync import Sample, TimeSync, sample
from tunehand.errors import TunehandError
from tunehand.player import base as pev
from tunehand.player.base import Player

if TYPE_CHECKING:
    from tunehand.client.offline.device import DeviceCache

log = logging.getLogger("tunehand.agent")

REPORT_EVERY_S = 5.0
DRIFT_CHECK_S = 0.01
"""How often the playing device compares its audible position with the session's line."""
DRIFT_REPORT_GAP_S = 0.03
"""At most one re-anchoring report this often (a device whose rate is not known yet)."""
REPORT_CONFIRM_S = 0.15
"""A report whose anchor no state has brought back by then was not taken (the server
found it within its tolerance, or made before a state still on its way): the session's
own anchor is the line to check against again."""
SEEK_TOLERANCE_MS = 300
JOURNAL_MAX_AGE_S = 120.0
JOURNAL_MAX = 200
TIME_BURST = 5
TIME_EVERY_ACTIVE_S = 10.0
TIME_EVERY_IDLE_S = 60.0
COMMAND_TIMEOUT_S = 10.0
COARSE_DELAY_MS = 10_000.0
HOLD_PREPARED_S = 5.0
"""A transfer target drops its prepared track if the switch has not come by then."""
ANYWHERE_OPS = frozenset(
    {"queue_add", "queue_next", "queue_remove", "queue_move", "order_move", "queue_clear"}
)


PlayerFactory = Callable[[pev.EventSink, asyncio.AbstractEventLoop], Player]


class Agent:
    def __init__(
        self,
        *,
        server: str,
        token: Callable[[], Awaitable[str]],
        device: DeviceHello,
        player_factory: PlayerFactory | None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        ca_file: str | None = None,
        remote_track: Callable[[str], Awaitable[str]] | None = None,
        stream_quality: str = "original",
        lyrics: Callable[[str], Awaitable[Lyrics | None]] | None = None,
        cache: DeviceCache | None = None,
    ) -> None:
        self.device = device
        self.stream_quality = stream_quality
        """"original", or the transcode the player asks the server for ("high", "low")."""

        self.remote_track = remote_track
        """Make an http(s) URL a track of the library (its id), for MPRIS OpenUri."""
        self.lyrics = lyrics
        """A track's lyrics from the server (None: it has none), for MPRIS `xesam:asText`."""
        self.mirror = Mirror()
        self.sync = TimeSync()
        self._player_factory = player_factory
        self.player: Player | None = None
        self._on_snapshot = on_snapshot
        self._hello_seen = False
        self.channel = Channel(
            server,
            token,
            device,
            self._on_message,
            self._on_connection,
            lambda: self.mirror.version if self._hello_seen else None,
            ca_file,
        )
        self._results: dict[str, asyncio.Future[Result]] = {}
        self._journal: list[tuple[float, Command]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_report: tuple[int, str | None, bool] | None = None
        self._last_anchor: tuple[int, int] | None = None
        self._last_position: Position | None = None
        """The playback anchor of the last state the player followed here."""
        self.model = PositionModel()
        """The audible steps of the player while it plays here (core/position.py)."""
        self._reported: tuple[Position, Position, float] | None = None
        """(the session's anchor then, the anchor reported, time.monotonic() sent): the
        line the server is taking from our report, until a state with another anchor
        arrives or REPORT_CONFIRM_S passes."""
        self._drift_reported_at = 0.0
        self._directive_term = 0
        """The term of the last start/stop directive. A state with an older term was sent
        before it (a command's result can overtake its state) and must not undo it."""
        self._switching = 0
        """Start/stop directives waiting for their server time: until then the state that
        announces the switch (it arrives first) must not start or stop the player early."""
        self._early: list[StateMsg] = []
        """States that came before this connection's `hello` (the server may send them
        first); taken after it, so an older `hello` cannot undo a newer state."""
        self._settling: str | None = None
        """The entry the player is loading or seeking, until it says Ready: its position
        means nothing yet (mpv answers 0 or the old one), so it is neither reported nor
        compared, and what changed meanwhile is applied on Ready."""
        self._preparing: tuple[str, str] | None = None  # (transfer id, entry id)
        self._warm: str | None = None
        """The entry this device holds loaded paused as the predicted next device."""
        self._holding_for_transfer = False
        self._holding_since = 0.0
        self._next_prefetched: str | None = None
        self._volume: int | None = None
        self._meta: pev.Meta | None = None
        """What the player last learnt of its track (title, duration), and the last one
        reported: reported when the track is this device's to play."""
        self._meta_sent: pev.Meta | None = None
        self._failure_seen: PlayFailure | None = None
        self._failed_here: str | None = None
        self._speed = 1.0
        self.events: asyncio.Queue[str] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.first_state = asyncio.Event()
        self.state_changed = asyncio.Event()
        self._stopped = False
        self.cache = cache
        self._local: set[str] = set()
        """Entries the player was given as a cached file (a seek there is a seek, also on
        a device that otherwise streams transcodes)."""
        """The offline cache: cached tracks play from their file, the queue ahead is
        cached, and playback goes on from it while the server is unreachable."""
        self.offline = OfflineDriver(self, cache) if cache is not None else None
        self.directives = Directives(self)

    # --- time -------------------------------------------------------------------

    @staticmethod
    def _local_ms() -> float:
        return time.monotonic() * 1000

    def server_now(self) -> int:
        return self.sync.server_ms(self._local_ms())

    def _server_ms_at(self, monotonic_s: float) -> int:
        """Server time of an instant on time.monotonic() (a player's step)."""
        return self.sync.server_ms(self._local_ms() - (time.monotonic() - monotonic_s) * 1000)

    # --- running ----------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (or the login is refused: AuthError)."""
        self.ensure_player()
        self._spawn(self._clock_loop())
        self._spawn(self._report_loop())
        self._spawn(self._drift_loop())
        try:
            await self.channel.run()
        except TunehandError:
            # Revoked, logged out, or replaced by a newer connection of this device:
            # whoever plays now, it is not this process.
            self._stop_player()
            raise
        finally:
            for t in list(self._tasks):
                t.cancel()

    def ensure_player(self) -> None:
        """Make this device's player now (`run` does it first thing)."""
        if self._player_factory is not None and self.player is None:
            self.player = self._player_factory(self._on_player_event, asyncio.get_running_loop())

    def _stop_player(self) -> None:
        self._stopped = True
        if self.player is not None:
            self.player.stop()
            self._publish("stopped: this device no longer holds the session here")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, msg: object) -> None:
        self._spawn(self.channel.send(msg))

    def _publish(self, event: str = "") -> None:
        if event:
            self.events.put_nowait(event)
            log.info("%s", event)
        if self._on_snapshot is None:
            return
        now = self.server_now()
        offline = self.offline is not None and self.offline.active
        self._on_snapshot(
            Snapshot(
                self.device.id,
                self.channel.connected,
                self.shown(),
                self.offline.track() if self.offline is not None and offline else self.mirror.track,
                self.mirror.devices,
                now,
                self.position_ms(),
                event,
            )
        )

    def shown(self) -> SessionState:
        """The state as shown (the server's with commands in flight replayed on it): what
        `_publish` announces, so a reader asking between two announcements sees the same.
        While playing offline: the session as played here."""
        if self.offline is not None and self.offline.state is not None:
            return self.offline.state
        return self.mirror.shown(core.Context(self.server_now()))

    def position_ms(self) -> int:
        """Where playback is now: the player's own position when it plays here."""
        if self.offline is not None and self.offline.active:
            return self.offline.position_ms()
        st = self.mirror.state
        # After `leave` the player is closed; the channel's last notices still publish.
        if self.player is not None and not self._stopped and st.active_device == self.device.id:
            tag = self.player.playing_tag()
            pos = self.player.position_ms()
            if tag is not None and tag == st.current and pos is not None:
                return pos
        return st.position_at(self.server_now())

    # --- connection and messages ------------------------------------------------

    def _on_connection(self, up: bool) -> None:
        if up:
            self.connected.set()
            self._spawn(self._time_burst())
        else:
            self.connected.clear()
            self._publish("connection to the server lost; reconnecting")
            if self.offline is not None:
                self.offline.connection_lost()

    def _on_message(self, msg: ServerMessage) -> None:
        if isinstance(msg, Hello):
            if not self.sync.ready:
                # A coarse first estimate (its delay unknown, so any real exchange wins),
                # so server times mean something before the first `time` reply.
                self.sync.add(Sample(msg.server_time_ms - self._local_ms(), COARSE_DELAY_MS))
            self._hello_seen = True
            self.mirror.on_hello(msg)
            for early in self._early:
                self.mirror.on_state(early)
            self._early.clear()
            self._publish("connected to the server")
            if self.offline is not None and self.offline.active:
                self.offline.on_hello()  # replays the journal its way
            else:
                self._replay_journal()
            self._after_state()
        elif isinstance(msg, StateMsg):
            if not self.channel.connected:
                self._early.append(msg)
            elif self.mirror.on_state(msg):
                self._after_state()
        elif isinstance(msg, DevicesMsg):
            self.mirror.on_devices(msg)
            self._publish()
        elif isinstance(msg, ResultMsg):
            res = Result(msg.command_id, msg.code, msg.message, msg.version)
            if self.offline is not None and self.offline.on_result(res):
                return
            self.mirror.on_result(res)
            fut = self._results.pop(msg.command_id, None)
            if fut is not None and not fut.done():
                fut.set_result(res)
            if not res.ok:
                self._publish(f"refused: {res.message}")
        elif isinstance(msg, TimeReply):
            self.sync.add(sample(msg.t0, msg.t1, msg.t2, self._local_ms()))
        elif isinstance(msg, DirectiveMsg):
            self.directives.on_directive(msg)
        elif isinstance(msg, ErrorMsg):
            if msg.code == "stale_term":
                # Our report carried an old term: maybe another device holds playback, or
                # our copy of the state is behind. Ask for the state; if another device
                # does hold playback, reconciling with it stops the player here.
                self._send(Resync(self.mirror.version))
            elif msg.code == "jam":
                # This account's devices moved to or from a jam's session (a `hello`
                # with that session follows): one line for the user.
                self._publish(msg.message)
            else:
                log.warning("server: %s", msg.message)

    def _after_state(self) -> None:
        first = not self.first_state.is_set()
        self.first_state.set()
        self.state_changed.set()
        self._reconcile()
        self._report_meta()
        self._publish(self._skipped(first))
        self._cache_ahead()

    def _skipped(self, first: bool) -> str:
        """A notice when the session skipped an entry that another device could not play
        (this device's own failure was said when it happened); none for an old one."""
        failure = self.mirror.state.failure
        if failure is None or failure == self._failure_seen:
            return ""
        self._failure_seen = failure
        if first or failure.entry_id == self._failed_here:
            return ""
        return f"skipped an entry the device could not play: {failure.message}"

    def _cache_ahead(self) -> None:
        """Have the offline cache keep the current track and the next ones, and the
        session as last known."""
        cache = self.cache
        if cache is None or self.player is None:
            return
        st = self.mirror.state
        msg = StateMsg(st.version, st, self.mirror.track, self.mirror.next_track)
        cache.save(msg)
        if not self._mine() or st.current is None or cache.ahead <= 0:
            return
        if self.stream_quality != "original":
            return  # a slow link (it asks for transcodes): only what the user pinned
        order = st.play_order()
        i = order.index(st.current) if st.current in order else 0
        ids = [e.track_id for e in (st.entry(x) for x in order[i : i + 1 + cache.ahead]) if e]
        cache.want(msg, ids)

    # --- commands ---------------------------------------------------------------

    async def command(self, op: str, **fields: Any) -> Result:
        """Send a command; while offline it waits in the journal and is replayed once."""
        cmd = Command(op=op, command_id=os.urandom(8).hex(), **fields)  # type: ignore[arg-type]
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._results[cmd.command_id] = fut
        self.mirror.predict(cmd, core.Context(self.server_now()))
        if self.offline is not None and self.offline.active:
            self.offline.apply(cmd)
        self._reconcile()
        self._publish()
        if not await self.channel.send(CommandMsg(cmd)):
            self._journal.append((time.monotonic(), cmd))
            del self._journal[:-JOURNAL_MAX]
            self._publish(f"offline: {op} will be sent when the server is back")
        return await fut

    def _replay_journal(self) -> None:
        now = time.monotonic()
        kept = [c for t, c in self._journal if c.op in ANYWHERE_OPS or now - t < JOURNAL_MAX_AGE_S]
        dropped = [c for _, c in self._journal if c not in kept]
        self._journal = []
        for c in dropped:
            self.mirror.on_result(Result(c.command_id, "conflict", "too old to replay"))
            fut = self._results.pop(c.command_id, None)
            if fut is not None and not fut.done():
                fut.set_result(Result(c.command_id, "conflict", "dropped: made too long ago"))
            self._publish(f"dropped {c.op}: made while offline too long ago")
        sending, folded = coalesce_replay(kept)
        for c in folded:
            self._coalesced(c)
        for c in sending:
            self._send(CommandMsg(c))

    def _coalesced(self, c: Command) -> None:
        """`c` was folded into the command before it (a `pause` into its `play`): the
        server will not answer it, so it is answered here."""
        res = Result(c.command_id, "ok", "sent with the play before it", 0)
        self.mirror.on_result(res)
        fut = self._results.pop(c.command_id, None)
        if fut is not None and not fut.done():
            fut.set_result(res)

    async def pull(self, paused: bool = False) -> Result:
        """Move playback to this device (the same transfer path as `ctl transfer`)."""
        return await self.command("transfer", device_id=self.device.id, paused=paused)

    # --- reconciling the player with the state ----------------------------------

    def _mine(self) -> bool:
        return self.mirror.state.active_device == self.device.id

    def _reconcile(self) -> None:
        player = self.player
        if player is None or self._stopped:
            return
        if self.offline is not None and self.offline.active:
            self.offline.reconcile()
            return
        st = self.mirror.state
        if st.term < self._directive_term or self._switching:
            return  # the directive's state is on its way, or its time has not come
        if not self._mine():
            if time.monotonic() - self._holding_since > HOLD_PREPARED_S:
                # A transfer to here that never switched was aborted: let it go.
                self._holding_for_transfer = False
                self._preparing = None
            busy = self._preparing is not None or self._holding_for_transfer
            busy = busy or (self._warm is not None and player.playing_tag() == self._warm)
            if player.playing_tag() is not None and not busy:
                player.stop()
                self._next_prefetched = None
                self._publish("playback moved to another device")
            return
        if self._volume != st.volume:
            self._volume = st.volume
            player.set_volume(st.volume)
        speed = self.mirror.track.speed if self.mirror.track is not None else 1.0
        if self._speed != speed:
            self._speed = speed
            player.set_speed(speed)
        cur = st.current_entry
        if cur is None:
            if player.playing_tag() is not None:
                player.stop()
            return
        track = self.mirror.track
        anchor = (st.position.position_ms, st.position.at_ms)
        external = anchor != self._last_anchor
        want_pos = st.position_at(self.server_now())
        if player.playing_tag() != cur.entry_id:
            if track is None or track.url is None:
                return
            self._last_anchor, self._last_position = anchor, st.position
            self._holding_for_transfer = False
            self._load(cur.entry_id, self._absolute(track.url), want_pos, not st.position.playing)
            self._next_prefetched = None
            self._last_report = None
        elif self._settling == cur.entry_id:
            # mpv may drop a pause or resume made before the file is in (the load's own
            # options win): keep the anchor unseen, and reconcile again on Ready.
            pass
        else:
            prev, self._last_position = self._last_position, st.position
            self._last_anchor = anchor
            if st.position.playing and player.paused():
                self.model.reset()
                player.resume()
            elif not st.position.playing and not player.paused():
                self.model.reset()
                player.pause()
                # A pause: tell where the audio really stopped. Unless the same state also
                # moved the position (`next` at the end of the queue stops at the start):
                # the player goes there below, and where it was must not be reported.
                moved = prev is not None and (
                    abs(prev.at(st.position.at_ms) - st.position.position_ms) > SEEK_TOLERANCE_MS
                )
                if not moved:
                    self._report(False)
            pos = player.position_ms()
            if external and pos is not None and abs(pos - want_pos) > SEEK_TOLERANCE_MS:
                self._settling = cur.entry_id
                self.model.reset()
                self._seek(want_pos)
            if st.position.playing and st.position.rate == 0 and not player.paused():
                # Audible, and the session waits for that: unless the rate 0 is our own
                # stall report and nothing played since (its step is older than it).
                sample = player.position_sample()
                if sample is not None and self._server_ms_at(sample[1]) >= st.position.at_ms:
                    self._report(True)
        self._prefetch_next()

    def _prefetch_next(self) -> None:
        if self.player is None:
            return
        nxt = self.mirror.next_track
        next_entry = self.mirror.state.next_entry_id()
        if next_entry == self._next_prefetched:
            return
        self._next_prefetched = next_entry
        url = None
        if nxt is not None and nxt.url and next_entry is not None:
            url = self._playable(self._absolute(nxt.url), next_entry)
        self.player.set_next(next_entry if url else None, url)

    def _playable(self, url: str, tag: str | None = None) -> str:
        """A cached track's file instead of its stream URL (online too: no download).
        With `tag`: the player is given it, and remembers which it plays (`_local`)."""
        path = None
        if self.cache is not None and "/v1/stream/" in url:
            path = self.cache.path_for(url.split("/v1/stream/", 1)[1].split("?", 1)[0])
        if tag is not None:
            if path is not None:
                if len(self._local) > 64:
                    self._local.clear()  # old entries: the player holds two at most
                self._local.add(tag)
            else:
                self._local.discard(tag)
        return path if path is not None else url

    def _load(self, tag: str, url: str, position_ms: int, paused: bool) -> None:
        assert self.player is not None
        self._settling = tag
        self.model.reset()
        url = self._playable(url, tag)
        offset = "&quality=" in url and "/v1/stream/" in url and position_ms > 0
        if offset:  # a transcode: the server starts it there, timed from there
            url += f"&t={position_ms / 1000:.3f}"
        self.player.load(tag, url, position_ms=position_ms, paused=paused, offset=offset)

    def _seek(self, position_ms: int) -> None:
        """The player to `position_ms` of its track: a seek, or for a transcoded stream
        (no Range) a new load from there."""
        player = self.player
        assert player is not None
        tag, cur, track = player.playing_tag(), self.mirror.state.current_entry, self.mirror.track
        if tag is not None and cur is not None and cur.entry_id == tag and track and track.url:
            url = self._absolute(track.url)
            if "&quality=" in url and tag not in self._local:
                self._load(tag, url, position_ms, player.paused())
                return
        player.seek(position_ms)

    def _absolute(self, url: str) -> str:
        full = url if "://" in url else self.channel.server + url
        if self.stream_quality != "original" and "/v1/stream/" in url and "?exp=" in url:
            full += f"&quality={self.stream_quality}"
        return full

    def _report(
        self, playing: bool, event: str = "progress", entry: str | None = None, message: str = ""
    ) -> None:
        if self.player is None or not self._mine():
            return
        if self.offline is not None and self.offline.active:
            return  # nobody to report to: the device's place is told on return
        if self._switching and event == "progress":
            return  # a switch is due: the directive's instant decides, not this report
        st = self.mirror.state
        tag = entry or self.player.playing_tag() or st.current
        sample = self.player.position_sample()
        if event == "progress" and (tag == self._settling or sample is None):
            return  # not known yet: the player's Ready or the drift check reports it
        if sample is not None:
            pos, at_ms = sample[0], self._server_ms_at(sample[1])
        else:
            # An `ended` or `error` report must go out even when the player no longer
            # knows a position (it moved on): without it the server never advances.
            pos, at_ms = self.player.position_ms() or 0, self.server_now()
        rate = self.model.rate() if playing else 0.0
        key = (st.version, tag, playing)
        if event == "progress" and key == self._last_report:
            return
        self._last_report = key
        self._send_report(Position(max(0, pos), at_ms, playing, rate), tag, event, message)

    def _send_report(
        self, anchor: Position, tag: str | None, event: str = "progress", message: str = ""
    ) -> None:
        st = self.mirror.state
        rep = Report(
            term=max(st.term, self._directive_term),
            entry_id=tag,
            position_ms=anchor.position_ms,
            at_ms=anchor.at_ms,
            playing=anchor.playing,
            rate=anchor.rate,
            event=event,  # type: ignore[arg-type]
            message=message,
            version=st.version,
        )
        if event == "progress":
            self._reported = (st.position, anchor, time.monotonic())
        self._send(ReportMsg(rep))

    def _check_drift(self) -> None:
        """Re-anchor the session when the audible position left its line (DRIFT_MS)."""
        player = self.player
        if player is None or self._stopped or self._switching or not self._mine():
            return
        if self.offline is not None and self.offline.active:
            return
        st = self.mirror.state
        if st.term < self._directive_term or not st.position.playing:
            return
        tag = player.playing_tag()
        if tag is None or tag != st.current or tag == self._settling or player.paused():
            return
        sample = player.position_sample()
        if sample is None:
            return
        self.model.observe(sample[0], self._server_ms_at(sample[1]))
        now = time.monotonic()
        rep = self._reported
        if rep is not None and (rep[0] != st.position or now - rep[2] > REPORT_CONFIRM_S):
            self._reported = rep = None  # a newer anchor came (ours or not), or none will
        anchor = rep[1] if rep is not None else st.position
        fix = self.model.check(anchor, self.server_now(), player.waiting())
        if fix is None or now - self._drift_reported_at < DRIFT_REPORT_GAP_S:
            return
        self._drift_reported_at = now
        self._last_report = None
        self._send_report(fix, tag)

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(DRIFT_CHECK_S)
            self._check_drift()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            if self.player is not None and self._mine() and not self.player.paused():
                self._last_report = None
                self._report(True)

    # --- player events ----------------------------------------------------------

    def _on_player_event(self, ev: pev.PlayerEvent) -> None:
        st = self.mirror.state
        if isinstance(ev, (pev.Ready, pev.Failed)) and ev.tag == self._settling:
            self._settling = None
        if self.offline is not None and self.offline.active:
            self.offline.on_player_event(ev)
            return
        if isinstance(ev, pev.Ready):
            if self._preparing is not None and ev.tag == self._preparing[1]:
                transfer_id = self._preparing[0]
                self._preparing = None
                self._holding_for_transfer = True
                self._holding_since = time.monotonic()
                self._send(Ready(transfer_id))
                return
            if (
                self._mine()
                and not self._switching
                and ev.tag == st.current
                and self.player is not None
            ):
                self._last_report = None
                self._reconcile()  # what changed while it loaded or seeked
                self._report(not self.player.paused())
        elif isinstance(ev, pev.Advanced):
            self.model.reset()
            if ev.previous is not None:
                self._report(True, "ended", ev.previous)
            self._next_prefetched = None
        elif isinstance(ev, pev.Ended):
            self._report(False, "ended", ev.tag)
        elif isinstance(ev, pev.Failed):
            if self._preparing is not None and ev.tag == self._preparing[1]:
                self._send(Failed(self._preparing[0], ev.message))
                self._preparing = None
                return
            self._failed_here = ev.tag
            track = self.mirror.track if st.current == ev.tag else None
            self._publish(f"cannot play {track.title if track else ev.tag}: {ev.message}; skipping")
            self._report(False, "error", ev.tag, ev.message)
        elif isinstance(ev, pev.Meta):
            self._meta = ev
            self._report_meta()
            return
        self._publish()

    def _report_meta(self) -> None:
        """Tell the session what the player learnt of the current remote track (a
        radio's live title, a podcast's tags and duration), so every device shows it."""
        ev, st, track = self._meta, self.mirror.state, self.mirror.track
        if ev is None or ev is self._meta_sent or ev.tag != st.current or self._switching:
            return
        if not self._mine():
            return
        if track is None or track.url is None or "://" not in track.url:
            return  # a library track: the server's tags are the truth
        if st.stream == StreamInfo(ev.tag, ev.title, ev.artist, ev.album, ev.duration_ms):
            return  # the session has it already
        rep = Report(
            term=max(st.term, self._directive_term),
            entry_id=ev.tag,
            position_ms=0,
            at_ms=self.server_now(),
            playing=False,
            rate=0.0,
            event="meta",
            version=st.version,
            title=ev.title,
            artist=ev.artist,
            album=ev.album,
            duration_ms=ev.duration_ms,
        )
        self._meta_sent = ev
        self._send(ReportMsg(rep))

    # --- clock ------------------------------------------------------------------

    async def _time_burst(self) -> None:
        for _ in range(TIME_BURST):
            if not await self.channel.send(TimeRequest(self._local_ms())):
                return
            await asyncio.sleep(0.02)

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(TIME_EVERY_ACTIVE_S if self._mine() else TIME_EVERY_IDLE_S)
            await self.channel.send(TimeRequest(self._local_ms()))

    # --- leaving ----------------------------------------------------------------

    async def leave(self, timeout_s: float = 3.0) -> None:
        """Stop here; if this device was playing, leave the session paused at the exact
        position the speaker reached (a report fenced by our term), for the next device."""
        player = self.player
        if player is not None and self._mine() and player.playing_tag() is not None:
            player.pause()
            st = self.mirror.state
            pos = max(0, player.position_ms() or 0)
            rep = Report(
                term=max(st.term, self._directive_term),
                entry_id=player.playing_tag(),
                position_ms=pos,
                at_ms=self.server_now(),
                playing=False,
                rate=0.0,
                version=None,  # our own stop, not a state followed: a newer one cannot undo it
            )
            sent = await self.channel.send(ReportMsg(rep))
            if sent:
                await self._wait_paused(timeout_s)
        if self.cache is not None:  # where it was offline: the next start goes on from there
            if self.offline is not None and (msg := self.offline.state_msg()) is not None:
                self.cache.save(msg)
            self.cache.close()
        self._stopped = True
        if player is not None:
            player.close()
        await self.channel.close()

    async def _wait_paused(self, timeout_s: float) -> None:
        await self.wait_for(lambda st: not st.position.playing, timeout_s)

    async def wait_for(self, pred: Callable[[SessionState], bool], timeout_s: float) -> bool:
        """Wait until the server's state satisfies `pred`; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while not pred(self.mirror.state):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.state_changed.clear()
            try:
                await asyncio.wait_for(self.state_changed.wait(), left)
            except TimeoutError:
                return pred(self.mirror.state)
        return True
