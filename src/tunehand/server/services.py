"""What a running server holds, built in the app's lifespan and handed to every request."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.bus import DEFAULT_PREFIX, Bus
from tunehand.server.digests import FileDigests
from tunehand.server.hub import Hub
from tunehand.server.library.art import ArtCache
from tunehand.server.library.service import Library
from tunehand.server.limits import DEFAULT_MAX_DEVICES, Buckets, HashGate, default_hash_gate
from tunehand.server.lyrics import LRCLIB_URL, LyricsSource
from tunehand.server.podcasts.service import Podcasts
from tunehand.server.radio import Autoplay
from tunehand.server.revocation import DeviceCheck
from tunehand.server.scrobble_clients import LASTFM_AUTH_URL, LASTFM_URL
from tunehand.server.scrobbling import Scrobbler
from tunehand.server.service import SessionService
from tunehand.server.streams import Signer
from tunehand.server.transcode import Transcoder
from tunehand.server.websocket import SocketSet


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8440
    music: tuple[Path, ...] = ()
    data_dir: Path = Path(".")
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_PREFIX
    """Put before every Redis key and channel: deployments sharing a Redis differ in it."""
    scan_on_start: bool = True
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    # Read once, when the server builds its settings (tests shorten them).
    device_code_ttl_s: int = field(
        default_factory=lambda: _env_int("TUNEHAND_DEVICE_CODE_TTL_S", 600)
    )
    refresh_grace_s: int = field(default_factory=lambda: _env_int("TUNEHAND_REFRESH_GRACE_S", 10))
    max_devices: int = DEFAULT_MAX_DEVICES
    """Devices of one account online at once (`serve --max-devices`)."""
    purge_interval_s: int = field(
        default_factory=lambda: _env_int("TUNEHAND_PURGE_INTERVAL_S", 3600)
    )
    """How often expired tokens, codes and stale device rows are purged."""
    allow_private_feeds: bool = False
    """Podcast feeds and enclosures may be on private or loopback addresses
    (`serve --allow-private-feeds`)."""
    feed_refresh_s: int = field(default_factory=lambda: _env_int("TUNEHAND_FEED_REFRESH_S", 3600))
    """How often each podcast feed is fetched again."""
    max_podcasts: int = field(default_factory=lambda: _env_int("TUNEHAND_MAX_PODCASTS", 200))
    """Podcast subscriptions one account may keep."""
    feed_timeout_s: int = field(default_factory=lambda: _env_int("TUNEHAND_FEED_TIMEOUT_S", 20))
    """The most a feed's fetch may take, all of it (a slow host is cut off there)."""
    max_transcodes: int | None = None
    """Encoders (ffmpeg) running at once on this instance, all its workers together
    (`serve --max-transcodes`; default: one per core)."""
    encoder_slots: Path | None = None
    """The slot folder the workers of one `serve --workers N` share the encoders through
    (`encoder_slots`); None: this process's own."""
    lyrics_online: bool = False
    """Ask LRCLIB for lyrics a track's file lacks (`lyrics_online` in `server.toml`)."""
    lrclib_url: str = LRCLIB_URL
    """LRCLIB's address (`lrclib_url` in `server.toml`; tests use a local stand-in)."""
    lastfm_api_key: str = ""
    lastfm_api_secret: str = ""
    """The server's Last.fm API account (`server.toml`): needed for `scrobble add lastfm`."""
    lastfm_url: str = LASTFM_URL
    lastfm_auth_url: str = LASTFM_AUTH_URL


REST_PER_S = 50
REST_BURST = 200.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip().isascii() and raw.strip().isdigit() else default


@dataclass(eq=False)
class Services:
    settings: Settings
    engine: AsyncEngine
    bus: Bus
    hub: Hub
    signer: Signer
    sessions: SessionService
    library: Library
    art: ArtCache = field(default_factory=ArtCache)
    """Resized cover art, shared by this instance's requests."""
    sockets: SocketSet = field(default_factory=SocketSet)
    """This instance's open channel websockets (their keepalive)."""
    links: DeviceCheck | None = None
    """Whether a device's stream and art links still work (set at start)."""
    hash_gate: HashGate = field(default_factory=default_hash_gate)
    """Password hashing in progress (see `limits.HashGate`)."""
    rest_buckets: Buckets = field(
        default_factory=lambda: Buckets(_env_int("TUNEHAND_REST_PER_S", REST_PER_S), REST_BURST)
    )
    """Each account's authenticated REST requests on this instance."""
    scans: set[asyncio.Task[None]] = field(default_factory=set)
    """Rescans started by a request that answers before they end (Subsonic `startScan`)."""
    app_seen_ms: dict[str, int] = field(default_factory=dict)
    """When this instance last marked each Subsonic app (device id) seen: at most once a
    minute, so an app's requests do not each write."""
    transcoder: Transcoder = field(default_factory=Transcoder)
    """This instance's encoders (replaced at start by one built from the settings)."""
    podcasts: Podcasts | None = None
    """Podcast subscriptions and their fetcher (set at start)."""
    autoplay: Autoplay = field(init=False)
    """Autoplay: the accounts' switches, and topping up queues that run out (set at start)."""
    scrobbler: Scrobbler = field(init=False)
    """Scrobbling: services, rules and the outbox loop (set at start)."""
    lyrics: LyricsSource = field(default_factory=LyricsSource)
    """Lyrics from files and (when enabled) LRCLIB (replaced at start from the settings)."""
    digests: FileDigests = field(default_factory=FileDigests)
    """SHA-256 of library files, for clients that ask (`Want-Repr-Digest`)."""
