"""`tunehand doctor`: check what this device needs, and print a fix for each failure.

libmpv, the audio output, the OS keyring, the server (reachable, version, clock offset)
and the login. Exit 0 when everything is fine, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

from tunehand import __version__
from tunehand.client.config import load_config, resolve_config_dir
from tunehand.client.credentials import open_store
from tunehand.client.http import ApiClient, HttpClient
from tunehand.errors import TunehandError

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


async def _audio(options: dict[str, str]) -> Check:
    from tunehand.player.base import Failed, PlayerEvent, Ready
    from tunehand.player.mpv_player import MpvPlayer

    events: asyncio.Queue[PlayerEvent] = asyncio.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "silence.wav"
        _silence(wav)
        try:
            player = MpvPlayer(events.put_nowait, asyncio.get_running_loop(), options)
        except TunehandError as exc:
            return ("audio output", False, str(exc))
        try:
            player.set_volume(0)
            player.load("probe", str(wav), position_ms=0, paused=False)
            try:
                ev = await asyncio.wait_for(events.get(), 5)
            except TimeoutError:
                return ("audio output", False, "mpv did not start playing within 5 s")
            if isinstance(ev, Failed):
                return ("audio output", False, f"{ev.message}: check mpv_options")
            assert isinstance(ev, Ready)
            # mpv opens the output a moment after the file is ready: look for a while.
            deadline = time.monotonic() + 2.0
            while (ao := player.audio_output()) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            player.close()
    if not ao:
        return (
            "audio output",
            False,
            "mpv opened no audio output: set `audio-device` (or `ao`) in [mpv_options]",
        )
    note = " (no sound: ao=null)" if ao == "null" else ""
    return ("audio output", True, f"{ao}{note}")


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
    checks: list[Callable[[], Check]] = [_libmpv]
    lib_ok = _libmpv()[1]
    if lib_ok:
        checks.append(lambda: asyncio.run(_audio(dict(config.mpv_options))))
    checks += [lambda: _keyring(config_dir), lambda: _server(server, ca_file)]
    results = [c() for c in checks]
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
    return 0 if all(ok for _, ok, _ in results) else 1
