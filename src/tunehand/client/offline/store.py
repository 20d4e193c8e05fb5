"""The offline cache's files and index: which tracks are here, pinned or not, and checked.

Layout, under the user cache dir (platformdirs, so `XDG_CACHE_HOME` moves it), one
folder per config dir (a device's account and server): `index.sqlite3`, `tracks/`
(`<id>.<ext>` once complete and checked, `<id>.part` while downloading), `art/`.

A track is *pinned* while a pin (`offline add`: an album, a playlist, the liked tracks,
or the track itself) names it; pinned tracks stay whatever the limit. The rest (what a
playing device cached ahead of the queue, or kept after playing it) is bounded by
`offline_max_mb`: the least recently used go first. The index is SQLite in WAL mode
with a busy timeout, so several processes of one config dir (a receiver, `offline
add`, the TUI) share it safely; every write is one short transaction.

Nothing is trusted blindly: `path_for` gives a file only when its size and mtime are
those recorded when its SHA-256 was last checked (`verify` checks the hash itself); a
file that does not match is removed, and the caller fetches it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunehand.errors import ConfigError

MB = 1024 * 1024
DEFAULT_MAX_MB = 2048
INDEX = "index.sqlite3"
BUSY_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    track_id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    used_ms INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    source TEXT NOT NULL,
    track_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (source, track_id)
);
CREATE TABLE IF NOT EXISTS art (
    art_id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    size INTEGER NOT NULL
);
"""

META_KEYS = (
    "id",
    "title",
    "artist",
    "album",
    "album_artist",
    "album_id",
    "duration_ms",
    "track_no",
    "disc_no",
    "year",
    "genre",
    "art_id",
)


@dataclass(frozen=True, slots=True)
class Cached:
    track_id: str
    path: Path
    size: int
    sha256: str
    used_ms: int
    pinned: tuple[str, ...]
    meta: dict[str, Any]


