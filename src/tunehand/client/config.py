"""The client's config dir and what it holds, apart from tokens.

Owns: choosing the config dir (`--config-dir`, then `TUNEHAND_CONFIG_DIR`, then the
platformdirs user config dir), reading `config.toml` into a frozen `Config`, the one edit
tunehand makes to that file (`save_server`), the device id the server minted at the first
login in `device-id`,
and the private-file helpers (`ensure_config_dir`, `write_file_atomic`) that the
credential stores reuse. The dir is created with mode 0700 on first write, never on read.

Every failure is a `ConfigError` whose message is one line that names the file and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from tunehand.errors import AuthError, ConfigError, UsageError

CONFIG_FILE = "config.toml"
COVER_ART_MODES = ("auto", "blocks", "off")
STREAM_QUALITIES = ("original", "high", "low")
DEVICE_ID_FILE = "device-id"

# Patterns, not compiled here: `re` compiles (and caches) them on first use, which
# `ctl status` never makes.
_DEVICE_ID_RE = r"^d[0-9a-f]{20}$"
_TOML_POSITION_RE = r"\s*\(at (?:line (\d+), column \d+|end of document)\)$"


class Config(NamedTuple):
    """What `config.toml` says; every field is optional.

    A NamedTuple rather than a dataclass: importing `dataclasses` costs `ctl` ~10 ms.
    """

    server: str | None = None
    device_name: str | None = None
    mpv_options: Mapping[str, str] = MappingProxyType({})
    keys: Mapping[str, str] = MappingProxyType({})
    theme: str | None = None
    ca_file: str | None = None
    notifications: bool = True
    cover_art: str = "auto"
    """"auto" (the terminal's best: Kitty, Sixel, else half blocks), "blocks" or "off"."""
    stream_quality: str = "original"
    """What this device's player fetches: "original" (the file), or an Opus transcode,
    "high" (160 kb/s) or "low" (64 kb/s) for a slow link."""
    hooks: Mapping[str, tuple[str, ...]] = MappingProxyType({})
    """`[hooks]`: event name (`on_play`, ...) -> the command to run, as its arguments."""
    offline_max_mb: int = 2048
    """What the offline cache may hold beyond the pinned tracks (MB)."""
    offline_ahead: int = 3
    """How many tracks of the queue a playing device caches ahead (0: none)."""
    warm: bool = True
    """May the server keep this device loaded paused as the predicted next device
    (`warm = false`: never)."""


def resolve_config_dir(cli_value: str | None, environ: Mapping[str, str]) -> Path:
    """`--config-dir` wins, then `TUNEHAND_CONFIG_DIR`, then the platform's user config dir.

    Nothing is created here: reading a config must not leave a directory behind.
    """
    chosen = cli_value or environ.get("TUNEHAND_CONFIG_DIR")
    if chosen:
        return Path(chosen).expanduser().absolute()
    import platformdirs  # only when no config dir is given: keeps `ctl` quick

    return Path(platformdirs.user_config_dir("tunehand")).absolute()


def ensure_config_dir(config_dir: Path) -> None:
    """Create the config dir (mode 0700) if it does not exist yet."""
    try:
        config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the config dir {config_dir}: {exc.strerror}: "
            "fix its parent's permissions or choose another with --config-dir"
        ) from exc


