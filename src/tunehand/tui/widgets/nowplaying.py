"""The now-playing bar: track, play state, a smooth progress bar, volume, modes, device, link.

The position is never polled: it is extrapolated from the session's position anchor
with the injected server clock, a few times a second while audible (`rate > 0`), so
it moves smoothly wherever the music plays and holds still while a device loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tunehand.core import names
from tunehand.core.clock import clock
from tunehand.tui.backend import ChapterMark, SessionSnapshot
from tunehand.tui.fmt import progress_bar


class NowPlaying(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "nowplaying--title",
        "nowplaying--dim",
        "nowplaying--bar",
        "nowplaying--rest",
        "nowplaying--online",
        "nowplaying--offline",
    }

    snapshot: reactive[SessionSnapshot | None] = reactive(None)
    chapters: reactive[tuple[str, tuple[ChapterMark, ...]]] = reactive(("", ()))
    """The chapter marks of a track (its id, the marks), shown while it plays."""

    def __init__(self, clock: Callable[[], int], *, tick_s: float = 0.25, id: str) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._tick_s = tick_s

    def on_mount(self) -> None:
        self.set_interval(self._tick_s, self._tick)

    def _tick(self) -> None:
        snap = self.snapshot
        if snap is not None and snap.state.position.playing and snap.state.position.rate > 0:
            self.refresh()

    def position_ms(self) -> int:
        snap = self.snapshot
        if snap is None:
            return 0
        return snap.state.position_at(self._clock())

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"nowplaying--{name}")

    def render(self) -> RenderableType:
        width = max(20, self.content_size.width)
        snap = self.snapshot
        link = self._link(snap)
        if snap is None:
            return Group(Text("connecting to the server…", style=self._style("dim")), Text(""))
        st = snap.state
        track = snap.track
        icon = "▶" if st.position.playing else "⏸"
        top = Text(no_wrap=True, overflow="ellipsis")
        if track is None:
            top.append("nothing is playing: pick a track and press Enter", self._style("dim"))
        else:
            top.append(f"{icon} ", self._style("title"))
            top.append(names.line(track.title), self._style("title"))
            top.append(names.line(f" — {track.artist or 'Unknown artist'}"))
            if track.album:
                top.append(names.line(f" · {track.album}"), self._style("dim"))
            chapter = self.chapter_line(track.id)
            if chapter:
                top.append(names.line(f" · {chapter}"), self._style("dim"))
        room = max(0, width - link.cell_len - 1)
        top.truncate(room, overflow="ellipsis", pad=True)
        top.append(" ")
        top.append_text(link)

        dur = track.duration_ms if track else 0
        pos = self.position_ms() if track else 0
        vol = "muted  " if st.volume == 0 else f"vol {st.volume:>3}"
        right = Text(
            f"  {vol} · shuffle {'on ' if st.shuffle else 'off'} · repeat {st.repeat}",
            self._style("dim"),
        )
        left = f"{clock(pos):>7} "
        tail = f" {clock(dur) if dur else '-:--':<7}"
        bar_w = max(4, width - len(left) - len(tail) - right.cell_len)
        full, half = progress_bar(pos, dur, bar_w)
        bottom = Text(left, no_wrap=True)
        bottom.append("━" * full, self._style("bar"))
        if half:
            bottom.append("╸", self._style("bar"))
        bottom.append("━" * (bar_w - full - int(half)), self._style("rest"))
        bottom.append(tail)
        bottom.append_text(right)
        return Group(top, bottom)

    def chapter_line(self, track_id: str) -> str:
        """ "ch 2/3 Title" for where the position is, or "" without chapters."""
        owner, marks = self.chapters
        if owner != track_id or not marks:
            return ""
        pos = self.position_ms()
        at = max([i for i, c in enumerate(marks) if c.start_ms <= pos] or [0])
        return f"ch {at + 1}/{len(marks)} {marks[at].title}".rstrip()

    def _link(self, snap: SessionSnapshot | None) -> Text:
        if snap is None or not snap.connected:
            text = Text("○ offline, reconnecting", self._style("offline"))
        else:
            text = Text("● online", self._style("online"))
        if snap is not None:
            where = snap.state.active_device
            if where is None:
                text.append(" · no device", self._style("dim"))
            elif where == snap.device_id:
                text.append(" · on this terminal")
            else:
                text.append(names.line(f" · on {snap.device_name(where)}"))
        return text
