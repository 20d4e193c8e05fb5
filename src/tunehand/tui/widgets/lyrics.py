"""The lyrics pane: the playing track's lyrics, following the position wherever it plays.

Lyrics come from the backend once per track (a worker; the TUI does no I/O). Synced
lyrics show a window of lines around the one sung now, highlighted, moved by the same
extrapolated position as the now-playing bar (a few times a second while audible);
plain lyrics show from the top and scroll with up/down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from tunehand.core import names
from tunehand.core.lyrics import Lyrics, line_at
from tunehand.errors import TunehandError
from tunehand.tui.backend import Backend, SessionSnapshot
from tunehand.tui.widgets.status import StatusLine


class LyricsView(Widget, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"lyrics--current", "lyrics--other"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll(-1)", "Up", show=False),
        Binding("down", "scroll(1)", "Down", show=False),
    ]

    def __init__(self, clock: Callable[[], int], *, id: str) -> None:
        super().__init__(id=id)
        self._clock = clock
        self.lyrics: Lyrics | None = None
        self.snapshot: SessionSnapshot | None = None
        self.top = 0
        """The first line shown of plain lyrics (up/down move it)."""

    def show(self, lyrics: Lyrics | None) -> None:
        self.lyrics, self.top = lyrics, 0
        self.refresh()

    def current(self) -> int | None:
        """The index of the line sung now (synced lyrics), or None."""
        snap = self.snapshot
        if self.lyrics is None or snap is None:
            return None
        return line_at(self.lyrics, snap.state.position_at(self._clock()))

    def action_scroll(self, by: int) -> None:
        if self.lyrics is not None and not self.lyrics.synced:
            self.top = max(0, min(len(self.lyrics.lines) - 1, self.top + by))
            self.refresh()

    def render(self) -> RenderableType:
        lyrics = self.lyrics
        if lyrics is None:
            return Text("")
        height = max(1, self.content_size.height)
        now = self.current()
        # Synced: the line sung now a third of the way down (before the first: the top).
        first = max(0, (now or 0) - height // 3) if lyrics.synced else self.top
        out = Text(no_wrap=True, overflow="ellipsis")
        current = self.get_component_rich_style("lyrics--current")
        other = self.get_component_rich_style("lyrics--other")
        for i, ln in enumerate(lyrics.lines[first : first + height], start=first):
            if i > first:
                out.append("\n")
            mark = "▶ " if i == now else "  "
            out.append(mark + names.line(ln.text), current if i == now else other)
        return out


class LyricsPane(Vertical):
    """The `6 Lyrics` pane; `show` gets every snapshot from the main screen."""

    def __init__(
        self, backend: Backend, clock: Callable[[], int], *, tick_s: float = 0.25, id: str
    ) -> None:
        super().__init__(id=id, classes="pane")
        self.backend = backend
        self.status = StatusLine()
        self.view = LyricsView(clock, id="lyrics-view")
        self._tick_s = tick_s
        self.track_id: str | None = None
        self.loaded = True  # nothing to load ahead: lyrics follow the playing track

    def compose(self) -> ComposeResult:
        yield Static("Lyrics", classes="crumb", id="lyrics-crumb")
        yield self.status
        yield self.view

    def on_mount(self) -> None:
        self.set_interval(self._tick_s, self._tick)
        self._say_nothing()

    def _tick(self) -> None:
        snap = self.view.snapshot
        if (
            self.display
            and self.view.lyrics is not None
            and self.view.lyrics.synced
            and snap is not None
            and snap.state.position.playing
            and snap.state.position.rate > 0
        ):
            self.view.refresh()

    def _say_nothing(self) -> None:
        if self.track_id is None:
            self.status.say("nothing is playing")

    def show(self, snap: SessionSnapshot) -> None:
        self.view.snapshot = snap
        track = snap.track
        track_id = track.id if track is not None else None
        if track_id != self.track_id:
            self.track_id = track_id
            crumb = self.query_one("#lyrics-crumb", Static)
            if track is None:
                crumb.update("Lyrics")
                self.view.show(None)
                self._say_nothing()
            else:
                crumb.update(names.line(f"Lyrics · {track.title} — {track.artist}"))
                self.reload()
        self.view.refresh()

    def reload(self) -> None:
        if self.track_id is None:
            return
        self.status.say("loading lyrics…")
        self.view.show(None)
        self.run_worker(self._load(self.track_id), group="lyrics", exclusive=True)

    async def _load(self, track_id: str) -> None:
        try:
            found = await self.backend.lyrics(track_id)
        except TunehandError as exc:
            if track_id == self.track_id:
                self.status.say(str(exc), error=True)
            return
        if track_id != self.track_id:
            return  # the track changed meanwhile: its own load shows
        self.view.show(found)
        self.status.say("" if found is not None else "no lyrics for this track")

    def focus_list(self) -> None:
        self.view.focus()
