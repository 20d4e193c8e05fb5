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
    "lastfm_api_secret_file": str,
    "lastfm_url": str,
    "lastfm_auth_url": str,
}
"""What `server.toml` may say, and the type of each value."""
SECRET_ENV = "TUNEHAND_LASTFM_API_SECRET"  # noqa: S105 (a variable name)
SECRETS = ("lastfm_api_secret",)
"""Settings that are secrets: a file holding one must be the owner's alone (0600)."""
MAX_SECRET_FILE = 4096
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
    """`server.toml` in the data dir (none: {}); a bad one raises ConfigError. The Last.fm
    API secret comes from the file, from TUNEHAND_LASTFM_API_SECRET, or from the file
    `lastfm_api_secret_file` names (one of them)."""
    import tomllib

    path = ddir / CONFIG_FILE
    try:
        raw, mode = _read_private(path)
    except FileNotFoundError:
        raw, mode = b"", 0o600
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
    held = [k for k in SECRETS if k in config]
    if held:
        _refuse_open_mode(path, mode, f"holds {held[0]}")
    return _with_secret(path, config)


def _read_private(path: Path) -> tuple[bytes, int]:
    """A file's bytes and its permission bits, from the one descriptor (no race)."""
    with open(path, "rb") as f:
        return f.read(1 << 20), os.fstat(f.fileno()).st_mode & 0o777


def _refuse_open_mode(path: Path, mode: int, why: str) -> None:
    """Like ssh with a private key: a secret others can read is not used at all."""
    if mode & 0o077:
        raise ConfigError(
            f"{path}: {why} but is open to group or others (mode {mode:04o}):"
            f" run `chmod 600 {path}`"
        )


def _with_secret(path: Path, config: dict[str, object]) -> dict[str, object]:
    """`lastfm_api_secret` from exactly one of: server.toml, the environment, a file."""
    env = os.environ.get(SECRET_ENV, "")
    named = config.pop("lastfm_api_secret_file", None)
    given = [
        what
        for what, there in (
            ("lastfm_api_secret", "lastfm_api_secret" in config),
            (SECRET_ENV, bool(env)),
            ("lastfm_api_secret_file", named is not None),
        )
        if there
    ]
    if len(given) > 1:
        raise ConfigError(f"{path}: the Last.fm API secret is given twice ({' and '.join(given)})")
    if env:
        return {**config, "lastfm_api_secret": env.strip()}
    if isinstance(named, str):
        secret_path = Path(named).expanduser()
        if not secret_path.is_absolute():
            secret_path = path.parent / secret_path
        try:
            raw, mode = _read_private(secret_path)
        except OSError as exc:
            raise ConfigError(
                f"{path}: lastfm_api_secret_file {secret_path}: unreadable ({exc.strerror})"
            ) from exc
        _refuse_open_mode(secret_path, mode, "holds the Last.fm API secret")
        try:
            secret = raw[:MAX_SECRET_FILE].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{secret_path}: not UTF-8 text") from exc
        if not secret or len(raw) > MAX_SECRET_FILE or "\n" in secret:
            raise ConfigError(f"{secret_path}: must hold the Last.fm API secret on one line")
        return {**config, "lastfm_api_secret": secret}
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
