"""Scanning music folders: walking them and reading each audio file's tags with mutagen.

Owns `ScannedTrack` (one audio file as the library sees it), `ScanResult`, `read_track`
and `scan_folders`. Everything here is synchronous and blocking; the server runs a scan
in a worker thread. mutagen is called here and in `art` (pictures) and nowhere else on the
server: its errors are mapped to `MediaError` with one line of text.

Walking rules: folders are walked depth-first with entries sorted by name, so two scans of
the same tree list tracks in the same order. Directory symlinks are not followed (no loops);
file symlinks are. Names starting with "." are ignored (hidden files, macOS "._x.mp3"
AppleDouble files). Files whose extension is not in `AUDIO_EXTENSIONS` are ignored silently;
an audio-extension file that cannot be read is skipped with one log line.

A track's id is "t" + the first 20 hex digits of sha256(resolved absolute path), so it is
stable across rescans and the same file reached twice is listed once.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mutagen
from mutagen.apev2 import APETextValue, APEv2
from mutagen.id3 import ID3
from mutagen.mp4 import MP4Tags
from mutagen.oggopus import OggOpus

from tunehand.errors import MediaError
from tunehand.server.library.art import Covers, find_art

MIME_TYPES: dict[str, str] = {
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg; codecs=opus",
    ".m4a": "audio/mp4",
    ".m4b": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
    ".wav": "audio/wav",
    ".wv": "audio/x-wavpack",
    ".ape": "audio/x-ape",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
}
AUDIO_EXTENSIONS = frozenset(MIME_TYPES)

PROGRESS_EVERY = 100

Progress = Callable[[int, int], None]
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ScannedTrack:
    """One readable audio file. Missing text tags are ""; missing numbers are None."""

    id: str
    path: str
    title: str
    artist: str
    album: str
    album_artist: str
    track_no: int | None
    disc_no: int | None
    year: int | None
    genre: str
    duration_ms: int
    replaygain_track_gain: float | None
    replaygain_album_gain: float | None
    mime: str
    size: int
    mtime_ns: int
    art_id: str | None = None
    """The content id of the track's picture (see `art`), or None."""
    art_file: str | None = None
    """The picture file beside the track, or None when the picture is embedded (or absent)."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan found: the tracks in walk order, and (path, reason) for what it skipped."""

    tracks: tuple[ScannedTrack, ...]
    skipped: tuple[tuple[str, str], ...]
    unreadable: tuple[str, ...] = ()
    """Folders (resolved paths) that exist but could not be listed: their tracks are
    unknown this time, not gone."""


def track_id(path: Path) -> str:
    """The stable id of the file at `path`: "t" + 20 hex digits of sha256(resolved path)."""
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape"))
    return "t" + digest.hexdigest()[:20]


def is_audio_name(name: str) -> bool:
    """True if `name` has one of the audio extensions the scanner reads."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


# --- reading one file -------------------------------------------------------------------


def read_track(path: Path, covers: Covers | None = None) -> ScannedTrack:
    """Read one audio file's tags, stream info and where its picture is.

    Raises MediaError (one line, without the path) if the file is missing, unreadable,
    not audio, or has no usable length. `covers` shares folder covers between the files
    of one scan.
    """
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise MediaError(exc.strerror or type(exc).__name__) from exc
    try:
        audio = mutagen.File(resolved)
    except OSError as exc:
        raise MediaError(exc.strerror or type(exc).__name__) from exc
    except Exception as exc:
        # mutagen raises MutagenError subclasses, but damaged files also leak struct.error,
        # ValueError, IndexError and friends from its parsers: all mean "bad file".
        raise MediaError(_reason(exc, resolved)) from exc
    if audio is None:
        raise MediaError("not a recognised audio file")
    length = getattr(audio.info, "length", None)
    if not isinstance(length, int | float) or not math.isfinite(length) or length < 0:
        raise MediaError("no audio stream length")

    fields = _tag_fields(audio.tags)
    suffix = resolved.suffix.lower()
    mime = MIME_TYPES.get(suffix, "application/octet-stream")
    if isinstance(audio, OggOpus):
        mime = MIME_TYPES[".opus"]
    art = find_art(audio, resolved, covers or Covers())
    return ScannedTrack(
        id=track_id(resolved),
        path=str(resolved),
        title=_text(fields, "title") or resolved.stem,
        artist=_text(fields, "artist"),
        album=_text(fields, "album"),
        album_artist=_text(fields, "albumartist"),
        track_no=_number(fields.get("tracknumber")),
        disc_no=_number(fields.get("discnumber")),
        year=_year(fields.get("date") or fields.get("year") or fields.get("originaldate")),
        genre=_text(fields, "genre"),
        duration_ms=round(length * 1000),
        replaygain_track_gain=_gain(fields.get("replaygaintrackgain")),
        replaygain_album_gain=_gain(fields.get("replaygainalbumgain")),
        mime=mime,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        art_id=art.id if art else None,
        art_file=art.file if art else None,
    )


def _reason(exc: BaseException, path: Path) -> str:
    """One line describing `exc`, with mutagen's habit of quoting the path removed."""
    text = str(exc)
    for noise in (repr(str(path)), str(path)):
        text = text.replace(noise, "")
    text = " ".join(text.split()).strip(" :")
    return text or type(exc).__name__


