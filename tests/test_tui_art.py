"""Cover art in the TUI: fetched through the backend, shown beside the now-playing bar
(half blocks here, as on any terminal without an image protocol), and cleanly absent
when art is off, missing, broken or unreachable."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from tests.test_tui_support import main_screen, now_lines, running, seeded, settle, wait_until
from tunehand.client.config import load_config
from tunehand.errors import ConfigError, ServerUnreachable
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.widgets.cover import (
    ART_PIXELS,
    Cover,
    HalfBlocks,
    art_key,
    graphics_terminal,
    half_blocks,
    image_factory,
)


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


RED = _png((220, 20, 20))
BLUE = _png((20, 20, 220))


def blocks(image: Any) -> HalfBlocks:
    return HalfBlocks(image)


def _albums(fake: FakeBackend) -> list[str]:
    return list(fake.library.album_tracks)


def _play_album(fake: FakeBackend, album_id: str) -> None:
    fake.seed([t.id for t in fake.library.album_tracks[album_id]])


def _cover_colors(cover: Cover) -> set[tuple[int, int, int]]:
    """The colours the cover's half blocks are drawn in."""
    assert cover.image is not None
    renderable: Any = cover.image.render()
    console = Console(width=8, height=4, color_system="truecolor", file=io.StringIO())
    colors = set()
    for seg in console.render(renderable, console.options.update(width=8, height=4)):
        if seg.text == "▀" and seg.style is not None:
            for c in (seg.style.color, seg.style.bgcolor):
                assert c is not None and c.triplet is not None
                colors.add(tuple(c.triplet))
    return colors


def _red(colors: set[tuple[int, int, int]]) -> bool:
    return bool(colors) and all(r > 150 and g < 80 and b < 80 for r, g, b in colors)


async def test_cover_is_shown_beside_the_bar_and_follows_the_track() -> None:
    fake = FakeBackend()
    first, second, third = _albums(fake)[:3]
    url = fake.give_art(first, RED)
    fake.give_art(second, BLUE)
    _play_album(fake, first)
    async with running(fake, cover=blocks) as (app, pilot, _):
        main = main_screen(app)
        await wait_until(pilot, lambda: main.cover.display)
        assert ("art", {"url": url, "size": ART_PIXELS}) in fake.calls
        assert isinstance(main.cover.image, HalfBlocks)
        assert main.cover.region.height == 4 and main.cover.region.width == 9
        assert main.query_one("#now-row").region.height == 4
        assert _red(_cover_colors(main.cover))
        assert now_lines(app)[0].startswith("▶ ")  # the bar itself is unchanged

        _play_album(fake, second)
        await wait_until(pilot, lambda: main.cover.key == art_key(fake.snapshot().track))
        await settle(pilot)
        assert main.cover.display
        colors = _cover_colors(main.cover)
        assert colors and all(b > 150 and r < 80 for r, _, b in colors)

        _play_album(fake, third)  # no art: the bar is two lines again
        await wait_until(pilot, lambda: not main.cover.display)
        await settle(pilot)
        assert main.query_one("#now-row").region.height == 2
        assert main.cover.image is None


async def test_the_same_picture_is_fetched_once_per_album() -> None:
    fake = FakeBackend()
    album = _albums(fake)[0]
    fake.give_art(album, RED)
    seeded(fake, index=0)
    async with running(fake, cover=blocks) as (app, pilot, _):
        main = main_screen(app)
        await wait_until(pilot, lambda: main.cover.display)
        fake.apply("next")
        fake.apply("next")
        await settle(pilot)
        assert [m for m, _ in fake.calls].count("art") == 1
        assert main.cover.display


async def test_broken_missing_and_unreachable_art_show_no_cover() -> None:
    fake = FakeBackend()
    broken, missing, down, good = _albums(fake)[:4]
    fake.give_art(broken, b"\xff\xd8\xff\xe0 not really a jpeg")
    fake.give_art(missing, RED)
    fake.pictures.clear()  # the server has no such picture any more: art() answers None
    fake.give_art(down, RED)
    fake.give_art(good, BLUE)
    _play_album(fake, broken)
    async with running(fake, cover=blocks) as (app, pilot, _):
        main = main_screen(app)
        for album in (missing, down):
            if album == down:
                fake.fail_next("art", ServerUnreachable("cannot reach the server"))
            _play_album(fake, album)
            await wait_until(pilot, lambda: main.cover.key == art_key(fake.snapshot().track))
            await settle(pilot)
            assert not main.cover.display
            assert main.query_one("#now-row").region.height == 2
        assert [m for m, _ in fake.calls].count("art") == 3
        assert not [n for n in app._notifications if n.severity == "error"]
        _play_album(fake, good)  # and a good picture after them shows
        await wait_until(pilot, lambda: main.cover.display)


