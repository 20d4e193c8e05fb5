"""The TUI's lyrics pane (`6`): the playing track's lyrics from the backend, the line sung
now highlighted as the position moves (wherever the session plays), plain lyrics, none,
and a failure shown in place."""

from __future__ import annotations

from tests.test_tui_support import main_screen, running, screen_lines, seeded, settle, wait_until
from tunehand.core.lyrics import parse_lrc, plain
from tunehand.errors import ServerUnreachable

LIVING = "dliving00000000000000"
LRC = "\n".join(f"[01:{s:02d}.00]line at {s}" for s in range(20, 60, 5))


def _track_ids(fake: object) -> list[str]:
    return [e.track_id for e in fake.state.queue]  # type: ignore[attr-defined]


def _shown(app: object) -> list[str]:
    view = main_screen(app).lyrics.view  # type: ignore[arg-type]
    return [ln.rstrip() for ln in view.render().plain.splitlines()]  # type: ignore[union-attr]


async def test_the_current_line_follows_the_position() -> None:
    fake = seeded(position_ms=83_000)  # 1:23
    playing = fake.state.current_entry
    assert playing is not None
    fake.lyrics_[playing.track_id] = parse_lrc(LRC)
    async with running(fake) as (app, pilot, fake):
        await pilot.press("7")
        await settle(pilot)
        screen = main_screen(app)
        assert screen.pane == "lyrics"
        assert ("lyrics", {"track_id": playing.track_id}) in fake.calls
        assert "▶ line at 20" in _shown(app)
        assert screen.lyrics.view.current() == 0
        fake.advance(10_000)  # 1:33: the clock moves, nobody sends anything
        await wait_until(pilot, lambda: "▶ line at 30" in _shown(app))
        assert "  line at 20" in _shown(app)
        # Another device plays and seeks: the pane follows the session's anchor.
        fake.move_to(LIVING)
        fake.apply("seek", sender=LIVING, position_ms=116_000)
        await settle(pilot)
        await wait_until(pilot, lambda: "▶ line at 55" in _shown(app))
        assert any("Lyrics · " in ln for ln in screen_lines(app))


async def test_plain_lyrics_none_and_a_failure() -> None:
    fake = seeded()
    ids = _track_ids(fake)
    fake.lyrics_[ids[1]] = plain("words one\nwords two")
    async with running(fake) as (app, pilot, fake):
        await pilot.press("7")
        await settle(pilot)
        pane = main_screen(app).lyrics
        assert _shown(app)[:2] == ["  words one", "  words two"]
        assert pane.view.current() is None
        assert app.focused is pane.view
        await pilot.press("down")  # plain lyrics scroll
        await settle(pilot)
        assert _shown(app)[0] == "  words two"
        await pilot.press("n")  # the next track has none
        await settle(pilot)
        await wait_until(pilot, lambda: pane.status.text == "no lyrics for this track")
        assert _shown(app) == []
        fake.fail_next("lyrics", ServerUnreachable("cannot reach the server"))
        await pilot.press("n")
        await settle(pilot)
        await wait_until(pilot, lambda: pane.status.text == "cannot reach the server")
        assert pane.status.has_class("error")
