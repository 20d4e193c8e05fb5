"""The queue pane: the session's queue, live, with its edits.

The rows are the session state's own entries (`snapshot.state.queue`) in the order they
will play (the shuffle permutation while shuffle is on), so a prediction or another
device's edit shows at once, and moves (`order_move`) are moves in that order. Titles
come from a cache of `TrackView`s filled by the backend's `queue()` when an entry's track
is unknown.
Edits name entry ids and go up as `SessionCommand`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tunehand.core.model import Entry
from tunehand.core.protocol import TrackView
from tunehand.tui import keys
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Backend, JamInfo, SessionSnapshot
from tunehand.tui.fmt import duration
from tunehand.tui.messages import SessionCommand
from tunehand.tui.widgets.browse import POSITION_COLUMNS
from tunehand.tui.widgets.status import StatusLine
from tunehand.tui.widgets.table import Table


class QueuePane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("queue")

    def __init__(self, backend: Backend, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.backend = backend
        self.tracks: dict[str, TrackView] = {}
        self.snapshot: SessionSnapshot | None = None
        self.title = Static("Queue", classes="crumb", markup=False)
        self.status = StatusLine()
        self.table: Table[Entry] = Table(
            POSITION_COLUMNS,
            self._cells,
            marked=self._is_current,
            number=self._position,
            empty="the queue is empty: press Enter or a on a track",
            classes="tracks",
        )
        self._fetching = False
        self._ordered_from: tuple[tuple[Entry, ...], tuple[str, ...]] | None = None
        self._clear_armed = False
        self.loaded = True
        self.jam_line = ""
        """What the title says of the jam the account is in ("" when none)."""
        self._several_adders = False
        self._adders_of: tuple[Entry, ...] | None = None

    def compose(self) -> ComposeResult:
        yield self.title
        yield self.table
        yield self.status

    def focus_list(self) -> None:
        self.table.focus()

    def reload(self) -> None:
        self._fetch()

    # --- attributes down ----------------------------------------------------------

    def show(self, snap: SessionSnapshot) -> None:
        self.snapshot = snap
        if snap.track is not None:
            self.tracks[snap.track.id] = snap.track
        st = snap.state
        if not (st.shuffle and st.order):
            self._ordered_from = None
            self.table.set_rows(st.queue)
        elif self._ordered_from != (st.queue, st.order):  # rebuilt only when they change
            self._ordered_from = (st.queue, st.order)
            by_id = {e.entry_id: e for e in st.queue}
            self.table.set_rows([by_id[i] for i in st.order if i in by_id])
        if self._adders_of is not st.queue:
            self._adders_of = st.queue
            first = st.queue[0].added_by if st.queue else ""
            self._several_adders = any(e.added_by != first for e in st.queue)
        total = sum(e.duration_ms for e in st.queue)
        flags = f"shuffle {'on' if st.shuffle else 'off'} · repeat {st.repeat}"
        self.title.update(
            f"Queue · {len(st.queue)} tracks · {duration(total)} · {flags}{self.jam_line}"
        )
        if any(e.track_id not in self.tracks for e in st.queue):
            self._fetch()

    def show_jam(self, info: JamInfo | None, me: str) -> None:
        """The jam in the title: whose, who is in it, its code; entries say who added them."""
        if info is None:
            self.jam_line = ""
        else:
            whose = "your jam" if info.host == me else f"in {info.host}'s jam"
            others = [m for m in info.members if m not in (me, info.host)]
            with_ = f" with {', '.join(others)}" if others else ""
            self.jam_line = f" · {whose}{with_} · code {info.code}"
        if self.snapshot is not None:
            self.show(self.snapshot)
        self.table.refresh()

    def _fetch(self) -> None:
        if not self._fetching:
            self._fetching = True
            self.run_worker(self._load(), group="queue-tracks")

    async def _load(self) -> None:
        try:
            items = await attempt(self.backend.queue(), self._failed)
        finally:
            self._fetching = False
        if items is None:
            return
        for item in items:
            self.tracks[item.track_id] = item.track or TrackView(item.track_id, "(track gone)")
        self.set_status("")
        self.table.refresh()

    def _failed(self, message: str) -> None:
        self.set_status(message, True)

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.say(text, error)

    # --- drawing ------------------------------------------------------------------

    def _is_current(self, e: Entry) -> bool:
        return self.snapshot is not None and e.entry_id == self.snapshot.state.current

    def _position(self, index: int, e: Entry) -> str:
        """The entry's place in play order, from 1, with ▶ on the playing one."""
        return f"▶ {index + 1}" if self._is_current(e) else str(index + 1)

    def _cells(self, e: Entry) -> Sequence[str]:
        t = self.tracks.get(e.track_id)
        by = f"  · {e.added_by}" if e.added_by and self._shared() else ""
        if t is None:
            return (e.track_id + by, "", "", duration(e.duration_ms))
        return (t.title + by, t.artist or "Unknown artist", t.album, duration(t.duration_ms))

    def _shared(self) -> bool:
        """Whether who added an entry is worth saying: in a jam, or several added."""
        return bool(self.jam_line) or self._several_adders

    # --- actions ------------------------------------------------------------------

    def on_table_activated(self, event: Table.Activated) -> None:
        event.stop()
        self.action_play_entry()

    def _entry(self) -> Entry | None:
        return self.table.current

    def action_play_entry(self) -> None:
        if (e := self._entry()) is not None:
            self.post_message(SessionCommand("play", entry_id=e.entry_id))

    def action_jump_playing(self) -> None:
        """Put the cursor on the playing entry (wherever the list was scrolled)."""
        cur = self.snapshot.state.current if self.snapshot is not None else None
        for i, e in enumerate(self.table.rows):
            if e.entry_id == cur:
                self.table.cursor_row = i
                return
        self.notify("Nothing is playing", severity="warning")

    def action_remove(self) -> None:
        if (e := self._entry()) is not None:
            self.post_message(SessionCommand("queue_remove", entry_ids=(e.entry_id,)))

    def _move(self, delta: int) -> None:
        e = self._entry()
        i = self.table.cursor_row
        if e is None or not 0 <= i + delta < len(self.table.rows):
            return
        self.post_message(SessionCommand("order_move", entry_id=e.entry_id, index=i + delta))
        self.table.cursor_row = i + delta

    def action_move_up(self) -> None:
        self._move(-1)

    def action_move_down(self) -> None:
        self._move(1)

    def action_play_next(self) -> None:
        e = self._entry()
        if e is None or self.snapshot is None:
            return
        ids = [x.entry_id for x in self.table.rows]
        cur = self.snapshot.state.current
        i = self.table.cursor_row
        if cur not in ids:
            target = 0
        else:
            c = ids.index(cur)
            if i == c:
                return
            target = c + 1 if i > c else c
        self.post_message(SessionCommand("order_move", entry_id=e.entry_id, index=target))
        self.table.cursor_row = target

    def action_clear(self) -> None:
        if not self.table.rows:
            return
        if not self._clear_armed:
            self._clear_armed = True
            keys_ = keys.key_label(keys.BY_NAME["clear"].key)
            self.set_status(f"press {keys_} again to clear the whole queue")
            return
        self._clear_armed = False
        self.set_status("")
        self.post_message(SessionCommand("queue_clear"))

    def action_save_queue(self) -> None:
        rows = list(self.table.rows)
        if not rows:
            self.set_status("the queue is empty: nothing to save", True)
            return
        from tunehand.tui.screens.prompt import PromptScreen

        def save(name: str | None) -> None:
            if name:
                self.run_worker(self._save(name, [e.track_id for e in rows]), group="save")

        self.app.push_screen(
            PromptScreen(
                f"Save the {len(rows)} tracks of the queue as the playlist:",
                placeholder="playlist name (an existing one is replaced)",
            ),
            callback=save,
        )

    async def _save(self, name: str, track_ids: list[str]) -> None:
        problems: list[str] = []
        await attempt(self.backend.save_playlist(name, track_ids), problems.append)
        if problems:
            self.set_status(problems[0], True)
        else:
            self.set_status(f"saved {len(track_ids)} tracks as the playlist {name!r}")

    def on_descendant_blur(self) -> None:
        if self._clear_armed:
            self._clear_armed = False
            self.set_status("")
