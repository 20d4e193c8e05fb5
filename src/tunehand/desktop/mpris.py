"""The MPRIS interfaces (`org.mpris.MediaPlayer2` and `.Player`) over an agent.

Properties are read from the agent's mirror when asked (Position from the position
model at call time); methods and property writes become session commands, so they
control the account's session wherever it plays. `PlayerIface.publish(snapshot)` emits
PropertiesChanged for what changed and `Seeked` when the position jumps (a new anchor
more than 1 s away from where the old one had run to). This module imports dbus-fast:
`service` imports it only when a session bus is there.
"""

import asyncio
import logging
import re
from typing import Annotated, Any

from dbus_fast import DBusError, PropertyAccess, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusDict,
    DBusDouble,
    DBusInt64,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from tunehand.client.agent import Agent
from tunehand.core.model import SessionState
from tunehand.core.snapshot import Snapshot
from tunehand.errors import TunehandError

log = logging.getLogger("tunehand.desktop")

OBJECT_PATH = "/org/mpris/MediaPlayer2"
NO_TRACK = "/org/mpris/MediaPlayer2/TrackList/NoTrack"
SEEK_JUMP_MS = 1000
COMMAND_WAIT_S = 5.0
"""How long a method call waits for the server's answer; offline, the command applies
when the connection is back (the agent's journal) and the call returns at once."""
LOOP = {"off": "None", "one": "Track", "all": "Playlist"}
REPEAT = {v: k for k, v in LOOP.items()}
DBusStrList = Annotated[list[str], DBusSignature("as")]
ART_SIZE = 512


def track_path(entry_id: str | None) -> str:
    if not entry_id:
        return NO_TRACK
    return "/org/tunehand/track/" + (re.sub(r"[^A-Za-z0-9_]", "_", entry_id) or "_")


def playback_status(st: SessionState) -> str:
    if st.current_entry is None:
        return "Stopped"
    return "Playing" if st.position.playing else "Paused"


