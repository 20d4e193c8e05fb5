"""Signed, expiring stream and cover-art URLs, fetched with no headers and no account token.

The signature is an HMAC over the track id and the expiry; the key is the server's
signing secret (created at first start, mode 0600, or given by environment so several
instances share it). Art URLs are signed with a subkey of it (a stream signature never
opens a picture, nor the reverse), and their expiry is rounded up to the hour so a
picture keeps one URL for an hour and clients can cache it by URL. `track_view` gives a
stored track its signed URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tunehand.errors import UsageError

if TYPE_CHECKING:
    from tunehand.core.protocol import TrackView
    from tunehand.server.db.library import StoredTrack

STREAM_TTL_S = 12 * 3600
ART_TTL_S = 12 * 3600
ART_BUCKET_S = 3600
KEY_FILE = "signing.key"
KEY_ENV = "TUNEHAND_SIGNING_KEY"


def load_or_create_key(data_dir: Path, environ: dict[str, str] | os._Environ[str]) -> bytes:
    env = environ.get(KEY_ENV)
    if env:
        if len(env) < 32:
            raise UsageError(f"{KEY_ENV}: must be at least 32 characters")
        return env.encode()
    path = data_dir / KEY_FILE
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if mode & 0o077:
            raise UsageError(
                f"{path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`"
            )
        return path.read_bytes().strip()
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self._art_key = self.subkey("art")

    def subkey(self, purpose: str) -> bytes:
        """A key for another use of the server secret (e.g. refresh-token rotation)."""
        return hmac.new(self._key, b"tunehand-subkey\x00" + purpose.encode(), "sha256").digest()

    def signature(self, track_id: str, expires_s: int) -> str:
        mac = hmac.new(self._key, f"{track_id}\x00{expires_s}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()

    def path(self, track_id: str, now_s: int, ttl_s: int = STREAM_TTL_S) -> str:
        exp = now_s + ttl_s
        return f"/v1/stream/{track_id}?exp={exp}&sig={self.signature(track_id, exp)}"

    def verify(self, track_id: str, exp: str, sig: str, now_s: int) -> bool:
        if not _digits(exp) or len(exp) > 12 or int(exp) < now_s:
            return False
        return hmac.compare_digest(self.signature(track_id, int(exp)), sig)

    def art_signature(self, art_id: str, expires_s: int) -> str:
        mac = hmac.new(self._art_key, f"{art_id}\x00{expires_s}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()

    def art_path(self, art_id: str, now_s: int, ttl_s: int = ART_TTL_S) -> str:
        exp = ((now_s + ttl_s) // ART_BUCKET_S + 1) * ART_BUCKET_S
        return f"/v1/art/{art_id}?exp={exp}&sig={self.art_signature(art_id, exp)}"

    def verify_art(self, art_id: str, exp: str, sig: str, now_s: int) -> bool:
        if not _digits(exp) or len(exp) > 12 or int(exp) < now_s:
            return False
        return hmac.compare_digest(self.art_signature(art_id, int(exp)), sig)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def track_view(signer: Signer, stored: StoredTrack, now_s: int) -> TrackView:
    """A library track as clients see it: with its signed stream URL and art URL (or None)."""
    art = signer.art_path(stored.art_id, now_s) if stored.art_id else None
    return replace(stored.view, url=signer.path(stored.view.id, now_s), art_url=art)