# Canonical field names: lower case with spaces, "_" and "-" removed, so that Vorbis
# "ALBUMARTIST", APE "Album Artist" and "album_artist" all become "albumartist".
_ID3_FRAMES = {
    "TIT2": "title",
    "TPE1": "artist",
    "TALB": "album",
    "TPE2": "albumartist",
    "TRCK": "tracknumber",
    "TPOS": "discnumber",
    "TDRC": "date",
    "TDOR": "originaldate",
}
_MP4_ATOMS = {
    "©nam": "title",
    "©ART": "artist",
    "©alb": "album",
    "aART": "albumartist",
    "©day": "date",
    "©gen": "genre",
}
_APE_ALIASES = {"track": "tracknumber", "disc": "discnumber"}


def _canonical(key: str) -> str:
    return re.sub(r"[\s_\-]+", "", key).casefold()


def _tag_fields(tags: Any) -> dict[str, list[str]]:
    """Map any mutagen tag container to {canonical field: [text values]}."""
    if tags is None:
        return {}
    if isinstance(tags, ID3):
        return _id3_fields(tags)
    if isinstance(tags, MP4Tags):
        return _mp4_fields(tags)
    if isinstance(tags, APEv2):
        return _ape_fields(tags)
    return _vorbis_fields(tags)


def _add(fields: dict[str, list[str]], key: str, values: Iterable[object]) -> None:
    texts = [str(v).strip() for v in values]
    texts = [t for t in texts if t]
    if texts:
        fields.setdefault(key, []).extend(texts)


def _id3_fields(tags: Any) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for frame_id, key in _ID3_FRAMES.items():
        for frame in tags.getall(frame_id):
            _add(fields, key, frame.text)
    for frame in tags.getall("TCON"):
        _add(fields, "genre", frame.genres)  # resolves ID3v1 numeric genres like "(17)"
    for frame in tags.getall("TXXX"):
        key = _canonical(str(frame.desc))
        if key in ("replaygaintrackgain", "replaygainalbumgain", "albumartist"):
            _add(fields, key, frame.text)
    for frame in tags.getall("RVA2"):  # older ReplayGain writers use RVA2 "track"/"album"
        gain_key = {"track": "replaygaintrackgain", "album": "replaygainalbumgain"}.get(
            str(frame.desc).casefold()
        )
        if gain_key and gain_key not in fields and frame.channel == 1:
            _add(fields, gain_key, [f"{frame.gain} dB"])
    return fields


def _mp4_fields(tags: Any) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for atom, key in _MP4_ATOMS.items():
        _add(fields, key, tags.get(atom, []))
    for atom, key in (("trkn", "tracknumber"), ("disk", "discnumber")):
        pairs = tags.get(atom, [])
        _add(fields, key, [pair[0] for pair in pairs if pair and pair[0]])
    for atom, values in tags.items():
        if str(atom).startswith("----:"):
            key = _canonical(str(atom).rsplit(":", 1)[-1])
            if key in ("replaygaintrackgain", "replaygainalbumgain"):
                _add(fields, key, [bytes(v).decode("utf-8", "replace") for v in values])
    return fields


def _ape_fields(tags: Any) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for key, value in tags.items():
        if isinstance(value, APETextValue):
            name = _canonical(str(key))
            _add(fields, _APE_ALIASES.get(name, name), list(value))
    return fields


