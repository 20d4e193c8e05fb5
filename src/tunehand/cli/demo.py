"""`tunehand demo` (what `make demo` runs): a server on SQLite with a generated demo
library, a logged-in demo user, and what to try next. Ctrl-C stops it all.

Everything lives in `.demo/` (music, server data, the demo device's config dir).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from tunehand.demo import make_demo_library
from tunehand.errors import TunehandError

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented password of the local demo account


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
    return subprocess.Popen(cmd, env=renv, text=True, stderr=subprocess.DEVNULL)


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


def run_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    music, data, config = root / "music", root / "data", root / "config"
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
    server = subprocess.Popen(
        [*exe, "serve", "--port", str(args.port), "--music", str(music), "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "listening on" not in line:
            raise TunehandError("the demo server did not start (is the port taken? try --port 0)")
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
        try:
            if sys.stdin.isatty() and sys.stdout.isatty():
                return _open_tui(config)
            print(
                f"\nThe demo server runs at {url} (user {DEMO_USER}, password {DEMO_PASSWORD}),\n"
                f"with a receiver named `living-room`. In another terminal:\n"
                f"  export TUNEHAND_CONFIG_DIR={config}\n"
                f"  .venv/bin/tunehand                 # the TUI: d for devices, ? for keys\n"
                f"  .venv/bin/tunehand ctl play --device living-room --search a\n"
                f"  .venv/bin/tunehand resume          # pull it here; q leaves it paused\n"
                f"  .venv/bin/tunehand ctl transfer living-room\n"
                f"Ctrl-C here stops the server and the receiver.",
                flush=True,
            )
            return server.wait()
        finally:
            receiver.send_signal(signal.SIGINT)
            receiver.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGINT)
        server.wait()
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
