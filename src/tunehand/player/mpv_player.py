"""`MpvPlayer`: the `Player` protocol over libmpv (python-mpv). The only module importing mpv.

mpv calls back on its own event thread; the callback only packs the raw event and
hands it to the event loop with `call_soon_threadsafe`, where it is translated
(never `call_from_thread`, never a `wait_*`, never an mpv call from mpv's thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from tunehand.errors import MediaError
from tunehand.player.base import Advanced, Ended, EventSink, Failed, Meta, PlayerEvent, Ready

STALE_CAP_S = 0.2
LIBMPV_HINT = "libmpv is not installed: install it with `apt-get install libmpv2` (Debian/Ubuntu)"

DEFAULTS: dict[str, str] = {
    "vid": "no",
    "video": "no",
    "idle": "yes",
    "gapless-audio": "yes",
    "prefetch-playlist": "yes",
    "keep-open": "no",
    "input-default-bindings": "no",
    "input-vo-keyboard": "no",
    "terminal": "no",
    "audio-display": "no",
    # Bounded read-ahead: by default mpv may hold a whole file in memory.
    "demuxer-max-bytes": "4MiB",
    "demuxer-max-back-bytes": "1MiB",
}
BUILTIN_SCRIPTS = (
    "osc",
    "ytdl",
    "load-stats-overlay",
    "load-osd-console",
    "load-console",
    "load-auto-profiles",
    "load-select",
    "load-positioning",
    "load-commands",
)
"""mpv's built-in Lua scripts (each a thread and a Lua state, ~1 MB): switched off once
mpv runs, for those this libmpv has (the names change between versions, and a build
without Lua has none) and the user did not set."""


def import_mpv() -> Any:
    try:
        import mpv
    except (OSError, ImportError) as exc:
        raise MediaError(LIBMPV_HINT) from exc
    return mpv


def mpv_factory(
    options: Mapping[str, str],
) -> Callable[[EventSink, asyncio.AbstractEventLoop], MpvPlayer]:
    """A factory of `MpvPlayer`s with these mpv options, for the agent; loads libmpv now,
    so a missing one is one clear line before anything connects."""
    import_mpv()
    held = dict(options)

    def make(sink: EventSink, loop: asyncio.AbstractEventLoop) -> MpvPlayer:
        return MpvPlayer(sink, loop, held)

    return make


class MpvPlayer:
    def __init__(
        self,
        sink: EventSink,
        loop: asyncio.AbstractEventLoop,
        options: Mapping[str, str] | None = None,
        log: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """`log(level, component, message)`, when given, gets mpv's own messages down to
        level "v" (on mpv's thread: it must only note them)."""
        mpv = import_mpv()
        opts = {**DEFAULTS, **(options or {})}
        self._sink = sink
        self._loop = loop
        self._tags: dict[int, str] = {}
        self._current: int | None = None
        self._next: int | None = None
        self._pos_sample: tuple[float | None, float] = (None, 0.0)
        self._fresh_after = 0.0
        """Steps published before this (time.monotonic()) predate the last resume."""
        self._meta: tuple[dict[str, str], int, bool] = ({}, 0, False)
        """mpv's `metadata` (keys in lower case), `duration` (ms) and whether the file
        has a size (a live stream has none: its growing `duration` is no length)."""
        self._meta_sent: Meta | None = None
        self._last_error = ""
        """mpv's first error (or ffmpeg warning) since the last load ("HTTP error 404
        Not Found"): said with a failure, whose `file_error` is as terse as "loading
        failed"."""
        self._user_log = log
        logging: dict[str, Any] = {
            "log_handler": self._on_log,
            "loglevel": "warn" if log is None else "v",
        }
        try:
            self._mpv = mpv.MPV(**logging, **{k.replace("-", "_"): v for k, v in opts.items()})
        except (AttributeError, TypeError, ValueError, mpv.ShutdownError) as exc:
            raise MediaError(f"mpv refused an option: {exc}") from exc
        except Exception as exc:  # python-mpv raises its own error types for bad options
            raise MediaError(f"mpv refused an option: {str(exc).splitlines()[0]}") from exc
        self._quiet_scripts(opts)
        self._mpv.register_event_callback(self._on_mpv_event)
        self._mpv.observe_property("time-pos", self._on_time_pos)
        self._mpv.observe_property("metadata", self._on_metadata)
        self._mpv.observe_property("duration", self._on_metadata)
        self._mpv.observe_property("file-size", self._on_metadata)

    def _quiet_scripts(self, opts: Mapping[str, str]) -> None:
        """Stop the built-in scripts (setting one of these options to no at run time
        unloads its script); `load-auto-profiles` stays when the user loads mpv.conf."""
        user_config = "config" in opts or "include" in opts
        try:
            known = set(self._mpv.options)
            for name in BUILTIN_SCRIPTS:
                if name in known and name not in opts:
                    if name == "load-auto-profiles" and user_config:
                        continue
                    self._mpv[name] = "no"
        except Exception:  # an mpv that refuses: its scripts stay, which is harmless
            return

    # --- mpv's thread: pack and hand over, nothing else ---------------------------

    def _on_mpv_event(self, event: Any) -> None:
        try:
            d = event.as_dict()
        except Exception:  # an event python-mpv cannot decode: not one we use
            return
        kind = d.get("event")
        if kind not in (b"start-file", b"end-file", b"playback-restart"):
            return
        raw = (kind, d.get("playlist_entry_id"), d.get("reason"), d.get("file_error"))
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._translate, raw)

    def _on_log(self, level: str, component: str, message: str) -> None:
        # The first problem since the load says most ("HTTP error 404 Not Found",
        # "Connection refused"); what follows it is mpv giving up ("Failed to open").
        bad = level in ("fatal", "error") or (level == "warn" and component == "ffmpeg")
        if bad and not self._last_error:
            self._last_error = message.strip()  # a str swap is atomic
        if self._user_log is not None:
            self._user_log(level, component, message)

    def _on_metadata(self, name: str, value: Any) -> None:
        # mpv's thread: keep the value (a tuple swap is atomic), translate on the loop.
        tags, duration_ms, sized = self._meta
        if name == "metadata":
            tags = {str(k).lower(): str(v) for k, v in (value or {}).items()}
        elif name == "file-size":
            sized = value is not None
        else:
            duration_ms = round(value * 1000) if isinstance(value, (int, float)) else 0
        self._meta = (tags, duration_ms, sized)
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._meta_event)

    # --- the event loop's thread --------------------------------------------------

    def _meta_event(self) -> None:
        """A `Meta` for the playing entry when what mpv knows of it changed."""
        tag = self.playing_tag()
        tags, duration_ms, sized = self._meta
        if tag is None:
            return
        if not sized:
            duration_ms = 0  # a live stream (no length): mpv's duration is what it holds
        title = tags.get("title") or tags.get("icy-title") or ""
        album = tags.get("album") or tags.get("icy-name") or ""
        event = Meta(tag, title, tags.get("artist", ""), album, max(0, duration_ms))
        if event == self._meta_sent or not (title or duration_ms):
            return
        self._meta_sent = event
        self._sink(event)

    def _translate(self, raw: tuple[bytes, int | None, bytes | None, bytes | None]) -> None:
        kind, entry_id, reason, error = raw
        event: PlayerEvent | None = None
        if kind == b"start-file" and entry_id is not None:
            if entry_id == self._next and entry_id in self._tags:
                previous = self._tags.get(self._current) if self._current is not None else None
                self._current, self._next = entry_id, None
                event = Advanced(self._tags[entry_id], previous)
        elif kind == b"playback-restart" and self._current is not None:
            tag = self._tags.get(self._current)
            event = Ready(tag) if tag is not None else None
        elif kind == b"end-file" and entry_id is not None:
            tag = self._tags.get(entry_id)
            if tag is not None and entry_id == self._current:
                if reason == b"error":
                    message = (error or b"cannot play").decode(errors="replace")
                    if self._last_error and self._last_error not in message:
                        message += f" ({self._last_error})"
                    event = Failed(tag, message)
                elif reason == b"eof" and self._next is None:
                    event = Ended(tag)
        if event is not None:
            self._sink(event)

    def _loadfile(self, url: str, mode: str, options: str) -> int | None:
        args: list[Any] = ["loadfile", url, mode]
        if self._mpv.mpv_version_tuple >= (0, 38, 0):
            args.append(-1)
        args.append(options)
        try:
            result = self._mpv.command(*args)
        except Exception as exc:  # mpv refused the command: report it as a failure
            raise MediaError(f"mpv could not load the track: {exc}") from exc
        if isinstance(result, dict) and "playlist_entry_id" in result:
            return int(result["playlist_entry_id"])
        return None

    def load(
        self, tag: str, url: str, *, position_ms: int, paused: bool, offset: bool = False
    ) -> None:
        """`offset`: the stream starts at `position_ms` and says so by its timestamps (a
        transcode from `t=`): mpv keeps them, so its time-pos is the track's position."""
        opts = f"start={max(0, position_ms) / 1000:.3f},pause={'yes' if paused else 'no'}"
        if offset:
            opts += ",rebase-start-time=no"
        self._last_error = ""
        entry = self._loadfile(url, "replace", opts)
        self._pos_sample = (None, 0.0)
        self._meta_sent = None
        self._meta = ({}, 0, False)
        self._tags = {}
        self._next = None
        self._current = entry
        if entry is not None:
            self._tags[entry] = tag

    def set_next(self, tag: str | None, url: str | None) -> None:
        if self._next is not None:
            self._mpv.command("playlist-clear")
            self._tags.pop(self._next, None)
            self._next = None
        if tag is None or url is None or self._current is None:
            return
        entry = self._loadfile(url, "append", "")
        if entry is not None:
            self._next = entry
            self._tags[entry] = tag

    def pause(self) -> None:
        self._mpv.pause = True

    def resume(self) -> None:
        self._fresh_after = time.monotonic()
        self._mpv.pause = False

    def paused(self) -> bool:
        return bool(self._mpv.pause)

    def seek(self, position_ms: int) -> None:
        if self._current is None:
            return
        self._pos_sample = (None, 0.0)
        try:
            self._mpv.seek(max(0, position_ms) / 1000, reference="absolute", precision="exact")
        except Exception as exc:  # seeking before the file is loaded: mpv refuses
            raise MediaError(f"mpv could not seek: {exc}") from exc

    def stop(self) -> None:
        self._mpv.command("stop")
        self._tags = {}
        self._current = self._next = None

    def set_volume(self, level: int) -> None:
        self._mpv.volume = max(0, min(100, level))

    def set_speed(self, speed: float) -> None:
        # mpv keeps the pitch with audio-pitch-correction (scaletempo2), on by default
        # and set here so a user's mpv.conf cannot turn it off for us.
        self._mpv["audio-pitch-correction"] = True
        self._mpv.speed = max(0.5, min(3.0, speed))

    def position_ms(self) -> int | None:
        """Where playback is now, for display: the last step mpv published, moved on by
        the time since (at most STALE_CAP_S). Reports use `position_sample`."""
        if self._current is None:
            return None
        if self._mpv.pause:
            pos = self._mpv.time_pos
            return None if pos is None else round(pos * 1000)
        sample = self.position_sample()
        if sample is None:
            pos = self._mpv.time_pos
            return None if pos is None else round(pos * 1000)
        value, at = sample
        return value + round(min(max(0.0, time.monotonic() - at), STALE_CAP_S) * 1000)

    def position_sample(self) -> tuple[int, float] | None:
        """(position in ms, time.monotonic() when it was audible): mpv's last published
        `time-pos` step and when it came while playing (none since the last load, seek
        or resume: None), the position now while paused."""
        if self._current is None:
            return None
        if self._mpv.pause:
            pos = self._mpv.time_pos
            return None if pos is None else (round(pos * 1000), time.monotonic())
        value, at = self._pos_sample
        if value is None or at < self._fresh_after:
            return None
        return round(value * 1000), at

    def waiting(self) -> bool:
        """mpv's `core-idle` while not paused: buffering, or a stream that stalled."""
        try:
            return bool(self._mpv.core_idle) and not self._mpv.pause
        except Exception:  # the property is unavailable while nothing is loaded
            return False

    def _on_time_pos(self, _name: str, value: float | None) -> None:
        # mpv's thread: only note the value and when it came (a tuple swap is atomic).
        self._pos_sample = (value, time.monotonic())

    def audio_output(self) -> str | None:
        """The audio output mpv opened (`current-ao`), None when it opened none."""
        try:
            ao = self._mpv.current_ao
        except Exception:  # the property is unavailable before audio starts
            return None
        return str(ao) if ao else None

    def playing_tag(self) -> str | None:
        return self._tags.get(self._current) if self._current is not None else None

    def retag(self, old: str, new: str) -> None:
        for entry, tag in list(self._tags.items()):
            if tag == old:
                self._tags[entry] = new

    def close(self) -> None:
        self._mpv.terminate()
