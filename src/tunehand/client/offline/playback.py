"""Playing on while the server is unreachable: the agent's offline mode.

While the channel is down and this device held playback (or it started with no
server and a session last known in the cache), `OfflineDriver` keeps a local copy of
the session (`state`) and moves it with the same pure core the server runs: the
user's commands (`core.apply`) and the player's ends (`core.apply_report`). It plays
only what is cached, skipping the rest and saying so. The agent still journals every
command made meanwhile.

When the server is back (`on_hello`) the device reconciles without a jump: the
playback commands made offline were already heard here, so instead of replaying them
the device tells the server where it is (`play` that entry at the position the speaker
reached, on this device, `paused` when paused here: one command, so the session never
plays in between); queue edits are replayed by
the agent's usual journal rules. If another device took playback meanwhile, this one
stops and follows the server, like any device that lost the term. A refused
reconciliation also leaves the server's state in charge, saying so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from tunehand.core import session as core
from tunehand.core.commands import Command, Report, Result
from tunehand.core.model import Position, SessionState
from tunehand.core.protocol import CommandMsg, StateMsg, TrackView
from tunehand.player import base as pev

if TYPE_CHECKING:
    from tunehand.client.agent import Agent
    from tunehand.client.offline.device import DeviceCache

log = logging.getLogger("tunehand.agent")

PLAYBACK_OPS = frozenset({"play", "pause", "toggle", "next", "prev", "seek"})
"""Commands heard here while offline: the device's place on return stands for them."""
ADDING_OPS = frozenset({"queue_add", "queue_next", "queue_replace"})
"""Commands made offline that add entries: replayed, the server gives them its own ids."""


def _brings_tracks(c: Command) -> bool:
    """A `play` of tracks (the queue replaced, or tracks put first): it adds entries."""
    return c.op == "play" and bool(c.track_ids)


