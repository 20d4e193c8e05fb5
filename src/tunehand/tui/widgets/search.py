"""The search pane: results as you type, debounced, never blocking the UI.

Every keystroke starts an exclusive worker that first waits `debounce_s` and then
asks the backend; a newer keystroke cancels the older worker, so only the last query
reaches the server and a slow answer can never overwrite a newer one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input

from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Backend
from tunehand.tui.widgets.browse import BrowsePane

SEARCH_LIMIT = 200


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
        self.table.set_rows(found, cursor=0)
        more = "+" if len(found) >= SEARCH_LIMIT else ""
        self.set_status(f"{len(found)}{more} tracks match “{query}”" if found else "")

    def _failed(self, message: str) -> None:
        self.set_status(message, True)

    async def load_level(self, level: int, parent: Any) -> Sequence[Any]:
        return ()
