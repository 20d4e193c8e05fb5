"""Where the client keeps its login, and the lock around refreshing it.

Owns: the `Credentials` record and its compact JSON blob, the `CredentialStore` seam and
its three implementations, choosing one (`open_store`), and `refresh_lock`.

    open_store(config_dir, environ, server)
      TUNEHAND_TOKEN set        -> EnvStore      an access token from the environment (CI)
      config_dir/tokens.json    -> FileStore     the plain file the user opted into
      otherwise                 -> KeyringStore  the OS keyring (the default)

`keyring` is imported inside `KeyringStore`'s methods only, so importing this module is
cheap. Every keyring call runs in a daemon thread with a deadline, so a hung or locked
keyring becomes a one-line `KeyringError` instead of a hang. Library exceptions are mapped
to `KeyringError` / `AuthError` here. No message and no repr ever contains a token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from tunehand.client.config import ensure_config_dir, write_file_atomic
from tunehand.errors import AuthError, KeyringError, NoKeyring

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

TOKENS_FILE = "tokens.json"
REFRESH_LOCK_FILE = "refresh.lock"
KEYRING_SERVICE = "tunehand"
MAX_BLOB_BYTES = 2560  # Windows' credential store caps one secret at 2,560 bytes

_FALLBACKS = "use TUNEHAND_TOKEN / --insecure-token-file"
_NO_KEYRING = (
    "no OS keyring available: start gnome-keyring (or another Secret Service), "
    "set TUNEHAND_TOKEN, or log in with --insecure-token-file"
)
_LOCKED = (
    "the OS keyring is locked: unlock it (gnome-keyring/KWallet, e.g. log in to the "
    f"desktop session), or {_FALLBACKS}"
)

T = TypeVar("T")


class Credentials(NamedTuple):
    """One device's login on one server. Tokens are left out of repr().

    A NamedTuple rather than a dataclass: importing `dataclasses` costs `ctl` ~10 ms.
    """

    server: str
    user: str
    device_id: str
    access_token: str
    access_expires_at: float  # epoch seconds
    refresh_token: str

    def __repr__(self) -> str:
        return (
            f"Credentials(server={self.server!r}, user={self.user!r}, "
            f"device_id={self.device_id!r}, access_expires_at={self.access_expires_at!r})"
        )

    def to_json(self) -> str:
        """A compact JSON blob (well under `MAX_BLOB_BYTES` for normal tokens)."""
        return json.dumps(
            {
                "v": 1,
                "server": self.server,
                "user": self.user,
                "device_id": self.device_id,
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at,
                "refresh_token": self.refresh_token,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, blob: str | bytes) -> Credentials:
        """Parse a blob made by `to_json`; raise AuthError if it is damaged."""
        damaged = AuthError("the stored login is damaged: log in again with `tunehand login`")
        try:
            data = json.loads(blob)
        except (ValueError, UnicodeDecodeError):
            raise damaged from None
        if not isinstance(data, dict) or data.get("v") != 1:
            raise damaged
        strings = ("server", "user", "device_id", "access_token", "refresh_token")
        if not all(isinstance(data.get(key), str) for key in strings):
            raise damaged
        expires = data.get("access_expires_at")
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise damaged
        return cls(
            server=data["server"],
            user=data["user"],
            device_id=data["device_id"],
            access_token=data["access_token"],
            access_expires_at=float(expires),
            refresh_token=data["refresh_token"],
        )


class CredentialStore(Protocol):
    """Somewhere a login is kept. Every failure is an AuthError (or KeyringError)."""

    @property
    def location(self) -> str:
        """Where, for humans: "OS keyring (SecretService)", "file PATH (insecure)"..."""
        ...

    def load(self) -> Credentials | None:
        """The stored login, or None when there is none."""
        ...

    def save(self, credentials: Credentials) -> None:
        """Store (or replace) the login."""
        ...

    def delete(self) -> None:
        """Forget the login; forgetting a missing login is not an error."""
        ...


class KeyringStore:
    """The login in the OS keyring: service "tunehand", username = the config dir's path.

    Keying by the absolute config dir lets several devices (config dirs) live on one
    machine without colliding.
    """

    def __init__(self, config_dir: Path, timeout_s: float = 5.0) -> None:
        self.username = str(config_dir.resolve())
        self.timeout_s = timeout_s
        self._backend: KeyringBackend | None = None
        self._read_directly = False
        self.missing: str | None = None
        """Why there is no OS keyring here, once `load` found none (it then returns None)."""

    @property
    def location(self) -> str:
        if self._backend is None:
            return "OS keyring (SecretService)" if self._read_directly else "OS keyring"
        return f"OS keyring ({type(self._backend).__module__.rsplit('.', 1)[-1]})"

    def load(self) -> Credentials | None:
        """The login, or None; also None where the machine has no OS keyring at all (no
        login can be stored in one): `missing` then says so, for "not logged in" lines."""
        try:
            return self._load()
        except NoKeyring as exc:
            self.missing = str(exc)
            return None

    def check(self) -> None:
        """Raise KeyringError unless a login could be stored here (before logging in)."""
        self._load()

    def _load(self) -> Credentials | None:
        from tunehand.client.secret_service import Hung, Unavailable, read_secret

        blob: str | None
        try:
            # The fast path: a direct D-Bus read, without importing keyring.
            blob = read_secret(
                {"service": KEYRING_SERVICE, "username": self.username}, self.timeout_s
            )
            self._read_directly = True
        except Hung:
            raise KeyringError(
                f"the OS keyring did not answer within {self.timeout_s:g} s: unlock it "
                f"(gnome-keyring/KWallet), or {_FALLBACKS}"
            ) from None
        except Unavailable:
            blob = self._call(lambda kr: kr.get_password(KEYRING_SERVICE, self.username))
        if blob is None:
            return None
        try:
            return Credentials.from_json(blob)
        except AuthError:
            raise AuthError(
                "the login stored in the OS keyring is damaged: "
                "run `tunehand logout`, then `tunehand login`"
            ) from None

    def save(self, credentials: Credentials) -> None:
        blob = credentials.to_json()
        if len(blob.encode("utf-8")) > MAX_BLOB_BYTES:
            raise KeyringError(
                f"the login is larger than the {MAX_BLOB_BYTES} bytes an OS keyring entry "
                "may hold: log in with --insecure-token-file"
            )
        self._call(lambda kr: kr.set_password(KEYRING_SERVICE, self.username, blob))

    def delete(self) -> None:
        def delete(kr: KeyringBackend) -> None:
            from keyring.errors import PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError):  # nothing stored: logged out
                kr.delete_password(KEYRING_SERVICE, self.username)

        self._call(delete)

    def _call(self, operation: Callable[[KeyringBackend], T]) -> T:
        """Run `operation` on the backend in a daemon thread, giving up after the timeout."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(operation(self._get_backend()))
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)

        import threading  # only here: the fast path reads without a thread

        worker = threading.Thread(target=run, name="tunehand-keyring", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise KeyringError(
                f"the OS keyring did not answer within {self.timeout_s:g} s: unlock it "
                f"(gnome-keyring/KWallet), or {_FALLBACKS}"
            )
        if failure:
            mapped = _keyring_error(failure[0])
            if mapped is failure[0]:
                raise mapped
            raise mapped from failure[0]
        return outcome[0]

    def _get_backend(self) -> KeyringBackend:
        if self._backend is None:
            self._backend = _select_backend()
        return self._backend


def _select_backend() -> KeyringBackend:
    """Pick the keyring backend in a few ms: the env override, else SecretService directly.

    `keyring.get_keyring()` imports and probes every installed backend, so it is only the
    fallback when the Secret Service is not reachable.
    """
    import keyring
    import keyring.core
    from keyring.backends import chainer, fail, null

    name = os.environ.get("PYTHON_KEYRING_BACKEND")
    backend: KeyringBackend
    if name:
        try:
            backend = keyring.core.load_keyring(name)
        except Exception as exc:
            raise KeyringError(
                f"PYTHON_KEYRING_BACKEND={name} cannot be used ({type(exc).__name__}): "
                "fix or unset it"
            ) from exc
    else:
        try:
            from keyring.backends import SecretService

            SecretService.Keyring.priority  # noqa: B018 - raises when no Secret Service
            backend = SecretService.Keyring()  # type: ignore[no-untyped-call]
        except Exception:
            backend = keyring.get_keyring()
    unusable = isinstance(backend, fail.Keyring | null.Keyring) or (
        isinstance(backend, chainer.ChainerBackend) and not backend.backends
    )
    if unusable:
        raise NoKeyring(_NO_KEYRING)
    return backend


def _keyring_error(exc: BaseException) -> BaseException:
    """Map what a keyring backend raised to one line for the user."""
    if isinstance(exc, AuthError) or not isinstance(exc, Exception):
        return exc
    import keyring.errors

    locked: tuple[type[BaseException], ...] = (keyring.errors.KeyringLocked,)
    secretstorage_exceptions = sys.modules.get("secretstorage.exceptions")
    if secretstorage_exceptions is not None:
        locked += (
            secretstorage_exceptions.LockedException,
            secretstorage_exceptions.PromptDismissedException,
        )
    if isinstance(exc, locked):
        return KeyringError(_LOCKED)
    if isinstance(exc, keyring.errors.NoKeyringError):
        return NoKeyring(_NO_KEYRING)
    detail = " ".join(str(exc).split())[:160]
    what = type(exc).__name__ + (f": {detail}" if detail else "")
    return KeyringError(
        f"the OS keyring failed ({what}): check that gnome-keyring/KWallet is running "
        f"and unlocked, or {_FALLBACKS}"
    )


class FileStore:
    """The login in a plain JSON file (mode 0600) that the user explicitly opted into."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def location(self) -> str:
        return f"file {self.path} (insecure)"

    def load(self) -> Credentials | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._os_error("read", exc) from exc
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise AuthError(
                    f"{self.path} is readable by other users (mode {mode:04o}): "
                    f"run `chmod 600 {self.path}`"
                )
            try:
                blob = file.read(64 * 1024)
            except OSError as exc:
                raise self._os_error("read", exc) from exc
        try:
            return Credentials.from_json(blob)
        except AuthError:
            raise AuthError(
                f"{self.path} is damaged: delete it and log in again with "
                "`tunehand login --insecure-token-file`"
            ) from None

    def save(self, credentials: Credentials) -> None:
        try:
            write_file_atomic(self.path, credentials.to_json().encode("utf-8"), 0o600)
        except OSError as exc:
            raise self._os_error("write", exc) from exc

    def delete(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._os_error("delete", exc) from exc

    def _os_error(self, verb: str, exc: OSError) -> AuthError:
        return AuthError(
            f"cannot {verb} {self.path}: {exc.strerror}: fix the permissions of {self.path.parent}"
        )


class EnvStore:
    """An access token from `TUNEHAND_TOKEN` (containers, CI). Never refreshed or saved."""

    location = "TUNEHAND_TOKEN"

    def __init__(self, token: str, server: str | None = None) -> None:
        self._token = token
        self._server = server

    def load(self) -> Credentials | None:
        if not self._server:
            raise AuthError(
                "TUNEHAND_TOKEN is set but no server is configured: "
                "set server in config.toml or pass --server"
            )
        return Credentials(
            server=self._server,
            user="",
            device_id="",
            access_token=self._token,
            access_expires_at=math.inf,
            refresh_token="",
        )

    def save(self, credentials: Credentials) -> None:
        raise AuthError("TUNEHAND_TOKEN is set: unset it to log in or out")

    def delete(self) -> None:
        raise AuthError("TUNEHAND_TOKEN is set: unset it to log in or out")


def not_logged_in(store: CredentialStore, server: str) -> str:
    """The "not logged in" line, with the way to log in that works on this machine."""
    if getattr(store, "missing", None):
        return (
            f"not logged in: this machine has no OS keyring, so run `tunehand login {server} "
            "--insecure-token-file` (a 0600 file), start gnome-keyring (or another Secret "
            "Service), or set TUNEHAND_TOKEN"
        )
    return f"not logged in: run `tunehand login {server}`"


def open_store(config_dir: Path, environ: Mapping[str, str], server: str | None) -> CredentialStore:
    """TUNEHAND_TOKEN, else the opted-in tokens.json, else the OS keyring."""
    token = environ.get("TUNEHAND_TOKEN", "").strip()
    if token:
        return EnvStore(token, server)
    tokens_file = config_dir / TOKENS_FILE
    if os.path.lexists(tokens_file):
        return FileStore(tokens_file)
    return KeyringStore(config_dir)


def refresh_lock(config_dir: Path, *, timeout_s: float = 30.0) -> AbstractContextManager[None]:
    """Hold an exclusive `flock` on `config_dir/refresh.lock`: one token refresh per device.

    Waits up to `timeout_s` for another process to finish its refresh (0 = do not wait),
    then raises AuthError. The lock goes away with the process, even if it crashes.
    """
    return _refresh_lock(config_dir, timeout_s)


@contextlib.contextmanager
def _refresh_lock(config_dir: Path, timeout_s: float) -> Iterator[None]:
    path = config_dir / REFRESH_LOCK_FILE
    ensure_config_dir(config_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise AuthError(
            f"cannot open {path}: {exc.strerror}: fix the permissions of {config_dir}"
        ) from exc
    try:
        _flock_with_deadline(fd, path, timeout_s)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock_with_deadline(fd: int, path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuthError(
                    f"another tunehand process has held {path} for over {timeout_s:g} s "
                    "while refreshing the login: stop that process and retry"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