class RootIface(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.mpris.MediaPlayer2")

    @dbus_method()
    def Raise(self) -> None:
        pass

    @dbus_method()
    def Quit(self) -> None:
        pass

    @dbus_property(access=PropertyAccess.READ)
    def CanQuit(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def CanRaise(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def HasTrackList(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Identity(self) -> DBusStr:
        return "tunehand"

    @dbus_property(access=PropertyAccess.READ)
    def DesktopEntry(self) -> DBusStr:
        return "tunehand"

    @dbus_property(access=PropertyAccess.READ)
    def SupportedUriSchemes(self) -> DBusStrList:
        return ["http", "https"]

    @dbus_property(access=PropertyAccess.READ)
    def SupportedMimeTypes(self) -> DBusStrList:
        return []


class PlayerIface(ServiceInterface):
    def __init__(self, agent: Agent) -> None:
        super().__init__("org.mpris.MediaPlayer2.Player")
        self._agent = agent
        self._shown: dict[str, Any] = {}
        self._anchor: tuple[str | None, int, int, bool, float] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lyrics: tuple[str, str] = ("", "")
        """(track id, its lyrics as text) for `xesam:asText`; asked once per track."""
        self._lyrics_asked = ""
        self._last: Snapshot | None = None

    # --- commands ---------------------------------------------------------------

    async def _do(self, op: str, **fields: Any) -> None:
        task = asyncio.ensure_future(self._agent.command(op, **fields))
        self._keep(task)
        try:
            res = await asyncio.wait_for(asyncio.shield(task), COMMAND_WAIT_S)
        except TimeoutError:
            return
        if not res.ok:
            raise DBusError("org.mpris.MediaPlayer2.tunehand.Refused", res.message or res.code)

    def _spawn(self, op: str, **fields: Any) -> None:
        """For property setters (they cannot wait): the command runs on the loop."""
        self._keep(asyncio.ensure_future(self._agent.command(op, **fields)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    @dbus_method()
    async def PlayPause(self) -> None:
        await self._do("toggle")

    @dbus_method()
    async def Play(self) -> None:
        """Play, on the active device; with none active, here when this device plays (a
        receiver's or the TUI's name: its media key), else the refusal names the
        devices that could."""
        agent = self._agent
        if agent.shown().active_device is None and "play" in agent.device.capabilities:
            await self._do("play", device_id=agent.device.id)
            return
        try:
            await self._do("play")
        except DBusError as exc:
            players = [
                d.name
                for d in agent.mirror.devices
                if d.online and "play" in d.capabilities and d.id != agent.device.id
            ]
            if agent.shown().active_device is not None or not players:
                raise
            raise DBusError(
                "org.mpris.MediaPlayer2.tunehand.Refused",
                "no device is active; play on one of: " + ", ".join(players),
            ) from exc

    @dbus_method()
    async def Pause(self) -> None:
        await self._do("pause")

    @dbus_method()
    async def Stop(self) -> None:
        await self._do("pause")

    @dbus_method()
    async def Next(self) -> None:
        await self._do("next")

    @dbus_method()
    async def Previous(self) -> None:
        await self._do("prev")

    @dbus_method()
    async def Seek(self, offset: DBusInt64) -> None:
        await self._do("seek", delta_ms=offset // 1000)

    @dbus_method()
    async def SetPosition(self, track_id: DBusObjectPath, position: DBusInt64) -> None:
        st = self._agent.mirror.state  # the track's view is the server's: so is its entry
        track = self._agent.mirror.track
        length_us = track.duration_ms * 1000 if track is not None else 0
        if track_id != track_path(st.current) or position < 0:
            return  # the spec says: ignore a stale track id
        if length_us and position > length_us:
            return  # and a position past the end
        await self._do("seek", position_ms=position // 1000)

    @dbus_method()
    async def OpenUri(self, uri: DBusStr) -> None:
        """Play an http(s) URL now (as `tunehand ctl play --url`): it becomes a track of
        the library, goes in after the current entry and plays, wherever the session plays."""
        scheme = uri.split(":", 1)[0].lower()
        if scheme not in ("http", "https") or self._agent.remote_track is None:
            raise DBusError(
                "org.freedesktop.DBus.Error.NotSupported",
                f"only http and https URIs can be opened, not {uri[:200]!r}",
            )
        try:
            track_id = await self._agent.remote_track(uri)
        except TunehandError as exc:
            raise DBusError("org.mpris.MediaPlayer2.tunehand.Refused", str(exc)) from None
        await self._do("play", track_ids=(track_id,))

    @dbus_signal()
    def Seeked(self, position: DBusInt64) -> DBusInt64:
        return position

    # --- properties -------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ)
    def PlaybackStatus(self) -> DBusStr:
        return playback_status(self._agent.shown())

    @dbus_property()
    def LoopStatus(self) -> DBusStr:
        return LOOP.get(self._agent.shown().repeat, "None")

    @LoopStatus.setter  # type: ignore[no-redef]
    def LoopStatus(self, value: DBusStr) -> None:
        if value not in REPEAT:
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"no loop status {value}")
        self._spawn("repeat", mode=REPEAT[value])

    @dbus_property()
    def Shuffle(self) -> DBusBool:
        return self._agent.shown().shuffle

    @Shuffle.setter  # type: ignore[no-redef]
    def Shuffle(self, value: DBusBool) -> None:
        self._spawn("shuffle", on=bool(value))

    @dbus_property()
    def Volume(self) -> DBusDouble:
        return self._agent.shown().volume / 100

    @Volume.setter  # type: ignore[no-redef]
    def Volume(self, value: DBusDouble) -> None:
        self._spawn("volume", value=max(0, min(100, round(value * 100))))

    @dbus_property(access=PropertyAccess.READ)
    def Position(self) -> DBusInt64:
        return max(0, self._agent.position_ms()) * 1000

    @dbus_property(access=PropertyAccess.READ)
    def Metadata(self) -> DBusDict:
        return self._metadata()

    @dbus_property(access=PropertyAccess.READ)
    def Rate(self) -> DBusDouble:
        return 1.0

    @dbus_property(access=PropertyAccess.READ)
    def MinimumRate(self) -> DBusDouble:
        return 1.0

    @dbus_property(access=PropertyAccess.READ)
    def MaximumRate(self) -> DBusDouble:
        return 1.0

    @dbus_property(access=PropertyAccess.READ)
    def CanGoNext(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanGoPrevious(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanPlay(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanPause(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanSeek(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanControl(self) -> DBusBool:
        return True

    def _metadata(self) -> dict[str, Variant]:
        st = self._agent.mirror.state  # the track's view is the server's: so is its entry
        track = self._agent.mirror.track
        meta = {"mpris:trackid": Variant("o", track_path(st.current))}
        if track is not None and st.current is not None:
            meta["mpris:length"] = Variant("x", track.duration_ms * 1000)
            meta["xesam:title"] = Variant("s", track.title)
            meta["xesam:artist"] = Variant("as", [track.artist] if track.artist else [])
            meta["xesam:album"] = Variant("s", track.album)
            if track.art_url:
                meta["mpris:artUrl"] = Variant("s", self._art_url(track.art_url))
            if self._lyrics[0] == track.id and self._lyrics[1]:
                meta["xesam:asText"] = Variant("s", self._lyrics[1])
        return meta

    def _ask_lyrics(self, track_id: str) -> None:
        """Fetch the track's lyrics once; when they come, publish them (still current)."""
        fetch = self._agent.lyrics
        if fetch is None or track_id == self._lyrics_asked:
            return
        self._lyrics_asked = track_id

        async def run() -> None:
            try:
                found = await fetch(track_id)
            except TunehandError as exc:
                log.debug("no lyrics for MPRIS: %s", exc)
                return
            self._lyrics = (track_id, found.text if found is not None else "")
            if found is not None and self._last is not None:
                self.publish(self._last)

        self._keep(asyncio.ensure_future(run()))

    def _art_url(self, url: str) -> str:
        """The signed art URL, absolute (a desktop shell fetches it with no token)."""
        absolute = url if "://" in url else self._agent.channel.server + url
        return f"{absolute}&size={ART_SIZE}"

    # --- signals from snapshots -------------------------------------------------

    def publish(self, snap: Snapshot) -> None:
        st = snap.state
        self._last = snap
        track = self._agent.mirror.track
        if track is not None and st.current is not None:
            self._ask_lyrics(track.id)
        now = {
            "PlaybackStatus": playback_status(st),
            "LoopStatus": LOOP.get(st.repeat, "None"),
            "Shuffle": st.shuffle,
            "Volume": st.volume / 100,
            "Metadata": self._metadata(),
        }
        changed = {k: v for k, v in now.items() if self._shown.get(k) != v}
        self._shown = now
        if changed:
            self.emit_properties_changed(changed)
        p = st.position
        anchor = (st.current, p.position_ms, p.at_ms, p.playing, p.rate)
        old, self._anchor = self._anchor, anchor
        if old is None or old == anchor or old[0] != st.current or "Metadata" in changed:
            return
        duration = snap.track.duration_ms if snap.track is not None else 0
        t = snap.server_time_ms
        was = _extrapolate(old, t, duration)
        is_ = p.at(t, duration)
        if abs(is_ - was) > SEEK_JUMP_MS:
            self.Seeked(max(0, is_) * 1000)


def _extrapolate(anchor: tuple[str | None, int, int, bool, float], now: int, dur: int) -> int:
    from tunehand.core.clock import extrapolate

    _, pos, at, playing, rate = anchor
    return extrapolate(pos, at, playing, rate, now, dur)
