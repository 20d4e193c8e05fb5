"""Lyrics: from tags (ID3 USLT/SYLT, Vorbis LYRICS/UNSYNCEDLYRICS, MP4 ©lyr) or an `.lrc`
beside the file, LRCLIB when `lyrics_online = true` (a local stand-in here), the
`/v1/tracks/{id}/lyrics` route and `ctl lyrics [--json]` against a real server."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import mutagen
import mutagen.id3
import mutagen.mp4
import pytest

from tests.audiogen import make_track
from tests.cli_helpers import PASSWORD, Device, FakePlayer, add_users, client_env, new_device_id
from tests.fixtures_server import ServerProc, launch
from tunehand.core.lyrics import LyricLine, Lyrics, from_json, line_at, parse_lrc, plain
from tunehand.server.library.lyrics import read_lyrics

_id3: Any = mutagen.id3

LRC = "[ar:Someone]\n[00:01.50]first line\n[00:03.00][00:07.25]chorus\n[00:05.00]second\n"
WANTED = [(1500, "first line"), (3000, "chorus"), (5000, "second"), (7250, "chorus")]


# --- the pure parts ---------------------------------------------------------------------


def test_parse_lrc_times_repeats_and_tags() -> None:
    found = parse_lrc(LRC)
    assert found.synced
    assert [(ln.time_ms, ln.text) for ln in found.lines] == WANTED


def test_lrc_offset_and_short_fractions() -> None:
    found = parse_lrc("[offset:+500]\n[00:02.5]a\n[01:00]b\n[00:00.123]c")
    assert [(ln.time_ms, ln.text) for ln in found.lines] == [(0, "c"), (2000, "a"), (59500, "b")]


def test_untimed_text_is_plain_and_control_characters_go() -> None:
    found = parse_lrc("\n\nhello\x1b[31m\n\nworld\n\n")
    assert not found.synced
    assert [ln.text for ln in found.lines] == ["hello[31m", "", "world"]
    assert all(ln.time_ms is None for ln in found.lines)


def test_line_at_follows_the_position() -> None:
    found = parse_lrc(LRC)
    assert line_at(found, 0) is None
    assert line_at(found, 1500) == 0
    assert line_at(found, 4999) == 1
    assert line_at(found, 60_000) == 3
    assert line_at(plain("a\nb"), 60_000) is None


def test_json_round_trip_and_refusals() -> None:
    found = parse_lrc(LRC)
    assert from_json(json.loads(json.dumps(found.to_json()))) == found
    assert from_json({"synced": True, "lines": [{"text": "x"}]}) is None
    assert from_json({"synced": False, "lines": "x"}) is None
    assert from_json([]) is None
    assert from_json({"synced": False, "lines": [{"time_ms": None, "text": "x"}]}) == Lyrics(
        False, (LyricLine(None, "x"),)
    )


# --- files --------------------------------------------------------------------------


def _mp3_uslt(d: Path) -> Path:
    p = make_track(d, "uslt", "mp3", title="Uslt Song", artist="Tagged")
    audio: Any = mutagen.File(p)
    audio.tags.add(_id3.USLT(encoding=3, lang="eng", desc="", text="plain one\nplain two"))
    audio.save()
    return p


def _mp3_sylt(d: Path) -> Path:
    p = make_track(d, "sylt", "mp3", title="Sylt Song", artist="Tagged")
    audio: Any = mutagen.File(p)
    text = [("first line", 1500), ("chorus", 3000), ("second", 5000), ("chorus", 7250)]
    audio.tags.add(_id3.SYLT(encoding=3, lang="eng", format=2, type=1, desc="", text=text))
    audio.save()
    return p


def _flac_lyrics(d: Path) -> Path:
    p = make_track(d, "vorbis", "flac", title="Flac Song", artist="Tagged", duration_s=9)
    audio: Any = mutagen.File(p)
    audio["LYRICS"] = LRC
    audio.save()
    return p


def _ogg_unsynced(d: Path) -> Path:
    p = make_track(d, "unsynced", "ogg", title="Ogg Song", artist="Tagged")
    audio: Any = mutagen.File(p)
    audio["UNSYNCEDLYRICS"] = "ogg words"
    audio.save()
    return p


def _m4a(d: Path) -> Path:
    p = d / "mp4.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", str(p)],
        check=True,
    )
    audio = mutagen.mp4.MP4(p)
    assert audio.tags is not None or audio.add_tags() is None
    tags: Any = audio.tags
    tags["\xa9nam"] = ["Mp4 Song"]
    tags["\xa9ART"] = ["Tagged"]
    tags["\xa9lyr"] = [LRC]
    audio.save()
    return p


def _lrc_beside(d: Path) -> Path:
    p = make_track(d, "beside", "wav", title=None)
    p.with_suffix(".lrc").write_text(LRC, encoding="utf-8")
    return p


def _nothing(d: Path) -> Path:
    return make_track(d, "online", "flac", title="Online Song", artist="Somebody", album="Web")


FILES = {
    "id3-uslt": (
        _mp3_uslt,
        Lyrics(False, (LyricLine(None, "plain one"), LyricLine(None, "plain two"))),
    ),
    "id3-sylt": (_mp3_sylt, parse_lrc(LRC)),
    "vorbis-lyrics-lrc": (_flac_lyrics, parse_lrc(LRC)),
    "vorbis-unsyncedlyrics": (_ogg_unsynced, plain("ogg words")),
    "mp4-lyr": (_m4a, parse_lrc(LRC)),
    "lrc-beside": (_lrc_beside, parse_lrc(LRC)),
}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_read_lyrics_from_every_kind_of_file(tmp_path: Path, kind: str) -> None:
    make, wanted = FILES[kind]
    assert read_lyrics(str(make(tmp_path))) == wanted


def test_no_lyrics_and_broken_files_are_none(tmp_path: Path) -> None:
    assert read_lyrics(str(_nothing(tmp_path))) is None
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x10garbage")
    assert read_lyrics(str(broken)) is None
    assert read_lyrics(str(tmp_path / "missing.flac")) is None


# --- a real server with LRCLIB's stand-in -----------------------------------------------


@dataclass
class Lrclib:
    """A local stand-in for LRCLIB's `GET /api/get`: knows one song, records each ask."""

    url: str = ""
    asked: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def lrclib() -> Iterator[Lrclib]:
    state = Lrclib()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            q = parse_qs(parts.query)
            state.asked.append(q)
            if parts.path == "/api/get" and q.get("track_name") == ["Online Song"]:
                body = {
                    "id": 1,
                    "trackName": "Online Song",
                    "artistName": "Somebody",
                    "plainLyrics": "online one\nonline two",
                    "syncedLyrics": "[00:00.50]online one\n[00:01.00]online two",
                }
                code = 200
            else:
                body = {"code": 404, "name": "TrackNotFound", "message": "not found"}
                code = 404
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


