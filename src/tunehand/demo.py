"""The demo library: a few dozen tagged tracks of generated music for trying tunehand out.

Owns `make_demo_library`, which writes made-up artists and albums (flac, ogg and mp3, and
a generated cover.jpg per album) of plucked-string arpeggios using sox (and lame when sox
cannot write MP3), tagged with mutagen. It is idempotent: files that already exist are
left alone, and each file appears under its final name only once complete. This module
imports no server or client code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mutagen

from tunehand.errors import MediaError, UsageError

SOX_MISSING = "sox is not installed: run `make demo` (it installs sox) or `apt-get install sox`"
COVER = "cover.jpg"
SAMPLE_RATE = 22050  # plenty for plucked tones, and halves the generation time

# (artist, album, year, genre, root note, titles)
_ALBUMS: tuple[tuple[str, str, int, str, str, tuple[str, ...]], ...] = (
    (
        "Aurélie Vasquez",
        "Lumière d'hiver",
        2016,
        "Chanson",
        "C4",
        ("Première neige", "Café des Brumes", "Les Étoiles", "Rue Océane", "Minuit", "Été"),
    ),
    (
        "Nordlys Ensemble",
        "Fjörður",
        2019,
        "Ambient",
        "D4",
        ("Ísbjörn", "Hafið", "Dögun", "Skuggar", "Ljós", "Norðurljós"),
    ),
    (
        "Los Hermanos Peña",
        "Canciones del Río",
        2011,
        "Folk",
        "E4",
        ("Mañana", "El Puente", "Corazón de Agua", "La Orilla", "Señales", "Niño del Sol"),
    ),
    (
        "Zoë & the Quiet Hours",
        "Paper Lanterns",
        2021,
        "Indie",
        "F4",
        ("Small Hours", "Lanterns", "Naïve Heart", "Glasshouse", "Slow Rivers", "Coda"),
    ),
    (
        "Dvořák Street Band",
        "Brass & Cobblestones",
        2008,
        "Jazz",
        "G3",
        ("Křižík Fountain", "Tram 22", "Vltava Blues", "Old Town Stomp", "Smíchov", "Last Call"),
    ),
    (
        "Kōsuke Møller",
        "Tidewater",
        2014,
        "Electronic",
        "A3",
        ("Undertow", "Søndag", "Ebb", "Kaigan", "Brackish", "Salt Lines"),
    ),
)
_FORMATS = ("flac", "ogg", "mp3")
# Chord shapes in semitones above the root, and arpeggio step in seconds.
_CHORDS: tuple[tuple[int, ...], ...] = (
    (0, 4, 7, 12),  # major
    (0, 3, 7, 10),  # minor seventh
    (0, 2, 7, 12),  # sus2
    (0, 4, 7, 11),  # major seventh
    (0, 5, 7, 12),  # sus4
    (0, 3, 7, 12),  # minor
)
_STEPS = (0.25, 0.2, 0.3, 0.35, 0.18, 0.28)


@dataclasses.dataclass(frozen=True, slots=True)
class DemoTrack:
    """One demo track: where it goes, its tags, and the sound to synthesize."""

    relpath: str
    fmt: str
    title: str
    artist: str
    album: str
    track_no: int
    year: int
    genre: str
    duration_s: float
    notes: tuple[str, ...]
    step_s: float


def demo_tracks(tracks: int = 36, *, seconds: float | None = None) -> tuple[DemoTrack, ...]:
    """The demo tracks, spread round-robin over the albums; durations 20-40 s by default."""
    limit = sum(len(album[5]) for album in _ALBUMS)
    if not 1 <= tracks <= limit:
        raise UsageError(f"the demo library has between 1 and {limit} tracks")
    result: list[DemoTrack] = []
    for i in range(tracks):
        a = i % len(_ALBUMS)
        artist, album, year, genre, root, titles = _ALBUMS[a]
        number = i // len(_ALBUMS) + 1
        title = titles[number - 1]
        fmt = _FORMATS[(a + number) % len(_FORMATS)]
        shape = _CHORDS[(a + number) % len(_CHORDS)]
        base = f"{root}+{number - 1}" if number > 1 else root
        result.append(
            DemoTrack(
                relpath=f"{artist}/{album}/{number:02d} {title}.{fmt}",
                fmt=fmt,
                title=title,
                artist=artist,
                album=album,
                track_no=number,
                year=year,
                genre=genre,
                duration_s=seconds if seconds is not None else 20.0 + (i * 7) % 21,
                notes=tuple(f"%{_semitones(base) + s}" for s in shape),
                step_s=_STEPS[(a + number) % len(_STEPS)],
            )
        )
    return tuple(result)


def _semitones(note: str) -> int:
    """Semitones from A4 of "C4" or "C4+2" (sox's "%N" note notation)."""
    name, _, shift = note.partition("+")
    letter, octave = name[0], int(name[1:])
    offset = {"C": -9, "D": -7, "E": -5, "F": -4, "G": -2, "A": 0, "B": 2}[letter]
    return offset + 12 * (octave - 4) + (int(shift) if shift else 0)


def make_demo_library(
    dir: Path,
    *,
    tracks: int = 36,
    log: Callable[[str], None] | None = None,
    seconds: float | None = None,
) -> Path:
    """Write the demo library into `dir` (created if needed) and return `dir`.

    Existing files are kept, so running it again only fills in what is missing. `seconds`
    overrides every track's duration (tests use a short one). Raises MediaError if sox is
    missing or fails.
    """
    emit = log or (lambda _line: None)
    sox = shutil.which("sox")
    if sox is None:
        raise MediaError(SOX_MISSING)
    # MP3 comes from sox if it has libmp3lame, else from lame; with neither, FLAC instead.
    sox_mp3 = _sox_writes_mp3(sox)
    lame = None if sox_mp3 else shutil.which("lame")
    planned = demo_tracks(tracks, seconds=seconds)
    if not sox_mp3 and lame is None:
        planned = tuple(_as_flac(t) if t.fmt == "mp3" else t for t in planned)
    todo = [t for t in planned if not (dir / t.relpath).exists()]
    covers = sorted({(dir / t.relpath).parent / COVER for t in planned} - set(dir.rglob(COVER)))
    if not todo and not covers:
        emit(f"demo library already complete in {dir}")
        return dir
    for cover in covers:
        cover.parent.mkdir(parents=True, exist_ok=True)
        _write_cover(cover, cover.parent.name)
        emit(f"wrote {cover}")
    if not todo:
        return dir
    emit(f"generating {len(todo)} demo tracks in {dir}")
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(_make_one, dir, t, sox, lame) for t in todo]
        for job in jobs:
            emit(f"wrote {job.result()}")
    return dir


