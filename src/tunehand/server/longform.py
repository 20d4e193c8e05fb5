"""Long-form resume: each account's own position in episodes, audiobooks and long tracks.

An item is long-form when it is a podcast episode, a track tagged as an audiobook
(genre `Audiobook`, or an `.m4b` file), or a track longer than 20 minutes. Whenever a
change of the session leaves such an item (another one plays, it is paused, sought, or
it ended), its position is kept; when a change makes one current again from its start,
the session's position becomes the kept one, so the device loads it there (or seeks
there, if it already moved on by itself). Played: heard to 95 % or to its end; a played
item starts from the beginning again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from tunehand.core.model import Position, SessionState
from tunehand.server.db import library as ql
from tunehand.server.db import podcasts as qp

LONG_MS = 20 * 60 * 1000
PLAYED_SHARE = 0.95
FROM_START_MS = 1500
"""A new current item this close to its start is taken to start over: it resumes."""
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Kind:
    kind: str  # "episode" | "audiobook" | "long"
    duration_ms: int


def kind_of_track(genre: str, path: str, duration_ms: int) -> str | None:
    if genre.strip().casefold() == "audiobook" or path.lower().endswith(".m4b"):
        return "audiobook"
    if duration_ms > LONG_MS:
        return "long"
    return None


class LongForm:
    """The resume rules of one server process; what is long-form is cached per id (a
    library track's tags change only with a rescan, which gives a changed file a new
    duration but keeps its kind close enough; the cache is bounded)."""

    def __init__(self) -> None:
        self._kinds: dict[tuple[int, str], Kind | None] = {}

    async def kinds(
        self, conn: AsyncConnection, account_id: int, ids: Iterable[str]
    ) -> dict[str, Kind]:
        out: dict[str, Kind] = {}
        missing = []
        for tid in ids:
            key = (account_id, tid)
            if key in self._kinds:
                known = self._kinds[key]
                if known is not None:
                    out[tid] = known
            else:
                missing.append(tid)
        if not missing:
            return out
        found: dict[str, Kind | None] = dict.fromkeys(missing)
        stored = await ql.get_many(conn, [t for t in missing if t.startswith("t")])
        for tid, s in stored.items():
            name = kind_of_track(s.view.genre, s.path, s.view.duration_ms)
            found[tid] = Kind(name, s.view.duration_ms) if name else None
        for eid, e in (await qp.get_episodes(conn, account_id, missing)).items():
            found[eid] = Kind("episode", e.duration_ms)
        if len(self._kinds) + len(found) > MAX_CACHED:
            self._kinds.clear()
        for tid, known in found.items():
            self._kinds[(account_id, tid)] = known
            if known is not None:
                out[tid] = known
        return out

    def forget(self, account_id: int, ids: Iterable[str]) -> None:
        for tid in ids:
            self._kinds.pop((account_id, tid), None)

    async def settle(
        self,
        conn: AsyncConnection,
        account_id: int,
        old: SessionState,
        new: SessionState,
        now_ms: int,
        ended: str | None = None,
    ) -> SessionState:
        """Keep the position of the long-form item `old` played (when `new` moved off
        it, paused or sought), and start a long-form item `new` makes current where the
        account left it. `ended`: the entry a device reported as played to its end."""
        old_cur, new_cur = old.current_entry, new.current_entry
        if old_cur is None and new_cur is None:
            return new
        if (
            old_cur is not None
            and new_cur is not None
            and old_cur.entry_id == new_cur.entry_id
            and old.position == new.position
        ):
            return new
        ids = {e.track_id for e in (old_cur, new_cur) if e is not None}
        long = await self.kinds(conn, account_id, ids)
        if not long:
            return new
        moved = new_cur is None or old_cur is None or new_cur.entry_id != old_cur.entry_id
        if old_cur is not None and old_cur.track_id in long:
            k = long[old_cur.track_id]
            duration = old_cur.duration_ms or k.duration_ms
            source = old if moved else new
            pos = max(0, source.position.at(now_ms, duration))
            done = ended == old_cur.entry_id or (duration > 0 and pos >= PLAYED_SHARE * duration)
            point = qp.ResumePoint(
                old_cur.track_id, k.kind, 0 if done else pos, duration, done, now_ms
            )
            await qp.save_point(conn, account_id, point)
        starts = moved and new.position.position_ms < FROM_START_MS
        if starts and new_cur is not None and new_cur.track_id in long:
            got = await qp.resume_points(conn, account_id, [new_cur.track_id])
            kept = got.get(new_cur.track_id)
            if kept is not None and not kept.played and kept.position_ms > 0:
                at = replace(new.position, position_ms=kept.position_ms)
                return replace(new, position=at)
        return new


def end_of_entry(
    li: qp.Listening, old: SessionState, new: SessionState, ended: str | None, at_ms: int
) -> SessionState | None:
    """`new` paused at the start of its entry when the entry the sleep timer waits for
    has just ended (the session moved off it, or a device reported its end); else None."""
    if li.sleep_entry is None or old.current != li.sleep_entry:
        return None
    if new.current == li.sleep_entry and ended != li.sleep_entry:
        return None
    return replace(new, position=Position(0, at_ms, False, 0.0))
