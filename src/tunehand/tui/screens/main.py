"""The main screen: panes (library, playlists, liked, history, queue, lyrics, search), devices,
now playing.

It receives each `SessionSnapshot` from the app (`show`) and hands it down to the
widgets. Its actions (playback, volume, modes, panes, devices, help) post
`SessionCommand`s or switch what is shown; every one is in `keys.ACTIONS`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Header, Tab, Tabs

from tunehand.core.model import REPEAT_MODES
from tunehand.core.protocol import TrackView
from tunehand.errors import TunehandError
from tunehand.tui import keys
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Account, Backend, JamInfo, SessionSnapshot
from tunehand.tui.messages import GoTo, SessionCommand
from tunehand.tui.widgets.browse import (
    BrowsePane,
    ContinuePane,
    HistoryPane,
    LibraryPane,
    LikesPane,
    PlaylistsPane,
)
from tunehand.tui.widgets.cover import Cover, ImageFactory
from tunehand.tui.widgets.devices import DevicesPanel
from tunehand.tui.widgets.lyrics import LyricsPane
from tunehand.tui.widgets.nowplaying import NowPlaying
from tunehand.tui.widgets.queue import QueuePane
from tunehand.tui.widgets.search import SearchPane

PANES = (
    ("library", "1 Library"),
    ("playlists", "2 Playlists"),
    ("likes", "3 Liked"),
    ("history", "4 History"),
    ("queue", "5 Queue"),
    ("continue", "6 Continue"),
    ("lyrics", "7 Lyrics"),
    ("search", "/ Search"),
)
SEEK_MS = 5_000
VOLUME_STEP = 5
UNMUTE_VOLUME = 50
"""The volume `m` restores when the session was muted elsewhere (no level to go back to)."""


class NowRow(Horizontal):
    """The cover and the now-playing bar; toasts are kept above it (see `place_toasts`)."""

    def on_resize(self) -> None:
        place = getattr(self.screen, "place_toasts", None)
        if place is not None:
            place()


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("main")

    def __init__(
        self,
        backend: Backend,
        account: Account,
        *,
        debounce_s: float = 0.25,
        tick_s: float = 0.25,
        cover: ImageFactory | None = None,
    ) -> None:
        super().__init__(id="main")
        self.backend = backend
        self.account = account
        self.snapshot: SessionSnapshot | None = None
        self.jam: JamInfo | None = None
        self.unmute_to: int | None = None
        self._chapters_of: str | None = None
        """The volume before `m` muted the session (kept here: the session has no mute)."""
        self.library = LibraryPane(backend, id="library")
        self.playlists = PlaylistsPane(backend, id="playlists")
        self.likes = LikesPane(backend, id="likes")
        self.history = HistoryPane(backend, id="history")
        self.queue = QueuePane(backend, id="queue")
        self.resumable = ContinuePane(backend, id="continue")
        self.search = SearchPane(backend, id="search", debounce_s=debounce_s)
        self.lyrics = LyricsPane(backend, backend.server_now, tick_s=tick_s, id="lyrics")
        self.devices = DevicesPanel(id="devices")
        self.now = NowPlaying(backend.server_now, tick_s=tick_s, id="now")
        self.cover = Cover(backend, cover, id="cover")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="♫")
        yield Tabs(*(Tab(label, id=f"tab-{name}") for name, label in PANES), id="tabs")
        with Horizontal(id="body"):
            with ContentSwitcher(initial="library", id="panes"):
                yield self.library
                yield self.playlists
                yield self.likes
                yield self.history
                yield self.queue
                yield self.resumable
                yield self.lyrics
                yield self.search
            yield self.devices
        with NowRow(id="now-row"):
            yield self.cover
            yield self.now
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.account.user} @ {self.account.server}"
        self.query_one(Tabs).can_focus = False
        self.devices.display = False
        self.show_pane("library")
        self.place_toasts()
        self.run_worker(self._load_jam(), group="jam")

    def place_toasts(self) -> None:
        """Stack toasts above the now-playing bar and the footer, never over them."""
        below = self.query_one(NowRow).outer_size.height + self.query_one(Footer).outer_size.height
        for rack in self.query("#textual-toastrack"):
            rack.styles.margin = (0, 0, max(1, below), 0)

    # --- attributes down ----------------------------------------------------------

    def show(self, snap: SessionSnapshot) -> None:
        self.snapshot = snap
        self.now.snapshot = snap
        if snap.track is not None and snap.track.id != self._chapters_of:
            self._chapters_of = snap.track.id
            self.run_worker(self._load_chapters(snap.track.id), exclusive=True, group="chapters")
        self.cover.show(snap.track)
        self.queue.show(snap)
        self.lyrics.show(snap)
        self.devices.show(snap)
        if "jam" in snap.event:  # this account's devices moved to or from a jam
            self.run_worker(self._load_jam(), group="jam")
        track_id = snap.track.id if snap.track else None
        for pane in self.query(BrowsePane):
            pane.set_current_track(track_id)

    async def _load_chapters(self, track_id: str) -> None:
        """The playing track's chapter marks, for the now-playing bar (none on failure:
        chapters are a nicety, and the next track asks again)."""
        try:
            marks = await self.backend.chapters(track_id)
        except TunehandError:
            marks = []
        if self._chapters_of == track_id:
            self.now.chapters = (track_id, tuple(marks))

    @property
    def pane(self) -> str:
        return self.query_one(ContentSwitcher).current or "library"

    def show_pane(self, name: str, *, load: bool = True) -> None:
        """Switch to pane `name`, loading it when it is new or stale (unless `load` is off)."""
        self.query_one(ContentSwitcher).current = name
        self.query_one(Tabs).active = f"tab-{name}"
        pane: Any = self.query_one(f"#{name}")
        stale = name in ("history", "likes", "playlists", "continue") or pane.status.has_class(
            "error"
        )
        if load and (not pane.loaded or stale):
            pane.reload()
        pane.focus_list()

    def on_go_to(self, message: GoTo) -> None:
        """A search result: its artist or album in the library, or the playlist."""
        message.stop()
        if message.kind == "playlist":
            self.show_pane("playlists", load=False)
            self.playlists.go_to(message.item)
        else:
            self.show_pane("library", load=False)
            self.library.go_to(message.item)

    @on(Tabs.TabActivated)
    def _tab(self, event: Tabs.TabActivated) -> None:
        name = (event.tab.id or "tab-library").removeprefix("tab-")
        if name != self.pane:
            self.show_pane(name)

    # --- actions ------------------------------------------------------------------

    def _send(self, op: str, **fields: Any) -> None:
        self.post_message(SessionCommand(op, **fields))

    def action_play_pause(self) -> None:
        self._send("toggle")

    def action_next(self) -> None:
        self._send("next")

    def action_prev(self) -> None:
        self._send("prev")

    def action_seek_forward(self) -> None:
        self._send("seek", delta_ms=SEEK_MS)

    def action_seek_back(self) -> None:
        self._send("seek", delta_ms=-SEEK_MS)

    def action_volume_up(self) -> None:
        self._send("volume", delta=VOLUME_STEP)

    def action_volume_down(self) -> None:
        self._send("volume", delta=-VOLUME_STEP)

    def action_mute(self) -> None:
        """Mute: the session's volume to 0; unmute: back to the volume it had."""
        if self.snapshot is None:
            return
        volume = self.snapshot.state.volume
        if volume > 0:
            self.unmute_to = volume
            self._send("volume", value=0)
        else:
            level, self.unmute_to = self.unmute_to or UNMUTE_VOLUME, None
            self._send("volume", value=level)

    def action_shuffle(self) -> None:
        on_now = self.snapshot is not None and self.snapshot.state.shuffle
        self._send("shuffle", on=not on_now)

    def action_repeat(self) -> None:
        mode = self.snapshot.state.repeat if self.snapshot else "off"
        self._send("repeat", mode=REPEAT_MODES[(REPEAT_MODES.index(mode) + 1) % 3])

    def action_like(self) -> None:
        self._like(True)

    def action_unlike(self) -> None:
        self._like(False)

    def _like(self, liked: bool) -> None:
        track = self.snapshot.track if self.snapshot is not None else None
        if track is None:
            self.notify("Nothing is playing", severity="warning")
            return
        self.run_worker(self._set_like(track, liked), group="like")

    async def _set_like(self, track: TrackView, liked: bool) -> None:
        problems: list[str] = []
        await attempt(self.backend.set_like(track.id, liked), problems.append)
        if problems:
            self.notify(problems[0], severity="error")
        elif liked:
            self.notify(f"♥ Liked {track.title}")
        else:
            self.notify(f"Removed {track.title} from the liked tracks")

    def action_search(self) -> None:
        self.show_pane("search")

    def action_show_library(self) -> None:
        self.show_pane("library")

    def action_show_playlists(self) -> None:
        self.show_pane("playlists")

    def action_show_likes(self) -> None:
        self.show_pane("likes")

    def action_show_history(self) -> None:
        self.show_pane("history")

    def action_show_continue(self) -> None:
        self.show_pane("continue")

    def action_show_queue(self) -> None:
        self.show_pane("queue")

    def action_show_lyrics(self) -> None:
        self.show_pane("lyrics")

    def action_devices(self) -> None:
        panel = self.devices
        if panel.display and panel.table.has_focus:
            panel.display = False
            pane: Any = self.query_one(f"#{self.pane}")
            pane.focus_list()
        else:
            panel.display = True
            panel.table.focus()

    def action_pull(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        if not snap.plays:
            self.notify("This terminal cannot play (libmpv is missing)", severity="error")
            return
        self._send("transfer", device_id=snap.device_id)

    def action_push(self) -> None:
        if not self.devices.display or not self.devices.table.has_focus:
            self.devices.display = True
            self.devices.table.focus()
            self.devices.status.say("choose a device and press Enter")
            return
        self.devices.action_transfer()

    # --- jams ---------------------------------------------------------------------

    def _jam_shown(self, info: JamInfo | None) -> None:
        self.jam = info
        self.queue.show_jam(info, self.account.user)

    async def _load_jam(self) -> None:
        problems: list[str] = []
        info = await attempt(self.backend.jam(), problems.append)
        if not problems:
            self._jam_shown(info)

    def action_jam_start(self) -> None:
        self.run_worker(self._jam_start(), group="jam")

    async def _jam_start(self) -> None:
        problems: list[str] = []
        info = await attempt(self.backend.jam_start(), problems.append)
        if info is None:
            self.notify(problems[0] if problems else "no jam started", severity="error")
            return
        self._jam_shown(info)
        self.app.copy_to_clipboard(info.code)
        self.notify(
            f"Jam code {info.code} (copied): others press i, or run"
            f" `tunehand ctl jam join {info.code}`"
        )

    def action_jam_copy(self) -> None:
        if self.jam is None:
            self.notify("Not in a jam: w starts one, i joins one", severity="warning")
            return
        self.app.copy_to_clipboard(self.jam.code)
        self.notify(f"Copied the jam code {self.jam.code}")

    def action_jam_join(self) -> None:
        from tunehand.tui.screens.prompt import PromptScreen

        def join(code: str | None) -> None:
            if code:
                self.run_worker(self._jam_join(code), group="jam")

        self.app.push_screen(
            PromptScreen("Join the jam with the code:", placeholder="ABCD-EFGH"), callback=join
        )

    async def _jam_join(self, code: str) -> None:
        problems: list[str] = []
        info = await attempt(self.backend.jam_join(code), problems.append)
        if info is None:
            self.notify(problems[0] if problems else "not joined", severity="error")
            return
        self._jam_shown(info)
        self.notify(f"Joined {info.host}'s jam: add to its queue")

    def action_jam_leave(self) -> None:
        self.run_worker(self._jam_leave(), group="jam")

    async def _jam_leave(self) -> None:
        problems: list[str] = []
        line = await attempt(self.backend.jam_leave(), problems.append)
        if line is None:
            self.notify(problems[0] if problems else "still in the jam", severity="error")
            return
        self._jam_shown(None)
        self.notify(line)

    def action_help(self) -> None:
        from tunehand.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(getattr(self.app, "user_keymap", {})))

    async def action_quit(self) -> None:
        await self.app.action_quit()
