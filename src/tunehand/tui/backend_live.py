"""The real `Backend`: the device agent for the session, the REST client for the library.

The one module of `tunehand.tui` that imports the client pieces (the HTTP client,
the credential stores, the agent and, through `build_agent`, the channel and mpv).
Every blocking call (HTTP requests, the keyring, loading libmpv) runs in a thread
with `asyncio.to_thread`; a lock keeps the HTTP client's single connection to one
request at a time (held by the thread, so a cancelled search cannot interleave).
Errors reach the TUI as `TunehandError`s with one line for the user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunehand.cli.ctl import client_for
from tunehand.cli.device import build_agent
from tunehand.client.agent import Agent
from tunehand.client.config import (
    Config,
    default_device_name,
    device_id,
    ensure_config_dir,
    load_config,
    resolve_config_dir,
    save_server,
)
from tunehand.client.credentials import (
    TOKENS_FILE,
    Credentials,
    CredentialStore,
    FileStore,
    KeyringStore,
    open_store,
)
from tunehand.client.http import ApiClient, HttpClient, check_server_url, error_message, quote
from tunehand.core.commands import Result
from tunehand.core.protocol import TrackView
from tunehand.core.snapshot import Snapshot
from tunehand.desktop.service import Desktop
from tunehand.errors import (
    AuthError,
    KeyringError,
    ServerUnreachable,
    TunehandError,
    UsageError,
)
from tunehand.tui.backend import (
    Account,
    Album,
    Artist,
    Played,
    PlaylistInfo,
    QueueItem,
    SessionSnapshot,
    SnapshotSink,
)
from tunehand.wire import convert

COMMAND_WAIT_S = 10.0
HISTORY_LIMIT = 200
DERIVED_EVENTS = frozenset(
    {
        "playback moved here",
        "playback moved to another device",
        "connected to the server",
        "connection to the server lost; reconnecting",
    }
)
"""Agent notices the TUI already tells from the state itself (see `tui.events`)."""


@dataclass(frozen=True, slots=True)
class UiSettings:
    keys: dict[str, str]
    theme: str | None


class LiveBackend:
    def __init__(self, args: argparse.Namespace, config_dir: Path, config: Config) -> None:
        self._args = args
        self._config_dir = config_dir
        self._config = config
        self._server: str = getattr(args, "server", None) or config.server or ""
        self._client: ApiClient | None = None
        self._lock = threading.Lock()
        self._agent: Agent | None = None
        self._plays = True
        self._notice = ""
        self._desktop = Desktop(notifications=config.notifications)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> tuple[LiveBackend, UiSettings]:
        """Read the config dir (before the app starts; a bad config.toml fails here)."""
        config_dir = resolve_config_dir(getattr(args, "config_dir", None), os.environ)
        config = load_config(config_dir)
        return cls(args, config_dir, config), UiSettings(dict(config.keys), config.theme)

    @property
    def default_server(self) -> str:
        return self._server

    def _namespace(self) -> argparse.Namespace:
        ns = argparse.Namespace(**vars(self._args))
        ns.config_dir = str(self._config_dir)
        if self._server:
            ns.server = self._server
        return ns

    # --- account ------------------------------------------------------------------

    async def account(self) -> Account | None:
        def load() -> Account | None:
            store = open_store(self._config_dir, os.environ, self._server or None)
            creds = store.load()
            if creds is None:
                return None
            self._server = self._server or creds.server
            return Account(creds.server, creds.user or "?")

        return await asyncio.to_thread(load)

    async def login(self, server: str, user: str, password: str) -> Account:
        return await asyncio.to_thread(self._login, server, user, password)

    def _login(self, server: str, user: str, password: str) -> Account:
        if os.environ.get("TUNEHAND_TOKEN"):
            raise UsageError("TUNEHAND_TOKEN is set: unset it to log in")
        server = check_server_url(server)
        cdir = self._config_dir
        ensure_config_dir(cdir)
        store: CredentialStore
        if os.path.lexists(cdir / TOKENS_FILE):
            store = FileStore(cdir / TOKENS_FILE)
        else:
            store = KeyringStore(cdir)
            try:
                store.load()
            except KeyringError as exc:
                raise KeyringError(
                    f"{exc} (or log in once with `tunehand login --insecure-token-file`)"
                ) from None
        name = self._config.device_name or default_device_name()
        body = {"user": user, "password": password, "device_id": device_id(cdir)}
        http = HttpClient(server, ca_file=self._config.ca_file)
        try:
            status, payload = http.request("POST", "/v1/auth/login", {**body, "device_name": name})
        finally:
            http.close()
        if status != 200:
            _, message = error_message(payload, f"login failed ({status})")
            if status in (401, 429):
                raise AuthError(message)
            if status >= 500:
                raise ServerUnreachable(message)
            raise UsageError(message)
        store.save(
            Credentials(
                server=server,
                user=user,
                device_id=body["device_id"],
                access_token=payload["access_token"],
                access_expires_at=time.time() + float(payload["expires_in"]),
                refresh_token=payload["refresh_token"],
            )
        )
        save_server(cdir, server)
        self._server = server
        with self._lock:
            self._client = None
        return Account(server, user)

    # --- the session --------------------------------------------------------------

    async def run(self, on_snapshot: SnapshotSink) -> None:
        def adapt(snap: Snapshot) -> None:
            event = "" if snap.event in DERIVED_EVENTS else snap.event
            if self._notice:
                event, self._notice = self._notice, ""
            self._desktop.on_snapshot(snap)
            on_snapshot(
                SessionSnapshot(
                    snap.device_id,
                    snap.connected,
                    snap.state,
                    snap.track,
                    snap.devices,
                    snap.server_time_ms,
                    snap.position_ms,
                    event,
                    self._plays,
                )
            )

        ns = self._namespace()
        try:
            agent = await asyncio.to_thread(build_agent, ns, on_snapshot=adapt, plays=True)
        except AuthError:
            raise
        except TunehandError as exc:  # libmpv missing or broken: still a remote
            agent = await asyncio.to_thread(build_agent, ns, on_snapshot=adapt, plays=False)
            self._plays = False
            self._notice = f"this terminal cannot play ({exc}); it works as a remote"
        self._agent = agent
        await self._desktop.start(agent)
        await agent.run()

    def server_now(self) -> int:
        if self._agent is not None:
            return self._agent.server_now()
        return int(time.time() * 1000)

    async def command(self, op: str, **fields: Any) -> Result:
        agent = self._agent
        if agent is None:
            raise ServerUnreachable("not connected to the server yet")
        for key in ("track_ids", "entry_ids"):
            if key in fields:
                fields[key] = tuple(fields[key])
        try:
            return await asyncio.wait_for(
                asyncio.shield(agent.command(op, **fields)), COMMAND_WAIT_S
            )
        except TimeoutError:
            return Result("", "unavailable", f"{op}: no answer yet; it applies when it arrives")

    async def pull(self) -> Result:
        agent = self._agent
        if agent is None:
            raise ServerUnreachable("not connected to the server yet")
        return await self.command("transfer", device_id=agent.device.id)

    async def close(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            await agent.leave()
        await self._desktop.close()

        def shut() -> None:
            with self._lock:
                if self._client is not None:
                    self._client.http.close()
                    self._client = None

        await asyncio.to_thread(shut)

    # --- library (REST) -----------------------------------------------------------

    async def _get(self, path: str) -> Any:
        def call() -> Any:
            with self._lock:
                if self._client is None:
                    self._client = client_for(self._namespace())
                return self._client.request("GET", path)

        return await asyncio.to_thread(call)

    async def search(self, query: str, limit: int = 200) -> list[TrackView]:
        payload = await self._get(f"/v1/search?q={quote(query[:200])}&limit={limit}")
        return _tracks(payload["tracks"])

    async def artists(self) -> list[Artist]:
        rows = (await self._get("/v1/artists"))["artists"]
        return [Artist(r["key"], r["name"], r["albums"], r["tracks"]) for r in rows]

    async def albums(self, artist_key: str) -> list[Album]:
        rows = (await self._get(f"/v1/artists/{quote(artist_key)}/albums"))["albums"]
        return [Album(r["id"], r["title"], r["artist"], r["year"], r["tracks"]) for r in rows]

    async def album_tracks(self, album_id: str) -> list[TrackView]:
        return _tracks((await self._get(f"/v1/albums/{quote(album_id)}/tracks"))["tracks"])

    async def playlists(self) -> list[PlaylistInfo]:
        rows = (await self._get("/v1/playlists"))["playlists"]
        return [PlaylistInfo(r["name"], r["tracks"]) for r in rows]

    async def playlist(self, name: str) -> list[TrackView]:
        return _tracks((await self._get(f"/v1/playlists/{quote(name)}"))["tracks"])

    async def likes(self) -> list[TrackView]:
        return _tracks((await self._get("/v1/likes"))["tracks"])

    async def history(self) -> list[Played]:
        rows = (await self._get(f"/v1/history?limit={HISTORY_LIMIT}"))["history"]
        return [
            Played(r["track_id"], _track(r["track"]), r["played_ms"], r.get("device_id"))
            for r in rows
        ]

    async def queue(self) -> list[QueueItem]:
        entries = (await self._get("/v1/session/queue"))["entries"]
        return [QueueItem(e["entry_id"], e["track_id"], _track(e["track"])) for e in entries]


def _track(obj: Any) -> TrackView | None:
    if obj is None:
        return None
    return convert(obj, TrackView)


def _tracks(rows: list[Any]) -> list[TrackView]:
    out = []
    for r in rows:
        with contextlib.suppress(TunehandError):
            if (t := _track(r)) is not None:
                out.append(t)
    return out
