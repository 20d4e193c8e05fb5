"""`tunehand doctor`: check what this device needs, and print a fix for each failure.

libmpv, the audio output, the OS keyring, the server (reachable, version, clock offset)
and the login. Exit 0 when everything is fine, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

from tunehand import __version__
from tunehand.client.config import load_config, resolve_config_dir
from tunehand.client.credentials import open_store
from tunehand.client.http import ApiClient, HttpClient
from tunehand.errors import TunehandError, UsageError

Check = tuple[str, bool, str]
CLOCK_WARN_MS = 2_000


def _libmpv() -> Check:
    try:
        from tunehand.player.mpv_player import import_mpv

        mpv = import_mpv()
    except TunehandError as exc:
        return ("libmpv", False, str(exc))
    return ("libmpv", True, f"found (python-mpv {getattr(mpv, '__version__', '?')})")


def _silence(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0\0\0\0" * 44100 * 3)  # long enough to still play when asked


MpvLog = list[tuple[str, str, str]]
"""mpv's own messages: (level, component, message)."""
NO_OUTPUT_MESSAGE = "Could not open/initialize audio device"
MAX_CAPTURE_BYTES = 256 * 1024


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Send whatever this process writes to fd 2 while the block runs to a temporary file.

    libmpv's audio libraries (ALSA lib, JACK, PipeWire) write their complaints straight to
    fd 2 from C, past mpv's own log; this keeps them out of the report. The yielded list
    gets their lines when the block ends.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(MAX_CAPTURE_BYTES).decode("utf-8", errors="replace")
            lines += [line for line in text.splitlines() if line.strip()]


def _no_output_reasons(mpv_log: MpvLog, stderr_lines: list[str]) -> str:
    """Why mpv opened no audio output, in a few words, from mpv's log and the libraries'."""
    tried: list[str] = []
    for _, component, message in mpv_log:
        found = re.match(r"Trying audio driver '([^']+)'", message)
        if component == "ao" and found and found.group(1) not in tried:
            tried.append(found.group(1))
    errors = {c: m for level, c, m in mpv_log if level in ("fatal", "error")}
    raw = "\n".join(stderr_lines)
    reasons: list[str] = []
    unknown_pcm = re.search(r"Unknown PCM (\S+)", raw)
    if "cannot find card" in raw:
        reasons.append("ALSA found no sound card")
    elif unknown_pcm and unknown_pcm.group(1) != "default":
        reasons.append(f"ALSA has no device {unknown_pcm.group(1)!r}")
    elif "ao/alsa" in errors or unknown_pcm:
        reasons.append(f"ALSA: {errors.get('ao/alsa', 'no default device')}")
    if "ao/jack" in errors or "jack server is not running" in raw:
        reasons.append("no JACK server running")
    if "ao/pulse" in errors:
        reasons.append(f"PulseAudio: {errors['ao/pulse']}")
    if "ao/pipewire" in errors:
        reasons.append(f"PipeWire: {errors['ao/pipewire']}")
    parts = []
    if tried:
        parts.append("tried " + ", ".join(tried))
    parts += reasons
    return f" ({'; '.join(parts)})" if parts else ""


async def _audio(options: dict[str, str], mpv_log: MpvLog) -> Check:
    from tunehand.player.base import Failed, PlayerEvent, Ready
    from tunehand.player.mpv_player import MpvPlayer

    events: asyncio.Queue[PlayerEvent] = asyncio.Queue()
    gave_up = threading.Event()

    def log(level: str, component: str, message: str) -> None:  # mpv's thread
        mpv_log.append((level, component, message.rstrip()))
        if NO_OUTPUT_MESSAGE in message:
            gave_up.set()

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "silence.wav"
        _silence(wav)
        try:
            player = MpvPlayer(events.put_nowait, asyncio.get_running_loop(), options, log)
        except TunehandError as exc:
            return ("audio output", False, str(exc))
        try:
            player.set_volume(0)
            player.load("probe", str(wav), position_ms=0, paused=False)
            # The first of Ready or Failed (the player also says what it learnt of the
            # file, such as its tags, before or after it is ready).
            until = time.monotonic() + 5
            ev: PlayerEvent | None = None
            while not isinstance(ev, Ready | Failed):
                try:
                    ev = await asyncio.wait_for(events.get(), max(0.0, until - time.monotonic()))
                except TimeoutError:
                    return ("audio output", False, "mpv did not start playing within 5 s")
            if isinstance(ev, Failed):
                return ("audio output", False, f"{ev.message}: check mpv_options")
            # mpv opens the output a moment after the file is ready: look for a while,
            # unless mpv has said it found none.
            deadline = time.monotonic() + 2.0
            while (ao := player.audio_output()) is None and time.monotonic() < deadline:
                if gave_up.is_set():
                    break
                await asyncio.sleep(0.05)
        finally:
            player.close()
    if not ao:
        return ("audio output", False, "")
    note = " (no sound: ao=null)" if ao == "null" else ""
    return ("audio output", True, f"{ao}{note}")


