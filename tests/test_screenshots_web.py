"""`python -m tests.screenshots_web OUTDIR` makes both web app screenshots at their sizes.

Runs the script as `make screenshots` does (a process of its own: a real server, real
headless Chromium tabs) into a temp dir, and reads each PNG's header for its size.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.device_helpers import ROOT, device_env
from tests.web_helpers import require_chromium

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (the demo library)"
)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_screenshots_web_writes_desktop_and_phone_pngs(tmp_path: Path) -> None:
    require_chromium()
    out = tmp_path / "shots"
    r = subprocess.run(
        [sys.executable, "-m", "tests.screenshots_web", str(out)],
        capture_output=True,
        text=True,
        env=device_env(),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}\n{r.stdout}"
    assert png_size(out / "web-desktop.png") == (1280, 800)
    assert png_size(out / "web-phone.png") == (375, 812)


def test_screenshots_web_says_one_line_when_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = subprocess.run(
        [sys.executable, "-m", "tests.screenshots_web", str(blocker / "shots")],
        capture_output=True,
        text=True,
        env=device_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
