"""Transcoding with ffmpeg, against a real `tunehand serve --max-transcodes 1`: Subsonic
`stream` with `format`, `maxBitRate` and `timeOffset`, and `/v1/stream?quality=` of
tunehand's own devices, the results judged by `ffprobe`; the encoder limit and its
queue; a client that goes away leaves no ffmpeg behind; a server without ffmpeg says so.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audiogen import make_track
from tests.device_helpers import (
    DeviceDir,
    Receiver,
    add_users,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    short_sock_dir,
    status,
)
from tests.fixtures_server import ServerProc, child_pids, launch
from tests.test_api import Api, accounts
from tests.test_subsonic import App, make_app

LONG_S = 1800.0
MID_S = 60.0


def _library(music: Path) -> None:
    make_track(music, "long", "flac", title="Long", artist="Tx", album="T", duration_s=LONG_S)
    make_track(music, "mid", "flac", title="Mid", artist="Tx", album="T", duration_s=MID_S)
    make_track(music, "bad", "flac", title="Bad", artist="Tx", album="T", duration_s=1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("transcode")
    _library(root / "music")
    server = launch(root, music=root / "music", extra_args=("--max-transcodes", "1"))
    (root / "music" / "bad.flac").write_bytes(b"fLaC" + bytes(4000))  # scanned, now broken
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(srv: ServerProc) -> Iterator[App]:
    with accounts(srv) as make:
        yield make_app(srv, make("tc"))


def song_id(app: App, title: str) -> str:
    found = app.raw("search3", query=title, f="json").json()["subsonic-response"]
    return str(next(s["id"] for s in found["searchResult3"]["song"] if s["title"] == title))


def probe(data: bytes, tmp_path: Path) -> dict[str, Any]:
    f = tmp_path / "probe.bin"
    f.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got: dict[str, Any] = json.loads(out)
    return got


def codec_and_kbps(info: dict[str, Any]) -> tuple[str, float, float]:
    """(codec, average kb/s over the whole file, duration in s)."""
    stream = info["streams"][0]
    duration = float(info["format"]["duration"])
    size = int(info["format"]["size"])
    return stream["codec_name"], size * 8 / duration / 1000, duration


def test_stream_opus_and_mp3(app: App, tmp_path: Path) -> None:
    mid = song_id(app, "Mid")
    r = app.raw("stream", id=mid, format="opus", maxBitRate=96)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    assert "content-length" not in r.headers and r.headers["accept-ranges"] == "none"
    codec, kbps, duration = codec_and_kbps(probe(r.content, tmp_path))
    assert codec == "opus" and 96 * 0.6 <= kbps <= 96 * 1.4, kbps  # VBR: roughly
    assert abs(duration - MID_S) < 1
    r = app.raw("stream", id=mid, format="mp3")  # MP3's default bitrate: 192 kb/s
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    codec, kbps, duration = codec_and_kbps(probe(r.content, tmp_path))
    assert codec == "mp3" and 185 <= kbps <= 200, kbps
    assert abs(duration - MID_S) < 1


def test_max_bit_rate_alone_keeps_a_small_enough_original(app: App, tmp_path: Path) -> None:
    mid = song_id(app, "Mid")
    original = app.raw("stream", id=mid)
    assert original.headers["content-type"] == "audio/flac"
    assert app.raw("stream", id=mid, maxBitRate=5000).content == original.content
    assert app.raw("stream", id=mid, format="raw", maxBitRate=64).content == original.content
    assert app.raw("stream", id=mid, format="wma").content == original.content
    low = app.raw("stream", id=mid, maxBitRate=64)  # the FLAC is above it: Opus at 64
    codec, kbps, _ = codec_and_kbps(probe(low.content, tmp_path))
    assert codec == "opus" and 64 * 0.6 <= kbps <= 64 * 1.4, kbps
    d = app.raw("download", id=mid, format="mp3", maxBitRate=64)  # download: the original
    assert d.content == original.content


def test_time_offset_starts_later(app: App, tmp_path: Path) -> None:
    mid = song_id(app, "Mid")
    r = app.raw("stream", id=mid, format="opus", timeOffset=45)
    _, _, duration = codec_and_kbps(probe(r.content, tmp_path))
    assert abs(duration - (MID_S - 45)) < 1, duration
    r = app.raw("stream", id=mid, format="mp3", timeOffset=45)
    _, _, duration = codec_and_kbps(probe(r.content, tmp_path))
    assert abs(duration - (MID_S - 45)) < 1, duration
    ext = app.raw("getOpenSubsonicExtensions", f="json").json()["subsonic-response"]
    assert {"name": "transcodeOffset", "versions": [1]} in ext["openSubsonicExtensions"]


def test_a_file_ffmpeg_cannot_read_is_one_error(app: App) -> None:
    r = app.raw("stream", id=song_id(app, "Bad"), format="opus", f="json")
    error = r.json()["subsonic-response"]["error"]
    assert error["code"] == 0 and error["message"].startswith("ffmpeg could not encode")
    assert "\n" not in error["message"]
    _wait_no_ffmpeg(app.srv)
    assert "Traceback" not in "\n".join(app.srv.log)


def test_max_transcodes_must_be_a_count(tmp_path: Path) -> None:
    from tests.fixtures_server import tunehand_cmd

    cmd = tunehand_cmd("serve", "--max-transcodes", "0", "--data-dir", str(tmp_path / "d"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr == "tunehand: --max-transcodes: must be 1 to 1024\n"


def _ffmpeg_children(srv: ServerProc) -> list[int]:
    out = []
    for pid in child_pids(srv.proc.pid):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "ffmpeg":
            out.append(pid)
    return out


def _wait_no_ffmpeg(srv: ServerProc, timeout_s: float = 10.0) -> None:
    # Polled with a deadline: the server's children give no event to wait on.
    deadline = time.monotonic() + timeout_s
    while _ffmpeg_children(srv):
        assert time.monotonic() < deadline, _ffmpeg_children(srv)
        time.sleep(0.05)


def _open(app: App, client: httpx.Client, sid: str) -> httpx.Response:
    """A long MP3 stream (larger than every buffer on the way): headers and the first
    chunk read, the rest left unread, so its encoder stays busy."""
    req = client.build_request("GET", _url(app, "stream"), params=_auth(app, sid))
    r = client.send(req, stream=True)
    if r.status_code == 200 and r.headers["content-type"] == "audio/mpeg":
        _first_chunk(r)
    return r


HELD: list[Iterator[bytes]] = []
"""Byte iterators of open responses: one dropped would close its connection."""


def _first_chunk(r: httpx.Response) -> None:
    it = r.iter_raw(4096)
    next(it)
    HELD.append(it)


@pytest.fixture(autouse=True)
def _drop_held() -> Iterator[None]:
    yield
    HELD.clear()


def _auth(app: App, sid: str) -> dict[str, str]:
    return {
        "u": app.api.name,
        "p": app.password,
        "v": "1.16.1",
        "c": "t",
        "f": "json",
        "id": sid,
        "format": "mp3",
        "maxBitRate": "320",
    }


def _url(app: App, method: str) -> str:
    return f"{app.srv.url}/rest/{method}"


def test_the_encoder_limit_queues_one_then_refuses(app: App) -> None:
    long = song_id(app, "Long")
    with (
        httpx.Client(timeout=30) as c1,
        httpx.Client(timeout=30) as c2,
        httpx.Client(timeout=30) as c3,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        first = _open(app, c1, long)
        assert first.status_code == 200
        # The only encoder is busy: of two more, one waits in the queue, one is refused.
        started = time.monotonic()
        b, c = pool.submit(_open, app, c2, long), pool.submit(_open, app, c3, long)
        done, _ = concurrent.futures.wait([b, c], return_when="FIRST_COMPLETED")
        answered = done.pop()
        waiting = c if answered is b else b
        refused = answered.result()
        assert time.monotonic() - started < 2
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        error = json.loads(refused.read())["subsonic-response"]["error"]
        assert error["code"] == 0 and "encoders are busy" in error["message"]
        refused.close()
        assert not waiting.done()
        first.close()  # its encoder is freed: the waiting one gets it
        second = waiting.result(timeout=10)
        assert second.status_code == 200 and second.headers["content-type"] == "audio/mpeg"
        second.close()
    _wait_no_ffmpeg(app.srv)


def test_a_client_that_goes_away_leaves_no_ffmpeg(app: App, tmp_path: Path) -> None:
    long = song_id(app, "Long")
    for _ in range(3):
        with httpx.Client(timeout=30) as client:
            r = _open(app, client, long)
            assert r.status_code == 200
            assert len(_ffmpeg_children(app.srv)) == 1
            r.close()
        _wait_no_ffmpeg(app.srv)
    # Its encoder was freed each time: a fourth stream gets one at once.
    r = app.raw("stream", id=song_id(app, "Mid"), format="opus", timeOffset=55)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"


def _signed_url(api: Api, title: str) -> str:
    tracks = api.ok("GET", "/v1/search", params={"q": title})["tracks"]
    url: str = next(t["url"] for t in tracks if t["title"] == title)
    return api.srv.url + url


def test_own_devices_ask_a_quality(app: App, tmp_path: Path) -> None:
    url = _signed_url(app.api, "Mid")
    original = httpx.get(url)
    assert original.status_code == 200 and original.headers["content-type"] == "audio/flac"
    assert httpx.get(url + "&quality=original").content == original.content
    low = httpx.get(url + "&quality=low")
    assert low.status_code == 200 and low.headers["content-type"] == "audio/ogg"
    codec, kbps, duration = codec_and_kbps(probe(low.content, tmp_path))
    assert codec == "opus" and 64 * 0.6 <= kbps <= 64 * 1.4 and abs(duration - MID_S) < 1, kbps
    high = httpx.get(url + "&quality=high&t=30")
    info = probe(high.content, tmp_path)
    # It starts 30 s in, and its timestamps say so (a player shows the track's position).
    start = float(info["format"]["start_time"])
    assert abs(start - 30) < 0.1, start
    info["format"]["duration"] = float(info["format"]["duration"]) - start
    codec, kbps, duration = codec_and_kbps(info)
    assert codec == "opus" and 160 * 0.6 <= kbps <= 160 * 1.4 and abs(duration - 30) < 1, (
        kbps,
        duration,
    )
    head = httpx.head(url + "&quality=low")
    assert head.status_code == 200 and head.headers["content-type"] == "audio/ogg"
    for bad in ("&quality=best", "&quality=low&t=-1", "&quality=low&t=nan", "&t=1e9"):
        r = httpx.get(url + bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid", bad
    # The quality is no part of the signature, and it opens nothing more: a forged one
    # is still refused.
    forged = url.replace("sig=", "sig=A")
    assert httpx.get(forged + "&quality=low").status_code == 403


def test_own_devices_are_refused_past_the_queue_too(app: App) -> None:
    url = _signed_url(app.api, "Long") + "&quality=high"
    with (
        httpx.Client(timeout=30) as c1,
        httpx.Client(timeout=30) as c2,
        httpx.Client(timeout=30) as c3,
    ):
        holding = c1.send(c1.build_request("GET", url), stream=True)
        _first_chunk(holding)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            b = pool.submit(c2.get, url + "&t=1780")
            c = pool.submit(c3.get, url + "&t=1790")
            done, _ = concurrent.futures.wait([b, c], return_when="FIRST_COMPLETED")
            answered = done.pop()
            other = c if answered is b else b
            refused = answered.result()
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            assert refused.json()["error"]["code"] == "busy"
            holding.close()
            # The waiting request got the encoder (and reads the last seconds).
            assert other.result(timeout=60).status_code == 200
    _wait_no_ffmpeg(app.srv)


def test_a_server_without_ffmpeg_says_so(tmp_path: Path) -> None:
    _library(tmp_path / "music")
    env = {"TUNEHAND_FFMPEG": str(tmp_path / "no-ffmpeg")}
    server = launch(tmp_path, music=tmp_path / "music", env=env)
    try:
        with accounts(server) as make:
            app = make_app(server, make("nf"))
            mid = song_id(app, "Mid")
            r = app.raw("stream", id=mid, format="opus", f="json")
            error = r.json()["subsonic-response"]["error"]
            assert error["code"] == 0 and "needs ffmpeg" in error["message"]
            assert app.raw("stream", id=mid).headers["content-type"] == "audio/flac"
            low = httpx.get(_signed_url(app.api, "Mid") + "&quality=low")
            assert low.status_code == 503 and low.json()["error"]["code"] == "no_transcoder"
    finally:
        server.stop()
    assert "Traceback" not in "\n".join(server.log)


def test_a_receiver_with_stream_quality_low_plays_opus_and_seeks(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A real receiver (mpv, ao=null) configured `stream_quality = "low"`: it plays an
    Opus transcode from the session's position, mpv's time-pos is the track's position,
    and a seek loads the transcode again from there."""
    require_mpv()
    root = tmp_path_factory.mktemp("quality")
    make_tones(root / "music", ("Tone A", "Tone B"), album="Tones", duration_s=40)
    server = launch(root, music=root / "music")
    try:
        add_users(server, ["qualuser"])
        laptop, box = DeviceDir("laptop", tmp_path / "laptop"), DeviceDir("box", tmp_path / "box")
        login_all(server.url, "qualuser", [laptop, box])
        config = box.config_dir / "config.toml"
        text = config.read_text() if config.exists() else ""
        config.write_text('stream_quality = "low"\n' + text)
        with short_sock_dir("th-tc-") as sock_dir:
            receiver = Receiver.start(box, sock_dir)
            try:
                ctl_ok(laptop, "play", "--search", "Tone A")
                receiver.ipc.wait_time_pos(lambda v: v >= 0.5)
                path = receiver.ipc.get("path")
                assert "&quality=low" in path and "&t=" not in path, path
                assert receiver.ipc.get("audio-codec-name") == "opus"
                ctl_ok(laptop, "seek", "12.3")
                first = receiver.ipc.wait_time_pos(lambda v: v >= 12.0)
                assert first < 13.5, first
                assert "&quality=low&t=12.3" in receiver.ipc.get("path")
                receiver.ipc.wait_time_pos(lambda v: v >= first + 0.5)  # and it plays on
                ctl_ok(laptop, "seek", "30")
                at = receiver.ipc.wait_time_pos(lambda v: v >= 30.0)
                assert at < 31.5, at
                assert "&t=30" in receiver.ipc.get("path")
                st = status(laptop)
                assert st["playing"] and 29_000 < st["position_ms"] < 33_000, st
            finally:
                receiver.stop()
    finally:
        server.stop()