def _audio_check(options: dict[str, str]) -> tuple[Check, list[str]]:
    """The audio output check, with what mpv and its libraries said kept out of the report:
    the check's line summarises it; the lines returned are the whole of it (`--verbose`)."""
    mpv_log: MpvLog = []
    with _stderr_captured() as stderr_lines:
        check = asyncio.run(_audio(options, mpv_log))
    name, ok, detail = check
    if not ok and not detail:
        detail = (
            f"mpv opened no audio output{_no_output_reasons(mpv_log, stderr_lines)}: "
            "set `audio-device` (or `ao`) in [mpv_options]; `tunehand doctor --verbose` "
            "shows mpv's log"
        )
    log = [f"mpv [{level}] {component}: {message}" for level, component, message in mpv_log]
    log += [f"stderr: {line}" for line in stderr_lines]
    return (name, ok, detail), log


def _keyring(config_dir: Path) -> Check:
    store = open_store(config_dir, os.environ, None)
    try:
        creds = store.load()
    except TunehandError as exc:
        return ("keyring", False, str(exc))
    missing = getattr(store, "missing", None)
    if missing:
        return ("keyring", False, missing)
    where = store.location
    return ("keyring", True, f"{where}; {'a login is stored' if creds else 'no login stored'}")


def _server(server: str | None, ca_file: str | None) -> Check:
    if not server:
        return ("server", False, "no server configured: run `tunehand login URL`")
    http = HttpClient(server, ca_file=ca_file)
    try:
        sent = time.time()
        status, payload = http.request("GET", "/v1/health")
        got = time.time()
    except UsageError as exc:  # a URL that leads to no tunehand API
        return ("server", False, str(exc))
    except TunehandError as exc:
        return ("server", False, f"{exc}: is `tunehand serve` running there?")
    finally:
        http.close()
    if status != 200 or not isinstance(payload, dict) or payload.get("server") != "tunehand":
        return ("server", False, f"{server} does not answer like a tunehand server")
    offset = payload["server_time_ms"] - (sent + got) / 2 * 1000
    version = payload.get("version", "?")
    rtt = 1000 * (got - sent)
    detail = f"{server}: tunehand {version}, clock offset {offset:+.0f} ms, {rtt:.0f} ms away"
    if abs(offset) > CLOCK_WARN_MS:
        return (
            "server",
            False,
            detail + ": this clock is off; enable NTP (timedatectl set-ntp true)",
        )
    if version != __version__:
        detail += f" (this client is {__version__})"
    return ("server", True, detail)


def _login(api: ApiClient | None) -> Check:
    if api is None:
        return ("login", False, "not logged in: run `tunehand login URL`")
    try:
        me = api.request("GET", "/v1/auth/whoami")
    except TunehandError as exc:
        return ("login", False, f"{exc}: run `tunehand login`")
    return ("login", True, f"logged in as {me['user']}")


def run_doctor(args: argparse.Namespace) -> int:
    config_dir = resolve_config_dir(getattr(args, "config_dir", None), os.environ)
    config = load_config(config_dir)
    ca_file = getattr(args, "ca_file", None) or config.ca_file
    server = getattr(args, "server", None) or config.server
    results = [_libmpv()]
    audio_log: list[str] = []
    if results[0][1]:
        audio, audio_log = _audio_check(dict(config.mpv_options))
        results.append(audio)
    results += [_keyring(config_dir), _server(server, ca_file)]
    if not (results[-1][1] and results[-2][1]):
        results.append(("login", False, "not checked: fix the server and keyring first"))
    else:
        store = open_store(config_dir, os.environ, server)
        api = None
        if store.load() is not None and server:
            api = ApiClient(server, store, config_dir, ca_file=ca_file)
        results.append(_login(api))
    for name, ok, detail in results:
        print(f"{'ok ' if ok else 'FAIL'} {name:<13} {detail}")
    if getattr(args, "verbose", False):
        print(f"\nthe audio check's log ({len(audio_log)} lines):")
        for line in audio_log:
            print(f"  {line}")
    return 0 if all(ok for _, ok, _ in results) else 1
