"""Settings shared by `serve` and `admin`: data dir, database URL, Redis prefix, saved
music folders, and the server's `server.toml` (in the data dir)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

from tunehand.errors import ConfigError, UsageError
from tunehand.server.bus import DEFAULT_PREFIX
from tunehand.server.limits import DEFAULT_MAX_DEVICES
from tunehand.server.services import Settings

FOLDERS_FILE = "music-folders.json"
CONFIG_FILE = "server.toml"
CONFIG_KEYS: dict[str, type] = {
    "lyrics_online": bool,
    "lrclib_url": str,
    "lastfm_api_key": str,
    "lastfm_api_secret": str,
    "lastfm_url": str,
    "lastfm_auth_url": str,
}
"""What `server.toml` may say, and the type of each value."""
MAX_PREFIX = 100
MAX_DEVICES = 100_000
MAX_TRANSCODES = 1024


def data_dir(args: argparse.Namespace) -> Path:
    raw = getattr(args, "data_dir", None) or os.environ.get("TUNEHAND_DATA_DIR")
    if raw:
        return Path(raw).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("tunehand"))


def database_url(args: argparse.Namespace) -> str | None:
    return getattr(args, "database", None) or os.environ.get("TUNEHAND_DATABASE_URL") or None


def redis_prefix(args: argparse.Namespace) -> str:
    """`--redis-prefix`, else TUNEHAND_REDIS_PREFIX, else `tunehand:`."""
    raw = getattr(args, "redis_prefix", None) or os.environ.get("TUNEHAND_REDIS_PREFIX")
    if not raw:
        return DEFAULT_PREFIX
    if any(c.isspace() or not c.isprintable() for c in raw) or len(raw) > MAX_PREFIX:
        raise UsageError(
            f"--redis-prefix: printable characters without spaces, at most {MAX_PREFIX}"
        )
    return raw


def music_folders(args: argparse.Namespace, ddir: Path) -> tuple[Path, ...]:
    """The folders given now (and remembered for `admin rescan`), else the remembered ones."""
    given = [Path(m).expanduser().resolve() for m in getattr(args, "music", []) or []]
    path = ddir / FOLDERS_FILE
    if given:
        ddir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a left-over from a crash may have another mode: start afresh
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps([str(g) for g in given]))
        os.replace(tmp, path)
        return tuple(given)
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); pass --music DIR again") from exc
    if not isinstance(saved, list) or not all(isinstance(s, str) for s in saved):
        raise ConfigError(f"{path}: not a list of folders; pass --music DIR again")
    return tuple(Path(s) for s in saved)


def server_config(ddir: Path) -> dict[str, object]:
    """`server.toml` in the data dir (none: {}); a bad one raises ConfigError."""
    import tomllib

    path = ddir / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc.strerror})") from exc
    try:
        config = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    for key, value in config.items():
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(CONFIG_KEYS)})")
        if not isinstance(value, kind):
            raise ConfigError(f"{path}: {key} must be a {kind.__name__}")
        if key.endswith("_url") and not str(value).startswith(("http://", "https://")):
            raise ConfigError(f"{path}: {key} must be an http(s) URL")
    return config


def settings_from(args: argparse.Namespace, **extra: object) -> Settings:
    ddir = data_dir(args)
    config = server_config(ddir)
    port = getattr(args, "port", 8440)
    if not 0 <= port <= 65535:
        raise UsageError("--port: must be 0 to 65535")
    max_devices = getattr(args, "max_devices", None)
    if max_devices is None:
        max_devices = DEFAULT_MAX_DEVICES
    elif not 1 <= max_devices <= MAX_DEVICES:
        raise UsageError(f"--max-devices: must be 1 to {MAX_DEVICES}")
    max_transcodes = getattr(args, "max_transcodes", None)
    if max_transcodes is not None and not 1 <= max_transcodes <= MAX_TRANSCODES:
        raise UsageError(f"--max-transcodes: must be 1 to {MAX_TRANSCODES}")
    return Settings(
        host=getattr(args, "host", "127.0.0.1"),
        port=port,
        music=music_folders(args, ddir),
        data_dir=ddir,
        database_url=database_url(args),
        redis_url=getattr(args, "redis", None) or os.environ.get("TUNEHAND_REDIS_URL") or None,
        redis_prefix=redis_prefix(args),
        scan_on_start=not getattr(args, "no_scan", False),
        trusted_proxies=tuple(getattr(args, "trust_proxy", []) or []),
        max_devices=max_devices,
        max_transcodes=max_transcodes,
        allow_private_feeds=bool(getattr(args, "allow_private_feeds", False)),
        **config,  # type: ignore[arg-type]
    )
