"""Library scanning on generated audio: tags per format, bad files and folders, ids, progress,
and the demo library generator."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest

from tests.audiogen import (
    BROKEN_NAME,
    COVER_NAME,
    UNTAGGED_NAME,
    Format,
    library_tracks,
    make_track,
)
from tests.fixtures_server import without_root_overrides
from tunehand import demo
from tunehand.demo import SOX_MISSING, make_demo_library
from tunehand.errors import MediaError
from tunehand.server.library.scan import (
    PROGRESS_EVERY,
    ScannedTrack,
    read_track,
    scan_folders,
)

FORMATS: tuple[Format, ...] = ("flac", "mp3", "ogg", "wav")
MIMES = {"flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}


class Lines:
    """Collects log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def by_title(tracks: tuple[ScannedTrack, ...]) -> dict[str, ScannedTrack]:
    return {t.title: t for t in tracks}


# --- tags, per format -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_all_tags(audio_dir: Path, fmt: Format) -> None:
    path = make_track(
        audio_dir,
        "song",
        fmt,
        title="Svefn-g-englar",
        artist="Sigur Rós",
        album="Ágætis byrjun",
        album_artist="Sigur Rós & Friends",
        track_no="3/12",
        disc_no="2/2",
        year="2001-05-03",
        genre="Post-Rock",
        duration_s=2.0,
        replaygain_track_gain=-6.5,
    )
    track = read_track(path)
    assert track.title == "Svefn-g-englar"
    assert track.artist == "Sigur Rós"
    assert track.album == "Ágætis byrjun"
    assert track.album_artist == "Sigur Rós & Friends"
    assert track.track_no == 3
    assert track.disc_no == 2
    assert track.year == 2001
    assert track.genre == "Post-Rock"
    assert abs(track.duration_ms - 2000) <= 100
    assert track.replaygain_track_gain == pytest.approx(-6.5)
    assert track.replaygain_album_gain is None
    assert track.mime == MIMES[fmt]
    assert track.path == str(path.resolve())
    assert track.size == path.stat().st_size
    assert track.mtime_ns == path.stat().st_mtime_ns


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_numbers_and_missing_optional_tags(audio_dir: Path, fmt: Format) -> None:
    path = make_track(audio_dir, "plain", fmt, title="Plain", track_no=7, year=1999)
    track = read_track(path)
    assert (track.track_no, track.disc_no, track.year) == (7, None, 1999)
    assert (track.artist, track.album, track.album_artist, track.genre) == ("", "", "", "")
    assert track.replaygain_track_gain is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_untagged_file_is_titled_by_its_name(audio_dir: Path, fmt: Format) -> None:
    path = make_track(audio_dir, "Some File Name", fmt, title=None, duration_s=1.0)
    track = read_track(path)
    assert track.title == "Some File Name"
    assert (track.artist, track.album, track.track_no, track.year) == ("", "", None, None)
    assert abs(track.duration_ms - 1000) <= 100


def test_empty_title_falls_back_to_file_name(audio_dir: Path) -> None:
    path = make_track(audio_dir, "nameless", "flac", title="", artist="Someone")
    track = read_track(path)
    assert (track.title, track.artist) == ("nameless", "Someone")


@pytest.mark.parametrize(
    ("date", "year"),
    [("1987", 1987), ("2001-05-03", 2001), ("2001-05-03T10:00:00", 2001), ("soon", None)],
)
def test_year_from_date_formats(audio_dir: Path, date: str, year: int | None) -> None:
    path = make_track(audio_dir, "dated", "flac", title="Dated", year=date, duration_s=0.2)
    assert read_track(path).year == year


