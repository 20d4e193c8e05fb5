"""The real `Backend`: the device agent for the session, the REST client for the library.

The one module of `tunehand.tui` that imports the client pieces (the HTTP client,
the credential stores, the agent built by the client's composition root
`tunehand.client.root`, and mpv's player factory, handed to it).
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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunehand.client import device_login
from tunehand.client.agent import Agent
from tunehand.client.config import (
    Config,
    default_device_name,
    ensure_config_dir,
    load_config,
    resolve_config_dir,
    save_device_id,
    save_server,
    stored_device_id,
)
from tunehand.client.credentials import (
    TOKENS_FILE,
    Credentials,
    CredentialStore,
    FileStore,
    KeyringStore,
    open_store,
)
from tunehand.client.device_login import DeviceCode
from tunehand.client.hooks import Hooks
from tunehand.client.http import ApiClient, HttpClient, check_server_url, quote, same_server
from tunehand.client.root import Options, build_agent, client_for
from tunehand.core.commands import Result
from tunehand.core.lyrics import Lyrics, from_json
from tunehand.core.protocol import TrackView
from tunehand.core.snapshot import Snapshot
from tunehand.desktop.service import Desktop
from tunehand.errors import (
    AuthError,
    CommandRefused,
    KeyringError,
    NotFound,
    ServerUnreachable,
    TunehandError,
    UsageError,
)
from tunehand.tui.backend import (
    Account,
    Album,
    Artist,
    ChapterMark,
    DeviceLogin,
    InProgress,
    JamInfo,
    Played,
    PlaylistInfo,
    QueueItem,
    SearchResults,
    SessionSnapshot,
    SnapshotSink,
)
from tunehand.wire import convert

COMMAND_WAIT_S = 10.0
ART_CACHE_ENTRIES = 32
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
    cover_art: str = "auto"


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
        self._hooks = Hooks(config.hooks)
        self._device_codes: dict[str, tuple[str, DeviceCode]] = {}
        self._token_file = False
        """The user opted into the 0600 token file on the login screen."""
        self._art_http: HttpClient | None = None
        self._art_lock = threading.Lock()
        self._art: OrderedDict[tuple[str, int], bytes | None] = OrderedDict()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> tuple[LiveBackend, UiSettings]:
        """Read the config dir (before the app starts; a bad config.toml fails here)."""
        config_dir = resolve_config_dir(getattr(args, "config_dir", None), os.environ)
        config = load_config(config_dir)
        settings = UiSettings(dict(config.keys), config.theme, config.cover_art)
        return cls(args, config_dir, config), settings

    @property
    def default_server(self) -> str:
        return self._server

    def _options(self) -> Options:
        options = Options.of(self._args)._replace(config_dir=str(self._config_dir))
        return options._replace(server=self._server) if self._server else options

    # --- account ------------------------------------------------------------------

    async def account(self) -> Account | None:
        def load() -> Account | None:
            store = open_store(self._config_dir, os.environ, self._server or None)
            creds = store.load()
            if creds is None or (self._server and not same_server(creds.server, self._server)):
                return None  # the login screen, for the server asked for
            self._server = self._server or creds.server
            return Account(creds.server, creds.user or "?")

        return await asyncio.to_thread(load)

    async def login(self, server: str, user: str, password: str) -> Account:
        return await asyncio.to_thread(self._login, server, user, password)

    def _login(self, server: str, user: str, password: str) -> Account:
        server, store = self._prepare_login(server)
        body: dict[str, object] = {"user": user, "password": password}
        body["device_name"] = self._device_name()
        body["device_name_default"] = not self._config.device_name  # made unique: HOST-2
        dev = stored_device_id(self._config_dir)  # None on a first login: the server mints it
        if dev:
            body["device_id"] = dev
        http = HttpClient(server, ca_file=self._config.ca_file)
        try:
            status, payload = http.request("POST", "/v1/auth/login", body)
        finally:
            http.close()
        if status != 200:
            device_login.raise_login_error(status, payload)
        return self._logged_in(server, store, {**payload, "user": user})

    async def start_device_login(self, server: str) -> DeviceLogin:
        def begin() -> DeviceLogin:
            checked, _ = self._prepare_login(server)
            http = HttpClient(checked, ca_file=self._config.ca_file)
            try:
                code = device_login.start(
                    http,
                    stored_device_id(self._config_dir),
                    self._device_name(),
                    default=not self._config.device_name,
                )
            finally:
                http.close()
            self._device_codes[code.user_code] = (checked, code)
            return DeviceLogin(checked, code.user_code, code.verification_uri, code.expires_in_s)

        return await asyncio.to_thread(begin)

    async def finish_device_login(self, pending: DeviceLogin) -> Account:
        server, code = self._device_codes[pending.user_code]
        http = HttpClient(server, ca_file=self._config.ca_file)
        interval = code.interval_s
        try:
            while True:
                # RFC 8628: the client waits the announced interval between polls.
                await asyncio.sleep(interval)
                answer = await asyncio.to_thread(device_login.poll, http, code, interval)
                if answer.tokens is not None:
                    break
                interval = answer.interval_s
        finally:
            self._device_codes.pop(pending.user_code, None)
            await asyncio.to_thread(http.close)
        _, store = await asyncio.to_thread(self._prepare_login, server)
        return await asyncio.to_thread(self._logged_in, server, store, answer.tokens)

    def _device_name(self) -> str:
        return self._config.device_name or default_device_name()

    def _prepare_login(self, server: str) -> tuple[str, CredentialStore]:
        """Check the URL and open the token store, before the server is asked anything."""
        if os.environ.get("TUNEHAND_TOKEN"):
            raise UsageError("TUNEHAND_TOKEN is set: unset it to log in")
        server = check_server_url(server)
        cdir = self._config_dir
        ensure_config_dir(cdir)
        if self._token_file or os.path.lexists(cdir / TOKENS_FILE):
            return server, FileStore(cdir / TOKENS_FILE)
        store = KeyringStore(cdir)
        try:
            store.check()
        except KeyringError as exc:
            raise KeyringError(f"{exc} (or tick “keep the tokens in a file” below)") from None
        return server, store

    async def token_store_problem(self) -> str | None:
        def check() -> str | None:
            if self._token_file or os.path.lexists(self._config_dir / TOKENS_FILE):
                return None
            try:
                KeyringStore(self._config_dir).check()
            except KeyringError as exc:
                return str(exc)
            return None

        return await asyncio.to_thread(check)

    def use_token_file(self) -> str:
        self._token_file = True
        return str(self._config_dir / TOKENS_FILE)

    def _logged_in(self, server: str, store: CredentialStore, tokens: dict[str, Any]) -> Account:
        user = str(tokens.get("user") or "")
        dev = save_device_id(self._config_dir, tokens.get("device_id"))
        store.save(
            Credentials(
                server=server,
                user=user,
                device_id=dev,
                access_token=tokens["access_token"],
                access_expires_at=time.time() + float(tokens["expires_in"]),
                refresh_token=tokens["refresh_token"],
            )
        )
        save_server(self._config_dir, server)
        self._server = server
        with self._lock:
            self._client = None
        return Account(server, user or "?")

    # --- the session --------------------------------------------------------------

    async def run(self, on_snapshot: SnapshotSink) -> None:
        def adapt(snap: Snapshot) -> None:
            event = "" if snap.event in DERIVED_EVENTS else snap.event
            if self._notice:
                event, self._notice = self._notice, ""
            self._desktop.on_snapshot(snap)
            self._hooks.on_snapshot(snap)
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

        from tunehand.player.mpv_player import mpv_factory

        options = self._options()
        try:
            agent = await asyncio.to_thread(
                build_agent, options, on_snapshot=adapt, player=mpv_factory
            )
        except AuthError:
            raise
        except TunehandError as exc:  # libmpv missing or broken: still a remote
            agent = await asyncio.to_thread(build_agent, options, on_snapshot=adapt)
            self._plays = False
            self._notice = f"this terminal cannot play ({exc}); it works as a remote"
        self._agent = agent
        await self._desktop.start(agent)
        offline = asyncio.create_task(self._offline_start(agent))
        try:
            await agent.run()
        finally:
            offline.cancel()

    async def _offline_start(self, agent: Any) -> None:
        """No server at start: the session as last known, from the offline cache, paused
        until the user plays it (a start never plays on its own)."""
        first = asyncio.create_task(agent.first_state.wait())
        failed = asyncio.create_task(agent.channel.attempt_failed.wait())
        try:
            done, _ = await asyncio.wait({first, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()
            failed.cancel()
        if first in done or agent.offline is None or agent.player is None:
            return
        if agent.offline.start_from_cache(playing=False):
            self._notice = "offline: playing from the cache (paused: play to go on)"
            agent._publish()

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
            with self._art_lock:
                if self._art_http is not None:
                    self._art_http.close()
                    self._art_http = None

        await asyncio.to_thread(shut)

    # --- library (REST) -----------------------------------------------------------

    async def _get(self, path: str) -> Any:
        return await self._send("GET", path)

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        def call() -> Any:
            with self._lock:
                if self._client is None:
                    self._client = client_for(self._options())
                return self._client.request(method, path, body)

        return await asyncio.to_thread(call)

    async def set_like(self, track_id: str, liked: bool) -> None:
        await self._send("PUT" if liked else "DELETE", f"/v1/likes/{quote(track_id)}")

    async def save_playlist(self, name: str, track_ids: list[str]) -> None:
        await self._send("PUT", f"/v1/playlists/{quote(name)}", {"track_ids": track_ids})

    async def rename_playlist(self, name: str, new_name: str) -> None:
        await self._send("PATCH", f"/v1/playlists/{quote(name)}", {"name": new_name})

    async def delete_playlist(self, name: str) -> None:
        await self._send("DELETE", f"/v1/playlists/{quote(name)}")

    async def _cached(self) -> list[Any] | None:
        """What the offline cache holds, when this device has one (None: it has not)."""
        agent = self._agent
        cache = getattr(agent, "cache", None)
        if cache is None:
            return None
        rows: list[Any] = await asyncio.to_thread(cache.store.all)
        return rows

    async def search(self, query: str, limit: int = 200) -> SearchResults:
        try:
            return await self._search(query, limit)
        except ServerUnreachable:
            rows = await self._cached()
            if rows is None:
                raise
            from tunehand.client.offline import browse

            found = browse.search(rows, query[:200], limit)
            keys = {browse.artist_key(t) for t in found}
            ids = {t.album_id for t in found}
            return SearchResults(
                found,
                [Artist(*r) for r in browse.artists(rows) if r[0] in keys],
                [Album(*r) for r in browse.albums(rows) if r[0] in ids],
                [],
            )

    async def _search(self, query: str, limit: int) -> SearchResults:
        payload = await self._get(f"/v1/search?q={quote(query[:200])}&limit={limit}&groups=1")
        return SearchResults(
            _tracks(payload["tracks"]),
            _artists(payload.get("artists", [])),
            _albums(payload.get("albums", [])),
            [PlaylistInfo(r["name"], r["tracks"]) for r in payload.get("playlists", [])],
        )

    async def artists(self) -> list[Artist]:
        try:
            return _artists((await self._get("/v1/artists"))["artists"])
        except ServerUnreachable:
            from tunehand.client.offline import browse

            return [Artist(*r) for r in browse.artists(await self._cached_or_raise())]

    async def albums(self, artist_key: str) -> list[Album]:
        try:
            rows = (await self._get(f"/v1/artists/{quote(artist_key)}/albums"))["albums"]
            return _albums(rows)
        except ServerUnreachable:
            from tunehand.client.offline import browse

            cached = await self._cached_or_raise()
            return [Album(*r) for r in browse.albums(cached, artist_key)]

    async def album_tracks(self, album_id: str) -> list[TrackView]:
        try:
            return _tracks((await self._get(f"/v1/albums/{quote(album_id)}/tracks"))["tracks"])
        except ServerUnreachable:
            from tunehand.client.offline import browse

            return browse.album_tracks(await self._cached_or_raise(), album_id)

    async def _cached_or_raise(self) -> list[Any]:
        rows = await self._cached()
        if rows is None:
            raise ServerUnreachable("the server is unreachable and nothing is cached here")
        return rows

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

    async def jam(self) -> JamInfo | None:
        try:
            got = await self._get("/v1/jam")
        except NotFound:
            return None
        return JamInfo(
            got["host"],
            tuple(m["user"] for m in got["members"]),
            got["code"],
            bool(got["guests_can_control"]),
        )

    async def _jam_now(self) -> JamInfo:
        info = await self.jam()
        if info is None:
            raise NotFound("not in a jam")
        return info

    async def jam_start(self) -> JamInfo:
        await self._send("POST", "/v1/jam", {"guests_can_control": False})
        return await self._jam_now()

    async def jam_join(self, code: str) -> JamInfo:
        await self._send("POST", "/v1/jam/join", {"code": code.strip()[:200]})
        return await self._jam_now()

    async def jam_leave(self) -> str:
        try:
            got = await self._send("POST", "/v1/jam/leave", {})
        except CommandRefused:  # the host: ending is its way out
            await self._send("DELETE", "/v1/jam")
            return "jam ended: the guests are back on their own sessions"
        return f"left {got['host']}'s jam: back to your own session"

    async def chapters(self, track_id: str) -> list[ChapterMark]:
        payload = await self._get("/v1/session")
        track = payload.get("track")
        if not isinstance(track, dict) or track.get("id") != track_id:
            return []
        return [
            ChapterMark(str(c["title"]), int(c["start_ms"])) for c in payload.get("chapters") or ()
        ]

    async def in_progress(self) -> list[InProgress]:
        rows = (await self._get("/v1/continue"))["items"]
        return [
            InProgress(
                str(r["id"]),
                str(r["title"]),
                str(r["kind"]),
                int(r["position_ms"]),
                int(r["duration_ms"]),
                int(r["updated_ms"]),
            )
            for r in rows
        ]

    async def queue(self) -> list[QueueItem]:
        try:
            entries = (await self._get("/v1/session/queue"))["entries"]
        except ServerUnreachable:
            agent = self._agent
            cache = getattr(agent, "cache", None)
            if agent is None or cache is None:
                raise
            st = agent.shown()  # as played here offline, or as last known
            return [QueueItem(e.entry_id, e.track_id, cache.view(e.track_id)) for e in st.queue]
        return [QueueItem(e["entry_id"], e["track_id"], _track(e["track"])) for e in entries]

    async def lyrics(self, track_id: str) -> Lyrics | None:
        found = from_json(await self._get(f"/v1/tracks/{quote(track_id)}/lyrics"))
        return found if found is not None and found.lines else None

    # --- cover art ----------------------------------------------------------------

    async def art(self, url: str, size: int) -> bytes | None:
        """Fetch a signed art URL of this server (its own connection, not the library's).

        Pictures are content-addressed, so they are kept by path (the signature changes
        hourly, the picture never) in a small in-memory cache.
        """
        target = _server_target(url, self._server)
        if target is None:
            return None
        key = (target.split("?", 1)[0], size)
        if key in self._art:
            self._art.move_to_end(key)
            return self._art[key]

        def fetch() -> bytes | None:
            with self._art_lock:
                if self._art_http is None:
                    self._art_http = HttpClient(self._server, ca_file=self._config.ca_file)
                status, data = self._art_http.get_bytes(f"{target}&size={size}", "image/*")
            return data if status == 200 and data else None

        try:
            data = await asyncio.to_thread(fetch)
        except TunehandError:
            return None  # unreachable now: not cached, the next track change tries again
        self._art[key] = data
        while len(self._art) > ART_CACHE_ENTRIES:
            self._art.popitem(last=False)
        return data


def _server_target(url: str, server: str) -> str | None:
    """The path and query of a signed URL on `server` (None for another host's URL)."""
    if url.startswith("/") and "?" in url:
        return url
    base = server.rstrip("/")
    if base and url.startswith(base + "/") and "?" in url:
        return url[len(base) :]
    return None


def _artists(rows: list[Any]) -> list[Artist]:
    return [Artist(r["key"], r["name"], r["albums"], r["tracks"]) for r in rows]


def _albums(rows: list[Any]) -> list[Album]:
    return [Album(r["id"], r["title"], r["artist"], r["year"], r["tracks"]) for r in rows]


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
