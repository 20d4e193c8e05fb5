"""Signed, expiring stream and cover-art URLs, fetched with no headers and no account token.

The signature is an HMAC over the track id and the expiry; the key is the server's
signing secret (created at first start, mode 0600, or given by environment so several
instances share it). Art URLs are signed with a subkey of it (a stream signature never
opens a picture, nor the reverse), and their expiry is rounded up to the hour so a
picture keeps one URL for an hour and clients can cache it by URL. `track_view` gives a
stored track its signed URLs.

Every URL a client gets is also bound to its device (`bind_urls`): `&d=<device id>&k=<mac>`
where the mac is over the signature with a key of that device, so a link works only for
the device it was given to, and the stream and art routes refuse a revoked device's
links (`tunehand.server.revocation.DeviceCheck`). The server binds them where it knows
the device: in what a channel sends (state fanned out to the account is signed once and
bound per connection) and in REST answers (for the token's device).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tunehand.errors import UsageError

if TYPE_CHECKING:
    from tunehand.core.protocol import TrackView
    from tunehand.server.db.library import StoredTrack
    from tunehand.server.db.podcasts import EpisodeRow

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


_SIGNED_URL = re.compile(rb'/v1/(?:stream|art)/[^"?/]+\?exp=[0-9]+&sig=([A-Za-z0-9_\-]+)(?=")')
"""A signed link inside JSON, not bound yet (a bound one has `&d=` after its signature)."""
DEVICE_KEYS = 4096


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self._art_key = self.subkey("art")
        self._device_key = self.subkey("device-urls")
        self._device_keys: dict[str, bytes] = {}

    def device_key(self, device_id: str) -> bytes:
        key = self._device_keys.get(device_id)
        if key is None:
            if len(self._device_keys) >= DEVICE_KEYS:
                self._device_keys.clear()
            key = hmac.new(self._device_key, device_id.encode(), hashlib.sha256).digest()
            self._device_keys[device_id] = key
        return key

    def device_mac(self, device_id: str, sig: str | bytes) -> str:
        """The mac binding the link signed `sig` to `device_id` (keyed BLAKE2b: one pass,
        as it runs for every link of every state a device is sent)."""
        raw = sig.encode() if isinstance(sig, str) else sig
        mac = hashlib.blake2b(raw, key=self.device_key(device_id), digest_size=18).digest()
        return base64.urlsafe_b64encode(mac).decode()

    def bind_urls(self, data: bytes, device_id: str) -> bytes:
        """`data` (JSON) with every signed link in it bound to `device_id`."""
        if b"&sig=" not in data:
            return data
        tail = "&d=" + quote(device_id, safe="")

        def bound(m: re.Match[bytes]) -> bytes:
            return m.group(0) + f"{tail}&k={self.device_mac(device_id, m.group(1))}".encode()

        return _SIGNED_URL.sub(bound, data)

    def verify_device(self, sig: str, device_id: str, mac: str) -> bool:
        """Whether `mac` binds the link signed `sig` to `device_id`."""
        if not device_id or len(device_id) > 64 or not mac:
            return False
        return hmac.compare_digest(self.device_mac(device_id, sig), mac)

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


def episode_view(signer: Signer, e: EpisodeRow, now_s: int) -> TrackView:
    """A podcast episode as clients see it: streamed through this server (the enclosure
    is fetched by the server, under its limits) at a signed link like a track's."""
    from tunehand.core.protocol import TrackView

    return TrackView(
        id=e.id,
        title=e.title,
        artist=e.podcast,
        album=e.podcast,
        duration_ms=e.duration_ms,
        genre="Podcast",
        url=signer.path(e.id, now_s),
    )