def write_file_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically; the file has `mode` from the moment it exists.

    Writes a temporary file beside `path` (created with `mode`, never wider), fsyncs it and
    `os.replace`s it over `path`, so a reader sees either the old or the new content.
    Creates the parent dir with mode 0700 if needed. Raises OSError; callers map it.
    """
    ensure_config_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widens past `mode`
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_config(config_dir: Path) -> Config:
    """Read `config_dir/config.toml`; a missing file is an empty config.

    Unknown top-level keys are ignored (a newer tunehand may have written them).
    """
    path = config_dir / CONFIG_FILE
    text = _read_config_text(path)
    if text is None:
        return Config()
    return _config_from_table(_parse_toml(path, text), path)


def save_server(config_dir: Path, server: str) -> None:
    """Set the top-level `server` key of config.toml, keeping every other line as it is."""
    save_setting(config_dir, "server", server)


def save_setting(config_dir: Path, key: str, value: str) -> None:
    """Set a top-level string key of config.toml, keeping every other line as it is."""
    path = config_dir / CONFIG_FILE
    old = _read_config_text(path)
    if old is None:
        old = ""
    else:
        _parse_toml(path, old)  # refuse to edit a file we cannot read back
    new = _with_key_line(old, key, value)
    try:
        ok = _toml().loads(new).get(key) == value
    except _toml().TOMLDecodeError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{path}: could not set {key} automatically: "
            f"edit the file and set {key} = {_toml_string(value)} by hand"
        )
    mode = 0o600
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    try:
        write_file_atomic(path, new.encode("utf-8"), mode)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}: fix the permissions of {config_dir}"
        ) from exc


def stored_device_id(config_dir: Path) -> str | None:
    """This config dir's device id, or None before its first login (the server mints
    the id at login; the client never makes one)."""
    return _read_device_id(config_dir / DEVICE_ID_FILE)


def device_id(config_dir: Path) -> str:
    """This config dir's device id; "not logged in" (AuthError) before the first login."""
    found = stored_device_id(config_dir)
    if found is None:
        raise AuthError("not logged in: this device has no id yet: run `tunehand login URL`")
    return found


def save_device_id(config_dir: Path, device: object) -> str:
    """Keep the id the server answered at login (0600, replaced atomically); a
    malformed id is refused with one line, so the file always reads back."""
    if not isinstance(device, str) or not re.fullmatch(_DEVICE_ID_RE, device):
        raise UsageError("the server's login answer has no valid device_id")
    path = config_dir / DEVICE_ID_FILE
    try:
        write_file_atomic(path, (device + "\n").encode("ascii"), 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}: fix the permissions of {config_dir}"
        ) from exc
    return device


DEVICE_LOCK_FILE = "device.lock"
_held_locks: dict[Path, int] = {}


def hold_device_lock(config_dir: Path) -> None:
    """Be the one process playing as this config dir's device, until this process ends:
    a second one (receiver, TUI, resume, mpd) would share its device id, and two
    connections of one device replace each other. Holding it twice in one process is
    fine. The lock is an flock on `device.lock`, so a crashed process leaves none."""
    path = config_dir / DEVICE_LOCK_FILE
    key = path.resolve()
    if key in _held_locks:
        return
    try:
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot open {path}: {exc.strerror}: fix the permissions of {config_dir}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"another tunehand device process already runs on {config_dir}: stop it, or"
            " give this one its own --config-dir"
        ) from None
    _held_locks[key] = fd


def default_device_name() -> str:
    """The name a device gets when config.toml does not set `device_name`."""
    return socket.gethostname()


def _read_config_text(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}: fix its permissions or use --config-dir"
        ) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path} line {line}: not valid UTF-8: save the file as UTF-8") from exc


def _read_device_id(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}: fix its permissions or use --config-dir"
        ) from exc
    if not re.match(_DEVICE_ID_RE, text):
        raise ConfigError(
            f"{path} is damaged: delete it (this device then gets a new id and must log in again)"
        )
    return text


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc).splitlines()[0] if str(exc) else "invalid TOML"
        match = re.search(_TOML_POSITION_RE, message)
        if match is None:
            line = "?"
        elif match.group(1) is not None:
            line = match.group(1)
        else:
            line = str(text.count("\n") + 1)
        reason = re.sub(_TOML_POSITION_RE, "", message)
        reason = reason[:1].lower() + reason[1:]
        raise ConfigError(f"{path} line {line}: {reason}: fix that line") from exc


def _config_from_table(table: dict[str, Any], path: Path) -> Config:
    return Config(
        server=_optional_str(table, "server", path),
        device_name=_optional_str(table, "device_name", path),
        mpv_options=_mpv_options(table.get("mpv_options", {}), path),
        keys=_string_table(table.get("keys", {}), "keys", path),
        theme=_optional_str(table, "theme", path),
        ca_file=_optional_str(table, "ca_file", path),
        notifications=_optional_bool(table, "notifications", path, default=True),
        cover_art=_choice(table, "cover_art", COVER_ART_MODES, path),
        stream_quality=_choice(table, "stream_quality", STREAM_QUALITIES, path),
        hooks=_hooks(table.get("hooks", {}), path),
        offline_max_mb=_int_in(table, "offline_max_mb", 2048, 0, 1 << 24, path),
        offline_ahead=_int_in(table, "offline_ahead", 3, 0, 50, path),
        warm=_optional_bool(table, "warm", path, default=True),
    )


