"""The TUI never does I/O itself: only `tunehand.tui.backend_live` may import the client pieces."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import tunehand.tui

FORBIDDEN = (
    "tunehand.client",
    "tunehand.cli",
    "tunehand.server",
    "tunehand.player",
    "websockets",
    "mpv",
    "httpx",
    "sqlalchemy",
)
LIVE = "tunehand.tui.backend_live"
PACKAGE = Path(tunehand.tui.__file__).parent


def modules() -> list[str]:
    return sorted(
        "tunehand.tui." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    )


def test_no_module_but_the_live_backend_names_the_client_pieces() -> None:
    for path in PACKAGE.rglob("*.py"):
        name = "tunehand.tui." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name == LIVE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(FORBIDDEN), f"{name} imports {n}"


def test_importing_the_app_loads_no_io_library() -> None:
    names = [m for m in modules() if m != LIVE]
    code = (
        "import importlib, json, sys\n"
        f"for m in {names!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert bad == []


def test_no_part_but_the_entry_points_loads_tunehand_cli() -> None:
    """The TUI's live backend, the MPD frontend and the desktop service get their client
    and agent from `tunehand.client.root`: importing them loads no `tunehand.cli`."""
    parts = [
        LIVE,
        "tunehand.mpd.cli",
        "tunehand.mpd.frontend",
        "tunehand.client.root",
        "tunehand.desktop.service",
        "tunehand.tui.app",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {parts!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    assert LIVE in loaded and "tunehand.client.root" in loaded
    assert [m for m in loaded if m == "tunehand.cli" or m.startswith("tunehand.cli.")] == []
