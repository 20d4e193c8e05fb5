"""The arguments of `tunehand ctl` and its subcommands (parsing only; `ctl` runs them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_ctl_arguments(
    ctl: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
    globals_: Callable[[argparse.ArgumentParser], None],
) -> None:
    sub = ctl.add_subparsers(dest="ctl_command", metavar="ACTION", parser_class=parser_class)

    def add(name: str, help_: str, *, json: bool = False) -> argparse.ArgumentParser:
        p: Any = sub.add_parser(name, help=help_)
        globals_(p)
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p  # type: ignore[no-any-return]

    add("status", "what plays, where, and the position", json=True)
    play = add("play", "play (resume, a track, search hit, album or playlist)")
    play.add_argument("track_id", nargs="?")
    what = play.add_mutually_exclusive_group()
    what.add_argument("--search", metavar="Q", help="play the best match for Q")
    what.add_argument("--album", metavar="ID", help="replace the queue with an album and play")
    what.add_argument("--playlist", metavar="NAME", help="replace the queue with a playlist")
    what.add_argument("--url", metavar="URL", help="play an http(s) stream (radio, podcast)")
    play.add_argument("--device", metavar="DEVICE", help="the device to play on if none is")
    for name, help_ in (
        ("pause", "pause"),
        ("toggle", "play or pause"),
        ("next", "next entry"),
        ("prev", "previous entry (restarts the track after 3 s)"),
    ):
        add(name, help_)
    seek = add("seek", "seek to POS (s or m:ss), or by +S / -S seconds")
    seek.add_argument("pos")
    vol = add("volume", "set volume N (0-100), or change it by +N / -N")
    vol.add_argument("level")
    shuffle = add("shuffle", "shuffle on or off")
    shuffle.add_argument("mode", choices=["on", "off"])
    repeat = add("repeat", "repeat off, all or one")
    repeat.add_argument("mode", choices=["off", "all", "one"])

    queue = add("queue", "list or edit the queue", json=True)
    qsub = queue.add_subparsers(dest="queue_command", metavar="EDIT", parser_class=parser_class)
    for name, help_ in (("add", "add tracks at the end"), ("next", "add tracks to play next")):
        qp = qsub.add_parser(name, help=help_)
        globals_(qp)
        qp.add_argument("track_ids", nargs="*")
        qp.add_argument("--search", metavar="Q")
        qp.add_argument("--album", metavar="ID")
        qp.add_argument("--url", metavar="URL")
    qr = qsub.add_parser("remove", help="remove entries")
    globals_(qr)
    qr.add_argument("entry_ids", nargs="+")
    qm = qsub.add_parser("move", help="move an entry to a new index (0 is the top)")
    globals_(qm)
    qm.add_argument("entry_id")
    qm.add_argument("index", type=int)
    qc = qsub.add_parser("clear", help="empty the queue")
    globals_(qc)

    devices = add("devices", "the account's devices", json=True)
    devices.add_argument("--all", action="store_true", help="include offline devices")
    transfer = add("transfer", "move playback to a device (name or id)")
    transfer.add_argument("device")
    transfer.add_argument("--paused", action="store_true")
    search = add("search", "search the library", json=True)
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=20)

    pl = add("playlists", "list and edit playlists", json=True)
    psub = pl.add_subparsers(dest="playlist_command", metavar="EDIT", parser_class=parser_class)
    show = psub.add_parser("show", help="the tracks of a playlist")
    globals_(show)
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    save = psub.add_parser("save", help="save the current queue (or given tracks) as NAME")
    globals_(save)
    save.add_argument("name")
    save.add_argument("track_ids", nargs="*")
    delete = psub.add_parser("delete", help="delete a playlist")
    globals_(delete)
    delete.add_argument("name")

    like = add("like", "like a track (default: the current one)")
    like.add_argument("track_id", nargs="?")
    like.add_argument("--remove", action="store_true", help="unlike instead")
    add("likes", "liked tracks", json=True)
    hist = add("history", "recently played tracks", json=True)
    hist.add_argument("--limit", type=int, default=20)
    add("watch", "print one JSON object per state change (for status bars)")