class OfflineDriver:
    def __init__(self, agent: Agent, cache: DeviceCache) -> None:
        self.agent = agent
        self.cache = cache
        self.state: SessionState | None = None
        """The session as played here offline; None while online."""
        self._anchor: Position | None = None
        self._adopting: list[str] = []
        """Command ids of the reconciliation on return; offline until they are answered."""
        self._offline_ids: set[str] = set()
        self._said_skip: set[str] = set()
        self._renamed: tuple[str, str, frozenset[str]] | None = None
        """Back online, playing an entry added offline: (its id here, its track, the
        server's entry ids before the replayed adds), until the server's copy shows up."""
        self._replayed_adds: dict[str, Result | None] = {}
        """The replayed commands that add entries, and their results once answered."""

    @property
    def active(self) -> bool:
        return self.state is not None

    def _now(self) -> int:
        return self.agent.server_now()

    # --- going offline ------------------------------------------------------------

    def connection_lost(self) -> None:
        """The channel dropped: go on here if this device was playing."""
        a = self.agent
        if self.state is not None or a.player is None or a._stopped or not a._mine():
            return  # not playing here, or left (the channel closes after the player)
        st = a.mirror.shown(core.Context(self._now()))
        if st.current_entry is None:
            return
        pos = a.position_ms()
        playing = st.position.playing and not a.player.paused()
        self.state = replace(
            st,
            active_device=a.device.id,
            position=Position(pos, self._now(), playing, 1.0 if playing else 0.0),
        )
        self._anchor = self.state.position
        a._publish("offline: playing on from the cache")
        self.reconcile()

    def start_from_cache(self, playing: bool = True) -> bool:
        """Start the session as last known, from the cache (no server): playing, or
        paused at its place (the TUI: a start never plays on its own). False when
        nothing of it is cached."""
        a = self.agent
        last = self.cache.last()
        if last is None:
            return False
        a.ensure_player()
        if a.player is None:
            return False
        st = last.state
        cur = st.current_entry
        if cur is None:
            return False
        pos = st.position.position_ms  # where it was when last known
        rate = 1.0 if playing else 0.0
        self.state = replace(
            st, active_device=a.device.id, position=Position(pos, self._now(), playing, rate)
        )
        self._anchor = self.state.position
        if self._playable_from(st.current) is None:
            self.state = None
            return False
        self.reconcile()
        a._publish("offline: playing from the cache")
        return True

    def _playable_from(self, entry_id: str | None) -> str | None:
        """The first entry from `entry_id` on (play order) whose track is cached."""
        st = self.state
        assert st is not None
        order = list(st.play_order())
        if entry_id not in order:
            return None
        for eid in order[order.index(entry_id) :]:
            e = st.entry(eid)
            if e is not None and self.cache.path_for(e.track_id):
                return eid
        return None

    # --- what the agent shows -----------------------------------------------------

    def track(self) -> TrackView | None:
        st = self.state
        cur = st.current_entry if st is not None else None
        return self.cache.view(cur.track_id) if cur is not None else None

    def position_ms(self) -> int:
        st = self.state
        assert st is not None
        player = self.agent.player
        if player is not None and player.playing_tag() == st.current:
            pos = player.position_ms()
            if pos is not None:
                return pos
        return st.position_at(self._now())

    # --- commands and player events -------------------------------------------------

    def apply(self, cmd: Command) -> None:
        st = self.state
        assert st is not None
        self._offline_ids.add(cmd.command_id)
        now = self._now()
        here = replace(
            st,
            position=Position(
                self.position_ms(), now, st.position.playing, 1.0 if st.position.playing else 0.0
            ),
        )
        out = core.apply(here, cmd, core.Context(now, online_devices=(self.agent.device.id,)))
        if out.result.ok:
            self.state = replace(out.state, position=_audible(out.state.position))
            self.reconcile()

    def on_player_event(self, ev: pev.PlayerEvent) -> None:
        a = self.agent
        st = self.state
        assert st is not None
        if a._stopped:
            return  # left: the player is closed
        now = self._now()
        if isinstance(ev, pev.Ready):
            if ev.tag == st.current and a.player is not None:
                # Loaded: its place is the player's; playing or not stays what the state
                # says (a play made while it loaded), and reconcile makes the player so.
                playing = st.position.playing
                pos = a.player.position_ms() or st.position.position_ms
                self.state = replace(
                    st, position=Position(pos, now, playing, 1.0 if playing else 0.0)
                )
                self._anchor = self.state.position
                self.reconcile()
        elif isinstance(ev, pev.Advanced):
            a.model.reset()
            a._next_prefetched = None
            if st.entry(ev.tag) is not None:
                self.state = replace(st, current=ev.tag, position=Position(0, now, True, 1.0))
                self._anchor = self.state.position
                self._played(ev.tag)
            self.reconcile()
        elif isinstance(ev, (pev.Ended, pev.Failed)):
            if isinstance(ev, pev.Failed):
                a._publish(f"offline: cannot play {ev.tag}: {ev.message}; skipping")
            if ev.tag == st.current:
                rep = Report(
                    st.term,
                    ev.tag,
                    0,
                    now,
                    False,
                    0.0,
                    "ended" if isinstance(ev, pev.Ended) else "error",
                )
                new, _ = core.apply_report(st, st.active_device or "", rep, core.Context(now))
                self.state = replace(new, position=_audible(new.position))
                self._anchor = None
                self.reconcile()
        a._publish()

    def _played(self, entry_id: str) -> None:
        st = self.state
        e = st.entry(entry_id) if st is not None else None
        if e is not None:
            self.cache.played(e.track_id)

    # --- the player follows the offline state -----------------------------------------

    def reconcile(self) -> None:
        a = self.agent
        if self._renamed is not None:
            self._follow_renamed()  # a state came: the server's copy may be in it
        player = a.player
        st = self.state
        if player is None or st is None or a._stopped:
            return
        if a._volume != st.volume:
            a._volume = st.volume
            player.set_volume(st.volume)
        cur = st.current_entry
        if cur is None:
            if player.playing_tag() is not None:
                player.stop()
            return
        if player.playing_tag() != cur.entry_id:
            target = self._playable_from(cur.entry_id)
            if target != cur.entry_id:
                self._say_skipped(cur.entry_id, target)
                if target is None:
                    self.state = replace(st, position=Position(0, self._now(), False, 0.0))
                    if player.playing_tag() is not None:
                        player.stop()
                    a._publish("offline: nothing further in the queue is cached; stopped")
                    return
                st = self.state = replace(
                    st, current=target, position=Position(0, self._now(), st.position.playing, 0.0)
                )
                cur = st.current_entry
                assert cur is not None
            path = self.cache.path_for(cur.track_id)
            assert path is not None
            self._anchor = st.position
            a._settling = cur.entry_id
            a.model.reset()
            player.load(
                cur.entry_id,
                path,
                position_ms=st.position_at(self._now()),
                paused=not st.position.playing,
            )
            a._next_prefetched = None
            self._played(cur.entry_id)
        elif a._settling != cur.entry_id:
            if st.position.playing and player.paused():
                player.resume()
            elif not st.position.playing and not player.paused():
                player.pause()
            if st.position != self._anchor:
                self._anchor = st.position
                pos = player.position_ms()
                want = st.position_at(self._now())
                if pos is not None and abs(pos - want) > 300:
                    a._settling = cur.entry_id
                    player.seek(want)
        self._prefetch()
        order = st.play_order()
        i = order.index(st.current) if st.current in order else 0
        ahead = [st.entry(x) for x in order[i : i + 1 + max(1, self.cache.ahead)]]
        self.cache.check([e.track_id for e in ahead if e is not None])
        msg = self.state_msg()
        if msg is not None:
            self.cache.save(msg)

    def _say_skipped(self, start: str, target: str | None) -> None:
        st = self.state
        assert st is not None
        order = list(st.play_order())
        i = order.index(start)
        j = order.index(target) if target is not None else len(order)
        for eid in order[i:j]:
            if eid in self._said_skip:
                continue
            self._said_skip.add(eid)
            e = st.entry(eid)
            view = self.cache.view(e.track_id) if e is not None else None
            name = view.title if view is not None else (e.track_id if e else eid)
            self.agent._publish(f"offline: {name} is not cached; skipping")

    def _prefetch(self) -> None:
        a = self.agent
        st = self.state
        assert st is not None and a.player is not None
        nxt = st.next_entry_id()
        target = None
        if nxt is not None:
            target = self._playable_from(nxt)
            if target is not None and st.play_order().index(target) <= st.play_order().index(
                st.current or ""
            ):
                target = None  # wrapped around (repeat all): let the end decide
        if target == a._next_prefetched:
            return
        a._next_prefetched = target
        e = st.entry(target)
        path = self.cache.path_for(e.track_id) if e is not None else None
        a.player.set_next(target if path else None, path)

    # --- back online -----------------------------------------------------------------

    def on_hello(self) -> None:
        """The server is back (its state is in the mirror): tell it where playback is."""
        a = self.agent
        st = self.state
        assert st is not None
        server = a.mirror.state
        mine = self._offline_ids
        playback = [
            c
            for _, c in a._journal
            if c.op in PLAYBACK_OPS and c.command_id in mine and not _brings_tracks(c)
        ]
        # A play of tracks made offline brought entries the server has not got: it goes
        # as an add, landing paused (where playback is now is told after, as for any).
        a._journal = [
            (t, replace(c, paused=True) if c.command_id in mine and _brings_tracks(c) else c)
            for t, c in a._journal
            if c not in playback
        ]
        for c in playback:  # heard here already: where playback is now says it
            res = Result(c.command_id, "ok", "applied here while offline", 0)
            a.mirror.on_result(res)
            fut = a._results.pop(c.command_id, None)
            if fut is not None and not fut.done():
                fut.set_result(res)
        adding = [
            c.command_id
            for _, c in a._journal
            if (c.op in ADDING_OPS or _brings_tracks(c)) and c.command_id in mine
        ]
        a._replay_journal()
        if server.active_device not in (None, a.device.id):
            self._leave("another device took playback while this one was offline")
            return
        cur = st.current_entry
        if cur is not None and server.entry(cur.entry_id) is None and adding:
            # Added here offline: the replayed add gives it the server's own id. Wait for
            # it, then go on with the server's entry without touching the player.
            self._replayed_adds = dict.fromkeys(adding)
            before = frozenset(e.entry_id for e in server.queue)
            self._renamed = (cur.entry_id, cur.track_id, before)
            return
        if cur is None or server.entry(cur.entry_id) is None:
            self._leave("the queue changed on the server while offline")
            return
        self._adopt(cur.entry_id)

    def _follow_renamed(self) -> None:
        """Waiting for the server's copy of the entry playing here (added offline): once
        it is in the server's state, the player's entry takes its id (same file, same
        place: nothing reloads or seeks) and the server is told where playback is."""
        if self._renamed is None:
            return
        local, track_id, before = self._renamed
        a = self.agent
        server = a.mirror.state
        order = server.play_order()
        fresh = [
            eid
            for eid in order
            if eid not in before and (e := server.entry(eid)) is not None and e.track_id == track_id
        ]
        if not fresh:
            answered = [r for r in self._replayed_adds.values() if r is not None]
            if len(answered) < len(self._replayed_adds):
                return  # an add is not answered yet
            if all(r.ok and server.version < r.version for r in answered):
                return  # answered, its state on the way
            self._renamed = None
            self._leave("the entry playing here was not added on the server")
            return
        self._renamed = None
        new = fresh[0]
        st = self.state
        assert st is not None
        if a.player is not None:
            a.player.retag(local, new)
        if a._settling == local:
            a._settling = new
        if a._next_prefetched == local:
            a._next_prefetched = new
        entries = tuple(replace(e, entry_id=new) if e.entry_id == local else e for e in st.queue)
        order_here = tuple(new if x == local else x for x in st.order)
        self.state = replace(st, queue=entries, order=order_here, current=new)
        log.info("offline: the entry added here is %s on the server", new)
        self._adopt(new)

    def _adopt(self, entry_id: str) -> None:
        """Tell the server playback is at `entry_id`, where the speaker is, on this device."""
        a = self.agent
        st = self.state
        assert st is not None
        server = a.mirror.state
        pos = self.position_ms()
        cmds = [
            Command(
                op="play",
                command_id=os.urandom(8).hex(),
                entry_id=entry_id,
                position_ms=max(0, pos),
                device_id=a.device.id,
                paused=not st.position.playing,  # paused here: the session never plays
            )
        ]
        if st.volume != server.volume:
            cmds.append(Command(op="volume", command_id=os.urandom(8).hex(), value=st.volume))
        self._adopting = [c.command_id for c in cmds]
        log.info("offline: back online at %s, %d ms", entry_id, pos)
        for c in cmds:
            a._send(CommandMsg(c))

    def on_result(self, res: Result) -> bool:
        """A result on return; True when it was one of ours (the agent need not tell it)."""
        if res.command_id in self._replayed_adds:
            self._replayed_adds[res.command_id] = res
            if self._renamed is not None:
                self._follow_renamed()
            return False  # the agent's own, replayed: it answers it
        if res.command_id not in self._adopting:
            return False
        first = res.command_id == self._adopting[0]
        self._adopting.remove(res.command_id)
        if first and not res.ok:
            self._leave(f"the server refused where playback went offline ({res.message})")
            return True
        if not self._adopting and self.state is not None:
            self.state = None
            self.agent._publish("back online: the session goes on from here")
            self.agent._last_anchor = None
            self.agent._reconcile()
        return True

    def _leave(self, why: str) -> None:
        self.state = None
        self._adopting = []
        self._renamed = None
        self.agent._publish(f"back online: {why}; following the server")
        self.agent._last_anchor = None
        self.agent._reconcile()

    def state_msg(self) -> StateMsg | None:
        """The session as played here offline, as a state message (for the cache)."""
        st = self.state
        if st is None:
            return None
        return StateMsg(
            st.version,
            replace(
                st,
                position=Position(
                    self.position_ms(),
                    self._now(),
                    st.position.playing,
                    1.0 if st.position.playing else 0.0,
                ),
            ),
            self.track(),
        )


def _audible(p: Position) -> Position:
    """Offline nobody waits for a report: a playing anchor moves at rate 1."""
    return replace(p, rate=1.0) if p.playing else p
