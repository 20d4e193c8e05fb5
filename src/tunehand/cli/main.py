"""The `tunehand` command: argument parsing and dispatch to each subcommand's module.

Subcommand modules are imported only when chosen, so `tunehand ctl` never pays for
the server, the TUI or mpv. Every expected failure ends as one line on stderr and the
exit code of its error class (see `tunehand.errors`); a traceback only with
TUNEHAND_DEBUG=1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tunehand import __version__
from tunehand.core import names
from tunehand.errors import TunehandError

TYPE_CHECKING = False  # `typing` (~2.5 ms) only for mypy: `--version` does without it
if TYPE_CHECKING:
    from typing import Any


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width without importing `shutil`.

    argparse makes a formatter for every argument it adds (to check its help), and the
    default one imports `shutil` (and with it bz2, lzma, fnmatch) for the width: ~2 ms of
    every start, help or not.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size()` (argparse's default) finds it."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _globals(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("global options")
    g.add_argument(
        "--config-dir",
        default=argparse.SUPPRESS,
        help="this device's config dir (also TUNEHAND_CONFIG_DIR); gives it its own identity",
    )
    g.add_argument("--server", default=argparse.SUPPRESS, help="server URL (overrides config)")
    g.add_argument(
        "--ca-file",
        default=argparse.SUPPRESS,
        help="a private CA's certificate to verify the server with (also `ca_file` in config)",
    )


def _server_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="server data dir (default: the user data dir)")
    p.add_argument("--database", help="database URL (default: SQLite in the data dir)")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (skipping global options and their values)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config-dir", "--server", "--ca-file"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's tree is built in full (fast start)."""
    chosen = _chosen_command(sys.argv[1:] if argv is None else argv)

    def wanted(name: str) -> bool:
        return chosen is None or chosen == name or chosen not in _COMMANDS

    parser = _Parser(prog="tunehand", description="A terminal music client with handoff.")
    parser.add_argument("--version", action="version", version=f"tunehand {__version__}")
    _globals(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    if wanted("serve"):
        serve = sub.add_parser("serve", help="run the sync server")
        _serve_arguments(serve)
    if wanted("admin"):
        admin = sub.add_parser("admin", help="manage users and the library (server side)")
        _globals(admin)
        _admin_arguments(admin)
    if wanted("login"):
        login = sub.add_parser("login", help="log in to a server; tokens go to the OS keyring")
        _globals(login)
        _login_arguments(login)
    if wanted("logout"):
        logout = sub.add_parser("logout", help="log out and forget this device's tokens")
        _globals(logout)
    if wanted("auth"):
        auth = sub.add_parser("auth", help="login details")
        _globals(auth)
        auth.add_argument("auth_command", choices=["status"])
    if wanted("demo"):
        demo = sub.add_parser(
            "demo",
            help="run a local demo server with a generated library",
            description=(
                "Generate a demo library, start a server on it with a `demo` user (password "
                "`demo`) and a receiver named living-room, and open the TUI logged in (in a "
                "terminal; elsewhere it prints how to connect). Ctrl-C, SIGTERM, SIGHUP or "
                "closing the terminal stops all of it."
            ),
        )
        demo.add_argument(
            "--dir",
            default=".demo",
            help="where the library, the server's data and the devices' config dirs go "
            "(default: .demo)",
        )
        demo.add_argument(
            "--port",
            type=int,
            default=None,
            help="the server's port (default: 8440, or a free one when 8440 is taken; "
            "0 picks a free one)",
        )
    for name, help_ in (
        ("receiver", "a headless device that plays what is pushed to it"),
        ("resume", "pull playback to this terminal and play in the foreground"),
    ):
        if wanted(name):
            dev = sub.add_parser(name, help=help_)
            _globals(dev)
            dev.add_argument(
                "--device-name",
                help="this device's name (default: the host name, made unique in the account)",
            )
            dev.add_argument(
                "--mpv-option",
                action="append",
                metavar="KEY=VALUE",
                help="passed to libmpv unchanged (repeatable), e.g. audio-device=... or ao=null",
            )
            if name == "resume":
                from tunehand.cli.ctl_args import play_what

                play_what(dev)  # `resume TRACK|--search Q|...` plays that here
    if wanted("offline"):
        off = sub.add_parser(
            "offline", help="keep tracks on this machine to play without the server"
        )
        _globals(off)
        from tunehand.cli.offline import add_arguments

        add_arguments(off, _globals)
    if wanted("doctor"):
        doctor = sub.add_parser("doctor", help="check libmpv, audio, keyring, server and login")
        _globals(doctor)
        doctor.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="also print what mpv and the audio libraries logged during the audio check",
        )
    if wanted("mpd"):
        mpd = sub.add_parser("mpd", help="serve the MPD protocol over this account's session")
        _globals(mpd)
        mpd.add_argument("--host", default="127.0.0.1", help="address to listen on")
        mpd.add_argument("--port", type=int, default=6600, help="0 picks a free port")
        mpd.add_argument("--password-file", help="a file holding the password clients must give")
        mpd.add_argument(
            "--allow-remote-without-password",
            action="store_true",
            help="serve a non-loopback --host without --password-file (warns)",
        )
        mpd.add_argument(
            "--default-output",
            metavar="NAME",
            help="with no device active, `play` plays on this device (after the last active one)",
        )
    if wanted("completion"):
        comp = sub.add_parser("completion", help="print a shell completion script")
        comp.add_argument("shell", choices=["bash", "zsh", "fish"])
    if chosen == "_complete":
        hidden = sub.add_parser("_complete")
        _globals(hidden)
        hidden.add_argument("what", choices=["devices", "playlists"])
    if wanted("ctl"):
        ctl = sub.add_parser("ctl", help="control the session from scripts")
        _globals(ctl)
        from tunehand.cli.ctl_args import add_ctl_arguments

        rest = list(sys.argv[1:] if argv is None else argv)
        action = _chosen_command(rest[rest.index("ctl") + 1 :]) if "ctl" in rest else None
        add_ctl_arguments(ctl, _Parser, _globals, action)
    return parser


