"""Scanning the music folders into the database, on start and on request.

The scan itself runs in a worker thread (mutagen is blocking); one scan at a time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.db import library as ql
from tunehand.server.db import search_index
from tunehand.server.db.engine import unavailable_types
from tunehand.server.library.scan import scan_folders


@dataclass(frozen=True, slots=True)
class ScanSummary:
    tracks: int
    changed: int
    removed: int
    skipped: int


class Library:
    def __init__(
        self,
        engine: AsyncEngine,
        folders: Sequence[Path],
        log: Callable[[str], None],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.folders = tuple(folders)
        self.log = log
        self.progress = progress
        self._lock = asyncio.Lock()
        self.last: ScanSummary | None = None

    @property
    def scanning(self) -> bool:
        return self._lock.locked()

    async def rescan(self, files: Sequence[str] = ()) -> ScanSummary:
        """Scan the music folders; with `files` (paths of stored tracks), only the folders
        that hold them, each with its subfolders (a music folder itself without them),
        as mpd's `update PATH` scans that subtree only."""
        async with self._lock:
            deep, shallow = subtrees(self.folders, files) if files else (list(self.folders), [])
            result = await asyncio.to_thread(scan_folders, deep, self.progress, self.log, shallow)
            # A music folder that is not there (an unmounted drive) or any folder the scan
            # could not list keeps its tracks: they are unknown this time, not gone.
            unreadable = [
                str(f.resolve()).rstrip("/") + "/"
                for f in self.folders
                if not f.is_dir() or not os.access(f, os.R_OK | os.X_OK)
            ] + [f.rstrip("/") + "/" for f in result.unreadable]
            scope = _scope(deep, shallow) if files else None
            async with self.engine.begin() as conn:
                changed, removed = await ql.store_scan(conn, result.tracks, unreadable, scope)
                total = await ql.count(conn)
            if changed or removed:
                failed: tuple[type[Exception], ...] = (DBAPIError, *unavailable_types())
                try:
                    await search_index.settle(self.engine)
                except failed as exc:  # the scan is stored; only searches stay slower
                    self.log(f"after the scan, VACUUM ANALYZE failed: {exc}")
            self.last = ScanSummary(total, changed, removed, len(result.skipped))
            return self.last


def subtrees(folders: Sequence[Path], files: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The folders holding `files` within the music `folders` (nested ones folded into the
    outer; files elsewhere ignored), and the music folders among them (scanned without
    their subfolders: that would be everything)."""
    roots = {Path(os.path.abspath(f)) for f in folders}
    dirs: set[Path] = set()
    for f in files:
        parent = Path(os.path.abspath(f)).parent
        if any(parent == r or r in parent.parents for r in roots):
            dirs.add(parent)
    shallow = sorted(d for d in dirs if d in roots)
    deep = sorted(
        d
        for d in dirs
        if d not in roots and not any(o in d.parents for o in dirs if o not in roots)
    )
    return deep, shallow


def _scope(deep: Sequence[Path], shallow: Sequence[Path]) -> Callable[[str], bool]:
    prefixes = tuple(str(d).rstrip("/") + "/" for d in deep)
    tops = {str(d) for d in shallow}

    def covered(path: str) -> bool:
        return path.startswith(prefixes) or os.path.dirname(path) in tops

    return covered
