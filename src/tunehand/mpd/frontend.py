"""What every MPD connection shares: the remote-only agent (the session), the REST
client (library and playlists, blocking, so run in a thread one request at a time),
the map from queue entry ids to small song ids, a track cache, the outputs (devices
that can play, with ids that never change), library rescans, cover art, and the idle
fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tunehand.client.agent import Agent
from tunehand.client.http import ApiClient, HttpClient, quote
from tunehand.core.model import DeviceInfo, Entry, SessionState
from tunehand.core.snapshot import Snapshot
from tunehand.errors import CommandRefused, NotFound, TunehandError
from tunehand.mpd.outputs import STATE_FILE, Output, Outputs
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_EXIST,
    ACK_NO_EXIST,
    ACK_PERMISSION,
    ACK_SYSTEM,
    Json,
    MpdError,
    changed_subsystems,
    to_int,
)

log = logging.getLogger("tunehand.mpd")

COMMAND_TIMEOUT_S = 15.0
STATE_WAIT_S = 5.0
LIBRARY_TTL_S = 30.0
RESCAN_TIMEOUT_S = 3600.0
"""A rescan answers when it is done: its request may take this long."""
ART_CACHE = 8
"""Pictures kept (clients read one in chunks, one command per chunk)."""

_CODES = {"invalid": ACK_ARG, "not_found": ACK_NO_EXIST, "forbidden": ACK_PERMISSION}


class Frontend:
    def __init__(self, agent: Agent, api: ApiClient, default_output: str | None = None) -> None:
        self.agent = agent
        self.api = api
        self.default_output = default_output
        self.outputs = Outputs(api.config_dir / STATE_FILE, agent.device.id)
        self.disabled: str | None = None
        """The active device after `disableoutput` paused it (enabled again by a play)."""
        self.played_ms = 0
        self._playing_since: float | None = None
        self.updating: int | None = None
        self.update_jobs = 0
        self.error: str | None = None
        self.db_update = time.time()
        self._update_task: asyncio.Task[None] | None = None
        self._art: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
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

    def adder(self, entry: Entry) -> str:
        """Who added `entry`, when the queue is shared by several accounts (a jam)."""
        if len({e.added_by for e in self.state.queue}) > 1:
            return entry.added_by
        return ""

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
            message = self.with_names(res.message or res.code)
            raise MpdError(_CODES.get(res.code, ACK_SYSTEM), message, res.code)
        await self.agent.wait_for(lambda st: st.version >= res.version, STATE_WAIT_S)
        return self.state

    # --- devices and outputs ------------------------------------------------------

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return self.agent.mirror.devices

    def with_names(self, message: str) -> str:
        """A session message with every device id in it said as the device's name."""
        for d in sorted(self.devices, key=lambda d: -len(d.id)):
            message = message.replace(d.id, d.name)
        return message

    def output_list(self) -> list[Output]:
        return self.outputs.listed(self.devices)

    def output(self, output_id: int) -> Output:
        found = next((o for o in self.output_list() if o.id == output_id), None)
        if found is None:
            raise MpdError(ACK_NO_EXIST, "No such audio output")
        return found

    def enabled(self, o: Output) -> bool:
        return o.device.id == self.state.active_device and o.device.id != self.disabled

    def _players(self) -> list[DeviceInfo]:
        return [o.device for o in self.output_list() if o.can_play]

    def _pick(self) -> str | None:
        """Where a play goes when no device is active: the last active device, else
        `--default-output`, when online and able to play (else the session decides)."""
        players = self._players()
        last = self.outputs.last_active
        if last is not None and any(d.id == last for d in players):
            return last
        if self.default_output is not None:
            want = self.default_output.casefold()
            return next((d.id for d in players if d.name.casefold() == want), None)
        return None

    async def play(self, **fields: Any) -> SessionState:
        """A session `play` (or a resume): on the active device, or on one picked here
        when none is active; a refusal names the devices it could play on."""
        if self.state.active_device is None:
            pick = self._pick()
            if pick is not None:
                fields["device_id"] = pick
        try:
            st = await self.run("play", **fields)
        except MpdError as exc:
            if exc.reason != "no_device" or not self._players():
                raise
            names = ", ".join(d.name for d in self._players())
            why = ""
            if self.default_output is not None:
                why = f" (the default output {self.default_output} is not online)"
            raise MpdError(
                exc.code,
                f"no device is active{why}; enable one of the outputs: {names}",
                exc.reason,
            ) from exc
        self.disabled = None
        return st

    async def disable(self, o: Output) -> None:
        """The active output stops by pausing there (the session keeps its place)."""
        if o.device.id != self.state.active_device or self.disabled == o.device.id:
            return
        if self.state.position.playing:
            await self.run("pause")
        self.disabled = o.device.id
        log.info("mpd: output %s disabled: playback paused there", o.device.name)
        self.notify("output")

    async def enable(self, o: Output) -> None:
        if not o.device.online:
            raise MpdError(
                ACK_SYSTEM, f"{o.device.name} is offline: it can be enabled once it connects"
            )
        if not o.can_play:
            raise MpdError(
                ACK_SYSTEM, f"{o.device.name} cannot play: it is online, but not as a player"
            )
        if o.device.id != self.state.active_device:
            await self.run("transfer", device_id=o.device.id)
        if self.disabled is not None:
            self.disabled = None
            self.notify("output")

    # --- library rescans ------------------------------------------------------------

    def start_update(self, track_ids: list[str] | None = None) -> int:
        """Start a library rescan (one at a time): its job id, shown as `updating_db`.
        With `track_ids`, only the folders holding those tracks are scanned."""
        if self.updating is not None:
            return self.updating
        self.update_jobs += 1
        self.updating = self.update_jobs
        self._update_task = asyncio.get_running_loop().create_task(self._rescan(track_ids))
        self.notify("update")
        return self.updating

    def _rescan_request(self, track_ids: list[str] | None) -> Any:
        # Its own connection: the rescan answers when done, other requests go on.
        api = ApiClient(self.api.http.server, self.api.store, self.api.config_dir)
        api.http = HttpClient(
            self.api.http.server, ca_file=self.api.http.ca_file, timeout_s=RESCAN_TIMEOUT_S
        )
        try:
            if track_ids:
                return api.request("POST", "/v1/library/rescan/tracks", {"track_ids": track_ids})
            return api.request("POST", "/v1/library/rescan")
        finally:
            api.http.close()

    async def _rescan(self, track_ids: list[str] | None = None) -> None:
        changed = False
        try:
            got = await self._in_daemon_thread(lambda: self._rescan_request(track_ids))
            summary = got.get("summary") if isinstance(got, dict) else None
            changed = not isinstance(summary, dict) or bool(
                summary.get("changed") or summary.get("removed")
            )
        except Exception as exc:  # a request's failure, said in `status`
            self.error = f"library rescan failed: {exc}"
            log.warning("mpd: %s", self.error)
        finally:
            self.updating = None
            self._library = None
            self.db_update = time.time()
            for fn in list(self._listeners):
                fn({"update", "database"} if changed else {"update"})

    @staticmethod
    async def _in_daemon_thread(fn: Callable[[], Any]) -> Any:
        """Run `fn` in a daemon thread: a rescan may run for long, and the frontend
        must still stop at once (the default executor is waited for at exit)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        def work() -> None:
            try:
                result, error = fn(), None
            except Exception as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name="mpd-rescan", daemon=True).start()
        return await fut

    async def stop_update(self) -> None:
        if self._update_task is not None:
            self._update_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._update_task

    # --- cover art ------------------------------------------------------------------

    async def art(self, track_id: str) -> tuple[bytes, str] | None:
        """The track's cover picture and its type; None when it has none."""
        if not track_id:
            raise MpdError(ACK_ARG, "Malformed URI")
        if track_id.startswith(("http://", "https://")):
            return None
        cached = self._art.get(track_id)
        if cached is not None:
            self._art.move_to_end(track_id)
            return cached
        view = await self.rest("GET", f"/v1/tracks/{quote(track_id)}")
        self.remember([view])
        url = view.get("art_url") if isinstance(view, dict) else None
        if not isinstance(url, str) or not url.startswith("/") or "?" not in url:
            return None
        status, data = await asyncio.to_thread(self._get_bytes, url)
        if status != 200 or not data:
            raise MpdError(ACK_SYSTEM, f"the picture cannot be read (the server answered {status})")
        mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        self._art[track_id] = (data, mime)
        while len(self._art) > ART_CACHE:
            self._art.popitem(last=False)
        return data, mime

    def _get_bytes(self, url: str) -> tuple[int, bytes]:
        with self._api_lock:
            try:
                return self.api.http.get_bytes(url, "image/*")
            except TunehandError as exc:
                raise MpdError(ACK_SYSTEM, str(exc)) from exc

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
        st = now[0]
        numbered = self.outputs.seen(snap.devices, st.active_device)
        if self.disabled is not None and (st.active_device != self.disabled or st.position.playing):
            self.disabled = None
            numbered = True
        self._count_playtime(st.position.playing)
        if old is None:
            self._check_default(snap.devices)
            return
        changed = changed_subsystems(old[0], now[0], old[1], now[1])
        if numbered:
            changed.add("output")
        if changed:
            for fn in list(self._listeners):
                fn(changed)

    def _check_default(self, devices: tuple[DeviceInfo, ...]) -> None:
        want = self.default_output
        if want is not None and not any(d.name.casefold() == want.casefold() for d in devices):
            names = ", ".join(o.device.name for o in self.outputs.listed(devices)) or "none"
            log.warning(
                "mpd: --default-output %s: the account has no device of that name (outputs: %s)",
                want,
                names,
            )

    def _count_playtime(self, playing: bool) -> None:
        now = time.monotonic()
        if self._playing_since is not None:
            self.played_ms += int((now - self._playing_since) * 1000)
        self._playing_since = now if playing else None

    def playtime_s(self) -> int:
        """Seconds the session has played since this frontend started (`stats`)."""
        extra = 0.0
        if self._playing_since is not None:
            extra = time.monotonic() - self._playing_since
        return int(self.played_ms / 1000 + extra)

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
        except CommandRefused as exc:
            code = ACK_EXIST if exc.code == "conflict" else ACK_ARG
            raise MpdError(code, str(exc), exc.code) from exc
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
