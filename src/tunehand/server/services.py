"""What a running server holds, built in the app's lifespan and handed to every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from tunehand.server.bus import Bus
from tunehand.server.hub import Hub
from tunehand.server.library.service import Library
from tunehand.server.service import SessionService
from tunehand.server.streams import Signer


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8440
    music: tuple[Path, ...] = ()
    data_dir: Path = Path(".")
    database_url: str | None = None
    redis_url: str | None = None
    scan_on_start: bool = True
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)


@dataclass(eq=False)
class Services:
    settings: Settings
    engine: AsyncEngine
    bus: Bus
    hub: Hub
    signer: Signer
    sessions: SessionService
    library: Library