def test_replaygain_album_gain_and_comma_decimal(audio_dir: Path) -> None:
    path = make_track(audio_dir, "rg", "flac", title="RG", replaygain_track_gain=3.2)
    audio = mutagen.File(path)
    audio["REPLAYGAIN_ALBUM_GAIN"] = "-1,25 dB"
    audio.save()
    track = read_track(path)
    assert track.replaygain_track_gain == pytest.approx(3.2)
    assert track.replaygain_album_gain == pytest.approx(-1.25)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize(
    ("ext", "codec", "mime"),
    [
        ("m4a", "aac", "audio/mp4"),
        ("opus", "libopus", "audio/ogg; codecs=opus"),
        ("wv", "wavpack", "audio/x-wavpack"),
        ("aiff", "pcm_s16be", "audio/aiff"),
    ],
)
def test_other_formats_via_ffmpeg(audio_dir: Path, ext: str, codec: str, mime: str) -> None:
    source = make_track(audio_dir, "source", "wav", title=None, duration_s=1.0)
    out = audio_dir / f"other.{ext}"
    tags = {"title": "Other", "artist": "Björk", "album_artist": "AA", "track": "4/9"}
    tags |= {"disc": "2", "date": "2003-01-02", "genre": "Pop"}
    if ext == "opus":
        tags["REPLAYGAIN_TRACK_GAIN"] = "-3.00 dB"
    args = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
    extra = ["-write_id3v2", "1"] if ext == "aiff" else []
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(source), "-c:a", codec, *extra, *args, str(out)],
        check=True,
    )
    track = read_track(out)
    assert (track.title, track.artist, track.album_artist) == ("Other", "Björk", "AA")
    assert (track.track_no, track.disc_no, track.year, track.mime) == (4, 2, 2003, mime)
    assert track.genre == "Pop"
    assert abs(track.duration_ms - 1000) <= 100
    if ext == "opus":
        assert track.replaygain_track_gain == pytest.approx(-3.0)


# --- bad files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["broken.mp3", "text.flac", "empty.wav", "noise.ogg"])
def test_read_track_rejects_non_audio_with_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    content = {
        "broken": random.Random(7).randbytes(4096),
        "text": b"hello, not audio\n",
        "empty": b"",
        "noise": bytes(range(256)) * 8,
    }
    path.write_bytes(content[path.stem])
    with pytest.raises(MediaError) as info:
        read_track(path)
    message = str(info.value)
    assert message and "\n" not in message
    assert str(path) not in message


def test_read_track_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError):
        read_track(tmp_path / "gone.flac")


# --- the generated library --------------------------------------------------------------


def test_scan_library_lists_good_tracks_and_skips_the_broken_one(audio_library: Path) -> None:
    log = Lines()
    result = scan_folders([audio_library], log=log)

    specs = library_tracks()
    titles = by_title(result.tracks)
    assert len(result.tracks) == len(specs) + 1
    for spec in specs:
        track = titles[spec.title]
        assert track.path == str((audio_library / spec.relpath).resolve())
        assert (track.artist, track.album, track.track_no) == (
            spec.artist,
            spec.album,
            spec.track_no,
        )
        assert track.album_artist == (spec.album_artist or "")
        assert track.replaygain_track_gain == spec.replaygain_track_gain
        assert abs(track.duration_ms - spec.duration_s * 1000) <= 100
    assert "Sigur Rós" in {t.artist for t in result.tracks}

    untagged = titles[Path(UNTAGGED_NAME).stem]
    assert untagged.path == str((audio_library / UNTAGGED_NAME).resolve())
    assert untagged.artist == ""

    broken = str(audio_library / BROKEN_NAME)
    assert [path for path, _ in result.skipped] == [broken]
    assert len(log.lines) == 1
    assert log.lines[0].startswith(f"skipped {broken}: ")
    assert COVER_NAME not in log.lines[0]


def test_scan_order_is_sorted_and_ids_are_stable(audio_library: Path) -> None:
    first = scan_folders([audio_library])
    second = scan_folders([audio_library])
    assert first == second
    paths = [t.path for t in first.tracks]
    root = audio_library.resolve()
    assert paths == sorted(paths, key=lambda p: Path(p).relative_to(root).parts)
    for track in first.tracks:
        expected = "t" + hashlib.sha256(track.path.encode()).hexdigest()[:20]
        assert re.fullmatch(r"t[0-9a-f]{20}", track.id)
        assert track.id == expected
    assert len({t.id for t in first.tracks}) == len(first.tracks)


def test_progress_ends_with_total(audio_library: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = scan_folders([audio_library], progress=lambda d, t: calls.append((d, t)))
    total = len(result.tracks) + len(result.skipped)
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)


def test_progress_is_reported_every_hundred_files(audio_dir: Path) -> None:
    source = make_track(audio_dir / "src", "tone", "ogg", title="Tone", duration_s=0.1)
    library = audio_dir / "many"
    library.mkdir()
    for i in range(250):
        shutil.copyfile(source, library / f"{i:03d}.ogg")
    calls: list[tuple[int, int]] = []
    result = scan_folders([library], progress=lambda d, t: calls.append((d, t)))
    assert len(result.tracks) == 250
    assert calls == [(0, 250), (PROGRESS_EVERY, 250), (2 * PROGRESS_EVERY, 250), (250, 250)]


