"""Browsing and searching what the offline cache holds (the TUI's library without a server).

Pure functions over the index's rows (`Store.all()`), grouped the way the server groups
its library: artists by the normalized album artist (`core.search.normalize`), albums by
their id, tracks in disc and track order. Search uses the same word matching as the
server's (`core.search`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunehand.client.offline.store import Cached
from tunehand.core import search as text
from tunehand.core.protocol import TrackView


def track_view(c: Cached) -> TrackView:
    m = c.meta
    return TrackView(
        id=c.track_id,
        title=str(m.get("title") or c.track_id),
        artist=str(m.get("artist") or ""),
        album=str(m.get("album") or ""),
        album_artist=str(m.get("album_artist") or ""),
        duration_ms=int(m.get("duration_ms") or 0),
        track_no=m.get("track_no"),
        disc_no=m.get("disc_no"),
        year=m.get("year"),
        genre=str(m.get("genre") or ""),
        album_id=str(m.get("album_id") or ""),
    )


def _order(t: TrackView) -> tuple[Any, ...]:
    return (t.album.casefold(), t.disc_no or 0, t.track_no or 0, t.title.casefold())


def artist_key(t: TrackView) -> str:
    return text.normalize(t.album_artist or t.artist) or "unknown"


def tracks(rows: Sequence[Cached]) -> list[TrackView]:
    return sorted((track_view(c) for c in rows), key=_order)


def search(rows: Sequence[Cached], query: str, limit: int = 200) -> list[TrackView]:
    words = text.query_words(query)
    scored = []
    for t in tracks(rows):
        s = text.score(words, t.title, t.artist, t.album)
        if s is not None:
            scored.append((s, _order(t), t))
    scored.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in scored[:limit]]


def artists(rows: Sequence[Cached]) -> list[tuple[str, str, int, int]]:
    """(key, name, albums, tracks) of every artist with something cached."""
    by: dict[str, tuple[str, set[str], int]] = {}
    for t in tracks(rows):
        key = artist_key(t)
        name, albums, n = by.get(key, (t.album_artist or t.artist or "Unknown artist", set(), 0))
        albums.add(t.album_id)
        by[key] = (name, albums, n + 1)
    return sorted(((k, v[0], len(v[1]), v[2]) for k, v in by.items()), key=lambda r: r[0])


def albums(
    rows: Sequence[Cached], key: str | None = None
) -> list[tuple[str, str, str, int | None, int]]:
    """(id, title, artist, year, tracks) of every cached album (of one artist's `key`)."""
    by: dict[str, tuple[str, str, int | None, int]] = {}
    for t in tracks(rows):
        if key is not None and artist_key(t) != key:
            continue
        title, artist, year, n = by.get(
            t.album_id, (t.album, t.album_artist or t.artist, t.year, 0)
        )
        by[t.album_id] = (title, artist, year, n + 1)
    return sorted(((i, *v) for i, v in by.items()), key=lambda r: r[1].casefold())


def album_tracks(rows: Sequence[Cached], album_id: str) -> list[TrackView]:
    return [t for t in tracks(rows) if t.album_id == album_id]
