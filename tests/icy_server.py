"""A stand-in internet radio for tests: a local HTTP server on 127.0.0.1, made at test
time, that streams a generated MP3 without end with ICY (SHOUTcast) metadata.

A client that asks with `Icy-MetaData: 1` (ffmpeg, and so mpv, does) gets an
`icy-metaint: N` header, and after every N bytes of audio one metadata block: a length
byte L, then L * 16 bytes of `StreamTitle='...';` padded with NULs (L = 0: no change).
`Radio.title` may be set at any time: the next block carries it, as a station does
when the song changes. Audio goes out as fast as it plays after a first burst of LEAD_S
seconds (a live stream arrives as it is made; mpv shows a title when playback reaches
it, so a faster server would only delay a change).

Other paths: `/gone` answers 404, `/page` answers an HTML page (not audio).
"""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

METAINT = 4096
BITRATE = 32_000
STATION = "Tunehand Test FM"
LEAD_S = 2.0
"""Audio sent at once on connecting (a station's burst), then as fast as it plays."""


def make_mp3(path: Path, seconds: int = 8) -> bytes:
    """A tone as a bare MP3 (no ID3 tag, no Xing frame), so copies of it can be joined
    into one endless stream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=523:duration={seconds}",
            "-ac",
            "1",
            "-ar",
            "22050",
            "-b:a",
            f"{BITRATE // 1000}k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            "-f",
            "mp3",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path.read_bytes()


def meta_block(title: str) -> bytes:
    text = f"StreamTitle='{title}';".encode()
    blocks = -(-len(text) // 16)
    return bytes([blocks]) + text.ljust(blocks * 16, b"\0")


class Radio:
    def __init__(self, audio: bytes) -> None:
        self.audio = audio
        self.title = "First Song"
        self.url = ""
        self.requests: list[str] = []

    def stream(self, out: Any, icy: bool) -> None:
        pos = 0
        pace = BITRATE / 8  # bytes per second
        started = time.monotonic() - LEAD_S
        sent = 0
        sent_title = ""
        while True:
            chunk = bytearray()
            while len(chunk) < METAINT:
                take = self.audio[pos : pos + METAINT - len(chunk)]
                chunk += take
                pos = (pos + len(take)) % len(self.audio)
            out.write(bytes(chunk))
            sent += len(chunk)
            if icy:
                title = self.title
                out.write(meta_block(title) if title != sent_title else b"\0")
                sent_title = title
            out.flush()
            ahead = sent / pace - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing the stand-in station, not waiting for an event


def _handler(radio: Radio) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            radio.requests.append(self.path)

        def do_GET(self) -> None:
            if self.path == "/gone":
                self.send_error(404, "Not Found")
                return
            if self.path == "/page":
                body = b"<!doctype html><html><body><p>Not a stream.</p></body></html>\n" * 40
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.path != "/live":
                self.send_error(404, "Not Found")
                return
            icy = self.headers.get("Icy-MetaData") == "1"
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("icy-name", STATION)
            if icy:
                self.send_header("icy-metaint", str(METAINT))
            self.end_headers()
            try:
                radio.stream(self.wfile, icy)
            except (BrokenPipeError, ConnectionResetError):
                return  # the player went away

    return Handler


@contextmanager
def running_radio(tmp: Path) -> Iterator[Radio]:
    radio = Radio(make_mp3(tmp / "tone.mp3"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(radio))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    radio.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield radio
    finally:
        httpd.shutdown()
        httpd.server_close()
