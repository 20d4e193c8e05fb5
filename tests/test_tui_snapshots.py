"""SVG snapshots of each screen (the screenshot script's scenes), on the fake backend.

Compared with the files in tests/snapshots/. After a deliberate change to the UI,
regenerate them with `TUNEHAND_SNAPSHOT_UPDATE=1 pytest tests/test_tui_snapshots.py`
and look at the diff (open the SVGs in a browser).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunehand.tui.screenshots import SCENES, capture

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TUNEHAND_SNAPSHOT_UPDATE") == "1"


@pytest.mark.parametrize("name", sorted(SCENES))
async def test_screen_matches_its_snapshot(name: str) -> None:
    svg = await capture(name)
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with TUNEHAND_SNAPSHOT_UPDATE=1"
    expected = path.read_text(encoding="utf-8")
    if svg != expected:
        (SNAPSHOTS / f"{name}.actual.svg").write_text(svg, encoding="utf-8")
    assert svg == expected, f"{name} changed: compare {name}.actual.svg with {name}.svg"
