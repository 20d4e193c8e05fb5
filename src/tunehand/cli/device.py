"""What `receiver`, `resume` (and the TUI) share: building a playing device's agent.

The device's identity comes from its config dir; mpv options from `config.toml`
(`mpv_options`) and `--mpv-option KEY=VALUE` (which wins), passed to libmpv unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Callable

from tunehand.cli.ctl import client_for
from tunehand.client.agent import Agent
from tunehand.client.config import default_device_name, hold_device_lock, load_config
from tunehand.core.protocol import DeviceHello
from tunehand.core.snapshot import Snapshot
from tunehand.errors import UsageError


def parse_mpv_options(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UsageError(f"--mpv-option: {pair!r} is not KEY=VALUE (e.g. audio-device=auto)")
        out[key] = value
    return out


def build_agent(
    args: argparse.Namespace,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    plays: bool = True,
) -> Agent:
    api = client_for(args)
    config = load_config(api.config_dir)
    api.credentials()  # fail now, with one line, when not logged in
    hold_device_lock(api.config_dir)  # one line and exit 2 when another process plays here
    name = getattr(args, "device_name", None) or config.device_name or default_device_name()
    if len(name) > 128:
        raise UsageError("--device-name: at most 128 characters")
    options = {**config.mpv_options, **parse_mpv_options(getattr(args, "mpv_option", None))}

    lock = threading.Lock()  # the client's one connection: one request at a time

    def locked_token() -> str:
        with lock:
            return api.access_token()

    def add_remote(url: str) -> str:
        with lock:
            return str(api.request("POST", "/v1/tracks/remote", {"url": url})["id"])

    async def token() -> str:
        return await asyncio.to_thread(locked_token)

    async def remote_track(url: str) -> str:
        return await asyncio.to_thread(add_remote, url)

    factory = None
    if plays:
        from tunehand.player.mpv_player import MpvPlayer, import_mpv

        import_mpv()  # one clear line now if libmpv is missing

        def factory(sink, loop):  # type: ignore[no-untyped-def]
            return MpvPlayer(sink, loop, options)

    return Agent(
        server=api.http.server,
        token=token,
        device=DeviceHello(api.device_id(), name, ("play",) if plays else ()),
        player_factory=factory,
        on_snapshot=on_snapshot,
        ca_file=api.http.ca_file,
        remote_track=remote_track,
        stream_quality=config.stream_quality,
    )
