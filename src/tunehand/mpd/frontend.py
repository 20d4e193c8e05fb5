"""What every MPD connection shares: the remote-only agent (the session), the REST
client (library and playlists, blocking, so run in a thread one request at a time),
the map from queue entry ids to small song ids, a track cache, and the idle fan-out."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from tunehand.client.agent import Agent
from tunehand.client.http import ApiClient, quote
from tunehand.core.model import DeviceInfo, SessionState
from tunehand.core.snapshot import Snapshot
from tunehand.errors import NotFound, TunehandError
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_NO_EXIST,
    ACK_SYSTEM,
    Json,
    MpdError,
    changed_subsystems,
    to_int,
)

COMMAND_TIMEOUT_S = 15.0
STATE_WAIT_S = 5.0
LIBRARY_TTL_S = 30.0

_CODES = {"invalid": ACK_ARG, "not_found": ACK_NO_EXIST}


class Frontend:
    def __init__(self, agent: Agent, api: ApiClient) -> None:
        self.agent = agent
        self.api = api
        self._api_lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._entries: dict[int, str] = {}
        self.tracks: dict[str, Json] = {}
        self._listeners: set[Callable[[set[str]], None]] = set()
        self._seen: tuple[SessionState, tuple[DeviceInfo, ...]] | None = None
        self._library: tuple[float, list[Json]] | None = None
        self.started = time.time()

    # --- session --------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self.agent.mirror.state

    def now_ms(self) -> int:
        return self.agent.server_now()

    def song_id(self, entry_id: str) -> int:
        sid = self._ids.get(entry_id)
        if sid is None:
            sid = len(self._ids) + 1
            self._ids[entry_id] = sid
            self._entries[sid] = entry_id
        return sid

    def entry_of(self, song_id: int) -> str:
        entry = self._entries.get(song_id)
        if entry is None or self.state.entry(entry) is None:
            raise MpdError(ACK_NO_EXIST, "No such song")
        return entry

    def entry_at(self, pos: int) -> str:
        queue = self.state.queue
        if not 0 <= pos < len(queue):
            raise MpdError(ACK_ARG, "Bad song index")
        return queue[pos].entry_id

    async def run(self, op: str, **fields: Any) -> SessionState:
        """Send a session command; answer once the state it made is here."""
        if not self.agent.connected.is_set():
            raise MpdError(ACK_SYSTEM, "not connected to the tunehand server")
        try:
            res = await asyncio.wait_for(self.agent.command(op, **fields), COMMAND_TIMEOUT_S)
        except TimeoutError:
            raise MpdError(ACK_SYSTEM, "the tunehand server did not answer") from None
        if not res.ok:
            raise MpdError(_CODES.get(res.code, ACK_SYSTEM), res.message or res.code)
        await self.agent.wait_for(lambda st: st.version >= res.version, STATE_WAIT_S)
        return self.state

    async def add_tracks(self, track_ids: list[str], where: str | None = None) -> list[str]:
        """Append tracks (then move them to position `where`); the new entry ids."""
        if not track_ids:
            return []
        before = {e.entry_id for e in self.state.queue}
        st = await self.run("queue_add", track_ids=track_ids)
        new = [e.entry_id for e in st.queue if e.entry_id not in before]
        if where is not None:
            await self.move_to(new, to_int(where))
        return new

    async def move_to(self, entry_ids: list[str], to: int) -> None:
        """Move entries (kept in their order) so the first is at position `to` after."""
        rest = [e.entry_id for e in self.state.queue if e.entry_id not in set(entry_ids)]
        if not 0 <= to <= len(rest):
            raise MpdError(ACK_ARG, "Bad song index")
        await self.reorder([*rest[:to], *entry_ids, *rest[to:]])

    async def reorder(self, target: list[str]) -> None:
        """Make the queue read `target` (the same entries) with as few moves as it takes:
        each position in turn gets its entry; earlier positions never shift again."""
        for i, entry in enumerate(target):
            queue = self.state.queue
            if i < len(queue) and queue[i].entry_id != entry:
                await self.run("queue_move", entry_id=entry, index=i)

    # --- idle -----------------------------------------------------------------------

    def listen(self, fn: Callable[[set[str]], None]) -> Callable[[], None]:
        self._listeners.add(fn)
        return lambda: self._listeners.discard(fn)

    def on_snapshot(self, snap: Snapshot) -> None:
        """The agent's publish hook: diff the server's state and wake idle clients."""
        now = (self.agent.mirror.state, snap.devices)
        old, self._seen = self._seen, now
        if old is None:
            return
        changed = changed_subsystems(old[0], now[0], old[1], now[1])
        if changed:
            for fn in list(self._listeners):
                fn(changed)

    def notify(self, subsystem: str) -> None:
        for fn in list(self._listeners):
            fn({subsystem})

    # --- REST -----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: object) -> Any:
        with self._api_lock:
            return self.api.request(method, path, body)

    async def rest(self, method: str, path: str, body: object = None) -> Any:
        try:
            return await asyncio.to_thread(self._request, method, path, body)
        except NotFound as exc:
            raise MpdError(ACK_NO_EXIST, str(exc)) from exc
        except TunehandError as exc:
            raise MpdError(ACK_SYSTEM, str(exc)) from exc

    def remember(self, tracks: list[Json | None]) -> None:
        for t in tracks:
            if t:
                self.tracks[t["id"]] = t

    async def queue_tracks(self) -> dict[str, Json]:
        """Track details of every queue entry (cached; one request fills the gaps)."""
        cur = self.agent.mirror.track
        if cur is not None:
            self.tracks[cur.id] = dataclasses.asdict(cur)
        missing = [e.track_id for e in self.state.queue if e.track_id not in self.tracks]
        if missing:
            q = await self.rest("GET", "/v1/session/queue")
            self.remember([e["track"] for e in q["entries"]])
            for tid in missing:
                self.tracks.setdefault(tid, {"id": tid, "title": tid})
        return self.tracks

    async def track(self, track_id: str) -> Json:
        if track_id not in self.tracks:
            self.remember([await self.rest("GET", f"/v1/tracks/{quote(track_id)}")])
        return self.tracks[track_id]

    async def library(self) -> list[Json]:
        """Every library track, album by album (kept for a short while)."""
        now = time.monotonic()
        if self._library is not None and now - self._library[0] < LIBRARY_TTL_S:
            return self._library[1]
        out: list[Json] = []
        for album in (await self.rest("GET", "/v1/albums"))["albums"]:
            got = await self.rest("GET", f"/v1/albums/{quote(album['id'])}/tracks")
            out += got["tracks"]
        self.remember(list(out))
        self._library = (now, out)
        return out
