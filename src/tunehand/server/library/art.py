"""Cover art: finding a track's picture during a scan, and serving it resized.

Owns the art id (`art_id`: "c" + 32 hex digits of sha256(image bytes), so an album's
picture embedded in twelve files, or one cover.jpg beside them, is one id, one cache
entry and one ETag), `find_embedded` (the front cover in a file's tags, through
mutagen: FLAC pictures, ID3 APIC, Ogg METADATA_BLOCK_PICTURE, MP4 covr, APEv2 cover),
`Covers` (a scan's memo of each folder's cover.jpg/folder.jpg/cover.png/folder.png,
matched case-insensitively), `load` (the bytes of a stored picture, checked against
its id) and `resize` (Pillow: fit into SIZE x SIZE, never enlarged, as JPEG or PNG).
`ArtCache` keeps resized pictures in memory, bounded in bytes.

Everything here is synchronous and blocking; the server runs it in worker threads.
Library errors never leave this module: a picture that cannot be read or decoded is
a `MediaError` with one line of text.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunehand.errors import MediaError

SIZES = (64, 128, 256, 512, 1024)
"""The sizes the server resizes to: a request asks for any size and gets the next one up."""
DEFAULT_SIZE = 512
FOLDER_NAMES = (
    "cover.jpg",
    "cover.jpeg",
    "cover.png",
    "folder.jpg",
    "folder.jpeg",
    "folder.png",
)
"""Picture files beside the audio, in order of preference (matched case-insensitively)."""
MAX_PICTURE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 64_000_000
"""Pillow refuses anything larger (a "decompression bomb" is a 422, not a stalled server)."""
FRONT_COVER = 3  # the picture type of a front cover (ID3 APIC, FLAC PICTURE)

log = logging.getLogger("tunehand.library")


def art_id(data: bytes) -> str:
    """The content id of a picture."""
    return "c" + hashlib.sha256(data).hexdigest()[:32]


def snap_size(requested: int) -> int:
    """The smallest of `SIZES` that is at least `requested` (the largest for anything bigger)."""
    return next((s for s in SIZES if s >= requested), SIZES[-1])


# --- finding pictures (scan time) --------------------------------------------------------


def find_embedded(audio: Any) -> bytes | None:
    """The front cover (else the first picture) in an opened mutagen file, or None."""
    pictures: list[tuple[int, bytes]] = []
    for picture in getattr(audio, "pictures", None) or ():  # FLAC
        pictures.append((int(picture.type), bytes(picture.data)))
    tags = getattr(audio, "tags", None)
    if tags is not None:
        pictures.extend(_tag_pictures(tags))
    pictures = [(kind, data) for kind, data in pictures if 0 < len(data) <= MAX_PICTURE_BYTES]
    if not pictures:
        return None
    fronts = [data for kind, data in pictures if kind == FRONT_COVER]
    return fronts[0] if fronts else pictures[0][1]


def _tag_pictures(tags: Any) -> list[tuple[int, bytes]]:
    from mutagen.apev2 import APEv2
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    out: list[tuple[int, bytes]] = []
    untyped: Any = tags  # mutagen is only partly typed
    if isinstance(tags, ID3):
        out.extend((int(f.type), bytes(f.data)) for f in untyped.getall("APIC"))
    elif isinstance(tags, MP4Tags):
        out.extend((FRONT_COVER, bytes(c)) for c in untyped.get("covr", []))
    elif isinstance(tags, APEv2):
        for key in ("Cover Art (Front)", "Cover Art (Other)"):
            value = untyped.get(key)
            if value is not None and getattr(value, "kind", None) == 1:  # binary
                _name, _, data = bytes(value.value).partition(b"\x00")
                out.append((FRONT_COVER if "Front" in key else 0, data))
    else:
        out.extend(_vorbis_pictures(tags))
    return out


def _vorbis_pictures(tags: Any) -> list[tuple[int, bytes]]:
    """Ogg Vorbis and Opus: base64 FLAC PICTURE blocks in METADATA_BLOCK_PICTURE."""
    from mutagen import flac

    picture_type: Any = flac.Picture  # untyped
    out: list[tuple[int, bytes]] = []
    try:
        values = tags.get("metadata_block_picture", [])
    except (AttributeError, TypeError, ValueError):
        return out
    for value in values:
        try:
            picture = picture_type(base64.b64decode(value, validate=False))
            out.append((int(picture.type), bytes(picture.data)))
        except Exception:  # a damaged block: mutagen raises struct.error, ValueError, ...
            log.debug("skipped a damaged METADATA_BLOCK_PICTURE")
    return out


@dataclass(frozen=True, slots=True)
class Art:
    """Where a track's picture is: `file` is a picture file, or None for embedded art."""

    id: str
    file: str | None