HOOK_NAMES = ("on_track_change", "on_play", "on_pause", "on_handoff", "on_device_change")
MAX_HOOK_ARGS = 100
MAX_HOOK_ARG_CHARS = 4096


def _hooks(value: object, path: Path) -> Mapping[str, tuple[str, ...]]:
    """`[hooks]`: each a non-empty list of strings (the program and its arguments; no
    shell), or an empty list to disable it."""
    if not isinstance(value, dict):
        raise _wrong_type(path, "hooks", "a table", value)
    out: dict[str, tuple[str, ...]] = {}
    for key, argv in value.items():
        if key not in HOOK_NAMES:
            raise ConfigError(
                f"{path}: hooks.{key[:40]} is not a hook; use {', '.join(HOOK_NAMES)}"
            )
        wanted = "a list of strings (the program and its arguments)"
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise _wrong_type(path, f"hooks.{key}", wanted, argv)
        if len(argv) > MAX_HOOK_ARGS or any(
            len(a) > MAX_HOOK_ARG_CHARS or "\x00" in a for a in argv
        ):
            raise ConfigError(f"{path}: hooks.{key} is too long or holds a NUL: fix that value")
        if argv and argv[0]:
            out[key] = tuple(argv)
    return MappingProxyType(out)


def _int_in(table: dict[str, Any], key: str, default: int, lo: int, hi: int, path: Path) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(path, key, "an integer", value)
    if not lo <= value <= hi:
        raise ConfigError(f"{path}: {key} must be from {lo} to {hi}, not {value}: fix that value")
    return value


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _wrong_type(path: Path, key: str, wanted: str, value: object) -> ConfigError:
    return ConfigError(f"{path}: {key} must be {wanted}, not {_toml_type(value)}: fix that value")


def _optional_str(table: dict[str, Any], key: str, path: Path) -> str | None:
    value = table.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _wrong_type(path, key, "a string", value)


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], path: Path) -> str:
    """A string key that must be one of `choices` (the first is the default)."""
    value = table.get(key, choices[0])
    if not isinstance(value, str):
        raise _wrong_type(path, key, "a string", value)
    if value not in choices:
        options = ", ".join(f'"{c}"' for c in choices)
        raise ConfigError(
            f"{path}: {key} must be one of {options}, not {value[:40]!r}: fix that value"
        )
    return value


def _optional_bool(table: dict[str, Any], key: str, path: Path, *, default: bool) -> bool:
    value = table.get(key, default)
    if isinstance(value, bool):
        return value
    raise _wrong_type(path, key, "true or false", value)


def _string_table(value: object, key: str, path: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _wrong_type(path, key, "a table", value)
    result: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(item, str):
            raise _wrong_type(path, f"{key}.{name}", "a string", item)
        result[name] = item
    return result


def _mpv_options(value: object, path: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _wrong_type(path, "mpv_options", "a table", value)
    result: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, bool):
            result[name] = "yes" if item else "no"
        elif isinstance(item, str | int | float):
            result[name] = str(item)
        else:
            raise _wrong_type(path, f"mpv_options.{name}", "a string, number or boolean", item)
    return result


def _toml_string(value: str) -> str:
    """`value` as a TOML basic string."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _with_key_line(text: str, key: str, value: str) -> str:
    """Replace or insert the top-level `key = ...` line; leave every other line alone."""
    newline = "\r\n" if "\r\n" in text else "\n"
    line = f"{key} = {_toml_string(value)}{newline}"
    key_re = re.compile(rf"""^\s*(?:{key}|"{key}"|'{key}')\s*=""")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    first_table = next(
        (i for i, raw in enumerate(lines) if raw.lstrip().startswith("[")), len(lines)
    )
    for i in range(first_table):
        if key_re.match(lines[i]):
            lines[i] = line
            return "".join(lines)
    # Insert after the last top-level key, before any comments that lead into a table.
    at = first_table
    while at > 0 and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
        at -= 1
    if at == 0 and first_table == len(lines):
        at = len(lines)  # a file of only comments: append
    lines.insert(at, line)
    return "".join(lines)


def _toml() -> Any:
    """tomllib, imported only when a config file exists (keeps `ctl` quick)."""
    import tomllib

    return tomllib
