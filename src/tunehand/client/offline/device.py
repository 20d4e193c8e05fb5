"""What a playing device does with the offline cache, off its event loop.

`DeviceCache` answers the agent's one fast question (`path_for`: is this track here,
unchanged?) and does the slow work in one worker thread: it caches the current entry
and the next `ahead` entries of the queue (their signed URLs come from the state, or
from `/v1/session/queue` through the device's API client), hashes what is about to
play once per process (a mismatch is removed and fetched again), keeps the recently
played within `offline_max_mb` (least recently used out first), and writes the
session as last known (`last-session.json`, atomic) so a start without the server can
play from the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunehand import wire
from tunehand.client.offline.store import Store
from tunehand.core.protocol import ServerMessage, StateMsg, TrackView
from tunehand.errors import TunehandError

log = logging.getLogger("tunehand.offline")

LAST_FILE = "last-session.json"
SAVE_EVERY_S = 1.0

Views = Callable[[], dict[str, dict[str, Any]]]
"""Track views (with signed URLs) of the queue's tracks, by track id (a REST call)."""


class DeviceCache:
    def __init__(
        self,
        store: Store,
        server: str,
        *,
        ca_file: str | None = None,
        ahead: int = 3,
        queue_views: Views | None = None,
    ) -> None:
        self.store = store
        self.server = server
        self.ca_file = ca_file
        self.ahead = ahead
        self._queue_views = queue_views
        self._jobs: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._checked: set[str] = set()
        """Tracks hashed by this process (what is about to play is checked once)."""
        self._save_due: StateMsg | None = None
        self._saved_at = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wanted: list[str] = []
        self.failed: str | None = None
        """The last reason a track could not be cached (shown once)."""

    # --- the agent's questions (fast, on the loop) ------------------------------

    def path_for(self, track_id: str) -> str | None:
        try:
            path = self.store.path_for(track_id)
        except Exception:  # the index is busy or broken: stream instead
            return None
        return str(path) if path is not None else None

    def view(self, track_id: str) -> TrackView | None:
        """What the index knows of a cached track (no URLs)."""
        got = self.store.get(track_id)
        if got is None:
            return None
        m = got.meta
        return TrackView(
            id=track_id,
            title=str(m.get("title") or track_id),
            artist=str(m.get("artist") or ""),
            album=str(m.get("album") or ""),
            album_artist=str(m.get("album_artist") or ""),
            duration_ms=int(m.get("duration_ms") or 0),
            track_no=m.get("track_no"),
            disc_no=m.get("disc_no"),
            year=m.get("year"),
            genre=str(m.get("genre") or ""),
            album_id=str(m.get("album_id") or ""),
        )

    # --- work for the thread ----------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="offline-cache", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the worker (a download under way is left as a partial file, resumed
        next time) and write the session as last known."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None
        self._flush_save()

    def want(self, msg: StateMsg, upcoming: list[str]) -> None:
        """Cache these tracks (the current one and the next ones, in play order); the
        same list again is nothing new (unless a download failed since)."""
        if upcoming == self._wanted:
            return
        self._wanted = list(upcoming)
        self._jobs.put(("want", (msg, upcoming)))

    def save(self, msg: StateMsg) -> None:
        """Remember `msg` as the session last known (written at most every SAVE_EVERY_S)."""
        with self._lock:
            self._save_due = msg
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._jobs.put(("save", None))

    def check(self, track_ids: list[str]) -> None:
        """Hash these cached tracks (once per process each) before they play: offline,
        with nothing to fetch, a mismatch is removed, so it is skipped, not played."""
        ids = [t for t in track_ids if t not in self._checked]
        if ids:
            self._jobs.put(("check", ids))

    def played(self, track_id: str) -> None:
        self._jobs.put(("touch", track_id))

    def last(self) -> StateMsg | None:
        """The session as this device last knew it, or None."""
        try:
            raw = (self.store.root / LAST_FILE).read_bytes()
            msg: ServerMessage = wire.decode_server(raw)
        except (OSError, TunehandError, ValueError, TypeError, KeyError):
            return None
        return msg if isinstance(msg, StateMsg) else None

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            # Downloads and hashes wait for the player and the agent (Linux: per thread).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        fetcher = _LazyFetcher(self)  # made when a download is due, not at start
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                kind, arg = job
                try:
                    if kind == "want":
                        self._fill(fetcher, *arg)
                    elif kind == "save":
                        self._flush_save()
                    elif kind == "check":
                        for tid in arg:
                            if tid not in self._checked and self.store.get(tid) is not None:
                                self._checked.add(tid)
                                if not self.store.verify(tid):
                                    log.info("offline cache: %s did not match its hash", tid)
                    elif kind == "touch":
                        self.store.touch([arg])
                except Exception as exc:  # a worker must not die: log and go on
                    log.info("offline cache: %s", exc)
        finally:
            fetcher.close()

    def _fill(self, fetcher: Any, msg: StateMsg, upcoming: list[str]) -> None:
        if self._jobs.qsize() and any(
            j is not None and j[0] == "want" for j in list(self._jobs.queue)
        ):
            return  # a newer queue is waiting: do that one
        self.store.touch(upcoming)
        views: dict[str, dict[str, Any]] = {}
        for t in (msg.track, msg.next_track):
            if t is not None:
                views[t.id] = wire.to_builtins(t)
        missing = []
        for tid in upcoming:
            if self.store.path_for(tid) is not None:
                if tid not in self._checked:
                    self._checked.add(tid)
                    if not self.store.verify(tid):
                        log.info("offline cache: %s did not match its hash; fetching it again", tid)
                        missing.append(tid)
                continue
            missing.append(tid)
        if not missing:
            self.store.evict(keep=upcoming)
            return
        if any(t not in views for t in missing) and self._queue_views is not None:
            with contextlib.suppress(TunehandError):
                views |= self._queue_views()
        for tid in missing:
            view = views.get(tid)
            if view is None or not view.get("url"):
                continue
            try:
                fetcher.track(view)
                self._checked.add(tid)
            except TunehandError as exc:
                self.failed = str(exc)
                self._wanted = []  # the next state asks again
                log.info("offline cache: %s: %s", tid, exc)
                return
        self.store.evict(keep=upcoming)

    def _flush_save(self) -> None:
        with self._lock:
            msg, self._save_due = self._save_due, None
        if msg is None:
            return
        from tunehand.client.config import write_file_atomic

        self._saved_at = time.monotonic()
        with contextlib.suppress(OSError):
            write_file_atomic(Path(self.store.root) / LAST_FILE, wire.encode(msg))


class _LazyFetcher:
    """A `Fetcher` made on first use (its imports cost start-up time a device needs)."""

    def __init__(self, owner: DeviceCache) -> None:
        self._owner = owner
        self._fetcher: Any = None

    def track(self, view: dict[str, Any]) -> Any:
        if self._fetcher is None:
            from tunehand.client.offline.fetch import Fetcher

            o = self._owner
            self._fetcher = Fetcher(o.store, o.server, ca_file=o.ca_file)
        return self._fetcher.track(view)

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
