"""Shared helpers of the TUI tests (no tests here): run the app on a `FakeBackend`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from textual.pilot import Pilot

from tunehand.tui.app import TunehandApp
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.screens.main import MainScreen

SIZE = (120, 34)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until every worker but the session has finished and the screen is drawn."""
    app = pilot.app
    await pilot.pause()
    await pilot.pause()
    for _ in range(10):
        busy = [w for w in app.workers if w.group != "session" and not w.is_finished]
        if not busy:
            break
        await app.workers.wait_for_complete(busy)
        await pilot.pause()


def seeded(
    fake: FakeBackend | None = None, *, index: int = 1, position_ms: int = 83_000
) -> FakeBackend:
    """A fake whose session plays the first demo album on this terminal."""
    fake = fake or FakeBackend()
    album = next(iter(fake.library.album_tracks.values()))
    fake.seed([t.id for t in album], index=index, position_ms=position_ms)
    return fake


@asynccontextmanager
async def running(
    fake: FakeBackend | None = None,
    *,
    size: tuple[int, int] = SIZE,
    toasts: bool = False,
    **kwargs: Any,
) -> AsyncIterator[tuple[TunehandApp, Pilot[Any], FakeBackend]]:
    """The app on `fake`; `toasts` draws the notifications (else they are only recorded)."""
    fake = fake or FakeBackend()
    app = TunehandApp(fake, debounce_s=0, **kwargs)
    async with app.run_test(size=size, notifications=toasts) as pilot:
        await settle(pilot)
        yield app, pilot, fake


def main_screen(app: TunehandApp) -> MainScreen:
    assert isinstance(app.screen, MainScreen), app.screen
    return app.screen


def commands(fake: FakeBackend) -> list[tuple[str, dict[str, Any]]]:
    """The session commands the TUI sent, as (op, fields)."""
    out = []
    for method, fields in fake.calls:
        if method == "command":
            f = dict(fields)
            out.append((f.pop("op"), f))
    return out


def notices(app: TunehandApp) -> list[str]:
    return [n.message for n in app._notifications]


def now_lines(app: TunehandApp) -> list[str]:
    group: Any = main_screen(app).now.render()
    return [t.plain for t in group.renderables]


async def wait_until(pilot: Pilot[Any], predicate: Any, pauses: int = 200) -> None:
    """Let the app run until `predicate()` holds (each step is one `pilot.pause()`)."""
    for _ in range(pauses):
        if predicate():
            return
        await pilot.pause()
    raise AssertionError(f"never happened: {predicate}")


def screen_lines(app: TunehandApp) -> list[str]:
    """The text of every line of the screen as the terminal would show it now."""
    strips = app.screen._compositor.render_strips()
    return ["".join(seg.text for seg in strip) for strip in strips]
