"""Scanning the music folders into the database, on start and on request.

The scan itself runs in a worker thread (mutagen is blocking); one scan at a time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.db import library as ql
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

    async def rescan(self) -> ScanSummary:
        async with self._lock:
            result = await asyncio.to_thread(scan_folders, self.folders, self.progress, self.log)
            # A music folder that is not there (an unmounted drive) or any folder the scan
            # could not list keeps its tracks: they are unknown this time, not gone.
            unreadable = [
                str(f.resolve()).rstrip("/") + "/"
                for f in self.folders
                if not f.is_dir() or not os.access(f, os.R_OK | os.X_OK)
            ] + [f.rstrip("/") + "/" for f in result.unreadable]
            async with self.engine.begin() as conn:
                changed, removed = await ql.store_scan(conn, result.tracks, unreadable)
                total = await ql.count(conn)
            self.last = ScanSummary(total, changed, removed, len(result.skipped))
            return self.last
