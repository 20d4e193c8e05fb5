"""What a running server holds, built in the app's lifespan and handed to every request."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.bus import DEFAULT_PREFIX, Bus
from tunehand.server.hub import Hub
from tunehand.server.library.art import ArtCache
from tunehand.server.library.service import Library
from tunehand.server.revocation import DeviceCheck
from tunehand.server.service import SessionService
from tunehand.server.streams import Signer
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
