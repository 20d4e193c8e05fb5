"""Draw the web app's PNG icons (192 and 512 px) from the same shapes as icons/icon.svg.

Run at development time after changing the icon (`python -m tunehand.webapp.icons`); the
PNGs are committed, so nothing runs at install or serve time.
"""

from __future__ import annotations

from pathlib import Path

BG = (0x16, 0x18, 0x1D, 255)
ACCENT = (0x5F, 0xB3, 0xA1, 255)
LIGHT = (0xE8, 0xE9, 0xEC, 255)
SIZES = (192, 512)


def draw(n: int, out: Path) -> None:
    from PIL import Image, ImageDraw

    s = n / 512  # the SVG's viewBox is 512 wide
    im = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((0, 0, n - 1, n - 1), radius=int(96 * s), fill=BG)
    c, r = n / 2, 168 * s
    d.ellipse((c - r, c - r, c + r, c + r), outline=ACCENT, width=max(2, int(28 * s)))
    d.polygon([(216 * s, 176 * s), (216 * s, 336 * s), (344 * s, 256 * s)], fill=ACCENT)
    w = max(2, int(24 * s))
    d.line([(96 * s, c), (136 * s, c)], fill=LIGHT, width=w)
    d.line([(376 * s, c), (416 * s, c)], fill=LIGHT, width=w)
    im.save(out, optimize=True)


def main() -> None:
    folder = Path(__file__).resolve().parent / "static" / "icons"
    for n in SIZES:
        draw(n, folder / f"icon-{n}.png")
        print(folder / f"icon-{n}.png")


if __name__ == "__main__":
    main()