class Covers:
    """The folder covers of one scan, each folder listed and each file read at most once."""

    def __init__(self) -> None:
        self._folders: dict[str, Art | None] = {}

    def folder(self, folder: Path) -> Art | None:
        key = str(folder)
        if key not in self._folders:
            self._folders[key] = self._find(folder)
        return self._folders[key]

    def _find(self, folder: Path) -> Art | None:
        try:
            with os.scandir(folder) as it:
                names = {e.name.casefold(): e.path for e in it if e.is_file()}
        except OSError:
            return None
        for wanted in FOLDER_NAMES:
            path = names.get(wanted)
            if path is None:
                continue
            try:
                if os.path.getsize(path) > MAX_PICTURE_BYTES:
                    continue
                data = Path(path).read_bytes()
            except OSError:
                continue
            if data:
                return Art(art_id(data), path)
        return None


def find_art(audio: Any, path: Path, covers: Covers) -> Art | None:
    """A track's picture: embedded in `audio` (opened by mutagen), else its folder's cover."""
    try:
        embedded = find_embedded(audio)
    except Exception:  # damaged tags never cost the track: it just has no embedded art
        embedded = None
    if embedded is not None:
        return Art(art_id(embedded), None)
    return covers.folder(path.parent)


# --- serving pictures ----------------------------------------------------------------------


def load(track_path: str, file: str | None, expected_id: str) -> bytes:
    """The picture's bytes (from `file`, else embedded in `track_path`), checked against its id.

    Raises MediaError when it is gone or no longer the picture that was scanned.
    """
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = f.read(MAX_PICTURE_BYTES + 1)
        except OSError as exc:
            raise MediaError(
                f"cannot read the picture: {exc.strerror or type(exc).__name__}"
            ) from exc
    else:
        import mutagen

        try:
            audio = mutagen.File(track_path)
            found = find_embedded(audio) if audio is not None else None
        except OSError as exc:
            raise MediaError(
                f"cannot read the track: {exc.strerror or type(exc).__name__}"
            ) from exc
        except Exception as exc:  # mutagen's parsers leak many exception types
            raise MediaError("cannot read the track's tags") from exc
        data = found or b""
    if not data or art_id(data) != expected_id:
        raise MediaError("the picture changed since the last scan: rescan the library")
    return data


@dataclass(frozen=True, slots=True)
class Picture:
    data: bytes
    mime: str
    width: int
    height: int


def resize(data: bytes, size: int) -> Picture:
    """Fit the picture into size x size (keeping its shape, never enlarging it).

    Opaque pictures become JPEG, pictures with transparency PNG. Raises MediaError for
    anything Pillow cannot decode.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise MediaError(f"the picture is too large ({img.width}x{img.height})")
            img.load()
            alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            out = img.convert("RGBA" if alpha else "RGB")
        out.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if alpha:
            out.save(buf, "PNG", optimize=True)
        else:
            out.save(buf, "JPEG", quality=88, optimize=True)
    except MediaError:
        raise
    except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise MediaError("the picture cannot be decoded") from exc
    return Picture(buf.getvalue(), "image/png" if alpha else "image/jpeg", out.width, out.height)


class ArtCache:
    """Resized pictures by (art id, size), least recently used first out, bounded in bytes.

    Failures are remembered too (as the MediaError's text), so a broken picture is not
    decoded again on every request. Safe to use from worker threads.
    """

    def __init__(self, max_bytes: int = 48 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], Picture | str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Picture | str | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, int], item: Picture | str) -> None:
        cost = len(item.data) if isinstance(item, Picture) else len(item)
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data) if isinstance(old, Picture) else len(old)
            self._items[key] = item
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self._bytes -= len(gone.data) if isinstance(gone, Picture) else len(gone)

    def __len__(self) -> int:
        return len(self._items)
