"""`tunehand admin rescan` against a running server: new files appear, removed ones go,
and a folder that cannot be read (an unmounted drive, a folder without permission)
keeps its tracks. Real `tunehand serve` and `tunehand admin` processes on SQLite.

CI runs as root, which reads any folder whatever its mode: the rescan that must find a
folder unreadable runs without root's permission-override capabilities (setpriv), so
mode 000 stops it as it stops any user.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tests.fixtures_server import ServerProc, launch, tunehand_cmd, without_root_overrides
from tests.test_api import Api, all_tracks, new_account


def song(folder: Path, title: str) -> Path:
    return make_track(
        folder / "Album",
        "01 " + title,
        "ogg",
        title=title,
        artist="Admin Band",
        album=f"{folder.name} Album",
        duration_s=0.3,
    )


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProc]:
    """A server on two music folders: music/ (Kept, Locked) and drive/ (a second disk)."""
    music, drive = tmp_path / "music", tmp_path / "drive"
    song(music / "Kept", "Alpha")
    song(music / "Locked", "Beta")
    song(drive, "Gamma")
    server = launch(tmp_path, music=music, extra_args=("--music", str(drive)))
    yield server
    for folder in (music / "Locked", drive):
        if folder.exists():
            folder.chmod(0o755)
    server.stop()


@pytest.fixture
def api(srv: ServerProc) -> Iterator[Api]:
    a = new_account(srv)
    yield a
    a.close()


def library(api: Api) -> dict[str, str]:
    """Title -> track id, as the running server lists them."""
    return {t["title"]: t["id"] for t in all_tracks(api)}


def rescan(srv: ServerProc, *, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = tunehand_cmd("admin", "rescan", "--data-dir", str(srv.data_dir))
    return subprocess.run(
        without_root_overrides(cmd) if unprivileged else cmd,
        capture_output=True,
        text=True,
        env=srv.env,
        timeout=60,
        check=False,
    )


def test_admin_rescan_while_serving_adds_new_and_drops_removed_files(
    srv: ServerProc, api: Api
) -> None:
    before = library(api)
    assert set(before) == {"Alpha", "Beta", "Gamma"}
    song(srv.music / "New", "Delta")
    next(srv.music.glob("Kept/Album/*.ogg")).unlink()
    r = rescan(srv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "library: 3 tracks (1 new or changed, 1 removed, 0 skipped)"
    assert srv.proc.poll() is None
    after = library(api)
    assert set(after) == {"Beta", "Gamma", "Delta"}
    assert (after["Beta"], after["Gamma"]) == (before["Beta"], before["Gamma"])
    found = api.ok("GET", "/v1/search", params={"q": "delta"})["tracks"]
    assert [t["id"] for t in found] == [after["Delta"]]
    assert api.get(f"/v1/tracks/{before['Alpha']}").status_code == 404


def test_a_folder_that_cannot_be_read_keeps_its_tracks(srv: ServerProc, api: Api) -> None:
    before = library(api)
    locked, drive = srv.music / "Locked", srv.music.parent / "drive"
    locked.chmod(0)
    drive.chmod(0)
    r = rescan(srv, unprivileged=True)
    assert r.returncode == 0, r.stderr
    assert f"skipped {locked}: cannot read folder: Permission denied" in r.stderr
    assert f"skipped {drive}: cannot read folder: Permission denied" in r.stderr
    assert "0 removed" in r.stdout, r.stdout
    assert library(api) == before
    # Readable again, a file really gone is dropped.
    locked.chmod(0o755)
    drive.chmod(0o755)
    next(locked.glob("Album/*.ogg")).unlink()
    r = rescan(srv, unprivileged=True)
    assert r.returncode == 0, r.stderr
    assert set(library(api)) == {"Alpha", "Gamma"}


def test_a_missing_music_folder_keeps_its_tracks(srv: ServerProc, api: Api) -> None:
    """An unmounted drive: the folder is not there at all."""
    before = library(api)
    drive = srv.music.parent / "drive"
    drive.rename(srv.music.parent / "elsewhere")
    r = rescan(srv)
    assert r.returncode == 0, r.stderr
    assert f"skipped {drive}: no such folder" in r.stderr
    assert library(api) == before
