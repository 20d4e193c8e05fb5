"""Event hooks (`[hooks]` in config.toml): which events a change makes, the runner (real
scripts: the environment they get, one run at a time with later events coalesced, the
10 s timeout, failures as one log line), the config's checks, and `ctl watch --hooks`
against a real server."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import (
    PASSWORD,
    Device,
    FakePlayer,
    LineReader,
    add_users,
    client_env,
    new_device_id,
)
from tests.fixtures_server import ServerProc
from tunehand.client.config import load_config
from tunehand.client.hooks import Hooks, View, environment, events
from tunehand.errors import ConfigError

WAIT_S = 30.0


def wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll a condition (a file a hook writes) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    cond = threading.Condition()
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        with cond:
            cond.wait(0.02)


def view(**kw: Any) -> View:
    base = View("t1", "Song", "Artist", "Album", True, "d1", "box", 1000, frozenset({"d1"}))
    return base._replace(**kw)


# --- which events -----------------------------------------------------------------------


def test_events_between_two_views() -> None:
    assert events(None, view()) == []  # starting is no event
    assert events(view(), view(position_ms=5000)) == []
    assert events(view(), view(track_id="t2")) == ["track_change"]
    assert events(view(playing=False), view()) == ["play"]
    assert events(view(), view(playing=False)) == ["pause"]
    assert events(view(), view(device_id="d2", device_name="kitchen")) == ["handoff"]
    assert events(view(device_id=None), view()) == []  # a first activation: no handoff
    assert events(view(), view(online=frozenset({"d1", "d2"}))) == ["device_change"]
    assert events(view(playing=False), view(track_id="t2", device_id="d2")) == [
        "track_change",
        "play",
        "handoff",
    ]


def test_environment_names_everything() -> None:
    assert environment("play", view(position_ms=-5)) == {
        "TUNEHAND_EVENT": "play",
        "TUNEHAND_TITLE": "Song",
        "TUNEHAND_ARTIST": "Artist",
        "TUNEHAND_ALBUM": "Album",
        "TUNEHAND_TRACK_ID": "t1",
        "TUNEHAND_DEVICE": "box",
        "TUNEHAND_POSITION_MS": "0",
    }


# --- the runner, with real scripts ------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


ENV_DUMP = 'printf "%s|%s|%s|%s|%s|%s|%s\\n" "$TUNEHAND_EVENT" "$TUNEHAND_TITLE" \
"$TUNEHAND_ARTIST" "$TUNEHAND_ALBUM" "$TUNEHAND_TRACK_ID" "$TUNEHAND_DEVICE" \
"$TUNEHAND_POSITION_MS" >> "$1"\n'


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_hook_gets_the_event_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = script(tmp_path / "hook.sh", ENV_DUMP)
    hooks = Hooks({"on_track_change": (str(hook), str(out)), "on_pause": (str(hook), str(out))})
    hooks.feed(view())
    assert hooks.feed(view(track_id="t2", title="Next One", position_ms=0)) == ["track_change"]
    wait_for(lambda: lines(out), "the hook ran")
    assert lines(out) == ["track_change|Next One|Artist|Album|t2|box|0"]
    hooks.feed(view(track_id="t2", title="Next One", playing=False, position_ms=1234))
    wait_for(lambda: len(lines(out)) == 2, "the pause hook ran")
    assert lines(out)[1] == "pause|Next One|Artist|Album|t2|box|1234"


def test_one_run_at_a_time_and_later_events_coalesce(tmp_path: Path) -> None:
    out, gate = tmp_path / "out", tmp_path / "gate"
    os.mkfifo(gate)
    # Each run logs, then waits for the test to let it go (a read on a FIFO).
    hook = script(tmp_path / "hook.sh", ENV_DUMP + 'read x < "$2"\n')
    hooks = Hooks({"on_track_change": (str(hook), str(out), str(gate))})
    hooks.feed(view())
    hooks.feed(view(track_id="a", title="A"))
    wait_for(lambda: len(lines(out)) == 1, "the first run started")
    hooks.feed(view(track_id="b", title="B"))  # while it runs: waits
    hooks.feed(view(track_id="c", title="C"))  # replaces B: only the latest runs
    with gate.open("w") as g:
        g.write("go\n")
    wait_for(lambda: len(lines(out)) == 2, "one more run, with the latest values")
    assert [ln.split("|")[1] for ln in lines(out)] == ["A", "C"]
    with gate.open("w") as g:
        g.write("go\n")
    hooks.feed(view(track_id="d", title="D"))  # idle again: runs at once
    wait_for(lambda: len(lines(out)) == 3, "a run after the hook went idle")
    with gate.open("w") as g:
        g.write("go\n")
    assert [ln.split("|")[1] for ln in lines(out)] == ["A", "C", "D"]


def test_failures_and_the_timeout_are_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tunehand.hooks")
    fails = script(tmp_path / "fails.sh", "exit 3\n")
    hangs = script(tmp_path / "hangs.sh", 'echo $$ > "$1"\nexec sleep 60\n')
    pid_file = tmp_path / "pid"
    hooks = Hooks(
        {
            "on_play": (str(fails),),
            "on_pause": (str(tmp_path / "missing-program"),),
            "on_handoff": (str(hangs), str(pid_file)),
        },
        timeout_s=0.5,
    )
    hooks.feed(view(playing=False))
    hooks.feed(view())  # play
    hooks.feed(view(playing=False))  # pause
    hooks.feed(view(playing=False, device_id="d2"))  # handoff

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    wait_for(lambda: len(said()) == 3, "three failures logged")
    assert sorted(said()) == [
        "hook on_handoff failed: still running after 0.5 s: killed",
        f"hook on_pause failed: cannot run '{tmp_path / 'missing-program'}': "
        "No such file or directory",
        "hook on_play failed: exit 3",
    ]
    assert all("\n" not in m for m in said())
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_a_shell_runs_only_when_the_user_writes_one(tmp_path: Path) -> None:
    out = tmp_path / "out; touch pwned"
    hook = script(tmp_path / "hook.sh", ENV_DUMP)
    hooks = Hooks({"on_play": (str(hook), str(out))})
    hooks.feed(view(playing=False, title="$(touch pwned2)"))
    hooks.feed(view(title="$(touch pwned2)"))
    wait_for(lambda: lines(out), "the hook ran")
    assert lines(out)[0].startswith("play|$(touch pwned2)|")
    assert not (tmp_path / "pwned").exists() and not Path("pwned2").exists()


# --- config.toml ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[hooks]\non_play = "notify-send"\n', "hooks.on_play must be a list of strings"),
        ("[hooks]\non_play = [1]\n", "hooks.on_play must be a list of strings"),
        ('[hooks]\non_start = ["x"]\n', "hooks.on_start is not a hook"),
        ('hooks = "x"\n', "hooks must be a table"),
    ],
)
def test_bad_hooks_in_config_are_one_line(tmp_path: Path, toml: str, says: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_hooks_in_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[hooks]\non_play = ["notify-send", "tunehand", "plays"]\non_pause = []\n'
    )
    assert dict(load_config(tmp_path).hooks) == {"on_play": ("notify-send", "tunehand", "plays")}


# --- ctl watch --hooks, against a real server ---------------------------------------------


def test_ctl_watch_hooks_runs_them_on_session_events(
    shared_server: ServerProc, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    srv = shared_server
    user = "hooks" + new_device_id()[-8:]
    add_users(srv, [user])
    cfg = tmp_path / "cfg"
    dev = Device(cfg, client_env(secret_service, cfg), server_log=srv.log)
    assert dev.login(srv.url, user, PASSWORD, "--device-name", "laptop").returncode == 0
    out = tmp_path / "events"
    hook = script(tmp_path / "hook.sh", ENV_DUMP)
    argv = json.dumps([str(hook), str(out)])
    (cfg / "config.toml").write_text(
        (cfg / "config.toml").read_text()
        + "\n[hooks]\n"
        + "".join(f"{h} = {argv}\n" for h in ("on_track_change", "on_play", "on_pause"))
        + f"on_handoff = {argv}\non_device_change = {argv}\n"
    )
    device_id = new_device_id()
    token = srv.login(user, device_id=device_id)["access_token"]
    proc = dev.popen("ctl", "watch", "--hooks")
    players: list[FakePlayer] = []
    try:
        reader = LineReader(proc.stdout)  # type: ignore[arg-type]
        reader.next()  # watching
        players.append(FakePlayer(srv.url, token, device_id, "box").start())
        wait_for(lambda: [ln for ln in lines(out) if ln.startswith("device_change|")], "online")
        title = json.loads(dev.ctl("search", "staralfur", "--json"))[0]
        track = title["id"]
        dev.ctl("play", track)
        got = wait_for(
            lambda: (
                {ln.split("|")[0]: ln for ln in lines(out)}.keys() >= {"track_change", "play"}
                and {ln.split("|")[0]: ln for ln in lines(out)}
            ),
            "track_change and play",
        )
        fields = got["track_change"].split("|")
        assert fields[1:6] == [title["title"], title["artist"], title["album"], track, "box"]
        assert int(fields[6]) >= 0
        dev.ctl("pause")
        wait_for(lambda: any(ln.startswith("pause|") for ln in lines(out)), "pause")
        other_id = new_device_id()
        other_token = srv.login(user, device_id=other_id)["access_token"]
        players.append(FakePlayer(srv.url, other_token, other_id, "kitchen").start())
        dev.ctl("transfer", "kitchen")
        handoff = wait_for(
            lambda: [ln for ln in lines(out) if ln.startswith("handoff|")], "handoff"
        )
        assert handoff[0].split("|")[5] == "kitchen"
    finally:
        for p in players:
            p.close()
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def test_watch_hooks_without_hooks_is_a_usage_error(
    shared_server: ServerProc, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    user = "nohooks" + new_device_id()[-8:]
    add_users(shared_server, [user])
    cfg = tmp_path / "cfg"
    dev = Device(cfg, client_env(secret_service, cfg))
    assert dev.login(shared_server.url, user, PASSWORD).returncode == 0
    assert "has no [hooks] to run" in dev.fails(2, "ctl", "watch", "--hooks")


def test_a_receiver_runs_its_config_dirs_hooks(shared_server: ServerProc, tmp_path: Path) -> None:
    from tests.device_helpers import DeviceDir, Receiver, login_all, require_mpv, short_sock_dir

    require_mpv()
    srv = shared_server
    user = "rhooks" + new_device_id()[-8:]
    add_users(srv, [user])
    box, laptop = DeviceDir("box", tmp_path / "box"), DeviceDir("laptop", tmp_path / "laptop")
    login_all(srv.url, user, [box, laptop])
    out = tmp_path / "events"
    hook = script(tmp_path / "hook.sh", ENV_DUMP)
    argv = json.dumps([str(hook), str(out)])
    with (box.config_dir / "config.toml").open("a") as f:
        f.write(f"\n[hooks]\non_play = {argv}\non_pause = {argv}\n")
    with short_sock_dir("th-hooks-") as sock_dir:
        r = Receiver.start(box, sock_dir)
        try:
            r_ok = laptop.run("ctl", "play", "--search", "staralfur", "--device", "box")
            assert r_ok.returncode == 0, r_ok.stderr
            played = wait_for(lambda: [ln for ln in lines(out) if ln.startswith("play|")], "play")
            assert played[0].split("|")[1] == "Starálfur" and played[0].split("|")[5] == "box"
            assert laptop.run("ctl", "pause").returncode == 0
            wait_for(lambda: any(ln.startswith("pause|") for ln in lines(out)), "pause")
        finally:
            r.stop()
