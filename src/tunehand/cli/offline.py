"""`tunehand offline add|list|remove|status`: what this device keeps for playing offline.

`add` pins tracks (an album by id or name, a playlist by name, the liked tracks, or
track ids) or podcast episodes (`--episode ID...`) and downloads them with their cover
art into the user cache dir, with a progress bar on a terminal and one line per item
otherwise. Downloads resume where an interrupted one stopped, and every file is checked
against the server's size and SHA-256 (a copy here that does not match is fetched
again; an episode, whose host may give no digest, is checked by the size the server
says and, once here, by the hash made of it then). `list`, `remove` and `status` work
without the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from tunehand.cli.lookup import album_tracks, playlist
from tunehand.client.config import load_config, resolve_config_dir
from tunehand.client.offline.store import MB, Store, cache_root
from tunehand.client.root import Options, client_for
from tunehand.core import names
from tunehand.errors import NotFound, TunehandError, UsageError

Json = dict[str, Any]
MAX_TRACKS = 5000


def add_arguments(p: argparse.ArgumentParser, g: Any) -> None:
    sub = p.add_subparsers(dest="offline_command", metavar="ACTION", parser_class=type(p))
    for name, help_ in (
        ("add", "keep tracks on this machine (downloads them)"),
        ("remove", "stop keeping tracks (removes their files)"),
    ):
        a = sub.add_parser(name, help=help_)
        g(a)
        a.add_argument("track_ids", nargs="*", metavar="TRACK_ID")
        what = a.add_mutually_exclusive_group()
        what.add_argument("--album", metavar="ALBUM", help="an album: its id, title or start")
        what.add_argument("--playlist", metavar="NAME", help="a playlist: its name or start")
        what.add_argument("--liked", action="store_true", help="the liked tracks")
        what.add_argument(
            "--episode",
            dest="episodes",
            nargs="+",
            metavar="ID",
            help="podcast episodes (ids: `ctl podcasts episodes NAME`)",
        )
    lst = sub.add_parser("list", help="what is kept here")
    g(lst)
    lst.add_argument("--json", action="store_true")
    st = sub.add_parser("status", help="space used and the limit")
    g(st)
    st.add_argument("--json", action="store_true")


def run_offline(args: argparse.Namespace) -> int:
    action = getattr(args, "offline_command", None)
    if action is None:
        raise UsageError("offline: say add, list, remove or status")
    config_dir = resolve_config_dir(getattr(args, "config_dir", None), _environ())
    config = load_config(config_dir)
    store = Store(cache_root(config_dir), config.offline_max_mb)
    try:
        if action == "add":
            return _add(args, store)
        if action == "remove":
            return _remove(args, store)
        if action == "list":
            return _list(args, store)
        return _status(args, store)
    finally:
        store.close()


def _environ() -> Any:
    import os

    return os.environ


def _what(args: argparse.Namespace) -> str:
    given = [
        bool(args.album),
        bool(args.playlist),
        bool(args.liked),
        bool(args.track_ids),
        bool(args.episodes),
    ]
    if sum(given) != 1:
        raise UsageError(
            f"offline {args.offline_command}: give one of --album, --playlist, --liked,"
            " --episode IDs or TRACK_IDs"
        )
    return ("album", "playlist", "liked", "tracks", "episodes")[given.index(True)]


def _ids(args: argparse.Namespace, what: str) -> list[str]:
    """The track or episode ids given, checked to be of that kind."""
    ids = list(args.episodes if what == "episodes" else args.track_ids)
    if len(ids) > MAX_TRACKS:
        raise UsageError(f"offline {args.offline_command}: at most {MAX_TRACKS} at once")
    if what == "episodes":
        bad = [i for i in ids if not i.startswith("e")]
        if bad:
            raise UsageError(
                f"offline {args.offline_command}: {names.line(bad[0])!r} is not an episode id"
                " (ids: `tunehand ctl podcasts episodes NAME`)"
            )
    return ids


def _add(args: argparse.Namespace, store: Store) -> int:
    what = _what(args)
    api = client_for(Options.of(args))
    try:
        if what == "album":
            views = album_tracks(api, args.album)
            source = f"album:{views[0]['album_id']}" if views else f"album:{args.album}"
        elif what == "playlist":
            got = playlist(api, args.playlist)
            views = [v for v in got.get("tracks", []) if v]
            source = f"playlist:{got['name']}"
        elif what == "liked":
            views = api.request("GET", "/v1/likes")["tracks"]
            source = "liked"
        else:
            views = []
            for tid in _ids(args, what):
                views.append(_view(api, tid, what))
            source = "episode" if what == "episodes" else "track"
        server = api.http.server
        ca_file = api.http.ca_file
    finally:
        api.http.close()
    views = [v for v in views if isinstance(v, dict) and v.get("id")][:MAX_TRACKS]
    if not views:
        raise NotFound("nothing to keep: no tracks there")
    noun = "episodes" if what == "episodes" else "tracks"
    store.pin(source, [str(v["id"]) for v in views])
    from tunehand.client.offline.fetch import Fetcher

    fetcher = Fetcher(store, server, ca_file=ca_file)
    bar = _Bar(len(views), sys.stderr.isatty())
    failed = 0
    started = time.monotonic()
    moved = 0
    try:
        for i, view in enumerate(views, 1):
            title = names.line(str(view.get("title") or view["id"]))
            bar.track(i, title)
            try:
                fetched = fetcher.track(view, check=True, progress=bar.progress)
            except TunehandError as exc:
                if type(exc).__name__ == "ServerUnreachable":
                    raise
                failed += 1
                bar.line(f"{i}/{len(views)} {title}: {exc}")
                continue
            moved += fetched.transferred
            mb = fetched.size / MB
            note = {
                "cached": "already here",
                "fetched": f"{mb:.1f} MB",
                "resumed": f"{mb:.1f} MB, resumed",
                "refetched": f"{mb:.1f} MB: the copy here did not match its hash, fetched again",
            }[fetched.how]
            bar.line(f"{i}/{len(views)} {title} ({note})")
    finally:
        bar.done()
        fetcher.close()
    store.evict()
    took = max(1e-6, time.monotonic() - started)
    print(
        f"kept {len(views) - failed} of {len(views)} {noun} offline"
        f" ({moved / MB:.1f} MB downloaded, {moved / MB / took:.1f} MB/s)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _view(api: Any, tid: str, what: str) -> Json:
    """A track's (or an episode's) view from the server; an id it does not know is
    one line saying which."""
    try:
        got: Json = api.request("GET", f"/v1/tracks/{_q(tid)}")
    except NotFound as exc:
        kind = "episode" if what == "episodes" else "track"
        raise NotFound(f"no {kind} {names.line(tid)!r}") from exc
    return got


def _q(value: str) -> str:
    from tunehand.client.http import quote

    return quote(value)


def _sources(args: argparse.Namespace, store: Store) -> tuple[list[str], list[str]]:
    pins = store.pins()
    what = _what(args)
    if what in ("tracks", "episodes"):
        return [], _ids(args, what)
    if what == "liked":
        return ["liked"], []
    prefix = f"{what}:"
    asked = args.album if what == "album" else args.playlist
    keys = [s for s in pins if s.startswith(prefix)]
    exact = [s for s in keys if s == prefix + asked]
    if exact:
        return exact, []
    by_name = []
    for s in keys:
        first = store.get(pins[s][0]) if pins[s] else None
        meta = first.meta if first is not None else {}
        name = str(meta.get("album") or "") if what == "album" else s[len(prefix) :]
        if _key(name).startswith(_key(asked)):
            by_name.append(s)
    if len(by_name) > 1:
        raise UsageError(f"{what} {asked!r} matches {len(by_name)} kept here; give more of it")
    if not by_name:
        raise NotFound(f"no {what} {asked!r} is kept offline")
    return by_name, []


def _key(text: str) -> str:
    """Compared case- and accent-insensitively, as `--album` names are elsewhere."""
    from tunehand.core.search import normalize

    return normalize(text) or text.casefold()


def _remove(args: argparse.Namespace, store: Store) -> int:
    sources, tids = _sources(args, store)
    gone = store.unpin(sources, tids)
    noun = "episode" if _what(args) == "episodes" else "track"
    print(f"removed {len(gone)} {noun}{'s' if len(gone) != 1 else ''} from the offline cache")
    return 0


def _track_json(c: Any) -> Json:
    m = c.meta
    return {
        "id": c.track_id,
        "kind": "episode" if c.track_id.startswith("e") else "track",
        "title": m.get("title") or "",
        "artist": m.get("artist") or "",
        "album": m.get("album") or "",
        "album_id": m.get("album_id") or "",
        "duration_ms": m.get("duration_ms") or 0,
        "size": c.size,
        "sha256": c.sha256,
        "pinned": list(c.pinned),
        "used_ms": c.used_ms,
        "path": str(c.path),
    }


def _list(args: argparse.Namespace, store: Store) -> int:
    tracks = sorted(
        store.all(),
        key=lambda c: (
            str(c.meta.get("album") or ""),
            c.meta.get("disc_no") or 0,
            c.meta.get("track_no") or 0,
            str(c.meta.get("title") or ""),
        ),
    )
    if args.json:
        print(json.dumps([_track_json(c) for c in tracks], ensure_ascii=False))
        return 0
    if not tracks:
        print("nothing is kept offline: `tunehand offline add --album NAME` keeps an album")
        return 0
    for c in tracks:
        m = c.meta
        pin = "pinned" if c.pinned else "cached"
        line = (
            f"{c.track_id}  {m.get('title') or '?'} — {m.get('artist') or 'Unknown artist'}"
            f"  [{m.get('album') or ''}]  {c.size / MB:.1f} MB  {pin}"
        )
        print(names.line(line))
    return 0


def _status(args: argparse.Namespace, store: Store) -> int:
    used, pinned, count = store.usage()
    limit = store.max_bytes
    info = {
        "tracks": count,
        "used_bytes": used,
        "pinned_bytes": pinned,
        "limit_bytes": limit,
        "dir": str(store.root),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(
        f"{count} tracks, {used / MB:.1f} MB used ({pinned / MB:.1f} MB pinned);"
        f" limit {limit / MB:.0f} MB beyond the pinned; in {store.root}"
    )
    return 0


class _Bar:
    """A progress bar on a terminal (one line redrawn), plain lines elsewhere."""

    def __init__(self, total: int, tty: bool) -> None:
        self.total = total
        self.tty = tty
        self.i = 0
        self.title = ""
        self.last = 0.0

    def track(self, i: int, title: str) -> None:
        self.i, self.title = i, title
        self.progress(0, 0)

    def progress(self, done: int, size: int) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if size and done < size and now - self.last < 0.1:
            return
        self.last = now
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        frac = done / size if size else 0.0
        cells = 20
        full = int(frac * cells)
        bar = "#" * full + "-" * (cells - full)
        text = f"[{bar}] {self.i}/{self.total} {frac * 100:3.0f}% {self.title}"
        sys.stderr.write("\r\x1b[K" + text[:width])
        sys.stderr.flush()

    def line(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        print(text, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