def test_a_head_request_runs_no_encoder(app: App) -> None:
    params = _auth(app, song_id(app, "Long"))
    r = httpx.head(_url(app, "stream"), params=params, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert r.headers["accept-ranges"] == "none"
    assert _ffmpeg_children(app.srv) == []  # a GET's encoder would be running now


def test_a_device_keeps_at_most_two_encoders(tmp_path: Path) -> None:
    """A player that opens stream after stream (seeks, skips) without closing the old ones
    keeps the newest two (the track playing and the one prefetched): a third stops the
    oldest, which frees its encoder, so the device never waits for itself."""
    _library(tmp_path / "music")
    srv = launch(tmp_path, music=tmp_path / "music", extra_args=("--max-transcodes", "2"))
    try:
        with accounts(srv) as make:
            phone = make_app(srv, make("two"))
            long = song_id(phone, "Long")
            clients = [httpx.Client(timeout=30) for _ in range(3)]
            try:
                first = len(HELD)
                opened = [_open(phone, c, long) for c in clients[:2]]
                assert [r.status_code for r in opened] == [200, 200]
                assert len(_ffmpeg_children(srv)) == 2  # every encoder, both this device's
                started = time.monotonic()
                third = _open(phone, clients[2], long)  # would wait 5 s, then be refused
                assert third.status_code == 200 and time.monotonic() - started < 4
                # The oldest was stopped: its stream ends (read to the end); the second
                # goes on.
                rest = b"".join(HELD[first])
                assert len(rest) < 50_000_000, len(rest)
                deadline = time.monotonic() + 10  # reaped after the stream ends: no event
                while len(_ffmpeg_children(srv)) != 2:
                    assert time.monotonic() < deadline, _ffmpeg_children(srv)
                    time.sleep(0.05)
                assert len(next(HELD[first + 1])) > 0
            finally:
                for c in clients:
                    c.close()
    finally:
        srv.stop()


def test_an_account_keeps_at_most_half_the_encoders(tmp_path: Path) -> None:
    """Two phones of one account, each holding its two encoders, cannot hold all four of
    a `--max-transcodes 4` server: the account keeps two (its newest), so another
    account's player still starts at once."""
    _library(tmp_path / "music")
    srv = launch(tmp_path, music=tmp_path / "music", extra_args=("--max-transcodes", "4"))
    try:
        with accounts(srv) as make:
            owner = make("half")
            phone, tablet = make_app(srv, owner, "phone"), make_app(srv, owner, "tablet")
            other = make_app(srv, make("else"))
            long = song_id(phone, "Long")
            clients = [httpx.Client(timeout=30) for _ in range(5)]
            try:
                first = len(HELD)
                opened = [_open(phone, c, long) for c in clients[:2]]
                opened.append(_open(tablet, clients[2], long))
                assert [r.status_code for r in opened] == [200, 200, 200]
                # The phone's oldest was stopped for the tablet: its stream ends.
                rest = b"".join(HELD[first])
                assert len(rest) < 50_000_000, len(rest)
                deadline = time.monotonic() + 10  # reaped after the stream ends: no event
                while len(_ffmpeg_children(srv)) != 2:
                    assert time.monotonic() < deadline, _ffmpeg_children(srv)
                    time.sleep(0.05)
                started = time.monotonic()
                theirs = [_open(other, c, long) for c in clients[3:]]
                assert [r.status_code for r in theirs] == [200, 200]
                assert time.monotonic() - started < 4  # no wait in the queue
                assert len(_ffmpeg_children(srv)) == 4
            finally:
                for c in clients:
                    c.close()
    finally:
        srv.stop()
