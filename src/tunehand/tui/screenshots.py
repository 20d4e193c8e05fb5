"""`python -m tunehand.tui.screenshots OUTDIR`: the README's screenshots, made by the real app.

Runs `TunehandApp` headless on a `FakeBackend` with the demo library (a session
playing on this terminal, a playlist, likes, history), walks to each main screen with
the same keys a person would press, and writes `NAME.svg` and `NAME.png` to OUTDIR.
The snapshot tests replay the same `SCENES`. PNGs come from cairosvg when it is
installed, else from `rsvg-convert`; without either only the SVGs are written.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tunehand.tui.app import TunehandApp
from tunehand.tui.backend import Played
from tunehand.tui.backend_fake import FakeBackend

SIZE = (120, 34)
PNG_WIDTH = 1600
Scene = Callable[[Pilot[Any]], Awaitable[None]]


def demo_backend(*, logged_in: bool = True) -> FakeBackend:
    fake = FakeBackend(logged_in=logged_in)
    lib = fake.library
    tracks = list(lib.tracks.values())
    fake.playlists_ = {
        "Late night": [t.id for t in tracks[10:24]],
        "Morning coffee": [t.id for t in tracks[40:52]],
        "Road trip": [t.id for t in tracks[60:90]],
    }
    fake.likes_ids = [t.id for t in tracks[::5]]
    fake.history_ = [
        Played(t.id, t, fake.now_ms - i * 250_000, fake.device_id)
        for i, t in enumerate(tracks[30:45])
    ]
    album = lib.album_tracks["al00001"]
    fake.seed([t.id for t in album], index=1, position_ms=83_000)
    fake.apply("queue_add", track_ids=tuple(t.id for t in lib.album_tracks["al00004"]))
    fake.apply("volume", value=80)
    fake.apply("repeat", mode="all")
    return fake


async def settle(pilot: Pilot[Any]) -> None:
    """Let every worker but the session finish, and the screen catch up."""
    app = pilot.app
    await pilot.pause()
    await pilot.pause()
    for _ in range(10):
        busy = [w for w in app.workers if w.group != "session" and not w.is_finished]
        if not busy:
            break
        await app.workers.wait_for_complete(busy)
        await pilot.pause()


async def _library(pilot: Pilot[Any]) -> None:
    await pilot.press("down", "down")


async def _album(pilot: Pilot[Any]) -> None:
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("down", "down")


async def _queue(pilot: Pilot[Any]) -> None:
    await pilot.press("5")
    await settle(pilot)
    await pilot.press("down", "down", "down")


async def _search(pilot: Pilot[Any]) -> None:
    await pilot.press("slash", *"lan", "enter")
    await settle(pilot)
    await pilot.press("down")


async def _devices(pilot: Pilot[Any]) -> None:
    await pilot.press("5")
    await settle(pilot)
    await pilot.press("d")


async def _help(pilot: Pilot[Any]) -> None:
    await pilot.press("question_mark")


async def _login(pilot: Pilot[Any]) -> None:
    await pilot.press(*"alice")


SCENES: dict[str, Scene] = {
    "library": _library,
    "album": _album,
    "queue": _queue,
    "search": _search,
    "devices": _devices,
    "help": _help,
    "login": _login,
}


async def capture(name: str) -> str:
    """The SVG of scene `name`, taken from the running app."""
    backend = demo_backend(logged_in=name != "login")
    app = TunehandApp(backend, debounce_s=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await SCENES[name](pilot)
        await settle(pilot)
        for field in app.screen.query(Input):
            field.cursor_blink = False
        app.clear_notifications()
        await pilot.pause()
        return app.export_screenshot(title=f"tunehand · {name}")


def to_png(svg: Path, png: Path) -> bool:
    """Convert with cairosvg (monospace font for the terminal text), else rsvg-convert."""
    text = svg.read_text(encoding="utf-8").replace("Fira Code", "DejaVu Sans Mono")
    try:
        import cairosvg  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        tool = shutil.which("rsvg-convert")
        if tool is None:
            return False
        subprocess.run(
            [tool, "-w", str(PNG_WIDTH), "-o", str(png)], input=text.encode(), check=True
        )
        return True
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png), output_width=PNG_WIDTH)
    return True


async def write_all(outdir: Path) -> list[Path]:
    written: list[Path] = []
    for name in SCENES:
        svg = outdir / f"{name}.svg"
        svg.write_text(await capture(name), encoding="utf-8")
        written.append(svg)
        png = svg.with_suffix(".png")
        if to_png(svg, png):
            written.append(png)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0] if args else "screenshots")
    outdir.mkdir(parents=True, exist_ok=True)
    written = asyncio.run(write_all(outdir))
    if not any(p.suffix == ".png" for p in written):
        print("no PNGs: install cairosvg (pip) or rsvg-convert (librsvg2-bin)", file=sys.stderr)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