def _vorbis_fields(tags: Any) -> dict[str, list[str]]:
    """Vorbis comments (FLAC, Ogg) and any other mapping of str to str or [str]."""
    fields: dict[str, list[str]] = {}
    try:
        items = list(tags.items())
    except (AttributeError, TypeError):
        return fields
    for key, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        _add(fields, _canonical(str(key)), values)
    return fields


def _text(fields: dict[str, list[str]], key: str) -> str:
    """All values of a text field joined with "; " (multi-artist tags), or ""."""
    return "; ".join(dict.fromkeys(fields.get(key, [])))


def _first(values: list[str] | None) -> str:
    return values[0] if values else ""


def _number(values: list[str] | None) -> int | None:
    """The leading number of "3", "03" or "3/12"; None if absent or not positive."""
    match = re.match(r"\s*(\d+)", _first(values))
    if match is None:
        return None
    number = int(match.group(1))
    return number if number > 0 else None


def _year(values: list[str] | None) -> int | None:
    """The first four-digit year in "2001", "2001-05-03" or "2001-05-03T10:00"."""
    match = re.search(r"(?<!\d)(\d{4})(?!\d)", _first(values))
    if match is None:
        return None
    year = int(match.group(1))
    return year if year > 0 else None


def _gain(values: list[str] | None) -> float | None:
    """A ReplayGain value in dB from "-6.50 dB", "+3.2dB" or "-6,50 dB"."""
    match = re.match(r"\s*([-+]?\d+(?:[.,]\d+)?)", _first(values))
    if match is None:
        return None
    gain = float(match.group(1).replace(",", "."))
    return gain if math.isfinite(gain) else None


# --- walking folders --------------------------------------------------------------------


@dataclass(slots=True)
class _Walk:
    log: Log
    skipped: list[tuple[str, str]]
    unreadable: list[str] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        self.log(f"skipped {path}: {reason}")


def _candidates(folder: Path, walk: _Walk, deep: bool = True) -> Iterator[Path]:
    """Audio-extension files under `folder`, depth-first, sorted by name (`deep=False`:
    those right in it only)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        walk.skip(str(folder), "no such folder")
        return
    except NotADirectoryError:
        walk.skip(str(folder), "not a folder")
        return
    except OSError as exc:
        walk.skip(str(folder), f"cannot read folder: {exc.strerror or type(exc).__name__}")
        walk.unreadable.append(str(folder.resolve()))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if deep:
                    yield from _candidates(Path(entry.path), walk)
            elif is_audio_name(entry.name):
                if entry.is_file():
                    yield Path(entry.path)
                elif entry.is_symlink():
                    walk.skip(entry.path, "broken symbolic link")
        except OSError as exc:
            walk.skip(entry.path, exc.strerror or type(exc).__name__)


def scan_folders(
    folders: Sequence[Path],
    progress: Progress | None = None,
    log: Log | None = None,
    shallow: Sequence[Path] = (),
) -> ScanResult:
    """Scan `folders` recursively (and `shallow` ones without their subfolders) and read
    every audio file's tags.

    Never raises for a bad file or folder: each is logged once ("skipped PATH: reason") and
    listed in `ScanResult.skipped`. `progress(done, total)` is called once the candidate
    files are counted (done=0), then every `PROGRESS_EVERY` files, and at the end with
    (total, total).
    """
    walk = _Walk(log=log or (lambda _line: None), skipped=[])
    paths: list[Path] = []
    for folder in folders:
        paths.extend(_candidates(Path(os.path.abspath(folder)), walk))
    for folder in shallow:
        paths.extend(_candidates(Path(os.path.abspath(folder)), walk, deep=False))

    total = len(paths)
    if progress is not None:
        progress(0, total)
    tracks: list[ScannedTrack] = []
    seen: set[str] = set()
    covers = Covers()
    for done, path in enumerate(paths, start=1):
        try:
            track = read_track(path, covers)
        except MediaError as exc:
            walk.skip(str(path), str(exc))
        else:
            if track.id not in seen:  # the same file reached twice (symlink, nested folders)
                seen.add(track.id)
                tracks.append(track)
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
            progress(done, total)
    return ScanResult(tuple(tracks), tuple(walk.skipped), tuple(walk.unreadable))