def _write_cover(path: Path, name: str, size: int = 600) -> None:
    """A made-up album cover (JPEG): a two-colour gradient and a disc, picked by `name`."""
    from PIL import Image, ImageDraw

    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big")
    top = (seed & 0x7F, (seed >> 7) & 0x7F, 80 + ((seed >> 14) & 0x7F))
    bottom = (150 + ((seed >> 21) & 0x6F), 60 + ((seed >> 28) & 0x7F), (seed >> 35) & 0x7F)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        t = y / (size - 1)
        draw.line(
            [(0, y), (size, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    r = size // 5 + (seed % (size // 8))
    cx, cy = size // 2 + (seed % 61) - 30, size // 2 + ((seed >> 8) % 61) - 30
    disc = (200 + seed % 55, 120 + (seed >> 3) % 130, 60 + (seed >> 5) % 170)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=disc)
    draw.ellipse([cx - r // 6, cy - r // 6, cx + r // 6, cy + r // 6], fill=top)
    tmp = path.with_name(f".{path.name}.part")
    img.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, path)


def _sox_writes_mp3(sox: str) -> bool:
    helptext = subprocess.run([sox, "-h"], capture_output=True, text=True, check=False).stdout
    formats = next((ln for ln in helptext.splitlines() if "AUDIO FILE FORMATS" in ln), "")
    return "mp3" in formats.split(":", 1)[-1].split()


def _as_flac(track: DemoTrack) -> DemoTrack:
    relpath = str(Path(track.relpath).with_suffix(".flac"))
    return dataclasses.replace(track, fmt="flac", relpath=relpath)


def _make_one(root: Path, track: DemoTrack, sox: str, lame: str | None) -> Path:
    """Synthesize and tag one track under a hidden temporary name, then move it in place.

    MP3 goes through a WAV file and `lame` when `lame` is given, else sox writes it.
    """
    out = root / track.relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    wav = tmp.with_suffix(".wav")
    try:
        if track.fmt == "mp3" and lame is not None:
            _run([sox, *_synth_args(track, wav)])
            _run([lame, "--quiet", "-V4", str(wav), str(tmp)])
        else:
            _run([sox, *_synth_args(track, tmp)])
        _tag(tmp, track)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        wav.unlink(missing_ok=True)
    return out


def _synth_args(track: DemoTrack, out: Path) -> list[str]:
    """sox arguments for an arpeggiated plucked chord, repeated to the track's length."""
    bar = track.step_s * (len(track.notes) + 4)
    repeats = max(0, math.ceil(track.duration_s / bar) - 1)
    plucks = [arg for note in track.notes for arg in ("pluck", note)]
    delays = [f"{track.step_s * k:.3f}" for k in range(len(track.notes))]
    return [
        "-q",
        "-n",
        "--comment",
        "",
        "-r",
        str(SAMPLE_RATE),
        str(out),
        "synth",
        f"{bar:.3f}",
        *plucks,
        "delay",
        *delays,
        "remix",
        "-",
        "fade",
        "0",
        f"{bar:.3f}",
        "0.05",
        "gain",
        "-n",
        "-6",
        "channels",
        "2",
        "repeat",
        str(repeats),
        "trim",
        "0",
        f"{track.duration_s:g}",
    ]


def _run(args: Sequence[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        raise MediaError(f"{args[0]} failed: {detail[-1] if detail else exc}") from exc
    except OSError as exc:
        raise MediaError(f"cannot run {args[0]}: {exc.strerror}") from exc


def _tag(path: Path, track: DemoTrack) -> None:
    """Write the track's tags (ID3 for MP3, Vorbis comments for FLAC and Ogg)."""
    audio = mutagen.File(path, easy=True)
    if audio is None:
        raise MediaError(f"sox wrote an unreadable file: {path.name}")
    if audio.tags is None:
        audio.add_tags()
    for key, value in (
        ("title", track.title),
        ("artist", track.artist),
        ("album", track.album),
        ("tracknumber", str(track.track_no)),
        ("date", str(track.year)),
        ("genre", track.genre),
    ):
        audio[key] = value
    audio.save()
