"""`tunehand demo` (what `make demo` runs): a server on SQLite with a generated demo
library, a logged-in demo user, a `living-room` receiver, and the TUI.

Everything lives in `.demo/` (music, server data, the demo devices' config dirs). Ctrl-C,
SIGTERM, SIGHUP or the terminal going away stops all of it: the TUI exits, then the
receiver and the server are stopped and waited for. The server and the receiver also
get SIGTERM from the kernel should this process die without cleaning up (Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from tunehand.demo import make_demo_library
from tunehand.errors import TunehandError, UsageError

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented password of the local demo account
DEFAULT_PORT = 8440
STOP_TIMEOUT_S = 10.0


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: stop the demo (a BaseException, like KeyboardInterrupt)."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the demo process dies (Linux prctl)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _spawn(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, text=True, env=env, stdout=stdout, stderr=stderr, preexec_fn=_die_with_parent
    )


def _stop(proc: subprocess.Popen[str] | None) -> None:
    """SIGINT (a clean stop), then SIGKILL if it has not ended within the timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pick_port(asked: int | None, *, default: int = DEFAULT_PORT, host: str = "127.0.0.1") -> int:
    """The port asked for; without one, 8440 when it is free, else 0 (the server picks)."""
    if asked is not None:
        if not 0 <= asked < 65536:
            raise UsageError("--port: 0 to 65535")
        return asked
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, default))
        except OSError:
            return 0
    return default


def _start_receiver(
    exe: list[str], url: str, config: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    """The demo's `living-room` receiver (ao=null when this machine has no sound card)."""
    renv = {**env, "TUNEHAND_CONFIG_DIR": str(config)}
    login = [*exe, "login", url, "--user", DEMO_USER, "--password-stdin"]
    login += ["--insecure-token-file", "--device-name", "living-room"]
    subprocess.run(
        login, input=DEMO_PASSWORD + "\n", env=renv, check=True, text=True, capture_output=True
    )
    _silent_without_sound_card(config)
    cmd = [*exe, "receiver", "--device-name", "living-room"]
    return _spawn(cmd, env=renv, stderr=subprocess.DEVNULL)


def _silent_without_sound_card(config: Path) -> None:
    """On a machine with no sound card, the demo devices play to mpv's null output."""
    if Path("/dev/snd").exists():
        return
    path = config / "config.toml"
    text = path.read_text() if path.exists() else ""
    if "[mpv_options]" not in text:
        path.write_text(text.rstrip("\n") + '\n\n[mpv_options]\nao = "null"\n')


def _open_tui(config: Path) -> int:
    """The TUI as the demo device, logged in to the demo server."""
    from tunehand.tui.app import run_tui

    return run_tui(argparse.Namespace(config_dir=str(config), server=None))


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Stopped` (the TUI puts its own in place while it runs);
    once the block is left, further ones are ignored until the children are stopped."""
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)


def run_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    music, data, config = root / "music", root / "data", root / "config"
    port = pick_port(args.port)
    server: subprocess.Popen[str] | None = None
    receiver: subprocess.Popen[str] | None = None
    try:
        with _stop_on_signals():
            print(f"generating the demo library in {music} ...", flush=True)
            make_demo_library(music)
            exe = [sys.executable, "-m", "tunehand"]
            add = subprocess.run(
                [*exe, "admin", "add-user", DEMO_USER, "--password-stdin", "--data-dir", str(data)],
                input=DEMO_PASSWORD + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
            if add.returncode != 0 and "already exists" not in add.stderr:
                raise TunehandError(add.stderr.strip() or "could not create the demo user")
            serve = [*exe, "serve", "--port", str(port), "--music", str(music)]
            server = _spawn([*serve, "--data-dir", str(data)], stdout=subprocess.PIPE)
            assert server.stdout is not None
            line = server.stdout.readline()
            if "listening on" not in line:
                taken = f"port {port} is taken? leave --port out to pick a free one" if port else ""
                raise TunehandError(f"the demo server did not start ({taken or 'see above'})")
            url = line.rsplit(" ", 1)[1].strip()
            env = {**os.environ, "TUNEHAND_CONFIG_DIR": str(config)}
            login = [*exe, "login", url, "--user", DEMO_USER, "--password-stdin"]
            r = subprocess.run(login, input=DEMO_PASSWORD + "\n", env=env, check=False, text=True)
            if r.returncode == 3:
                print("no OS keyring here: the demo keeps its tokens in a 0600 file instead")
                subprocess.run(
                    [*login, "--insecure-token-file"],
                    input=DEMO_PASSWORD + "\n",
                    env=env,
                    check=True,
                    text=True,
                )
            _silent_without_sound_card(config)
            receiver = _start_receiver(exe, url, root / "living-room", env)
            interactive = sys.stdin.isatty() and sys.stdout.isatty()
            print(_summary(url, config, interactive), flush=True)
            if interactive:
                return _open_tui(config)
            return server.wait()
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        _stop(receiver)
        _stop(server)


def _summary(url: str, config: Path, interactive: bool) -> str:
    where = "in another terminal" if not interactive else "here after the TUI, or elsewhere"
    return (
        f"\nThe demo server runs at {url} (user {DEMO_USER}, password {DEMO_PASSWORD}),\n"
        f"with a receiver named `living-room`. The demo device's config dir is {config}.\n"
        f"To use it {where}:\n"
        f"  export TUNEHAND_CONFIG_DIR={config}\n"
        f"  .venv/bin/tunehand                 # the TUI: d for devices, ? for keys\n"
        f"  .venv/bin/tunehand ctl play --device living-room --search a\n"
        f"  .venv/bin/tunehand resume          # pull it here; q leaves it paused\n"
        f"  .venv/bin/tunehand ctl transfer living-room\n"
        f"Ctrl-C (or closing the terminal) stops the server and the receiver."
    )
