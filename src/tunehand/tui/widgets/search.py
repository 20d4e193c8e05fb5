"""The search pane: results as you type, debounced, never blocking the UI.

Every keystroke starts an exclusive worker that first waits `debounce_s` and then
asks the backend; a newer keystroke cancels the older worker, so only the last query
reaches the server and a slow answer can never overwrite a newer one.

Results come in sections (artists, albums, playlists, tracks), one list with the
section's name on its first row. Enter on a track plays it; on an artist, album or
playlist it goes there (`GoTo`: the library or the playlists show it); `a`/`A` queue
what the row stands for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input

from tunehand.core.protocol import TrackView
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Album, Artist, Backend, PlaylistInfo, SearchResults
from tunehand.tui.fmt import track_cells
from tunehand.tui.messages import GoTo, SessionCommand
from tunehand.tui.widgets.browse import BrowsePane, added
from tunehand.tui.widgets.table import Column, Table

SEARCH_LIMIT = 200
SECTIONS = {"artist": "Artists", "album": "Albums", "playlist": "Playlists", "track": "Tracks"}
SEARCH_COLUMNS = (
    Column("", 9),
    Column("Title", flex=3),
    Column("Artist", flex=2),
    Column("Album", flex=2),
    Column("Time", 7, right=True),
)


@dataclass(frozen=True, slots=True)
class Hit:
    """One result row: what it is ("artist", "album", "playlist", "track"), the thing
    itself, and whether it opens its section (which then shows the section's name)."""

    kind: str
    item: Any
    first: bool = False


def hits(found: SearchResults) -> list[Hit]:
    rows: list[Hit] = []
    for kind, items in (
        ("artist", found.artists),
        ("album", found.albums),
        ("playlist", found.playlists),
        ("track", found.tracks),
    ):
        rows.extend(Hit(kind, item, i == 0) for i, item in enumerate(items))
    return rows


def count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def hit_cells(h: Hit) -> Sequence[str | Text]:
    label = Text(SECTIONS[h.kind] if h.first else "", style="bold")
    if h.kind == "artist":
        a: Artist = h.item
        return (label, a.name, "", f"{count(a.albums, 'album')} · {count(a.tracks, 'track')}", "")
    if h.kind == "album":
        al: Album = h.item
        year = f"{al.year} · " if al.year else ""
        return (label, al.title, al.artist, f"{year}{count(al.tracks, 'track')}", "")
    if h.kind == "playlist":
        p: PlaylistInfo = h.item
        return (label, p.name, "", count(p.tracks, "track"), "")
    return (label, *track_cells(h.item)[1:])


class SearchPane(BrowsePane):
    TITLE = "Search"
    play_list = False
    BINDINGS: ClassVar[list[BindingType]] = [
        *BrowsePane.BINDINGS,
        Binding("down", "results", "Results", show=False),
    ]

    def __init__(self, backend: Backend, *, id: str, debounce_s: float = 0.25) -> None:
        super().__init__(backend, id=id)
        self.debounce_s = debounce_s
        self.input = Input(
            placeholder="artist, album or title: results as you type", id="search-input"
        )
        self.searches = 0
        self._waiting: asyncio.Event | None = None
        """Searches sent to the backend (the debounce drops the others)."""

    def make_tables(self) -> list[Table[Any]]:
        table: Table[Hit] = Table(
            SEARCH_COLUMNS,
            hit_cells,
            marked=lambda h: h.kind == "track" and self._is_current(h.item),
            empty="type to search",
            classes="tracks",
        )
        return [table]

    @property
    def tracks(self) -> list[TrackView]:
        """The tracks among the results, in order."""
        return [h.item for h in self.table.rows if h.kind == "track"]

    def compose(self) -> ComposeResult:
        yield self.title
        yield self.input
        yield from self.tables
        yield self.status

    def focus_list(self) -> None:
        self.input.focus()

    def reload(self) -> None:
        self.loaded = True

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.run_worker(self._search(event.value), group="search", exclusive=True)

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        """Enter searches at once (no debounce wait), or goes to the results."""
        event.stop()
        if self._waiting is not None:
            self._waiting.set()
        else:
            self.action_results()

    def action_results(self) -> None:
        if self.table.rows:
            self.table.focus()

    def action_back(self) -> None:
        self.input.focus()

    async def _search(self, query: str) -> None:
        if not query.strip():
            self.table.set_rows((), cursor=0)
            self.table.set_empty("type to search")
            self.set_status("")
            return
        self._waiting = waiting = asyncio.Event()
        try:
            await asyncio.wait_for(waiting.wait(), self.debounce_s)
        except TimeoutError:
            pass
        finally:
            if self._waiting is waiting:
                self._waiting = None
        self.searches += 1
        self.set_status(f"searching for “{query}”…")
        found = await attempt(self.backend.search(query, SEARCH_LIMIT), self._failed)
        if found is None:
            return
        self.table.set_empty(f"nothing matches “{query}”")
        self.table.set_rows(hits(found), cursor=0)
        more = "+" if len(found.tracks) >= SEARCH_LIMIT else ""
        parts = [
            count(len(items), what)
            for items, what in (
                (found.artists, "artist"),
                (found.albums, "album"),
                (found.playlists, "playlist"),
            )
            if items
        ]
        if found.tracks or not parts:
            parts.append(f"{len(found.tracks)}{more} track{'' if len(found.tracks) == 1 else 's'}")
        if not self.table.rows:
            self.set_status("")
            return
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        self.set_status(f"{listed} match “{query}”")

    def _failed(self, message: str) -> None:
        self.set_status(message, True)

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        return ()

    # --- actions on results -------------------------------------------------------

    def action_play(self) -> None:
        """A track plays; an artist, album or playlist is shown where it lives."""
        hit = self.table.current
        if hit is None:
            return
        if hit.kind == "track":
            self.post_message(SessionCommand("play", track_ids=(hit.item.id,)))
        else:
            self.post_message(GoTo(hit.kind, hit.item))

    def _enqueue(self, op: str) -> None:
        hit = self.table.current
        if hit is None:
            return
        if hit.kind == "track":
            done = added(op, hit.item.title)
            self.post_message(SessionCommand(op, track_ids=(hit.item.id,), done=done))
        else:
            self.run_worker(self._enqueue_group(op, hit.item), group=f"enqueue-{self.id}")

    async def group_tracks(self, row: Any) -> Sequence[TrackView]:
        if isinstance(row, Album):
            return await self.backend.album_tracks(row.id)
        if isinstance(row, PlaylistInfo):
            return await self.backend.playlist(row.name)
        tracks: list[TrackView] = []
        for album in await self.backend.albums(row.key):
            tracks.extend(await self.backend.album_tracks(album.id))
        return tracks

    def crumb(self, row: Any) -> str:
        return str(row.name if isinstance(row, (Artist, PlaylistInfo)) else row.title)

    def selected_track(self) -> TrackView | None:
        hit = self.table.current
        return hit.item if hit is not None and hit.kind == "track" else None

    def action_go_album(self) -> None:
        hit = self.table.current
        if hit is not None and hit.kind == "album":
            self.post_message(GoTo("album", hit.item))
        else:
            super().action_go_album()

    def action_go_artist(self) -> None:
        hit = self.table.current
        if hit is not None and hit.kind == "artist":
            self.post_message(GoTo("artist", hit.item))
        elif hit is not None and hit.kind == "album":
            self.post_message(GoTo("artist", Artist("", hit.item.artist)))
        else:
            super().action_go_artist()