def test_empty_folder(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = scan_folders([tmp_path], progress=lambda d, t: calls.append((d, t)))
    assert result.tracks == () and result.skipped == ()
    assert calls == [(0, 0)]


# --- bad folders and odd trees ----------------------------------------------------------


def test_missing_folder_is_logged_and_the_scan_goes_on(audio_dir: Path) -> None:
    good = make_track(audio_dir / "good", "a", "flac", title="A", duration_s=0.2)
    missing = audio_dir / "missing"
    log = Lines()
    result = scan_folders([missing, good.parent], log=log)
    assert [t.title for t in result.tracks] == ["A"]
    assert result.skipped == ((str(missing), "no such folder"),)
    assert log.lines == [f"skipped {missing}: no such folder"]


def test_a_file_given_as_folder_is_skipped(audio_dir: Path) -> None:
    good = make_track(audio_dir, "a", "flac", title="A", duration_s=0.2)
    log = Lines()
    result = scan_folders([good], log=log)
    assert result.tracks == ()
    assert result.skipped == ((str(good), "not a folder"),)
    assert len(log.lines) == 1


_SCAN_ELSEWHERE = """
import json, sys
from pathlib import Path
from tunehand.server.library.scan import scan_folders
log = []
r = scan_folders([Path(sys.argv[1])], log=log.append)
print(json.dumps([[t.title for t in r.tracks], r.skipped, r.unreadable, log]))
"""


def test_unreadable_folder_is_logged_and_the_scan_goes_on(audio_dir: Path) -> None:
    """Scanned in a process that file modes bind (as root: without the capabilities
    that override them), so this runs as root too."""
    make_track(audio_dir / "good", "a", "flac", title="A", duration_s=0.2)
    locked = audio_dir / "good" / "locked"
    make_track(locked, "b", "flac", title="B", duration_s=0.2)
    locked.chmod(0)
    try:
        cmd = [sys.executable, "-c", _SCAN_ELSEWHERE, str(audio_dir / "good")]
        r = subprocess.run(without_root_overrides(cmd), capture_output=True, text=True, check=True)
    finally:
        locked.chmod(0o755)
    titles, skipped, unreadable, log = json.loads(r.stdout)
    assert titles == ["A"]
    assert [path for path, _ in skipped] == [str(locked)]
    assert unreadable == [str(locked.resolve())]
    assert log == [f"skipped {locked}: cannot read folder: Permission denied"]


def test_directory_symlinks_are_not_followed(audio_dir: Path) -> None:
    root = audio_dir / "root"
    make_track(root / "album", "a", "flac", title="A", duration_s=0.2)
    (root / "album" / "loop").symlink_to(root, target_is_directory=True)
    (root / "elsewhere").symlink_to(root / "album", target_is_directory=True)
    result = scan_folders([root])
    assert [t.title for t in result.tracks] == ["A"]


def test_same_file_reached_twice_is_listed_once(audio_dir: Path) -> None:
    root = audio_dir / "root"
    track = make_track(root / "sub", "a", "flac", title="A", duration_s=0.2)
    (root / "link.flac").symlink_to(track)
    result = scan_folders([root, root / "sub"])
    assert [t.path for t in result.tracks] == [str(track.resolve())]


def test_broken_file_symlink_is_skipped(audio_dir: Path) -> None:
    (audio_dir / "dangling.mp3").symlink_to(audio_dir / "nothing.mp3")
    log = Lines()
    result = scan_folders([audio_dir], log=log)
    assert result.tracks == ()
    assert len(log.lines) == 1 and "broken symbolic link" in log.lines[0]


def test_hidden_and_non_audio_files_are_ignored_silently(audio_dir: Path) -> None:
    make_track(audio_dir, "song", "ogg", title="Song", duration_s=0.2)
    (audio_dir / "._song.ogg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (audio_dir / ".hidden").mkdir()
    (audio_dir / ".hidden" / "x.mp3").write_bytes(b"junk")
    (audio_dir / "cover.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (audio_dir / "readme.txt").write_text("hi", encoding="utf-8")
    log = Lines()
    result = scan_folders([audio_dir], log=log)
    assert [t.title for t in result.tracks] == ["Song"]
    assert log.lines == [] and result.skipped == ()


def test_extension_case_does_not_matter(audio_dir: Path) -> None:
    path = make_track(audio_dir, "loud", "mp3", title="Loud", duration_s=0.5)
    upper = path.rename(audio_dir / "LOUD.MP3")
    result = scan_folders([audio_dir])
    assert [(t.title, t.mime, t.path) for t in result.tracks] == [
        ("Loud", "audio/mpeg", str(upper))
    ]


# --- the demo library -------------------------------------------------------------------


def test_demo_library_is_scannable_tagged_and_idempotent(tmp_path: Path) -> None:
    lines = Lines()
    root = make_demo_library(tmp_path / "demo", log=lines, seconds=0.5)
    result = scan_folders([root])
    assert result.skipped == ()
    assert len(result.tracks) >= 24
    for track in result.tracks:
        assert track.title and track.artist and track.album and track.genre
        assert track.track_no is not None and track.year is not None
        assert abs(track.duration_ms - 500) <= 100
    assert {Path(t.path).suffix for t in result.tracks} == {".flac", ".ogg", ".mp3"}
    assert len({t.artist for t in result.tracks}) >= 4
    assert any(t.artist != t.artist.encode("ascii", "ignore").decode() for t in result.tracks)
    assert not list(root.rglob(".*"))  # no temporary files left behind
    # Every album has a generated cover.jpg beside its tracks, and the scan finds it.
    albums = {Path(t.path).parent for t in result.tracks}
    assert all((album / "cover.jpg").is_file() for album in albums)
    assert all(t.art_id and t.art_file for t in result.tracks)
    assert len({t.art_id for t in result.tracks}) == len(albums)  # one picture per album

    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    lines.lines.clear()
    make_demo_library(root, log=lines, seconds=0.5)
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert lines.lines == [f"demo library already complete in {root}"]


def test_demo_library_fills_in_missing_files(tmp_path: Path) -> None:
    root = make_demo_library(tmp_path, tracks=6, seconds=0.3)
    victim = next(root.rglob("*.flac"))
    victim.unlink()
    lines = Lines()
    make_demo_library(root, tracks=6, log=lines, seconds=0.3)
    assert victim.exists()
    assert lines.lines[-1] == f"wrote {victim}"
    assert len(scan_folders([root]).tracks) == 6


@pytest.mark.parametrize("lame", [True, False])
def test_demo_library_when_sox_cannot_write_mp3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lame: bool
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sox", "lame") if lame else ("sox",):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (tools / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(demo, "_sox_writes_mp3", lambda sox: False)
    root = make_demo_library(tmp_path / "demo", tracks=6, seconds=0.3)
    result = scan_folders([root])
    assert len(result.tracks) == 6 and result.skipped == ()
    suffixes = {Path(t.path).suffix for t in result.tracks}
    assert (".mp3" in suffixes) is lame
    assert all(t.title and t.artist for t in result.tracks)


def test_demo_library_without_sox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MediaError) as info:
        make_demo_library(tmp_path / "demo")
    assert str(info.value) == SOX_MISSING


def test_subtrees_are_the_folders_of_the_files_and_a_music_root_alone(tmp_path: Path) -> None:
    """What MPD's `update PATH` scans: the folders holding the path's songs (nested ones
    folded into the outer), a music folder itself without its subfolders, nothing outside."""
    from tunehand.server.library.service import subtrees

    music, other = tmp_path / "music", tmp_path / "other"
    files = [
        str(music / "Band" / "Album" / "01.flac"),
        str(music / "Band" / "Album" / "CD2" / "01.flac"),
        str(music / "Band" / "Single" / "01.flac"),
        str(music / "loose.ogg"),
        str(tmp_path / "elsewhere" / "x.ogg"),
    ]
    deep, shallow = subtrees([music, other], files)
    assert deep == [music / "Band" / "Album", music / "Band" / "Single"]
    assert shallow == [music]
    make_track(music / "Band" / "Album", "01", "ogg", title="One")
    make_track(music / "Band" / "Other", "01", "ogg", title="Elsewhere")
    make_track(music, "loose", "ogg", title="Loose")
    found = scan_folders(deep, shallow=shallow)
    assert sorted(t.title for t in found.tracks) == ["Loose", "One"]
