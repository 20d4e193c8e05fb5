"""Browsing panes: a drill-down of lists (artists → albums → tracks; playlists → tracks).

`BrowsePane` owns a stack of `Table`s, one per level, and the track keys (play, add
to the queue, play next, back). Data comes from the injected `Backend` in workers;
a failure shows in the pane's status line, never as a crash. Commands go up as
`SessionCommand` messages. Subclasses say what each level lists (`load_level`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.widgets import Static

from tunehand.core import names
from tunehand.core.model import MAX_QUEUE
from tunehand.core.protocol import TrackView
from tunehand.tui import keys
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Album, Artist, Backend, InProgress, Played, PlaylistInfo
from tunehand.tui.fmt import duration, track_cells
from tunehand.tui.messages import GoTo, SessionCommand
from tunehand.tui.widgets.status import StatusLine
from tunehand.tui.widgets.table import Column, Table

TRACK_COLUMNS = (
    Column("#", 4, right=True),
    Column("Title", flex=3),
    Column("Artist", flex=2),
    Column("Album", flex=2),
    Column("Time", 7, right=True),
)
"""An album's tracks: `#` is the track number on the album."""
POSITION_COLUMNS = (Column("#", 5, right=True), *TRACK_COLUMNS[1:])
"""A list in an order of its own (a playlist, the queue): `#` is the position, from 1."""
PLAIN_COLUMNS = TRACK_COLUMNS[1:]
"""Search results, liked tracks, history: no `#` (an album track number would mislead)."""


def track_table(
    empty: str, marked: Callable[[TrackView], bool], numbers: str = "album"
) -> Table[TrackView]:
    """A list of tracks whose `#` column is the album's track number ("album"), the
    position in the list ("position"), or absent ("none")."""
    if numbers == "album":
        return Table(TRACK_COLUMNS, track_cells, marked=marked, empty=empty, classes="tracks")
    return Table(
        POSITION_COLUMNS if numbers == "position" else PLAIN_COLUMNS,
        lambda t: track_cells(t)[1:],
        marked=marked,
        number=position if numbers == "position" else None,
        empty=empty,
        classes="tracks",
    )


def position(index: int, row: Any) -> str:
    return str(index + 1)