async def test_art_off_never_fetches_and_looks_as_before() -> None:
    fake = FakeBackend()
    fake.give_art(_albums(fake)[0], RED)
    seeded(fake)
    async with running(fake) as (app, pilot, _):
        main = main_screen(app)
        await settle(pilot)
        assert not main.cover.display
        assert main.query_one("#now-row").region.height == 2
        assert "art" not in [m for m, _ in fake.calls]


def test_image_factory_modes() -> None:
    assert image_factory("off") is None
    picture = Image.new("RGB", (8, 8), (1, 2, 3))
    make = image_factory("blocks", {"KITTY_WINDOW_ID": "1"})
    assert make is not None and isinstance(make(picture), HalfBlocks)
    # "auto" asks the terminal only where the environment names one that draws images.
    plain = image_factory("auto", {"TERM": "xterm-256color", "TERM_PROGRAM": "gnome-terminal"})
    assert plain is not None and isinstance(plain(picture), HalfBlocks)
    kitty = image_factory("auto", {"TERM": "xterm-kitty"})
    assert kitty is not None  # not a terminal here: textual-image's plain fallback
    assert type(kitty(picture)).__module__.startswith("textual_image")


@pytest.mark.parametrize(
    ("env", "graphics"),
    [
        ({"TERM": "xterm-kitty"}, True),
        ({"KITTY_WINDOW_ID": "3"}, True),
        ({"TERM_PROGRAM": "WezTerm"}, True),
        ({"TERM_PROGRAM": "iTerm.app"}, True),
        ({"TERM": "foot-extra"}, True),
        ({"KONSOLE_VERSION": "230805"}, True),
        ({"TERM": "xterm-256color"}, False),
        ({"TERM": "tmux-256color", "TERM_PROGRAM": "tmux"}, False),
        ({}, False),
    ],
)
def test_which_terminals_are_asked_about_images(env: dict[str, str], graphics: bool) -> None:
    assert graphics_terminal(env) is graphics


def test_half_blocks_fit_the_picture_and_keep_its_colours() -> None:
    """A 16x8 picture, top half red and bottom half blue, in an 8x2 cell box: 8 columns
    of "▀", the first row red over red, the second blue over blue."""
    picture = Image.new("RGB", (16, 8), (200, 0, 0))
    picture.paste((0, 0, 200), (0, 4, 16, 8))
    text = half_blocks(picture, 8, 2)
    rows = text.plain.split("\n")
    assert rows == ["▀" * 8, "▀" * 8]
    styles: list[Any] = [span.style for span in text.spans]
    assert len(styles) == 16
    red, blue = (200, 0, 0), (0, 0, 200)
    assert {(s.color.triplet, s.bgcolor.triplet) for s in styles[:8]} == {(red, red)}
    assert {(s.color.triplet, s.bgcolor.triplet) for s in styles[8:]} == {(blue, blue)}
    # A square picture in the same box keeps its shape: 4 columns, centred.
    square = half_blocks(Image.new("RGB", (50, 50), (9, 9, 9)), 8, 2)
    assert square.plain.split("\n") == ["  ▀▀▀▀", "  ▀▀▀▀"]


def test_cover_art_config(tmp_path: Path) -> None:
    assert load_config(tmp_path).cover_art == "auto"
    (tmp_path / "config.toml").write_text('cover_art = "off"\n')
    assert load_config(tmp_path).cover_art == "off"
    (tmp_path / "config.toml").write_text('cover_art = "kitty"\n')
    with pytest.raises(ConfigError, match='cover_art must be one of "auto", "blocks", "off"'):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text("cover_art = false\n")
    with pytest.raises(ConfigError, match="cover_art must be a string"):
        load_config(tmp_path)
