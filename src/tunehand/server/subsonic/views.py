"""Library rows as Subsonic objects (`Child`, `AlbumID3`, `ArtistID3`) and the ids
they carry.

Ids: a track's and an album's are tunehand's own (`t…`/`a…`); an artist's is `ar` and
the hex of its key (tunehand names artists by a normalized key, which may hold any
character); a cover's is the picture's content hash (`c…`); a playlist's `pl` and its
row number; the one music folder is 1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePath
from typing import Any

from tunehand.core import search
from tunehand.server.db.library import ArtistRow, StoredTrack
from tunehand.server.db.subsonic import AlbumAgg

Payload = dict[str, Any]
Marks = dict[str, int] | None
"""An account's stars (ms when) or ratings (1 to 5) by id."""
FOLDER_ID = 1
ARTIST_PREFIX = "ar"
PLAYLIST_PREFIX = "pl"


def artist_id(key: str) -> str:
    return ARTIST_PREFIX + key.encode().hex()


def artist_key(sid: str) -> str | None:
    if not sid.startswith(ARTIST_PREFIX):
        return None
    try:
        return bytes.fromhex(sid[len(ARTIST_PREFIX) :]).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def key_of(album_artist: str) -> str:
    """The artist key of an album artist, as the library computes it."""
    return search.normalize(album_artist) or "unknown"


def iso(ms: int) -> str:
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _marked(out: Payload, sid: str, starred: Marks, rated: Marks) -> Payload:
    if starred and sid in starred:
        out["starred"] = iso(starred[sid])
    if rated and sid in rated:
        out["userRating"] = rated[sid]
    return out


def song(t: StoredTrack, starred: Marks = None, rated: Marks = None) -> Payload:
    v = t.view
    suffix = PurePath(t.path).suffix.lstrip(".").lower()
    out: Payload = {
        "id": v.id,
        "parent": t.album_id,
        "isDir": False,
        "title": v.title,
        "album": v.album,
        "artist": v.artist,
        "track": v.track_no,
        "discNumber": v.disc_no,
        "year": v.year,
        "genre": v.genre or None,
        "coverArt": t.art_id,
        "size": t.size,
        "contentType": t.mime,
        "suffix": suffix or None,
        "duration": v.duration_ms // 1000,
        "path": f"{v.album_artist}/{v.album}/{PurePath(t.path).name}",
        "albumId": t.album_id,
        "artistId": artist_id(key_of(v.album_artist)),
        "type": "music",
        "mediaType": "song",
        "isVideo": False,
        "created": iso(t.mtime_ns // 1_000_000),
    }
    return _marked(out, v.id, starred, rated)


def album(a: AlbumAgg, starred: Marks = None, rated: Marks = None) -> Payload:
    out: Payload = {
        "id": a.id,
        "name": a.name,
        "artist": a.artist,
        "artistId": artist_id(a.artist_key),
        "coverArt": a.art_id,
        "songCount": a.songs,
        "duration": a.duration_ms // 1000,
        "created": iso(a.mtime_ns // 1_000_000),
        "year": a.year,
        "genre": a.genre or None,
    }
    return _marked(out, a.id, starred, rated)


def album_child(a: AlbumAgg, starred: Marks = None, rated: Marks = None) -> Payload:
    """An album as the older API's directory entry (`Child` with `isDir`)."""
    out: Payload = {
        "id": a.id,
        "parent": artist_id(a.artist_key),
        "isDir": True,
        "title": a.name,
        "name": a.name,
        "album": a.name,
        "artist": a.artist,
        "artistId": artist_id(a.artist_key),
        "year": a.year,
        "genre": a.genre or None,
        "coverArt": a.art_id,
        "songCount": a.songs,
        "duration": a.duration_ms // 1000,
        "created": iso(a.mtime_ns // 1_000_000),
    }
    return _marked(out, a.id, starred, rated)


def artist(a: ArtistRow, starred: Marks = None, rated: Marks = None) -> Payload:
    sid = artist_id(a.key)
    out: Payload = {"id": sid, "name": a.name, "albumCount": a.albums}
    return _marked(out, sid, starred, rated)


IGNORED_ARTICLES = "The El La Los Las Le Les"


def index_letter(name: str) -> str:
    words = name.split(maxsplit=1)
    if len(words) == 2 and words[0] in IGNORED_ARTICLES.split():
        name = words[1]
    first = search.normalize(name[:1]).upper()[:1]
    return first if first.isalpha() else "#"


def indexes(artists: list[ArtistRow], starred: dict[str, int]) -> list[Payload]:
    groups: dict[str, list[Payload]] = {}
    for a in artists:
        groups.setdefault(index_letter(a.name), []).append(artist(a, starred))
    return [{"name": k, "artist": groups[k]} for k in sorted(groups)]
