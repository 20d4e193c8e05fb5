"""The one exception tree of tunehand.

    TunehandError                 anything tunehand raises on purpose; str() is one line for a user
    ├── UsageError                bad arguments or config (exit 2)
    ├── ConfigError               a config file that cannot be read or parsed (exit 2)
    ├── AuthError                 not logged in, wrong password, token refused or revoked (exit 3)
    │   └── KeyringError          the OS keyring is missing, locked or hung
    │       └── NoKeyring         there is no OS keyring at all on this machine
    ├── ServerUnreachable         the server cannot be reached (exit 4)
    ├── NotFound                  no such device, track, playlist, entry or user (exit 5)
    ├── ProtocolError             the peer sent something we cannot understand (exit 1)
    ├── CommandRefused            the server refused a command (conflict, stale term...) (exit 1)
    ├── MediaError                a file that is not audio or cannot be read (exit 1)
    ├── QuotaError                an account would keep more than the server allows (exit 1)
    └── StoreError                the database failed (exit 1)

Library exceptions never leak past the adapter that called the library: it maps them
here with `raise X from exc`.
"""

from __future__ import annotations


class TunehandError(Exception):
    """Base of every error tunehand raises on purpose."""

    exit_code = 1


class UsageError(TunehandError):
    exit_code = 2


class ConfigError(TunehandError):
    exit_code = 2


class AuthError(TunehandError):
    exit_code = 3


class KeyringError(AuthError):
    pass


class NoKeyring(KeyringError):
    pass


class ServerUnreachable(TunehandError):
    exit_code = 4


class NotFound(TunehandError):
    exit_code = 5


class ProtocolError(TunehandError):
    pass


class CommandRefused(TunehandError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MediaError(TunehandError):
    pass


class StoreError(TunehandError):
    pass


class QuotaError(TunehandError):
    """The server's answer is 409 `quota`."""