_COMMANDS = (
    "serve",
    "admin",
    "login",
    "logout",
    "auth",
    "demo",
    "ctl",
    "receiver",
    "resume",
    "doctor",
    "offline",
    "mpd",
    "completion",
    "_complete",
)


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8440, help="0 picks a free port")
    serve.add_argument("--music", action="append", default=[], metavar="DIR")
    serve.add_argument("--redis", help="redis://HOST:PORT to run several instances")
    serve.add_argument(
        "--redis-prefix",
        metavar="PREFIX",
        help="put before every Redis key and channel, so deployments can share one Redis"
        " (default: tunehand:; also TUNEHAND_REDIS_PREFIX)",
    )
    serve.add_argument("--no-scan", action="store_true", help="skip the scan at start")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port, one per core (above 1: needs PostgreSQL"
        " and Redis, as several instances do)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections held at once per server process; past them a new one is answered"
        " 503 (default: the open-file limit, ulimit -n, less 64 for the server's own files)",
    )
    serve.add_argument("--certfile", help="TLS certificate (PEM) to serve https and wss")
    serve.add_argument("--keyfile", help="TLS private key (PEM) for --certfile")
    serve.add_argument(
        "--trust-proxy",
        action="append",
        default=[],
        metavar="IP",
        help="a reverse proxy whose X-Forwarded-For is believed (repeatable; default: none)",
    )
    serve.add_argument(
        "--max-devices",
        type=int,
        default=None,
        metavar="N",
        help="devices of one account online at once; one more is refused (default: 64)",
    )
    serve.add_argument(
        "--max-transcodes",
        type=int,
        default=None,
        metavar="N",
        help="ffmpeg encoders running at once for the whole command (its --workers share"
        " them); past them and a short queue a transcoded stream is refused (default: one"
        " per core)",
    )
    serve.add_argument(
        "--allow-private-feeds",
        action="store_true",
        help="let podcast feeds and episodes be fetched from private and loopback addresses"
        " (refused by default: a feed could make the server probe its own network)",
    )
    _server_store_options(serve)


def _admin_arguments(admin: argparse.ArgumentParser) -> None:
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION", parser_class=_Parser)
    add = asub.add_parser("add-user", help="create a user")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true")
    _server_store_options(add)
    lst = asub.add_parser("list-users", help="list users")
    lst.add_argument("--json", action="store_true")
    _server_store_options(lst)
    rm = asub.add_parser("remove-user", help="delete a user and all their data")
    rm.add_argument("name")
    _server_store_options(rm)
    rs = asub.add_parser("rescan", help="rescan the music folders")
    rs.add_argument("--music", action="append", default=[], metavar="DIR")
    _server_store_options(rs)
    demo = asub.add_parser("demo-library", help="generate a demo library of tagged tracks")
    demo.add_argument("dir")
    demo.add_argument("--tracks", type=int, default=36)


def _login_arguments(login: argparse.ArgumentParser) -> None:
    login.add_argument("url", nargs="?", help="server URL (default: the configured server)")
    login.add_argument("--user")
    login.add_argument("--password-stdin", action="store_true")
    login.add_argument(
        "--device-name",
        help="this device's name, kept in config.toml (default: the host name, made unique"
        " in the account: HOST-2, ...)",
    )
    login.add_argument(
        "--device-code",
        action="store_true",
        help="show a code to approve from a logged-in device or the server's /approve page",
    )
    login.add_argument(
        "--insecure-token-file",
        action="store_true",
        help="keep tokens in a 0600 file in the config dir when there is no OS keyring",
    )


def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"tunehand {__version__}")  # what argparse's version action prints
        return 0
    args = build_parser(argv).parse_args(argv)
    try:
        return _dispatch(args)
    except TunehandError as exc:
        if os.environ.get("TUNEHAND_DEBUG"):
            raise
        # One line, whatever names (chosen by other devices) the message holds.
        print(f"tunehand: {names.clean(str(exc), 10_000)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command is None:
        from tunehand.tui.app import run_tui

        return run_tui(args)
    if command == "serve":
        from tunehand.cli.serve import run_serve

        return run_serve(args)
    if command == "admin":
        from tunehand.cli.admin import run_admin

        return run_admin(args)
    if command in ("login", "logout", "auth"):
        from tunehand.cli.login import run_auth

        return run_auth(args)
    if command == "demo":
        from tunehand.cli.demo import run_demo

        return run_demo(args)
    if command == "receiver":
        from tunehand.cli.receiver import run_receiver

        return run_receiver(args)
    if command == "resume":
        from tunehand.cli.resume import run_resume

        return run_resume(args)
    if command == "offline":
        from tunehand.cli.offline import run_offline

        return run_offline(args)
    if command == "doctor":
        from tunehand.cli.doctor import run_doctor

        return run_doctor(args)
    if command == "mpd":
        from tunehand.mpd.cli import run_mpd

        return run_mpd(args)
    if command == "completion":
        from tunehand.cli.completion import run_completion

        return run_completion(args)
    if command == "_complete":
        from tunehand.cli.completion import run_complete

        return run_complete(args)
    if command == "ctl":
        from tunehand.cli.ctl import run_ctl

        return run_ctl(args)
    raise AssertionError(command)
