"""Shell completion: the bash script completes commands, ctl actions, fixed choices, and
device and playlist names from a real server (through `tunehand _complete`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.device_helpers import DeviceDir, add_users, ctl_ok, login_all
from tests.fixtures_server import ServerProc
from tunehand.cli.completion import script
from tunehand.cli.ctl_args import ACTIONS


def _complete(words: list[str], env: dict[str, str], bindir: Path) -> list[str]:
    """Run bash's completion function for `words` (the last one being completed)."""
    line = " ".join(words)
    probe = (
        f"{script('bash')}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE={line!r}; _tunehand; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    )
    r = subprocess.run(
        ["bash", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**env, "PATH": f"{bindir}:{os.environ['PATH']}"},
    )
    return [x for x in r.stdout.splitlines() if x]


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """A `tunehand` on PATH that runs this checkout's code."""
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "tunehand"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m tunehand "$@"\n')
    exe.chmod(0o755)
    return d


def test_static_completions(bindir: Path) -> None:
    env = dict(os.environ)
    assert "ctl" in _complete(["tunehand", "c"], env, bindir)
    assert _complete(["tunehand", "ctl", "tra"], env, bindir) == ["transfer"]
    assert set(_complete(["tunehand", "ctl", ""], env, bindir)) == set(ACTIONS)
    assert _complete(["tunehand", "ctl", "repeat", ""], env, bindir) == ["off", "all", "one"]


def test_names_come_from_the_server(
    start_server: Callable[..., ServerProc], tmp_path: Path, bindir: Path
) -> None:
    srv = start_server()
    add_users(srv, ["comp"])
    me, room = DeviceDir("laptop", tmp_path / "laptop"), DeviceDir("living-room", tmp_path / "r")
    login_all(srv.url, "comp", [me, room])
    tid = ctl_ok(me, "search", "a", "--json").split('"id": "')[1].split('"')[0]
    ctl_ok(me, "playlists", "save", "Morning Mix", tid)
    env = {**me.env, "TUNEHAND_CONFIG_DIR": str(me.config_dir)}
    assert _complete(["tunehand", "ctl", "transfer", "liv"], env, bindir) == ["living-room"]
    assert set(_complete(["tunehand", "ctl", "revoke", ""], env, bindir)) == {
        "laptop",
        "living-room",
    }
    assert _complete(["tunehand", "ctl", "play", "--playlist", "Mo"], env, bindir) == [
        "Morning Mix"
    ]
    # Not logged in: nothing offered, and no error text in the command line.
    env_out = {**env, "TUNEHAND_CONFIG_DIR": str(tmp_path / "nobody")}
    assert _complete(["tunehand", "ctl", "transfer", ""], env_out, bindir) == []


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse(shell: str) -> None:
    text = script(shell)
    assert "tunehand _complete devices" in text
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here to check the syntax")
    flag = ["-n"] if shell == "zsh" else ["--no-execute"]
    subprocess.run([shell, *flag], input=text, text=True, check=True, timeout=30)
