"""One device, one playing process: real receivers (mpv, ao=null) on a real server.

A second process on the same config dir says so in one line and exits 2; a copy of a
config dir (the same device and login) running elsewhere replaces the first
connection, which stops its player and exits 2 instead of reconnecting to fight back
(issue 16, item 3).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import error_line
from tests.device_helpers import DeviceDir, Receiver, login_all, require_mpv, short_sock_dir
from tests.fixtures_server import ServerProc
from tests.test_api import add_users, unique


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    require_mpv()
    with short_sock_dir("th-ident-") as path:
        yield path


@pytest.fixture
def device(shared_server: ServerProc, tmp_path: Path) -> DeviceDir:
    user = unique("ident")
    add_users(shared_server, user)
    dev = DeviceDir("ident", tmp_path / "cfg")
    login_all(shared_server.url, user, [dev])
    return dev


def test_a_second_process_on_one_config_dir_exits_2(device: DeviceDir, sock_dir: Path) -> None:
    first = Receiver.start(device, sock_dir)
    try:
        r = device.run("receiver", "--mpv-option", "ao=null")
        assert r.returncode == 2, (r.stdout, r.stderr)
        line = error_line(r, 2)
        assert "another tunehand device process already runs on" in line
        assert str(device.config_dir) in line
        assert first.proc.poll() is None  # the first one plays on
    finally:
        first.stop()


def test_a_copy_of_the_device_replaces_the_first_which_stops(
    device: DeviceDir, sock_dir: Path, tmp_path: Path
) -> None:
    first = Receiver.start(device, sock_dir)
    copy = DeviceDir("ident", tmp_path / "copy")
    shutil.copytree(device.config_dir, copy.config_dir)
    second = None
    try:
        second = Receiver.start(copy, sock_dir)
        assert first.wait_exit(timeout=20) == 2
        first.wait_for("another connection of this device took over")
        first.wait_for("stopped: this device no longer holds the session here")
        assert second.proc.poll() is None  # the newer one stays connected
        assert not [x for x in second.lines.log if "connection to the server lost" in x]
    finally:
        first.stop()
        print("first:", *first.lines.log, sep="\n  ")
        if second is not None:
            second.stop()
            print("second:", *second.lines.log, sep="\n  ")