def _lyrics_server(root: Path, lrclib_url: str, online: bool) -> ServerProc:
    music = root / "music"
    music.mkdir(parents=True)
    for make, _ in FILES.values():
        make(music)
    _nothing(music)
    make_track(music, "plain", "flac", title="Silent Song", artist="Nobody")
    data = root / "data"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text(
        f"lyrics_online = {'true' if online else 'false'}\nlrclib_url = {json.dumps(lrclib_url)}\n"
    )
    return launch(root, music=music)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, lrclib: Lrclib) -> Iterator[ServerProc]:
    s = _lyrics_server(tmp_path_factory.mktemp("lyrics"), lrclib.url, online=True)
    add_users(s, ["lyr", "other"])
    yield s
    s.stop()


def _token(srv: ServerProc, user: str = "lyr") -> dict[str, str]:
    return {"Authorization": "Bearer " + srv.login(user)["access_token"]}


def _ids(srv: ServerProc, headers: dict[str, str]) -> dict[str, str]:
    r = httpx.get(srv.url + "/v1/search", params={"q": "song", "limit": 50}, headers=headers)
    return {t["title"]: t["id"] for t in r.json()["tracks"]}


def test_the_lyrics_route_reads_files_then_lrclib(srv: ServerProc, lrclib: Lrclib) -> None:
    h = _token(srv)
    ids = _ids(srv, h)

    def get(title: str) -> dict[str, Any]:
        r = httpx.get(f"{srv.url}/v1/tracks/{ids[title]}/lyrics", headers=h)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    for title in ("Sylt Song", "Flac Song", "Mp4 Song"):
        got = get(title)
        assert got["source"] == "file" and got["synced"] is True
        assert [(ln["time_ms"], ln["text"]) for ln in got["lines"]] == WANTED
    assert get("Uslt Song")["lines"] == [
        {"time_ms": None, "text": "plain one"},
        {"time_ms": None, "text": "plain two"},
    ]
    assert not lrclib.asked  # files with lyrics never go online
    online = get("Online Song")
    assert online == {
        "track_id": ids["Online Song"],
        "synced": True,
        "lines": [{"time_ms": 500, "text": "online one"}, {"time_ms": 1000, "text": "online two"}],
        "source": "lrclib",
    }
    assert lrclib.asked[-1]["artist_name"] == ["Somebody"]
    assert lrclib.asked[-1]["album_name"] == ["Web"]
    assert lrclib.asked[-1]["duration"] == ["2"]
    assert get("Silent Song") == {
        "track_id": ids["Silent Song"],
        "synced": False,
        "lines": [],
        "source": None,
    }
    asked = len(lrclib.asked)
    get("Silent Song")
    get("Online Song")
    assert len(lrclib.asked) == asked  # answers (and misses) are kept
    r = httpx.get(f"{srv.url}/v1/tracks/tnosuchtrack/lyrics", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_another_accounts_remote_track_is_not_found(srv: ServerProc) -> None:
    a = _token(srv)
    r = httpx.post(srv.url + "/v1/tracks/remote", json={"url": "http://radio.invalid/a"}, headers=a)
    rid = r.json()["id"]
    assert httpx.get(f"{srv.url}/v1/tracks/{rid}/lyrics", headers=a).json()["lines"] == []
    b = httpx.get(f"{srv.url}/v1/tracks/{rid}/lyrics", headers=_token(srv, "other"))
    assert b.status_code == 404


def test_without_lyrics_online_lrclib_is_never_asked(tmp_path: Path, lrclib: Lrclib) -> None:
    s = _lyrics_server(tmp_path, lrclib.url, online=False)
    try:
        add_users(s, ["off"])
        h = _token(s, "off")
        before = len(lrclib.asked)
        tid = _ids(s, h)["Online Song"]
        r = httpx.get(f"{s.url}/v1/tracks/{tid}/lyrics", headers=h)
        assert r.json()["lines"] == [] and len(lrclib.asked) == before
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("lyrics_online = 1\n", "lyrics_online must be a bool"),
        ("lyrics = true\n", "unknown setting 'lyrics'"),
        ('lrclib_url = "ftp://x"\n', "lrclib_url must be an http(s) URL"),
        ("lyrics_online = \n", "not valid TOML"),
    ],
)
def test_a_bad_server_toml_is_one_line(tmp_path: Path, config: str, says: str) -> None:
    from tests.fixtures_server import tunehand_cmd

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text(config)
    r = subprocess.run(
        tunehand_cmd("serve", "--port", "0", "--data-dir", str(data), "--no-scan"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert says in r.stderr.strip().splitlines()[-1], r.stderr


def test_ctl_lyrics_for_the_current_track(
    srv: ServerProc, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    add_users(srv, ["ctl-lyr"])
    dev = Device(tmp_path / "cfg", client_env(secret_service, tmp_path / "cfg"), server_log=srv.log)
    assert dev.login(srv.url, "ctl-lyr", PASSWORD).returncode == 0
    assert dev.fails(5, "ctl", "lyrics").endswith("nothing is playing")
    device_id = new_device_id()
    token = srv.login("ctl-lyr", device_id=device_id)["access_token"]
    player = FakePlayer(srv.url, token, device_id, "box").start()
    try:
        ids = _ids(srv, {"Authorization": f"Bearer {token}"})
        dev.ctl("play", ids["Flac Song"])
        dev.ctl("pause")
        dev.ctl("seek", "3.5")
        assert dev.json("ctl", "lyrics") == parse_lrc(LRC).to_json()
        human = dev.ctl("lyrics").splitlines()
        assert human == [
            "  [00:01.50] first line",
            "> [00:03.00] chorus",
            "  [00:05.00] second",
            "  [00:07.25] chorus",
        ]
        dev.ctl("play", ids["Silent Song"])
        assert dev.json("ctl", "lyrics") == {"synced": False, "lines": []}
        assert dev.ctl("lyrics") == "no lyrics for this track\n"
        dev.ctl("play", ids["Uslt Song"])
        assert dev.ctl("lyrics") == "plain one\nplain two\n"
    finally:
        player.close()


def test_subsonic_lyrics_for_apps(srv: ServerProc) -> None:
    import libopensonic
    import libsonic

    h = _token(srv)
    ids = _ids(srv, h)
    made = httpx.post(srv.url + "/v1/app-passwords", json={"name": "phone"}, headers=h).json()
    host, port = srv.url.rsplit(":", 1)
    conn = libopensonic.Connection(host, port=int(port), username="lyr", password=made["password"])
    try:
        exts = {e.name for e in conn.get_open_subsonic_extensions()}
        assert "songLyrics" in exts
        [synced] = conn.get_lyrics_by_song_id(ids["Sylt Song"])
        assert synced.synced is True and synced.display_title == "Sylt Song"
        assert [(ln.start, ln.value) for ln in synced.line] == WANTED
        [words] = conn.get_lyrics_by_song_id(ids["Uslt Song"])
        assert words.synced is False
        assert [(ln.start, ln.value) for ln in words.line] == [
            (None, "plain one"),
            (None, "plain two"),
        ]
        assert conn.get_lyrics_by_song_id(ids["Silent Song"]) == []
    finally:
        conn.cleanup()
    sonic = libsonic.Connection(host, "lyr", made["password"], port=int(port), serverPath="rest")
    got = sonic.getLyrics(artist="tagged", title="uslt song")["lyrics"]
    assert got == {"artist": "Tagged", "title": "Uslt Song", "value": "plain one\nplain two"}
    assert sonic.getLyrics(artist="Nobody", title="No Such Song")["lyrics"] == {}
    # XML: the words are the element's text, each synced line a <line start=...>.
    salt = "abcdef"
    import hashlib

    tok = hashlib.md5((made["password"] + salt).encode(), usedforsecurity=False).hexdigest()
    q = {"u": "lyr", "t": tok, "s": salt, "v": "1.16.1", "c": "t", "id": ids["Flac Song"]}
    xml = httpx.get(srv.url + "/rest/getLyricsBySongId", params=q).text
    assert '<line start="3000">chorus</line>' in xml
