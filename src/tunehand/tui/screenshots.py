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
from tunehand.tui.screens.login import CODE_GROUP
from tunehand.tui.widgets.cover import HalfBlocks

SIZE = (120, 34)
WAITING = frozenset({"session", CODE_GROUP})
"""Worker groups that run until the app ends (or a login is approved): not waited for."""
PNG_WIDTH = 1600
Scene = Callable[[Pilot[Any]], Awaitable[None]]


def demo_cover(size: int = 64) -> bytes:
    """A generated album cover (PNG): a dusk gradient with a sun, the same every time."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        t = y / (size - 1)
        draw.line(
            [(0, y), (size, y)], fill=(int(40 + 200 * t), int(30 + 60 * t), int(110 - 60 * t))
        )
    r = size // 4
    draw.ellipse([size // 2 - r, size // 2, size // 2 + r, size // 2 + 2 * r], fill=(250, 200, 90))
    draw.rectangle([0, size * 3 // 4, size, size], fill=(20, 20, 40))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


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
    fake.give_art("al00001", demo_cover())
    album = lib.album_tracks["al00001"]
    fake.seed([t.id for t in album], index=1, position_ms=83_000)
    fake.apply("queue_add", track_ids=tuple(t.id for t in lib.album_tracks["al00004"]))
    fake.apply("volume", value=80)
    fake.apply("repeat", mode="all")
    fake.history_ = [  # after the session: what plays now would enter it
        Played(t.id, t, fake.now_ms - i * 250_000, fake.device_id)
        for i, t in enumerate(tracks[30:45])
    ]
    return fake


async def settle(pilot: Pilot[Any]) -> None:
    """Let every worker but the session finish, and the screen catch up."""
    app = pilot.app
    await pilot.pause()
    await pilot.pause()
    for _ in range(10):
        busy = [w for w in app.workers if w.group not in WAITING and not w.is_finished]
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
    await pilot.press("slash", *"quiet", "enter")
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


async def _login_code(pilot: Pilot[Any]) -> None:
    await pilot.press("ctrl+o")
    for _ in range(100):
        if pilot.app.screen.has_class("code-waiting"):
            break
        await pilot.pause()


SCENES: dict[str, Scene] = {
    "library": _library,
    "album": _album,
    "queue": _queue,
    "search": _search,
    "devices": _devices,
    "help": _help,
    "login": _login,
    "login-code": _login_code,
}


async def capture(name: str) -> str:
    """The SVG of scene `name`, taken from the running app."""
    backend = demo_backend(logged_in=not name.startswith("login"))
    app = TunehandApp(backend, debounce_s=0, cover=HalfBlocks)
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
