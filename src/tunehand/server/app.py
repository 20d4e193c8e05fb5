"""The server application, built by a factory from `Settings`.

The lifespan opens the database (migrating it), the bus and the hub, loads the
signing key, starts the first library scan, and holds all of it in lifespan state;
there are no module globals. The channel websocket (`/v1/channel`) is not a route of
this app: uvicorn hands upgrade requests straight to `channel.protocol_factory`'s class,
which finds the services in the same lifespan state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from tunehand.core.model import SessionState
from tunehand.errors import StoreError, TunehandError
from tunehand.server import (
    api,
    api_app_passwords,
    api_art,
    api_device,
    api_jam,
    api_library,
    api_listening,
    api_podcasts,
    api_radio,
    api_scrobble,
    api_web,
    auth,
    purge,
    webapp,
)
from tunehand.server.bus import RedisBus, open_bus
from tunehand.server.db import migrate
from tunehand.server.db.engine import default_url, open_engine, unavailable_types, warm_pool
from tunehand.server.hub import Hub
from tunehand.server.library.service import Library
from tunehand.server.lyrics import LyricsSource
from tunehand.server.podcasts.fetch import Fetcher
from tunehand.server.podcasts.service import Podcasts
from tunehand.server.presence import RedisPresence, open_presence
from tunehand.server.radio import Autoplay
from tunehand.server.revocation import AccountWatch, DeviceCheck
from tunehand.server.scrobbling import LastfmApp, Scrobbler
from tunehand.server.service import SessionService
from tunehand.server.services import Services, Settings
from tunehand.server.streams import Signer, load_or_create_key
from tunehand.server.subsonic import routes as subsonic_routes
from tunehand.server.transcode import Transcoder, find_ffmpeg
from tunehand.server.web import ApiError, handle_error

log = logging.getLogger("tunehand.server")


def database_url(settings: Settings) -> str:
    return settings.database_url or default_url(settings.data_dir)


async def open_database(settings: Settings) -> Any:
    engine = open_engine(database_url(settings))
    try:
        await migrate.upgrade(engine)
    except (OperationalError, DBAPIError, OSError) as exc:
        await engine.dispose()
        raise StoreError(f"cannot open the database: {str(exc).splitlines()[0]}") from exc
    return engine


def create_app(
    settings: Settings,
    *,
    on_ready: Callable[[Services], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        import os

        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(auth.prime)
        engine = await open_database(settings)
        await warm_pool(engine)
        signer = Signer(load_or_create_key(settings.data_dir, os.environ))
        bus = open_bus(settings.redis_url, settings.redis_prefix)
        presence = open_presence(settings.redis_url, settings.redis_prefix)
        hub = Hub(bus, presence)
        try:
            await hub.start()
            if isinstance(presence, RedisPresence):
                await presence.start()
        except (OSError, RedisError) as exc:
            await engine.dispose()
            raise StoreError(f"cannot reach Redis at {settings.redis_url}: {exc}") from exc
        sessions = SessionService(engine, hub, signer)
        if isinstance(bus, RedisBus):
            bus.on_reconnect = sessions.resync_local
        library = Library(engine, settings.music, lambda line: log.warning("%s", line), progress)
        links = DeviceCheck(engine, hub)
        services = Services(settings, engine, bus, hub, signer, sessions, library, links=links)
        services.transcoder = Transcoder(
            settings.max_transcodes, find_ffmpeg(os.environ), settings.encoder_slots
        )
        fetcher = Fetcher(settings.allow_private_feeds, feed_timeout_s=settings.feed_timeout_s)
        services.podcasts = Podcasts(
            engine, fetcher, settings.feed_refresh_s, settings.max_podcasts
        )
        feeds = asyncio.create_task(services.podcasts.run())
        sleeper = asyncio.create_task(api_listening.run_sleep(sessions))
        services.scrobbler = Scrobbler(engine, signer, lastfm_app(settings))
        services.scrobbler.state_of = sessions.state
        services.autoplay = Autoplay(engine, sessions)
        sessions.on_commit = _both(
            services.scrobbler.observe_later, services.autoplay.observe_later
        )
        outbox = asyncio.create_task(services.scrobbler.run())
        services.lyrics = LyricsSource(
            settings.lyrics_online, settings.lrclib_url, lambda line: log.warning("%s", line)
        )
        watch = AccountWatch(engine, hub)
        watch.start()
        scan: asyncio.Task[None] | None = None
        if settings.music and settings.scan_on_start:
            scan = asyncio.create_task(_first_scan(library))
        purging = asyncio.create_task(purge.run(engine, settings.purge_interval_s))
        if on_ready is not None:
            on_ready(services)
        try:
            yield {"services": services}
        finally:
            for task in (scan, purging, feeds, sleeper, outbox, *services.scans):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await sessions.warm.close()
            await watch.close()
            await services.transcoder.close()
            await fetcher.close()
            await services.lyrics.close()
            await services.scrobbler.close()
            await services.autoplay.close()
            services.sockets.close()
            await hub.close_all(1001, "server going away")
            await presence.close()
            await bus.close()
            await engine.dispose()

    handlers: dict[Any, Any] = {
        ApiError: handle_error,
        TunehandError: handle_error,
        HTTPException: handle_error,
        Exception: handle_error,
        # Not left to the catch-all `Exception`, whose handler still re-raises (a traceback
        # in the log): a database restart is no bug, handle_error answers 503.
        **dict.fromkeys(unavailable_types(), handle_error),
    }
    return Starlette(
        routes=[
            *api.routes,
            *api_device.routes,
            *api_library.routes,
            *api_podcasts.routes,
            *api_listening.routes,
            *api_art.routes,
            *api_web.routes,
            *api_app_passwords.routes,
            *api_jam.routes,
            *api_scrobble.routes,
            *api_radio.routes,
            *subsonic_routes.routes,
            *webapp.routes,
        ],
        lifespan=lifespan,
        exception_handlers=handlers,
    )


async def _first_scan(library: Library) -> None:
    try:
        summary = await library.rescan()
    except StoreError as exc:
        log.error("library scan failed: %s", exc)
        return
    log.warning(
        "library scan finished: %d tracks (%d new or changed, %d removed, %d skipped)",
        summary.tracks,
        summary.changed,
        summary.removed,
        summary.skipped,
    )


def lastfm_app(settings: Settings) -> LastfmApp | None:
    """The server's Last.fm API account (`server.toml`), or None when it has none."""
    if not settings.lastfm_api_key or not settings.lastfm_api_secret:
        return None
    return LastfmApp(
        settings.lastfm_api_key,
        settings.lastfm_api_secret,
        settings.lastfm_url,
        settings.lastfm_auth_url,
    )


def _both(
    a: Callable[[int, SessionState], None], b: Callable[[int, SessionState], None]
) -> Callable[[int, SessionState], None]:
    """Tell both of every committed change (scrobbling and autoplay)."""

    def told(account_id: int, state: SessionState) -> None:
        a(account_id, state)
        b(account_id, state)

    return told
