"""No token or password in any log line, error message, process argument, child
environment or stream URL, across a real session: a server, a receiver, `ctl` calls,
a refresh, `watch`, a failed login and a revoked device."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

from tests.device_helpers import PASSWORD, DeviceDir, Receiver, add_users, ctl, login_all
from tests.fixtures_server import ServerProc

TOKEN_RE = re.compile(r"th[adr]_[A-Za-z0-9_-]{20,}")


def _tokens(dev: DeviceDir) -> list[str]:
    blob = json.loads((dev.config_dir / "tokens.json").read_text())
    return [blob["access_token"], blob["refresh_token"]]


def _expire(dev: DeviceDir) -> None:
    """Make the stored access token look expired, so the next call refreshes it."""
    path = dev.config_dir / "tokens.json"
    blob = json.loads(path.read_text())
    blob["access_expires_at"] = 0
    path.write_text(json.dumps(blob))
    path.chmod(0o600)


def _cmdlines_and_environs(pids: list[int]) -> str:
    out = []
    for pid in pids:
        for name in ("cmdline", "environ"):
            try:
                out.append(Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return "\n".join(out)


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def test_no_token_material_leaks(start_server: Callable[..., ServerProc], tmp_path: Path) -> None:
    srv = start_server()
    add_users(srv, ["alice"])
    remote = DeviceDir("remote", tmp_path / "remote")
    room = DeviceDir("room", tmp_path / "room")
    login_all(srv.url, "alice", [remote, room])
    seen_tokens = _tokens(remote) + _tokens(room)

    receiver = Receiver.start(room, tmp_path)
    try:
        ids = json.loads(ctl(remote, "search", "a", "--json").stdout)
        assert ids, "the generated library is searchable"
        assert ctl(remote, "play", ids[0]["id"], "--device", "room").returncode == 0
        receiver.wait_for("playing")
        _expire(remote)  # the next call refreshes: new tokens appear
        assert ctl(remote, "status", "--json").returncode == 0
        seen_tokens += _tokens(remote)
        watch = remote.popen("ctl", "watch")
        assert watch.stdout is not None
        watch.stdout.readline()
        process_text = _cmdlines_and_environs(
            [
                os.getpid(),
                srv.proc.pid,
                receiver.proc.pid,
                watch.pid,
                *_children(receiver.proc.pid),
                *_children(srv.proc.pid),
            ]
        )
        watch.send_signal(signal.SIGTERM)
        _, watch_err = watch.communicate(timeout=10)
        wrong = remote.run(
            "login",
            srv.url,
            "--user",
            "alice",
            "--password-stdin",
            "--insecure-token-file",
            input="not-" + PASSWORD + "\n",
        )
        assert wrong.returncode == 3 and "wrong user name or password" in wrong.stderr
        refused = ctl(remote, "queue", "add", "t" + "0" * 20)
        assert ctl(remote, "revoke", "room").returncode == 0
        # The revoked receiver stops with one line that says so, exit 3.
        assert receiver.wait_exit(timeout=20) == 3
        assert "log in again" in receiver.lines.text().splitlines()[-1]
        stream = json.loads(ctl(remote, "status", "--json").stdout)
    finally:
        receiver.stop()
    texts = {
        "server log": "\n".join(srv.log),
        "receiver log": receiver.lines.text(),
        "watch stderr": watch_err,
        "process arguments and environments": process_text,
        "error lines": (wrong.stderr or "") + (refused.stderr or ""),
        "status": json.dumps(stream),
    }
    assert len(set(seen_tokens)) == 6  # two logins, one refresh: six distinct tokens
    for where, text in texts.items():
        for token in seen_tokens:
            assert token not in text, f"a token leaked into the {where}"
        assert not TOKEN_RE.search(text), f"token-shaped text in the {where}"
        assert PASSWORD not in text, f"the password leaked into the {where}"
