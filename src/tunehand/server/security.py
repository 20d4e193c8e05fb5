"""The `tunehand.security` log: one line per security event, for an operator to read or
a log watcher (fail2ban and the like) to act on.

A line is the event's name and then `key=value` fields, e.g.

    2026-12-07 08:00:00,123 tunehand.security: login_failed user=alice address=192.0.2.7

A value of letters, digits and `._-@:/[]` is written as it is; any other value is a JSON
string (quotes, with control characters and everything beyond ASCII escaped), so a user
name sent by a stranger cannot forge or break a line. Passwords and tokens are never
passed here. The logger is at INFO, so the lines show with the server's WARNING default.

The lines go to the server's stderr (with its other log lines) and, from `serve` and
`admin` alike, to `security.log` in the data dir (mode 0600, appended to, never rotated
by tunehand: logrotate's `copytruncate` suits it).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("tunehand.security")
log.setLevel(logging.INFO)

_PLAIN = re.compile(r"[A-Za-z0-9._\-@:/\[\]]+")

LOGIN_FAILED = "login_failed"
LOGIN_THROTTLED = "login_throttled"
REFRESH_REUSED = "refresh_reused"
DEVICE_REVOKED = "device_revoked"
LOGOUT = "logout"
DEVICE_CODE_APPROVED = "device_code_approved"
DEVICE_CODE_DENIED = "device_code_denied"
USER_ADDED = "user_added"
USER_REMOVED = "user_removed"
APP_PASSWORD_CREATED = "app_password_created"  # noqa: S105 (an event name)


def _value(v: object) -> str:
    text = str(v)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def line(event: str, **fields: object) -> str:
    """The text of one event's line (after the logger's time and name)."""
    return " ".join([event, *(f"{k}={_value(v)}" for k, v in fields.items())])


def event(event: str, **fields: object) -> None:
    """Log one security event. Never pass a password or a token."""
    log.info("%s", line(event, **fields))


FILE_NAME = "security.log"
FORMAT = "%(asctime)s %(name)s: %(message)s"


def to_file(data_dir: Path) -> None:
    """Also append the lines to `data_dir`/security.log (created 0600); once per process."""
    path = data_dir / FILE_NAME
    for h in log.handlers:
        if getattr(h, "tunehand_path", None) == path:
            return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8", buffering=1))
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.tunehand_path = path  # type: ignore[attr-defined]
    log.addHandler(handler)
