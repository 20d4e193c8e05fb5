"""The offline cache's index and files (`tunehand.client.offline.store`, `browse`), with no server.

Real SQLite files and real processes: LRU eviction within the limit keeps pinned tracks
and what is about to play; a file changed behind the index's back is never given (and is
removed); several processes adding to one cache at once lose nothing; browsing and
searching group what is cached as the server groups its library.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunehand.client.offline import browse
from tunehand.client.offline import store as store_mod
from tunehand.client.offline.store import MB, Store, cache_root


def _put(store: Store, tid: str, size: int, **meta: object) -> Path:
    path = store.final_path(tid, ".ogg")
    data = os.urandom(size)
    path.write_bytes(data)
    store.add(tid, path, hashlib.sha256(data).hexdigest(), {"id": tid, **meta})
    return path


def test_lru_eviction_keeps_pins_and_what_plays_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clock that moves on at every reading: on a fast machine the adds and the touch
    # fall in one millisecond, and the order of use would be the order of the rows.
    ticks = itertools.count(1_000)
    monkeypatch.setattr(store_mod, "now_ms", lambda: next(ticks))
    store = Store(tmp_path / "c", max_mb=1)
    for tid in ("t1", "t2", "t3", "t4"):
        _put(store, tid, MB // 2)
    store.pin("album:a", ["t1"])
    store.touch(["t2"])  # t3 is now the least recently used of the unpinned
    gone = store.evict(keep=["t3"])  # ...but it plays next: t4 goes, then t2 is enough
    assert gone == ["t4"], gone
    assert {c.track_id for c in store.all()} == {"t1", "t2", "t3"}
    assert store.evict() == []  # 1 MB unpinned: within the limit
    store.max_bytes = MB // 2
    assert store.evict() == ["t3"]  # over it: the least recently used goes
    used, pinned, count = store.usage()
    assert (pinned, count) == (MB // 2, 2) and used == MB


def test_a_changed_file_is_never_given_and_is_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    path = _put(store, "t1", 1000)
    assert store.path_for("t1") == path
    assert store.verify("t1")
    with open(path, "r+b") as f:
        f.write(b"x")  # same size, another mtime
    assert store.path_for("t1") is None
    assert not path.exists() and store.get("t1") is None
    path = _put(store, "t2", 1000)
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"y" * 10)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.path_for("t2") == path  # size and mtime fool the cheap check...
    assert not store.verify("t2")  # ...not the hash
    assert store.path_for("t2") is None and not path.exists()


def test_unpin_removes_only_what_no_pin_names(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    for tid in ("t1", "t2", "t3"):
        _put(store, tid, 10)
    store.pin("album:a", ["t1", "t2"])
    store.pin("playlist:p", ["t2", "t3"])
    assert store.unpin(["album:a"]) == ["t1"]
    assert store.unpin(track_ids=["t3"]) == ["t3"]
    assert [c.track_id for c in store.all()] == ["t2"]
    assert store.pins() == {"playlist:p": ["t2"]}


_WRITER = """
import hashlib, os, sys
from pathlib import Path
from tunehand.client.offline.store import Store
store = Store(Path(sys.argv[1]))
for i in range(40):
    tid = f"{sys.argv[2]}-{i}"
    p = store.final_path(tid, ".ogg")
    data = os.urandom(100)
    p.write_bytes(data)
    store.add(tid, p, hashlib.sha256(data).hexdigest(), {"id": tid})
    store.pin("liked", [tid])
    store.touch([tid])
"""


def test_several_processes_share_one_cache(tmp_path: Path) -> None:
    root = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(root), f"p{n}"], env=env)
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = Store(root)
    assert len(store.all()) == 160
    assert len(store.pins()["liked"]) == 160


def test_the_cache_follows_xdg_cache_home_one_folder_per_config_dir(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    a = cache_root(tmp_path / "a", env)
    b = cache_root(tmp_path / "b", env)
    assert a != b and a.parent == b.parent
    # platformdirs reads the real environment: the variable given is what it must use.
    env_a = {**os.environ, **env}
    code = (
        "import sys; from pathlib import Path;"
        " from tunehand.client.offline.store import cache_root;"
        " print(cache_root(Path(sys.argv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a")],
        env={**env_a, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.startswith(str(tmp_path / "xdg" / "tunehand")), out


def test_browse_and_search_over_the_cache(tmp_path: Path) -> None:
    store = Store(tmp_path / "c")
    meta = {"artist": "Sigur Rós", "album_artist": "Sigur Rós", "album_id": "a1", "year": 1999}
    _put(store, "t2", 10, title="Svefn-g-englar", album="Ágætis byrjun", track_no=2, **meta)
    _put(store, "t1", 10, title="Intro", album="Ágætis byrjun", track_no=1, **meta)
    _put(store, "t3", 10, title="Hoppípolla", album="Takk", artist="Other", album_id="a2")
    rows = store.all()
    assert [t.id for t in browse.album_tracks(rows, "a1")] == ["t1", "t2"]
    assert [t.id for t in browse.search(rows, "ros svefn")] == ["t2"]
    assert [t.id for t in browse.search(rows, "agaetis")] == ["t1", "t2"]
    assert browse.search(rows, "nothing") == []
    artists = browse.artists(rows)
    assert ("sigur ros", "Sigur Rós", 1, 2) in artists, artists
    assert [a[0] for a in browse.albums(rows, "sigur ros")] == ["a1"]
