"""The current track's cover art, left of the now-playing bar.

`Cover` is told the current track (`show`); when its `art_url` names another picture
it asks the backend for it in a worker, decodes it (Pillow) and shows it with the
injected image widget factory. It stays hidden while there is no factory (art turned
off, tests, screenshots), no art, or a picture that cannot be fetched or decoded: the
bar then looks exactly as it does without art.

`image_factory(mode)` picks the factory from the config's `cover_art`. "blocks" draws
coloured half blocks (`HalfBlocks`, every terminal can show them; no question asked of
the terminal). "auto" does the same, except where the environment names a terminal
known to draw real images (kitty, WezTerm, iTerm2, ghostty, foot, Konsole, mlterm,
contour): there textual-image asks the terminal for its best protocol (Kitty graphics
or Sixel). Asking costs a 0.1 s wait on terminals without Kitty graphics and may eat a
key typed meanwhile, so it is not done where it cannot pay off. It only works before
the app takes the terminal: call `image_factory` before `App.run`. "off" shows nothing.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from rich.color import Color
from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from tunehand.core.protocol import TrackView
from tunehand.tui.attempt import attempt
from tunehand.tui.backend import Backend

log = logging.getLogger("tunehand.tui")

ImageFactory = Callable[[Any], Widget]
"""Makes the widget that draws a decoded picture (a `PIL.Image.Image`)."""
ART_PIXELS = 256
"""The size asked of the server: enough for a few cells of Kitty or Sixel pixels."""


GRAPHICS_TERM_PROGRAMS = frozenset({"WezTerm", "iTerm.app", "ghostty", "mlterm", "contour"})
GRAPHICS_TERMS = ("xterm-kitty", "xterm-ghostty", "foot", "mlterm", "contour", "wezterm")


def graphics_terminal(environ: Mapping[str, str]) -> bool:
    """Whether the environment names a terminal known to draw images (see the module)."""
    term = environ.get("TERM", "")
    return bool(
        environ.get("KITTY_WINDOW_ID")
        or environ.get("KONSOLE_VERSION")
        or environ.get("TERM_PROGRAM", "") in GRAPHICS_TERM_PROGRAMS
        or term.startswith(GRAPHICS_TERMS)
    )


class HalfBlocks(Widget):
    """A picture as coloured half blocks: each cell is "▀" with the upper pixel as its
    colour and the lower one as its background, the picture fitted to the widget."""

    def __init__(self, picture: Any) -> None:
        super().__init__()
        self.picture = picture

    def render(self) -> RenderableType:
        return half_blocks(self.picture, self.size.width, self.size.height)


def half_blocks(picture: Any, width: int, height: int) -> Text:
    """`picture` fitted into `width` x `height` cells of "▀", centred across."""
    text = Text()
    if width <= 0 or height <= 0:
        return text
    scale = min(width / picture.width, 2 * height / picture.height)
    across = max(1, min(width, round(picture.width * scale)))
    down = max(2, min(2 * height, 2 * round(picture.height * scale / 2)))  # even: whole cells
    from PIL import Image  # imported by `_decode` already, when a picture came

    img = picture.resize((across, down), Image.Resampling.BOX)  # a half cell: its mean
    pixels = img.load()
    pad = " " * ((width - img.width) // 2)
    for y in range(0, img.height, 2):
        text.append(pad)
        for x in range(img.width):
            top, bottom = pixels[x, y], pixels[x, y + 1]
            style = Style(color=Color.from_rgb(*top[:3]), bgcolor=Color.from_rgb(*bottom[:3]))
            text.append("▀", style=style)
        if y + 2 < img.height:
            text.append("\n")
    return text


def image_factory(mode: str, environ: Mapping[str, str] | None = None) -> ImageFactory | None:
    """The image widget for `mode` ("auto", "blocks" or "off"); None when art is off.
    Where textual-image cannot work, half blocks (it is logged, never raised)."""
    if mode == "off":
        return None
    env = os.environ if environ is None else environ
    if mode == "blocks" or not graphics_terminal(env):
        return HalfBlocks
    # textual-image logs a failed terminal query as a warning with its traceback; with no
    # logging set up that would reach the terminal through logging's last resort.
    quiet = logging.getLogger("textual_image")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    try:
        from textual_image import widget
    except Exception as exc:  # no terminal to ask, an odd stdin: half blocks, never a crash
        log.debug("cannot ask the terminal about images: %s", exc)
        return HalfBlocks
    chosen: Any = widget.Image
    return lambda image: chosen(image)


def art_key(track: TrackView | None) -> str | None:
    """What names a picture: its URL without the signature (which changes hourly)."""
    if track is None or not track.art_url:
        return None
    return track.art_url.split("?", 1)[0]


class Cover(Widget):
    def __init__(
        self, backend: Backend, factory: ImageFactory | None, *, id: str, pixels: int = ART_PIXELS
    ) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.factory = factory
        self.pixels = pixels
        self.key: str | None = None
        """The picture shown or being fetched."""
        self.image: Widget | None = None

    def on_mount(self) -> None:
        self._shown(False)

    def show(self, track: TrackView | None) -> None:
        key = art_key(track) if self.factory is not None else None
        if key == self.key:
            return
        self.key = key
        if key is None or track is None or track.art_url is None:
            self._clear()
            return
        self.run_worker(self._load(key, track.art_url), group="cover", exclusive=True)

    async def _load(self, key: str, url: str) -> None:
        data = await attempt(self.backend.art(url, self.pixels), lambda _text: None)
        if key != self.key:
            return  # the track changed meanwhile
        picture = _decode(data) if data else None
        if picture is None or self.factory is None:
            self._clear()
            return
        await self.remove_children()
        self.image = self.factory(picture)
        await self.mount(self.image)
        self._shown(True)

    def _clear(self) -> None:
        self._shown(False)
        self.image = None
        self.remove_children()

    def _shown(self, shown: bool) -> None:
        """Show or hide; the row gets `with-cover` so the bar centres itself beside it."""
        self.display = shown
        if self.parent is not None:
            self.parent.set_class(shown, "with-cover")


def _decode(data: bytes) -> Any:
    """The decoded picture, or None for bytes Pillow cannot read."""
    from PIL import Image

    try:
        picture = Image.open(io.BytesIO(data))
        picture.load()
    except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBombError...
        log.debug("cover art cannot be decoded: %s", exc)
        return None
    return picture.convert("RGB")