def cache_root(config_dir: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """This config dir's cache folder, in the user cache dir (`XDG_CACHE_HOME` honoured)."""
    import platformdirs

    base = environ.get("TUNEHAND_CACHE_DIR") or platformdirs.user_cache_dir("tunehand")
    key = hashlib.sha256(str(config_dir.absolute()).encode()).hexdigest()[:16]
    return Path(base).expanduser().absolute() / "offline" / key


def now_ms() -> int:
    return int(time.time() * 1000)


def art_id_of(art_url: str | None) -> str | None:
    """The art id in a signed art URL (`/v1/art/<id>?...`)."""
    if not art_url or "/v1/art/" not in art_url:
        return None
    return art_url.split("/v1/art/", 1)[1].split("?", 1)[0] or None


def meta_of(view: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of a track view (no URLs: they are signed and expire)."""
    meta = {k: view.get(k) for k in META_KEYS if k != "art_id"}
    meta["art_id"] = art_id_of(view.get("art_url"))
    return meta


class Store:
    """The cache of one config dir. Cheap to open; one SQLite connection per instance."""

    def __init__(self, root: Path, max_mb: int = DEFAULT_MAX_MB) -> None:
        self.root = root
        self.max_bytes = max(0, max_mb) * MB
        self.tracks_dir = root / "tracks"
        self.art_dir = root / "art"
        try:
            for d in (root, self.tracks_dir, self.art_dir):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                root / INDEX, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the offline cache in {root}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- files ------------------------------------------------------------------

    def part_path(self, track_id: str) -> Path:
        return self.tracks_dir / f"{_safe(track_id)}.part"

    def final_path(self, track_id: str, ext: str) -> Path:
        return self.tracks_dir / f"{_safe(track_id)}{ext}"

    def art_path(self, art_id: str) -> Path | None:
        row = self._db.execute("SELECT file FROM art WHERE art_id=?", (art_id,)).fetchone()
        if row is None:
            return None
        path = self.art_dir / row[0]
        return path if path.is_file() else None

    def add_art(self, art_id: str, data: bytes, ext: str) -> None:
        name = f"{_safe(art_id)}{ext}"
        tmp = self.art_dir / f".{name}.{os.urandom(4).hex()}"
        tmp.write_bytes(data)
        os.replace(tmp, self.art_dir / name)
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO art (art_id, file, size) VALUES (?, ?, ?)",
                (art_id, name, len(data)),
            )

    # --- tracks -----------------------------------------------------------------

    def add(self, track_id: str, path: Path, sha256: str, meta: dict[str, Any]) -> None:
        """Record a complete, checked file (already at its final path)."""
        st = path.stat()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO tracks (track_id, file, size, sha256, mtime_ns, used_ms,"
                " meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (track_id, path.name, st.st_size, sha256, st.st_mtime_ns, now_ms(), _dump(meta)),
            )

    def get(self, track_id: str) -> Cached | None:
        row = self._db.execute(
            "SELECT track_id, file, size, sha256, used_ms, meta FROM tracks WHERE track_id=?",
            (track_id,),
        ).fetchone()
        if row is None:
            return None
        pins = self._db.execute("SELECT source FROM pins WHERE track_id=?", (track_id,))
        return self._cached(row, tuple(sorted(p[0] for p in pins)))

    def _cached(self, row: tuple[Any, ...], pins: tuple[str, ...]) -> Cached:
        return Cached(row[0], self.tracks_dir / row[1], row[2], row[3], row[4], pins, _load(row[5]))

    def path_for(self, track_id: str) -> Path | None:
        """The cached file of `track_id` when it is there unchanged since it was checked
        (size and mtime as recorded); a changed one is removed (fetch it again)."""
        row = self._db.execute(
            "SELECT file, size, mtime_ns FROM tracks WHERE track_id=?", (track_id,)
        ).fetchone()
        if row is None:
            return None
        path: Path = self.tracks_dir / str(row[0])
        try:
            st = path.stat()
        except OSError:
            self.drop(track_id)
            return None
        if st.st_size != row[1] or st.st_mtime_ns != row[2]:
            self.drop(track_id)
            return None
        return path

    def verify(self, track_id: str) -> bool:
        """Hash the cached file: True when it matches; a mismatch is removed (False)."""
        got = self.get(track_id)
        if got is None:
            return False
        try:
            ok = got.path.stat().st_size == got.size and sha256_file(got.path) == got.sha256
        except OSError:
            ok = False
        if not ok:
            self.drop(track_id)
        return ok

    def touch(self, track_ids: Iterable[str]) -> None:
        """Mark tracks used now (played, or about to be): the LRU keeps them longest."""
        ids = list(track_ids)
        if not ids:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE tracks SET used_ms=? WHERE track_id=?", [(now_ms(), t) for t in ids]
            )

    def drop(self, track_id: str) -> None:
        """Forget a track and remove its file (and any partial download)."""
        row = self._db.execute("SELECT file FROM tracks WHERE track_id=?", (track_id,)).fetchone()
        with self._tx() as db:
            db.execute("DELETE FROM tracks WHERE track_id=?", (track_id,))
        if row is not None:
            with contextlib.suppress(OSError):
                (self.tracks_dir / row[0]).unlink()
        with contextlib.suppress(OSError):
            self.part_path(track_id).unlink()

    def all(self) -> list[Cached]:
        pins: dict[str, list[str]] = {}
        for source, tid in self._db.execute("SELECT source, track_id FROM pins"):
            pins.setdefault(tid, []).append(source)
        rows = self._db.execute(
            "SELECT track_id, file, size, sha256, used_ms, meta FROM tracks ORDER BY used_ms DESC"
        ).fetchall()
        return [self._cached(r, tuple(sorted(pins.get(r[0], ())))) for r in rows]

    # --- pins -------------------------------------------------------------------

    def pin(self, source: str, track_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO pins (source, track_id, created_ms) VALUES (?, ?, ?)",
                [(source, t, now_ms()) for t in track_ids],
            )

    def pins(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for source, tid in self._db.execute(
            "SELECT source, track_id FROM pins ORDER BY created_ms, rowid"
        ):
            out.setdefault(source, []).append(tid)
        return out

    def unpin(self, sources: Iterable[str] = (), track_ids: Iterable[str] = ()) -> list[str]:
        """Remove pins (whole sources, or any pin of the given tracks); the tracks no pin
        names any more are removed from the cache. Returns the removed track ids."""
        srcs, tids = list(sources), list(track_ids)
        with self._tx() as db:
            touched = set(tids)
            for s in srcs:
                touched |= {
                    r[0] for r in db.execute("SELECT track_id FROM pins WHERE source=?", (s,))
                }
                db.execute("DELETE FROM pins WHERE source=?", (s,))
            db.executemany("DELETE FROM pins WHERE track_id=?", [(t,) for t in tids])
            still = {
                r[0] for r in db.execute("SELECT DISTINCT track_id FROM pins") if r[0] in touched
            }
        gone = sorted(touched - still)
        for tid in gone:
            self.drop(tid)
        return gone

    # --- space ------------------------------------------------------------------

    def usage(self) -> tuple[int, int, int]:
        """(bytes in the cache, bytes pinned, tracks)."""
        total, count = self._db.execute(
            "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM tracks"
        ).fetchone()
        pinned = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM tracks"
            " WHERE track_id IN (SELECT track_id FROM pins)"
        ).fetchone()[0]
        art = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM art").fetchone()[0]
        return int(total) + int(art), int(pinned), int(count)

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove the least recently used unpinned tracks until they fit `max_bytes`
        (never one of `keep`: what plays now and next). Returns the removed ids."""
        kept = set(keep)
        rows = self._db.execute(
            "SELECT track_id, size FROM tracks WHERE track_id NOT IN (SELECT track_id FROM pins)"
            " ORDER BY used_ms ASC, rowid ASC"
        ).fetchall()
        over = sum(r[1] for r in rows) - self.max_bytes
        gone: list[str] = []
        for tid, size in rows:
            if over <= 0:
                break
            if tid in kept:
                continue
            self.drop(tid)
            gone.append(tid)
            over -= size
        return gone

    def sweep_parts(self, older_than_s: float = 7 * 86400) -> None:
        """Remove partial downloads nobody resumed for a long time."""
        cutoff = time.time() - older_than_s
        for p in self.tracks_dir.glob("*.part"):
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _safe(name: str) -> str:
    """A track or art id as a file name (ids are hex-ish; anything else is hashed)."""
    if name and len(name) <= 80 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return "h" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _dump(meta: dict[str, Any]) -> str:
    return json.dumps(meta, separators=(",", ":"))


def _load(text: str) -> dict[str, Any]:
    try:
        got = json.loads(text)
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def open_for(config_dir: Path) -> Store:
    """The offline cache of a config dir, bounded by its `offline_max_mb`."""
    from tunehand.client.config import load_config

    config = load_config(config_dir)
    return Store(cache_root(config_dir), config.offline_max_mb)
