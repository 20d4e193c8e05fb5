"""Generated test audio: short sine tones made by sox (lame as fallback), tagged by mutagen.

`make_track` writes one file; `make_library` writes a small library with known contents
(see `library_tracks`): tagged tracks in flac/mp3/ogg/wav by a few artists including
"Sigur Rós", one untagged file, one broken "broken.mp3" and a "cover.jpg". Nothing is
cached between calls; every file is generated into the folder the caller gives.

This module deliberately does not use tunehand's own code to write tags.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mutagen
import mutagen.id3

# mutagen is only partly typed; its frame classes are used through this untyped alias.
_id3: Any = mutagen.id3

Format = Literal["flac", "mp3", "ogg", "wav"]


def make_track(
    dir: Path,
    name: str,
    fmt: Format,
    *,
    title: str | None,
    artist: str | None = None,
    album: str | None = None,
    album_artist: str | None = None,
    track_no: int | str | None = None,
    disc_no: int | str | None = None,
    year: int | str | None = None,
    genre: str | None = None,
    duration_s: float = 2.0,
    freq: int = 440,
    replaygain_track_gain: float | None = None,
) -> Path:
    """Write `dir/name.fmt`: a stereo 44.1 kHz sine of `freq` Hz lasting `duration_s`.

    `title=None` leaves the file without any tags. Numbers may be given as strings to
    write them verbatim ("3/12", "2001-05-03"). ReplayGain is written as "-6.50 dB"
    (Vorbis comment, or ID3 TXXX:REPLAYGAIN_TRACK_GAIN).
    """
    dir.mkdir(parents=True, exist_ok=True)
    out = dir / (name if name.endswith(f".{fmt}") else f"{name}.{fmt}")
    _synth(out, duration_s, freq)
    if title is None:
        return out
    tags: dict[str, str] = {"title": title}
    for key, value in (
        ("artist", artist),
        ("album", album),
        ("albumartist", album_artist),
        ("tracknumber", track_no),
        ("discnumber", disc_no),
        ("date", year),
        ("genre", genre),
    ):
        if value is not None:
            tags[key] = str(value)
    if replaygain_track_gain is not None:
        tags["replaygain_track_gain"] = f"{replaygain_track_gain:.2f} dB"
    if fmt in ("flac", "ogg"):
        _tag_vorbis(out, tags)
    else:
        _tag_id3(out, tags)
    return out


def _synth(out: Path, duration_s: float, freq: int) -> None:
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is not installed")
    synth = ["synth", f"{duration_s:g}", "sine", str(freq)]
    head = [sox, "-q", "-n", "--comment", "", "-r", "44100", "-c", "2"]
    if out.suffix == ".mp3" and not _sox_writes_mp3(sox):
        wav = out.with_suffix(".tmp.wav")
        subprocess.run([*head, str(wav), *synth], check=True)
        subprocess.run(["lame", "--quiet", str(wav), str(out)], check=True)
        wav.unlink()
        return
    subprocess.run([*head, str(out), *synth], check=True)


def _sox_writes_mp3(sox: str) -> bool:
    helptext = subprocess.run([sox, "-h"], capture_output=True, text=True, check=False).stdout
    formats = next((ln for ln in helptext.splitlines() if "AUDIO FILE FORMATS" in ln), "")
    return "mp3" in formats.split(":", 1)[-1].split()


def _open(out: Path) -> Any:
    audio = mutagen.File(out)
    if audio is None:
        raise RuntimeError(f"sox wrote a file mutagen cannot read: {out}")
    if audio.tags is None:
        audio.add_tags()
    return audio


def _tag_vorbis(out: Path, tags: dict[str, str]) -> None:
    audio = _open(out)
    audio.tags.clear()
    for key, value in tags.items():
        audio.tags[key] = value
    audio.save()


_ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "albumartist": "TPE2",
    "tracknumber": "TRCK",
    "discnumber": "TPOS",
    "date": "TDRC",
    "genre": "TCON",
}


def _tag_id3(out: Path, tags: dict[str, str]) -> None:
    audio = _open(out)
    for key, value in tags.items():
        if key == "replaygain_track_gain":
            frame = _id3.TXXX(encoding=3, desc="REPLAYGAIN_TRACK_GAIN", text=[value])
        else:
            frame = getattr(_id3, _ID3_FRAMES[key])(encoding=3, text=[value])
        audio.tags.add(frame)
    audio.save()


@dataclass(frozen=True, slots=True)
class TrackSpec:
    """One tagged track of the generated library, as `make_library` writes it."""

    relpath: str
    fmt: Format
    title: str
    artist: str
    album: str
    album_artist: str | None
    track_no: int
    disc_no: int | None
    year: int
    genre: str
    duration_s: float
    replaygain_track_gain: float | None


_ALBUMS: tuple[tuple[str, str, str | None, int, str, tuple[str, ...]], ...] = (
    (
        "Sigur Rós",
        "Ágætis byrjun",
        None,
        1999,
        "Post-Rock",
        ("Svefn-g-englar", "Starálfur", "Flugufrelsarinn", "Olsen Olsen"),
    ),
    (
        "The Examples",
        "First Light",
        None,
        2004,
        "Indie",
        ("Morning Song", "Paper Boats", "Signal Fires", "Late Train"),
    ),
    (
        "Ada Quartet",
        "Analytical Engines",
        None,
        2012,
        "Jazz",
        ("Difference", "Punched Cards", "Bernoulli", "Note G"),
    ),
    (
        "Various Guests",
        "Roads Compilation",
        "Various Artists",
        2020,
        "Pop",
        ("Open Road", "Crossroads", "Rainroad", "Roadhouse"),
    ),
)
_FORMATS: tuple[Format, ...] = ("flac", "mp3", "ogg", "wav")

UNTAGGED_NAME = "untagged tone.ogg"
BROKEN_NAME = "broken.mp3"
COVER_NAME = "cover.jpg"


def library_tracks(n_tracks: int = 12) -> tuple[TrackSpec, ...]:
    """The tagged tracks `make_library(dir, n_tracks)` writes: track 1 of each album, then
    track 2 of each, and so on (at most 16). Formats rotate so any 4 consecutive tracks
    cover flac, mp3, ogg and wav; every third track has a ReplayGain of -6.5 dB."""
    if not 0 <= n_tracks <= 4 * len(_ALBUMS):
        raise ValueError(f"n_tracks must be between 0 and {4 * len(_ALBUMS)}")
    specs: list[TrackSpec] = []
    for number in range(1, 5):
        for k, (artist, album, album_artist, year, genre, titles) in enumerate(_ALBUMS):
            if len(specs) == n_tracks:
                return tuple(specs)
            i = len(specs)
            fmt = _FORMATS[(k + number - 1) % len(_FORMATS)]
            title = titles[number - 1]
            specs.append(
                TrackSpec(
                    relpath=f"{album_artist or artist}/{album}/{number:02d} {title}.{fmt}",
                    fmt=fmt,
                    title=title,
                    artist=artist,
                    album=album,
                    album_artist=album_artist,
                    track_no=number,
                    disc_no=1 if album_artist else None,
                    year=year,
                    genre=genre,
                    duration_s=1.0 + 0.25 * (i % 4),
                    replaygain_track_gain=-6.5 if i % 3 == 0 else None,
                )
            )
    return tuple(specs)


def make_library(dir: Path, n_tracks: int = 12) -> Path:
    """Write the generated library into `dir` and return `dir`.

    Contents: `library_tracks(n_tracks)` (tagged, nested Artist/Album/NN Title.ext), plus
    `UNTAGGED_NAME` (valid audio, no tags), `BROKEN_NAME` (random bytes), `COVER_NAME` and
    "notes.txt" at the top. A scan finds n_tracks + 1 tracks and skips one file.
    """
    for i, spec in enumerate(library_tracks(n_tracks)):
        rel = Path(spec.relpath)
        make_track(
            dir / rel.parent,
            rel.stem,
            spec.fmt,
            title=spec.title,
            artist=spec.artist,
            album=spec.album,
            album_artist=spec.album_artist,
            track_no=spec.track_no,
            disc_no=spec.disc_no,
            year=spec.year,
            genre=spec.genre,
            duration_s=spec.duration_s,
            freq=330 + 20 * i,
            replaygain_track_gain=spec.replaygain_track_gain,
        )
    make_track(dir, Path(UNTAGGED_NAME).stem, "ogg", title=None, duration_s=1.0, freq=262)
    rng = random.Random(20240601)  # fixed seed: these bytes are known not to parse as MP3
    (dir / BROKEN_NAME).write_bytes(rng.randbytes(4096))
    (dir / COVER_NAME).write_bytes(b"\xff\xd8\xff\xe0" + rng.randbytes(256) + b"\xff\xd9")
    (dir / "notes.txt").write_text("not audio\n", encoding="utf-8")
    return dir


def make_picture(
    width: int = 600,
    height: int = 600,
    color: tuple[int, int, int] = (200, 40, 40),
    fmt: Literal["JPEG", "PNG"] = "JPEG",
) -> bytes:
    """An image (Pillow) with a diagonal stripe, so it is not one flat colour."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), color)
    ImageDraw.Draw(img).line((0, 0, width, height), fill=(255, 255, 255), width=max(1, width // 20))
    out = io.BytesIO()
    img.save(out, fmt)
    return bytes(out.getvalue())


def embed_picture(path: Path, data: bytes, mime: str = "image/jpeg") -> None:
    """Embed `data` as the front cover: FLAC picture, ID3 APIC, Ogg METADATA_BLOCK_PICTURE,
    or MP4 covr, written with mutagen's own classes."""
    import base64

    from mutagen.flac import FLAC, Picture
    from mutagen.mp4 import MP4, MP4Cover

    audio: Any = mutagen.File(path)
    if audio is None:
        raise RuntimeError(f"not audio: {path}")
    if isinstance(audio, FLAC) or audio.__class__.__name__ in ("OggVorbis", "OggOpus"):
        pic: Any = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, mime, "Front", data
        if isinstance(audio, FLAC):
            audio.add_picture(pic)
        else:
            if audio.tags is None:
                audio.add_tags()
            audio.tags["metadata_block_picture"] = [base64.b64encode(pic.write()).decode()]
    elif isinstance(audio, MP4):
        if audio.tags is None:
            audio.add_tags()
        kind = MP4Cover.FORMAT_PNG if mime == "image/png" else MP4Cover.FORMAT_JPEG
        audio.tags["covr"] = [MP4Cover(data, imageformat=kind)]
    else:
        if audio.tags is None:
            audio.add_tags()
        audio.tags.add(_id3.APIC(encoding=3, mime=mime, type=3, desc="Front", data=data))
    audio.save()
