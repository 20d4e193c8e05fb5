"""The arguments of `tunehand ctl` and its subcommands (parsing only; `ctl` runs them).

Only the chosen action's arguments are built (argparse is slow to build ~30 parsers,
and `ctl` must start fast); `--help` builds them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Globals = Callable[[argparse.ArgumentParser], None]
P = argparse.ArgumentParser


def play_what(p: P) -> None:
    """What to play: `ctl play` and `resume` take the same arguments."""
    p.add_argument("track_id", nargs="?")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--search", metavar="Q", help="play the best match for Q")
    what.add_argument(
        "--album",
        metavar="ALBUM",
        help="replace the queue with an album and play: its id, title or the start of it",
    )
    what.add_argument(
        "--playlist",
        metavar="NAME",
        help="replace the queue with a playlist: its name or the start of it",
    )
    what.add_argument("--url", metavar="URL", help="play an http(s) stream (radio, podcast)")
    what.add_argument(
        "--episode",
        metavar="ID",
        help="play a podcast episode (ids: `ctl podcasts episodes NAME`); it resumes"
        " where it was left",
    )


def play_what_argv(args: argparse.Namespace) -> list[str]:
    """The `play_what` arguments of `args`, as a command line again."""
    out = [args.track_id] if getattr(args, "track_id", None) else []
    for name in ("search", "album", "playlist", "url", "episode"):
        value = getattr(args, name, None)
        if value:
            out += [f"--{name}", value]
    return out


def _play(p: P, cls: type[P], g: Globals) -> None:
    play_what(p)
    p.add_argument("--device", metavar="DEVICE", help="the device to play on if none is")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="with --url: return once the session took it, without waiting for the device "
        "to start it (by default a URL it cannot play is an error, exit 1)",
    )


def _queue(p: P, cls: type[P], g: Globals) -> None:
    qsub = p.add_subparsers(dest="queue_command", metavar="EDIT", parser_class=cls)
    for name, help_ in (("add", "add tracks at the end"), ("next", "add tracks to play next")):
        qp = qsub.add_parser(name, help=help_)
        g(qp)
        qp.add_argument("track_ids", nargs="*")
        qp.add_argument("--search", metavar="Q")
        qp.add_argument("--album", metavar="ALBUM", help="an album's id, title or its start")
        qp.add_argument("--url", metavar="URL")
    qr = qsub.add_parser("remove", help="remove entries")
    g(qr)
    qr.add_argument("entry_ids", nargs="+")
    qm = qsub.add_parser("move", help="move an entry to a new index (0 is the top)")
    g(qm)
    qm.add_argument("entry_id")
    qm.add_argument("index", type=int)
    qm.add_argument(
        "--play-order",
        action="store_true",
        help="INDEX counts in the play order (the shuffled order while shuffle is on)",
    )
    g(qsub.add_parser("clear", help="empty the queue"))


def _playlists(p: P, cls: type[P], g: Globals) -> None:
    psub = p.add_subparsers(dest="playlist_command", metavar="EDIT", parser_class=cls)
    show = psub.add_parser("show", help="the tracks of a playlist")
    g(show)
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    save = psub.add_parser("save", help="save the current queue (or given tracks) as NAME")
    g(save)
    save.add_argument("name")
    save.add_argument("track_ids", nargs="*")
    delete = psub.add_parser("delete", help="delete a playlist")
    g(delete)
    delete.add_argument("name")


def _podcasts(p: P, cls: type[P], g: Globals) -> None:
    psub = p.add_subparsers(dest="podcast_command", metavar="EDIT", parser_class=cls)
    add = psub.add_parser("add", help="subscribe to an RSS or Atom feed")
    g(add)
    add.add_argument("url", metavar="URL")
    add.add_argument("--json", action="store_true", help="machine-readable output")
    eps = psub.add_parser("episodes", help="the episodes of a podcast, newest first")
    g(eps)
    eps.add_argument("name", metavar="NAME", help="its title, the start of it, or its id")
    eps.add_argument("--json", action="store_true", help="machine-readable output")
    rm = psub.add_parser("remove", help="unsubscribe")
    g(rm)
    rm.add_argument("name", metavar="NAME", help="its title, the start of it, or its id")


def _speed(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument("speed", metavar="X", help="0.5 to 3.0 (1 is normal); the pitch is kept")
    p.add_argument(
        "--kind",
        choices=["music", "long"],
        help="which speed to set: music, or long-form (episodes, audiobooks, tracks over"
        " 20 min); default: the kind of what plays now",
    )


def _one(name: str, **kw: Any) -> Callable[[P, type[P], Globals], None]:
    def build(p: P, cls: type[P], g: Globals) -> None:
        p.add_argument(name, **kw)

    return build


def _none(p: P, cls: type[P], g: Globals) -> None:
    pass


def _devices(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument("--all", action="store_true", help="include offline devices")
    dsub = p.add_subparsers(dest="devices_command", metavar="EDIT", parser_class=cls)
    rename = dsub.add_parser("rename", help="rename a device (by id, name or unique name prefix)")
    g(rename)
    rename.add_argument("device")
    rename.add_argument("new_name", metavar="NEW-NAME")


def _app_passwords(p: P, cls: type[P], g: Globals) -> None:
    asub = p.add_subparsers(dest="app_password_command", metavar="EDIT", parser_class=cls)
    create = asub.add_parser(
        "create", help="make an app password for a Subsonic app (printed once)"
    )
    g(create)
    create.add_argument("name", help="what it is for, e.g. phone")
    create.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = asub.add_parser("revoke", help="revoke an app password (the app is logged out)")
    g(revoke)
    revoke.add_argument("name")


TRANSFER = (
    "Move the session to DEVICE (an online device: its id, name or the start of its name). "
    "Playing, it hands off without a gap: DEVICE loads the track at the same position, "
    "then the old device stops and DEVICE starts at one instant (if DEVICE is not ready "
    "within 3 s, the old device keeps playing and this exits 1). Paused, DEVICE becomes "
    "the active device holding the track paused at the same position, and the old one "
    "lets it go: nothing plays until `ctl play` or `ctl toggle`."
)


def _transfer(p: P, cls: type[P], g: Globals) -> None:
    p.description = TRANSFER
    p.add_argument(
        "device", metavar="DEVICE", help="an online device: its id, name or the start of its name"
    )
    p.add_argument(
        "--paused",
        action="store_true",
        help="arrive paused: the old device stops now and DEVICE holds the track paused"
        " at the position it had reached (a paused session stays paused either way)",
    )


def _search(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20)


def _like(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument("track_id", nargs="?")
    p.add_argument("--remove", action="store_true", help="unlike instead")


def _watch(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument(
        "--format",
        metavar="TEMPLATE",
        help="e.g. '{icon} {title} — {artist} {elapsed}/{duration} on {device}'",
    )
    p.add_argument("--waybar", action="store_true", help="waybar's custom-module JSON")
    p.add_argument(
        "--hooks",
        action="store_true",
        help="also run the [hooks] of config.toml on player events (no device needed here)",
    )


def _approve(p: P, cls: type[P], g: Globals) -> None:
    p.add_argument("code", help="the code the new device shows, e.g. WDJB-MJHT")
    p.add_argument("--deny", action="store_true", help="refuse the login instead")
    p.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="approve without asking (the device that asked is still printed)",
    )


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("give on or off")
    return value == "on"


def _jam(p: P, cls: type[P], g: Globals) -> None:
    p.description = (
        "A jam opens this account's session to other accounts: they add to one queue, and"
        " every entry says who added it. Without an EDIT (or with --json), show the jam."
    )
    jsub = p.add_subparsers(dest="jam_command", metavar="EDIT", parser_class=cls)
    start = jsub.add_parser("start", help="share this account's session; prints the invite code")
    g(start)
    start.add_argument(
        "--guests-can-control",
        action="store_true",
        help="guests may also pause, skip, seek, reorder any entry and transfer",
    )
    start.add_argument("--json", action="store_true", help="machine-readable output")
    join = jsub.add_parser("join", help="put this account's devices on the jam with CODE")
    g(join)
    join.add_argument("code", metavar="CODE", help="the host's invite code (or its URL)")
    g(jsub.add_parser("leave", help="leave the jam: back to this account's own session"))
    g(jsub.add_parser("end", help="end the jam (host): every guest goes back to its session"))
    kick = jsub.add_parser("kick", help="remove USER from the jam (host); USER cannot rejoin")
    g(kick)
    kick.add_argument("user", metavar="USER")
    set_ = jsub.add_parser("set", help="change the jam's settings (host)")
    g(set_)
    set_.add_argument(
        "--guests-can-control", metavar="on|off", type=_on_off, required=True, dest="control"
    )


def _scrobble(p: P, cls: type[P], g: Globals) -> None:
    ssub = p.add_subparsers(dest="scrobble_command", metavar="EDIT", parser_class=cls)
    add = ssub.add_parser("add", help="send this account's listens to a service")
    g(add)
    add.add_argument("service", choices=["listenbrainz", "lastfm"])
    add.add_argument(
        "--token-stdin",
        action="store_true",
        help="ListenBrainz: read your user token from stdin (listenbrainz.org/settings)",
    )
    add.add_argument("--url", metavar="URL", help="ListenBrainz: another server's API root")
    remove = ssub.add_parser("remove", help="stop sending listens to a service")
    g(remove)
    remove.add_argument("name", choices=["listenbrainz", "lastfm"])


def _radio(p: P, cls: type[P], g: Globals) -> None:
    p.description = (
        "Replace the queue with tracks that fit a track, an artist or an album, and play."
        " Local signals only: what this account played around them, the same artists,"
        " album artists, genres and years; never one of the last 50 played."
    )
    p.add_argument("track_id", nargs="?", help="a track to start from")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--artist", metavar="NAME", help="an artist's name")
    what.add_argument("--album", metavar="ALBUM", help="an album's id, title or its start")
    p.add_argument("--device", metavar="DEVICE", help="the device to play on if none is")


# name: (help, takes --json, builder)
ACTIONS: dict[str, tuple[str, bool, Callable[[P, type[P], Globals], None]]] = {
    "status": ("what plays, where, and the position", True, _none),
    "play": ("play (resume, a track, search hit, album or playlist)", False, _play),
    "pause": ("pause", False, _none),
    "toggle": ("play or pause", False, _none),
    "next": ("next entry", False, _none),
    "prev": ("previous entry (restarts the track after 3 s)", False, _none),
    "seek": ("seek to POS (s or m:ss), or by +S / -S seconds", False, _one("pos")),
    "volume": ("set volume N (0-100), or change it by +N / -N", False, _one("level")),
    "shuffle": ("shuffle on or off", False, _one("mode", choices=["on", "off"])),
    "repeat": ("repeat off, all or one", False, _one("mode", choices=["off", "all", "one"])),
    "queue": ("list or edit the queue", True, _queue),
    "devices": ("the account's devices", True, _devices),
    "transfer": ("move playback to a device (name or id)", False, _transfer),
    "search": ("search the library", True, _search),
    "playlists": ("list and edit playlists", True, _playlists),
    "like": ("like a track (default: the current one)", False, _like),
    "likes": ("liked tracks", True, _none),
    "podcasts": ("podcast subscriptions: list, add, episodes, remove", True, _podcasts),
    "speed": ("play at speed X (0.5-3.0, pitch kept), kept for music or long-form", False, _speed),
    "sleep": (
        "sleep timer: pause after a time (30m, 1h, 90s), at the end of this item, or off",
        False,
        _one("when", metavar="30m|end|off"),
    ),
    "chapter": (
        "jump to the next or previous chapter (prev: the start of this one after 3 s)",
        False,
        _one("where", choices=["next", "prev"]),
    ),
    "continue": ("what is in progress: episodes, audiobooks, long tracks", True, _none),
    "history": ("recently played tracks", True, _one("--limit", type=int, default=20)),
    "watch": ("print one line per state change (JSON, a template, or waybar)", False, _watch),
    "revoke": ("log a device out at once (name or id)", False, _one("device")),
    "approve": ("log in a new device showing CODE (tunehand login --device-code)", False, _approve),
    "app-passwords": ("passwords for Subsonic apps: list, create, revoke", True, _app_passwords),
    "jam": ("share the session with other accounts: start, join, leave, end, kick", True, _jam),
    "lyrics": ("the current track's lyrics (the line playing now marked)", True, _none),
    "scrobble": ("scrobbling: list, add listenbrainz|lastfm, remove", True, _scrobble),
    "autoplay": (
        "when the queue runs out, add tracks that fit (on/off; none: say which)",
        False,
        _one("mode", nargs="?", choices=["on", "off"]),
    ),
    "radio": ("play tracks that fit a track, an artist or an album", False, _radio),
}


def add_ctl_arguments(
    ctl: P, parser_class: type[P], globals_: Globals, chosen: str | None = None
) -> None:
    sub = ctl.add_subparsers(dest="ctl_command", metavar="ACTION", parser_class=parser_class)
    everything = chosen not in ACTIONS
    for name, (help_, json, build) in ACTIONS.items():
        if not everything and name != chosen:
            continue
        p = sub.add_parser(name, help=help_)
        globals_(p)
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        build(p, parser_class, globals_)
