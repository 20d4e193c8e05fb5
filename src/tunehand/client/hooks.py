"""Event hooks: `[hooks]` of `config.toml` run on player events, by whichever tunehand
process of that config dir runs (the TUI, `resume`, `receiver`, `ctl watch --hooks`).

Events, found by comparing what the session looked like before and after a change
(`events`, pure):
- `on_track_change`: another track is current (or none);
- `on_play` / `on_pause`: playback started or stopped (wherever it plays);
- `on_handoff`: playback moved from one device to another;
- `on_device_change`: a device of the account came online or went offline.

Each hook is a list of arguments run with no shell, stdin closed, its output dropped,
with `TUNEHAND_EVENT`, `TUNEHAND_TITLE`, `TUNEHAND_ARTIST`, `TUNEHAND_ALBUM`,
`TUNEHAND_TRACK_ID`, `TUNEHAND_DEVICE` (the active device's name) and
`TUNEHAND_POSITION_MS` in its environment. A run is killed after `TIMEOUT_S`; at most one
run per hook at a time: events that come meanwhile coalesce into one more run with the
latest values. A failure (cannot start, non-zero exit, timeout) is one log line.
Runs happen on a thread per hook, so neither an event loop nor `ctl watch` waits.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from tunehand.core.snapshot import Snapshot

log = logging.getLogger("tunehand.hooks")

TIMEOUT_S = 10.0
EVENTS = ("track_change", "play", "pause", "handoff", "device_change")


class View(NamedTuple):
    """What hooks look at in the session: the same from a `Snapshot` or `ctl watch`'s
    status object."""

    track_id: str | None
    title: str
    artist: str
    album: str
    playing: bool
    device_id: str | None
    device_name: str
    position_ms: int
    online: frozenset[str]


def view_of_snapshot(snap: Snapshot) -> View:
    st = snap.state
    track = snap.track if st.current is not None else None
    active = st.active_device
    duration = track.duration_ms if track is not None else 0
    return View(
        track.id if track is not None else None,
        track.title if track is not None else "",
        track.artist if track is not None else "",
        track.album if track is not None else "",
        bool(st.position.playing) and track is not None,
        active,
        (snap.device_name(active) or active) if active is not None else "",
        st.position.at(snap.server_time_ms, duration) if track is not None else 0,
        frozenset(d.id for d in snap.devices if d.online),
    )


def view_of_status(st: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]) -> View:
    """From a `status --json` object and the channel's device list (`ctl watch`)."""
    track = st.get("track") or {}
    device = st.get("device") or {}
    return View(
        track.get("id"),
        track.get("title") or "",
        track.get("artist") or "",
        track.get("album") or "",
        bool(st.get("playing")) and bool(track),
        device.get("id"),
        device.get("name") or "",
        int(st.get("position_ms") or 0),
        frozenset(str(d["id"]) for d in devices if d.get("online")),
    )


def events(before: View | None, now: View) -> list[str]:
    """The events between two views (none for the first one: starting is no event)."""
    if before is None:
        return []
    out = []
    if now.track_id != before.track_id:
        out.append("track_change")
    if now.playing and not before.playing:
        out.append("play")
    elif before.playing and not now.playing:
        out.append("pause")
    if before.device_id is not None and now.device_id not in (None, before.device_id):
        out.append("handoff")
    if now.online != before.online:
        out.append("device_change")
    return out


def environment(event: str, v: View) -> dict[str, str]:
    return {
        "TUNEHAND_EVENT": event,
        "TUNEHAND_TITLE": v.title,
        "TUNEHAND_ARTIST": v.artist,
        "TUNEHAND_ALBUM": v.album,
        "TUNEHAND_TRACK_ID": v.track_id or "",
        "TUNEHAND_DEVICE": v.device_name,
        "TUNEHAND_POSITION_MS": str(max(0, v.position_ms)),
    }


class _Slot:
    """One hook: its command, whether it runs, and the latest event waiting for it."""

    def __init__(self, name: str, argv: tuple[str, ...]) -> None:
        self.name, self.argv = name, argv
        self.running = False
        self.pending: dict[str, str] | None = None


class Hooks:
    """Feed it views (`feed`); it runs the configured hooks of the events found."""

    def __init__(
        self,
        hooks: Mapping[str, tuple[str, ...]],
        *,
        timeout_s: float = TIMEOUT_S,
        run: Callable[[tuple[str, ...], dict[str, str], float], str | None] | None = None,
    ) -> None:
        self._slots = {name: _Slot(name, argv) for name, argv in hooks.items() if argv}
        self._timeout_s = timeout_s
        self._run = run or run_command
        self._lock = threading.Lock()
        self._last: View | None = None

    def __bool__(self) -> bool:
        return bool(self._slots)

    def feed(self, now: View) -> list[str]:
        """Run the hooks of what changed since the last view; the events found."""
        found = events(self._last, now)
        self._last = now
        for event in found:
            slot = self._slots.get(f"on_{event}")
            if slot is not None:
                self._fire(slot, environment(event, now))
        return found

    def on_snapshot(self, snap: Snapshot) -> None:
        if self._slots:
            self.feed(view_of_snapshot(snap))

    def _fire(self, slot: _Slot, env: dict[str, str]) -> None:
        with self._lock:
            if slot.running:
                slot.pending = env  # coalesce: the latest values run once after
                return
            slot.running = True
        threading.Thread(
            target=self._loop, args=(slot, env), name=f"hook-{slot.name}", daemon=True
        ).start()

    def _loop(self, slot: _Slot, env: dict[str, str]) -> None:
        while True:
            try:
                problem = self._run(slot.argv, env, self._timeout_s)
            except Exception as exc:  # a hook must never take the player down
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                log.warning("hook %s failed: %s", slot.name, problem)
            with self._lock:
                nxt, slot.pending = slot.pending, None
                if nxt is None:
                    slot.running = False
                    return
            env = nxt


def run_command(argv: tuple[str, ...], env: dict[str, str], timeout_s: float) -> str | None:
    """Run one hook; None when it exited 0, else what went wrong (one line)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
    except OSError as exc:
        return f"cannot run {argv[0]!r}: {exc.strerror or exc}"
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"still running after {timeout_s:g} s: killed"
    return None if code == 0 else f"exit {code}"


def hooks_for(config_dir: str | None) -> Hooks:
    """The `[hooks]` of the config dir's `config.toml` (a bad one: none here; the device's
    start reports the config error with one line)."""
    from tunehand.client.config import load_config, resolve_config_dir

    try:
        return Hooks(load_config(resolve_config_dir(config_dir, os.environ)).hooks)
    except Exception:
        return Hooks({})
