"""The client's composition root: config, token store, API client and agent, built in one place.

Every frontend (the TUI, the MPD frontend) and every entry point in `tunehand.cli`
(`ctl`, `resume`, `receiver`, completion) gets its `ApiClient` from `client_for` and its
device `Agent` from `build_agent`, so nothing outside `tunehand.cli` imports it.

What a command line says about the device comes in as `Options` (`Options.of(args)`
reads an `argparse.Namespace`); the rest comes from the config dir (`config.toml`,
the stored login). `ctl` takes `client_for` on its fast path, so this module imports
no more than the HTTP client at its top; the agent's pieces come when one is built.
The player is injected (`player`: a `PlayerMaker`, such as
`tunehand.player.mpv_player.mpv_factory`), so this module never imports mpv.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from tunehand.client.config import (
    default_device_name,
    hold_device_lock,
    load_config,
    resolve_config_dir,
)
from tunehand.client.credentials import not_logged_in, open_store
from tunehand.client.http import ApiClient
from tunehand.errors import AuthError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tunehand.client.agent import Agent, PlayerFactory
    from tunehand.core.lyrics import Lyrics
    from tunehand.core.snapshot import Snapshot

PlayerMaker: TypeAlias = "Callable[[Mapping[str, str]], PlayerFactory]"
"""Given the mpv options, a factory for this device's player (raises `MediaError` with
one line when the player cannot be had, e.g. libmpv missing)."""


class Options(NamedTuple):
    """What the command line (or the TUI's login) says; None falls back to the config dir."""

    config_dir: str | None = None
    server: str | None = None
    ca_file: str | None = None
    device_name: str | None = None
    mpv_options: tuple[str, ...] = ()
    """`--mpv-option KEY=VALUE` pairs, over `config.toml`'s `[mpv_options]`."""

    @classmethod
    def of(cls, args: object) -> Options:
        """From an `argparse.Namespace` (or any object): missing attributes are None."""

        def text(name: str) -> str | None:
            value = getattr(args, name, None)
            return str(value) if value else None

        return cls(
            config_dir=text("config_dir"),
            server=text("server"),
            ca_file=text("ca_file"),
            device_name=text("device_name"),
            mpv_options=tuple(getattr(args, "mpv_option", None) or ()),
        )


def client_for(options: Options) -> ApiClient:
    """The API client of this config dir's login (one line when there is none)."""
    config_dir = resolve_config_dir(options.config_dir, os.environ)
    config = load_config(config_dir)
    server = options.server or config.server
    store = open_store(config_dir, os.environ, server)
    if server is None:
        creds = store.load()
        server = creds.server if creds else None
    if not server:
        if getattr(store, "missing", None):
            raise AuthError(not_logged_in(store, "URL"))
        raise UsageError("no server configured: run `tunehand login URL` or pass --server URL")
    ca_file = options.ca_file or config.ca_file
    return ApiClient(server, store, config_dir, ca_file=ca_file)


def parse_mpv_options(pairs: tuple[str, ...] | list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UsageError(f"--mpv-option: {pair!r} is not KEY=VALUE (e.g. audio-device=auto)")
        out[key] = value
    return out


def device_name(options: Options, config_name: str | None, kind: str = "") -> tuple[str, bool]:
    """This device's name and whether it is a default: `--device-name`, else
    `config.toml`'s `device_name` (both kept as given), else the host's name, with
    `-KIND` for a device that is not a terminal (`HOST-mpd`). The server makes a default
    name unique within the account (`HOST-2`, ...)."""
    given = options.device_name or config_name
    if given:
        if len(given) > 128:
            raise UsageError("--device-name: at most 128 characters")
        return given, False
    host = default_device_name()
    return (f"{host}-{kind}" if kind else host), True


def build_agent(
    options: Options,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    player: PlayerMaker | None = None,
    kind: str = "",
) -> Agent:
    """This config dir's device agent: it plays when given a `player`, else it is a
    remote (the MPD frontend, a TUI without libmpv). `kind` names what it is in a
    default device name (`mpd`)."""
    api = client_for(options)
    config = load_config(api.config_dir)
    api.credentials()  # fail now, with one line, when not logged in
    hold_device_lock(api.config_dir)  # one line and exit 2 when another process plays here
    name, default = device_name(options, config.device_name, kind)
    mpv_options = {**config.mpv_options, **parse_mpv_options(options.mpv_options)}

    import asyncio
    import threading

    from tunehand.client.agent import Agent
    from tunehand.core.protocol import DeviceHello

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

    async def lyrics(track_id: str) -> Lyrics | None:
        return await asyncio.to_thread(fetch_lyrics, api, lock, track_id)

    factory = player(mpv_options) if player is not None else None
    cache = None
    if factory is not None:
        from tunehand.client.offline.device import DeviceCache
        from tunehand.client.offline.store import Store, cache_root

        def queue_views() -> dict[str, dict[str, object]]:
            with lock:
                got = api.request("GET", "/v1/session/queue")
            return {
                str(e["track_id"]): e["track"] for e in got.get("entries", []) if e.get("track")
            }

        cache = DeviceCache(
            Store(cache_root(api.config_dir), config.offline_max_mb),
            api.http.server,
            ca_file=api.http.ca_file,
            ahead=config.offline_ahead,
            queue_views=queue_views,
        )
        cache.start()
    return Agent(
        server=api.http.server,
        token=token,
        device=DeviceHello(
            api.device_id(),
            name,
            (("play", "warm") if config.warm else ("play",)) if factory else (),
            name_default=default,
        ),
        player_factory=factory,
        on_snapshot=on_snapshot,
        ca_file=api.http.ca_file,
        remote_track=remote_track,
        stream_quality=config.stream_quality,
        lyrics=lyrics,
        cache=cache,
    )


def fetch_lyrics(api: ApiClient, lock: Any, track_id: str) -> Lyrics | None:
    """A track's lyrics from the server: None when it has none, or the answer is not
    lyrics (blocking: call it in a thread)."""
    from tunehand.client.http import quote
    from tunehand.core.lyrics import from_json

    with lock:
        found = from_json(api.request("GET", f"/v1/tracks/{quote(track_id)}/lyrics"))
    return found if found is not None and found.lines else None