class BrowsePane(Vertical):
    """A titled stack of lists; the last level lists tracks."""

    BINDINGS: ClassVar[list[BindingType]] = keys.bindings("tracks")
    TITLE = ""
    play_list = True
    """Enter plays the whole list from the chosen track (an album); False: just that track."""
    ask_before_replacing = False
    """Enter asks first when it would replace a queue the user put together (a playlist)."""

    def __init__(self, backend: Backend, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.backend = backend
        self.crumbs: list[str] = [self.TITLE]
        self.level = 0
        self.current_track_id: str | None = None
        self.title = Static(self.TITLE, classes="crumb", markup=False)
        self.status = StatusLine()
        self.tables: list[Table[Any]] = self.make_tables()
        self.loaded = False

    def make_tables(self) -> list[Table[Any]]:
        return [track_table("no tracks", self._is_current, "none")]

    def compose(self) -> ComposeResult:
        yield self.title
        yield from self.tables
        yield self.status

    def on_mount(self) -> None:
        self._show(0)

    def _is_current(self, t: TrackView) -> bool:
        return t.id == self.current_track_id

    def set_current_track(self, track_id: str | None) -> None:
        if track_id != self.current_track_id:
            self.current_track_id = track_id
            self.tables[-1].refresh()

    @property
    def table(self) -> Table[Any]:
        return self.tables[self.level]

    def _show(self, level: int) -> None:
        had_focus = any(t.has_focus for t in self.tables)
        self.level = level
        for i, t in enumerate(self.tables):
            t.display = i == level
        self.title.update(names.line(" › ".join(self.crumbs[: level + 1])))
        if had_focus:
            self.table.focus()

    def focus_list(self) -> None:
        self.table.focus()

    # --- loading ------------------------------------------------------------------

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.say(text, error)

    def reload(self) -> None:
        """Load the top level again (and go back to it)."""
        self.loaded = True
        self.crumbs = [self.TITLE]
        self._show(0)
        self.run_worker(self._load(0, None), group=f"load-{self.id}", exclusive=True)

    async def _load(
        self, level: int, parent: Any, select: Callable[[Any], bool] | None = None
    ) -> None:
        """Load a level's rows; the cursor goes to the first row `select` picks (or the top)."""
        self.tables[level].set_empty("loading…")
        self.tables[level].set_rows((), cursor=0)
        self.set_status("")
        rows = await attempt(self.load_level(level, parent), lambda m: self.set_status(m, True))
        if rows is None:
            self.tables[level].set_empty("could not load: see below")
            return
        self.tables[level].set_empty(self.empty_text(level))
        cursor = next((i for i, r in enumerate(rows) if select(r)), 0) if select else 0
        self.tables[level].set_rows(rows, cursor=cursor)

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        raise NotImplementedError

    def empty_text(self, level: int) -> str:
        return "nothing here"

    def crumb(self, row: Any) -> str:
        return str(row)

    # --- actions ------------------------------------------------------------------

    def on_table_activated(self, event: Table.Activated) -> None:
        event.stop()
        self.action_play()

    def _tracks(self) -> Sequence[TrackView]:
        rows: Sequence[TrackView] = self.tables[-1].rows
        return rows

    def action_play(self) -> None:
        table = self.table
        row = table.current
        if row is None:
            return
        if self.level < len(self.tables) - 1:
            self.crumbs[self.level + 1 :] = [self.crumb(row)]
            self._show(self.level + 1)
            self.run_worker(self._load(self.level, row), group=f"load-{self.id}", exclusive=True)
            return
        i = table.cursor_row
        if not self.play_list:
            self.post_message(SessionCommand("play", track_ids=(row.id,)))
            return
        ids = [t.id for t in self._tracks()]
        start = max(0, min(i, len(ids) - MAX_QUEUE)) if len(ids) > MAX_QUEUE else 0
        window = tuple(ids[start : start + MAX_QUEUE])
        play = SessionCommand("play", track_ids=window, replace=True, index=i - start)
        if self.ask_before_replacing and self._hand_built_queue(window):
            self._ask_replace(play, row)
        else:
            self.post_message(play)

    def _hand_built_queue(self, window: tuple[str, ...]) -> int:
        """How many tracks the queue has when it is not `window` nor the last list this
        TUI played whole (so the user put it together: added, removed, moved); else 0."""
        snap = getattr(self.app, "snapshot", None)
        if snap is None:
            return 0
        queue = tuple(e.track_id for e in snap.state.queue)
        if not queue or queue == window or queue == getattr(self.app, "last_list", ()):
            return 0
        return len(queue)

    def _ask_replace(self, play: SessionCommand, row: TrackView) -> None:
        from tunehand.tui.screens.choice import ChoiceScreen

        def answered(choice: str | None) -> None:
            if choice == "replace":
                self.post_message(play)
            elif choice == "next":
                done = added("queue_next", row.title)
                self.post_message(SessionCommand("queue_next", track_ids=(row.id,), done=done))

        n = self._hand_built_queue(play.fields["track_ids"])
        question = (
            f"The queue holds {n} track{'' if n == 1 else 's'} you put together. "
            f"Play “{self.crumbs[-1]}” "
            f"from “{row.title}” instead of them?"
        )
        answers = [
            ("r", "Replace the queue", "replace"),
            ("n", "Play just this track next", "next"),
            ("escape", "Cancel", ""),
        ]
        self.app.push_screen(ChoiceScreen(question, answers), callback=answered)

    def _enqueue(self, op: str) -> None:
        row = self.table.current
        if row is None:
            return
        if self.level == len(self.tables) - 1:
            done = added(op, row.title)
            self.post_message(SessionCommand(op, track_ids=(row.id,), done=done))
        else:
            self.run_worker(self._enqueue_group(op, row), group=f"enqueue-{self.id}")

    async def _enqueue_group(self, op: str, row: Any) -> None:
        tracks = await attempt(self.group_tracks(row), lambda m: self.set_status(m, True))
        if not tracks:
            return
        ids = tuple(t.id for t in tracks)
        if len(ids) == 1:
            done = added(op, tracks[0].title)
        else:
            by = "by" if isinstance(row, Artist) else "of"
            done = added(op, f"{len(ids)} tracks {by} {self.crumb(row)}", plural=True)
        self.post_message(SessionCommand(op, track_ids=ids, done=done))

    async def group_tracks(self, row: Any) -> Sequence[TrackView]:
        """The tracks an upper-level row stands for (an album's, a playlist's)."""
        return ()

    def action_enqueue(self) -> None:
        self._enqueue("queue_add")

    def action_enqueue_next(self) -> None:
        self._enqueue("queue_next")

    def action_back(self) -> None:
        if self.level > 0:
            self._show(self.level - 1)

    def selected_track(self) -> TrackView | None:
        row = self.table.current
        return row if isinstance(row, TrackView) else None

    def action_go_album(self) -> None:
        t = self.selected_track()
        if t is None or not t.album:
            self.notify("Choose a track of an album first", severity="warning")
            return
        artist = t.album_artist or t.artist
        self.post_message(GoTo("album", Album(t.album_id, t.album, artist)))

    def action_go_artist(self) -> None:
        t = self.selected_track()
        if t is None or not (t.album_artist or t.artist):
            self.notify("Choose a track first", severity="warning")
            return
        self.post_message(GoTo("artist", Artist("", t.album_artist or t.artist)))


class LibraryPane(BrowsePane):
    TITLE = "Artists"

    def make_tables(self) -> list[Table[Any]]:
        artists: Table[Artist] = Table(
            (Column("Artist", flex=3), Column("Albums", 7, right=True)),
            lambda a: (a.name, str(a.albums)),
            empty="no artists",
        )
        albums: Table[Album] = Table(
            (Column("Album", flex=3), Column("Year", 5), Column("Tracks", 7, right=True)),
            lambda a: (a.title, str(a.year or ""), str(a.tracks)),
            empty="no albums",
        )
        return [artists, albums, track_table("no tracks", self._is_current)]

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        if level == 0:
            return await self.backend.artists()
        if level == 1:
            return await self.backend.albums(parent.key)
        return await self.backend.album_tracks(parent.id)

    def crumb(self, row: Any) -> str:
        return str(row.name if isinstance(row, Artist) else row.title)

    def go_to(self, row: Artist | Album) -> None:
        """Open an artist (its albums) or an album (its tracks), as if walked to."""
        self.loaded = True
        self.run_worker(self._go_to(row), group=f"load-{self.id}", exclusive=True)

    async def _go_to(self, row: Artist | Album) -> None:
        self.crumbs = [self.TITLE]
        self._show(0)
        if isinstance(row, Artist) and row.key:
            key = row.key
            wanted: Callable[[Artist], bool] = lambda a: a.key == key  # noqa: E731
        else:  # an album's artist, or a track's: known by name
            name = row.name if isinstance(row, Artist) else row.artist
            wanted = lambda a: a.name == name  # noqa: E731
        await self._load(0, None, wanted)
        artist: Artist | None = self.tables[0].current
        if artist is None or not wanted(artist):
            self.set_status(f"{self.crumb(row)} is not in the library any more", True)
            return
        self.crumbs.append(artist.name)
        self._show(1)
        if isinstance(row, Album):  # by id; by title for a track without one
            wanted_album: Callable[[Album], bool] | None = (
                (lambda al: al.id == row.id) if row.id else (lambda al: al.title == row.title)
            )
        else:
            wanted_album = None
        await self._load(1, artist, wanted_album)
        album: Album | None = self.tables[1].current
        if wanted_album is not None:
            if album is None or not wanted_album(album):
                self.set_status(f"{self.crumb(row)} is not in the library any more", True)
                return
            self.crumbs.append(album.title)
            self._show(2)
            await self._load(2, album)
        self.focus_list()

    async def group_tracks(self, row: Any) -> Sequence[TrackView]:
        if isinstance(row, Album):
            return await self.backend.album_tracks(row.id)
        albums = await self.backend.albums(row.key)
        tracks: list[TrackView] = []
        for album in albums:
            tracks.extend(await self.backend.album_tracks(album.id))
        return tracks


class PlaylistsPane(BrowsePane):
    """The account's playlists; rename and delete them, and edit one's tracks in place.

    Edits (remove, move) show at once and are saved whole (`save_playlist`) by one
    worker at a time, always the latest order, so quick keys never race each other.
    """

    TITLE = "Playlists"
    BINDINGS: ClassVar[list[BindingType]] = [*BrowsePane.BINDINGS, *keys.bindings("playlists")]
    ask_before_replacing = True

    def __init__(self, backend: Backend, *, id: str) -> None:
        super().__init__(backend, id=id)
        self.opened: PlaylistInfo | None = None
        self._pending: tuple[str, list[TrackView], str] | None = None
        self._saving = False

    def make_tables(self) -> list[Table[Any]]:
        lists: Table[PlaylistInfo] = Table(
            (Column("Playlist", flex=3), Column("Tracks", 7, right=True)),
            lambda p: (p.name, str(p.tracks)),
            empty="no playlists yet: S in the queue saves it as one",
        )
        return [lists, track_table("this playlist is empty", self._is_current, "position")]

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        if level == 0:
            return await self.backend.playlists()
        self.opened = parent
        return await self.backend.playlist(parent.name)

    def crumb(self, row: Any) -> str:
        return str(row.name)

    async def group_tracks(self, row: Any) -> Sequence[TrackView]:
        return await self.backend.playlist(row.name)

    def go_to(self, playlist: PlaylistInfo) -> None:
        """Open a playlist, as if walked to."""
        self.loaded = True
        self.run_worker(self._go_to(playlist.name), group=f"load-{self.id}", exclusive=True)

    async def _go_to(self, name: str) -> None:
        self.crumbs = [self.TITLE]
        self._show(0)
        await self._load(0, None, lambda p: p.name == name)
        found: PlaylistInfo | None = self.tables[0].current
        if found is None or found.name != name:
            self.set_status(f"no playlist named {name!r} any more", True)
            return
        self.crumbs.append(found.name)
        self._show(1)
        await self._load(1, found)
        self.focus_list()

    def _selected_list(self) -> PlaylistInfo | None:
        if self.level == 0:
            row: PlaylistInfo | None = self.tables[0].current
            return row
        return self.opened

    def _reload_lists(self, name: str | None) -> None:
        """Load the list of playlists again (in place), the cursor on `name`."""
        select = (lambda p: p.name == name) if name else None
        self.run_worker(self._load(0, None, select), group="playlists-list", exclusive=True)

    # --- rename and delete --------------------------------------------------------

    def action_playlist_rename(self) -> None:
        p = self._selected_list()
        if p is None:
            return
        from tunehand.tui.screens.prompt import PromptScreen

        def rename(new_name: str | None) -> None:
            if new_name and new_name != p.name:
                self.run_worker(self._rename(p.name, new_name), group="playlist-rename")

        self.app.push_screen(
            PromptScreen(f"Rename the playlist “{p.name}” to:", value=p.name), callback=rename
        )

    async def _rename(self, name: str, new_name: str) -> None:
        problems: list[str] = []
        await attempt(self.backend.rename_playlist(name, new_name), problems.append)
        if problems:
            self.set_status(problems[0], True)
            return
        if self.opened is not None and self.opened.name == name:
            self.opened = PlaylistInfo(new_name, self.opened.tracks)
            if self.level == 1:
                self.crumbs[1] = new_name
                self._show(1)
        self._reload_lists(new_name)
        self.notify(f"Renamed the playlist “{name}” to “{new_name}”")

    def action_playlist_remove(self) -> None:
        if self.level == 1:
            self._edit_remove()
            return
        p = self.tables[0].current
        if p is None:
            return
        from tunehand.tui.screens.choice import ChoiceScreen

        def answered(choice: str | None) -> None:
            if choice == "delete":
                self.run_worker(self._delete(p.name), group="playlist-delete")

        tracks = f"{p.tracks} track{'' if p.tracks == 1 else 's'}"
        self.app.push_screen(
            ChoiceScreen(
                f"Delete the playlist “{p.name}” ({tracks})? This cannot be undone.",
                [("y", "Delete it", "delete"), ("escape", "Keep it", "")],
                focus=1,
                danger=True,
            ),
            callback=answered,
        )

    async def _delete(self, name: str) -> None:
        problems: list[str] = []
        await attempt(self.backend.delete_playlist(name), problems.append)
        if problems:
            self.set_status(problems[0], True)
            return
        below = self.tables[0].cursor_row
        rows = [p for p in self.tables[0].rows if p.name != name]
        self.tables[0].set_rows(rows, cursor=min(below, max(0, len(rows) - 1)))
        self.notify(f"Deleted the playlist “{name}”")

    # --- editing the tracks -------------------------------------------------------

    def _edit_remove(self) -> None:
        table = self.tables[1]
        i = table.cursor_row
        if self.opened is None or not 0 <= i < len(table.rows):
            return
        rows = list(table.rows)
        gone = rows.pop(i)
        self._edited(rows, min(i, len(rows) - 1), f"removed {gone.title} from the playlist")

    def _edit_move(self, delta: int) -> None:
        table = self.tables[1]
        i = table.cursor_row
        if self.level != 1 or self.opened is None or not 0 <= i + delta < len(table.rows):
            return
        rows = list(table.rows)
        rows[i], rows[i + delta] = rows[i + delta], rows[i]
        self._edited(rows, i + delta, "")

    def action_playlist_move_up(self) -> None:
        self._edit_move(-1)

    def action_playlist_move_down(self) -> None:
        self._edit_move(1)

    def _edited(self, rows: list[TrackView], cursor: int, what: str) -> None:
        """Show the edit now; save the playlist's new track list in the background."""
        assert self.opened is not None
        self.tables[1].set_rows(rows, cursor=max(0, cursor))
        self._pending = (self.opened.name, rows, what)
        if not self._saving:
            self._saving = True
            self.run_worker(self._save_edits(), group="playlist-edit")

    async def _save_edits(self) -> None:
        try:
            while self._pending is not None:
                name, rows, what = self._pending
                self._pending = None
                problems: list[str] = []
                ids = [t.id for t in rows]
                await attempt(self.backend.save_playlist(name, ids), problems.append)
                if problems:  # show what the server has, and why the edit did not stick
                    self._pending = None
                    if self.opened is not None and self.level == 1:
                        await self._load(1, self.opened)
                    self.set_status(f"could not save the playlist: {problems[0]}", True)
                    return
                self.set_status(what)
                self.tables[0].set_rows(
                    [
                        PlaylistInfo(p.name, len(ids)) if p.name == name else p
                        for p in self.tables[0].rows
                    ]
                )
        finally:
            self._saving = False


class LikesPane(BrowsePane):
    TITLE = "Liked tracks"

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        tracks = await self.backend.likes()
        self.title.update(f"Liked tracks · {len(tracks)}")
        return tracks

    def empty_text(self, level: int) -> str:
        return "no liked tracks yet: `tunehand ctl like` likes what plays"


def _history_row(p: Played) -> TrackView:
    return p.track or TrackView(p.track_id, "(track gone)")


class HistoryPane(BrowsePane):
    TITLE = "Listening history"
    play_list = False

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        return [_history_row(p) for p in await self.backend.history()]

    def empty_text(self, level: int) -> str:
        return "nothing played yet"


KINDS = {"episode": "Episode", "audiobook": "Audiobook", "long": "Long track"}


def _continue_row(i: InProgress) -> TrackView:
    """An item in progress as a row: its kind and where it was left in the artist and
    album columns (playing it resumes there: the server keeps the place)."""
    at = f"at {duration(i.position_ms)}"
    if i.duration_ms:
        at += f" of {duration(i.duration_ms)}"
    return TrackView(i.id, i.title, KINDS.get(i.kind, i.kind), at, duration_ms=i.duration_ms)


class ContinuePane(BrowsePane):
    """Continue: episodes, audiobooks and long tracks started and not finished."""

    TITLE = "Continue"
    play_list = False

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        return [_continue_row(i) for i in await self.backend.in_progress()]

    def empty_text(self, level: int) -> str:
        return "nothing in progress: episodes, audiobooks and long tracks resume here"


def added(op: str, what: str, *, plural: bool = False) -> str:
    """The toast for an enqueue: "Added X to the queue" or "X plays next"."""
    if op == "queue_next":
        return f"{what} {'play' if plural else 'plays'} next"
    return f"Added {what} to the queue"


def total_time(tracks: Sequence[TrackView]) -> str:
    return duration(sum(t.duration_ms for t in tracks))
