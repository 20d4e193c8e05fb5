"""End to end, the warm next device: a real server, real receivers with mpv (ao=null).

After a few transfers r1 -> r2 (the learned rule), r2 is kept warm while r1 plays: the
current track loaded in its mpv, paused near the position, `warm: true` in
`ctl devices --json`. A transfer to it skips the prepare phase and goes on at the same
position. A device with `warm = false` is never warm, and the prediction changing (the
session moved to another device) drops the warm load.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.device_helpers import (
    DeviceDir,
    Receiver,
    World,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    serving_world,
    status,
)

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TRACKS = ("Warm Tone One", "Warm Tone Two")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_mpv()
    root = tmp_path_factory.mktemp("warm-server")
    music = root / "music"
    make_tones(music, TRACKS, album="Warm Tones", duration_s=120)
    with serving_world(root, music, [f"warm{i}" for i in range(8)], "th-warm-") as w:
        yield w


class Acct:
    def __init__(self, world: World, tmp: Path) -> None:
        self.world = world
        self.remote = DeviceDir("laptop", tmp / "laptop")
        self.devs = {n: DeviceDir(n, tmp / n) for n in ("r1", "r2", "r3")}
        login_all(world.srv.url, world.user(), [self.remote, *self.devs.values()])
        self.receivers: dict[str, Receiver] = {}

    def start(self, name: str) -> Receiver:
        r = Receiver.start(self.devs[name], self.world.sock_dir)
        self.receivers[name] = r
        return r

    def devices(self) -> dict[str, dict[str, Any]]:
        out = json.loads(ctl_ok(self.remote, "devices", "--json"))
        return {d["name"]: d for d in out}


@pytest.fixture
def acct(world: World, tmp_path: Path) -> Iterator[Acct]:
    a = Acct(world, tmp_path)
    yield a
    for r in a.receivers.values():
        r.stop()
        print(f"--- {r.lines.label} (exit {r.proc.returncode}):\n{r.lines.text()}")


def move(acct: Acct, src: Receiver, dst: Receiver) -> None:
    """`ctl transfer` while `src` plays; wait until `dst` plays and `src` stopped."""
    src_mark, dst_mark = src.mark(), dst.mark()
    ctl_ok(acct.remote, "transfer", dst.dev.name)
    dst.wait_for("playback moved here", since=dst_mark)
    src.wait_for("playback moved to another device", since=src_mark)
    first = dst.ipc.wait_time_pos(lambda _: True)
    dst.ipc.wait_time_pos(lambda v: v >= first + 0.3)


def trained(acct: Acct, r1: Receiver, r2: Receiver) -> None:
    """Play on r1, then r1 -> r2 -> r1 twice: r2 is the usual next device from r1."""
    mark = r1.mark()
    ctl_ok(acct.remote, "play", "--search", TRACKS[0], "--device", "r1")
    r1.wait_for("playing", since=mark)
    r1.ipc.wait_time_pos(lambda v: v >= 1.0, timeout=15)
    for _ in range(2):
        move(acct, r1, r2)
        move(acct, r2, r1)


def test_the_usual_next_device_is_kept_warm_and_a_transfer_to_it_skips_prepare(
    acct: Acct,
) -> None:
    r1, r2 = acct.start("r1"), acct.start("r2")
    mark = r2.mark()
    trained(acct, r1, r2)
    r2.wait_for("warm: holding", since=mark)
    devices = acct.devices()
    assert devices["r2"]["warm"] is True, devices
    assert devices["r1"]["warm"] is False and devices["r1"]["active"] is True, devices
    # The human list says it too, on r2's line only.
    listed = ctl_ok(acct.remote, "devices").splitlines()
    assert [ln.endswith("  warm") for ln in listed if " r2 " in f" {ln} "] == [True], listed
    assert not any(ln.endswith("warm") for ln in listed if " r1 " in f" {ln} "), listed
    # Loaded in r2's mpv, paused, near where r1 plays; never audible.
    r2.ipc.wait_prop("idle-active", lambda v: v is False, timeout=10)
    assert r2.ipc.get("pause") is True
    held = r2.ipc.wait_time_pos(lambda _: True)
    now = r1.ipc.time_pos()
    assert now is not None
    assert abs(held - now) < 1.5, (held, now)
    assert r2.ipc.get("pause") is True

    # The transfer to it: no prepare (r2 never loads for it), the position kept.
    entry = status(acct.remote)["entry_id"]
    before = r1.ipc.time_pos()
    assert before is not None
    r1_mark, r2_mark = r1.mark(), r2.mark()
    ctl_ok(acct.remote, "transfer", "r2")
    r2.wait_for("playback moved here", since=r2_mark)
    s = status(acct.remote)
    assert s["device"]["name"] == "r2" and s["playing"] is True and s["entry_id"] == entry, s
    first = r2.ipc.wait_time_pos(lambda _: True)
    assert before - 0.3 <= first <= before + 2.0, (first, before)
    r2.ipc.wait_time_pos(lambda v: v >= first + 0.5)
    assert r2.ipc.get("pause") is False
    r1.wait_for("playback moved to another device", since=r1_mark)
    assert not any("preparing" in line for line in r2.lines.log[r2_mark:]), r2.lines.text()
    assert any("preparing" in line for line in r2.lines.log[:mark] + r2.lines.log[mark:r2_mark])


def test_a_device_with_warm_false_is_never_warm(acct: Acct) -> None:
    cfg = acct.devs["r2"].config_dir / "config.toml"
    cfg.write_text("warm = false\n" + (cfg.read_text() if cfg.exists() else ""))
    r1, r2 = acct.start("r1"), acct.start("r2")
    trained(acct, r1, r2)
    # It says so in its hello: the server never picks it.
    session = acct.devices()
    assert session["r2"]["warm"] is False and session["r1"]["active"] is True, session
    assert not any(d["warm"] for d in session.values()), session
    assert "warm:" not in r2.lines.text()
    assert r2.ipc.wait_prop("idle-active", lambda v: v is True, timeout=5) is True


def test_the_prediction_changing_drops_the_warm_load(acct: Acct) -> None:
    r1, r2, r3 = acct.start("r1"), acct.start("r2"), acct.start("r3")
    mark = r2.mark()
    trained(acct, r1, r2)
    r2.wait_for("warm: holding", since=mark)
    # Playback moves to r3 (a plain transfer, not to the warm device): from r3 nothing
    # is predicted, so r2 lets its load go.
    released = r2.mark()
    move(acct, r1, r3)
    r2.wait_for("warm: released", since=released)
    assert r2.ipc.wait_prop("idle-active", lambda v: v is True, timeout=5) is True
    devices = acct.devices()
    assert not any(d["warm"] for d in devices.values()), devices
    assert devices["r3"]["active"] is True
