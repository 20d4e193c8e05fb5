"""A podcast feed's bytes read with feedparser (RSS and Atom) into plain data.

feedparser is only ever given bytes (never a URL or a string it could take for one, so
it fetches nothing). A document that is not well-formed XML, or has no channel title and
no episode, is refused with one line.
"""

from __future__ import annotations

import calendar
import hashlib
import xml.sax
from dataclasses import dataclass
from typing import Any

import feedparser

from tunehand.core import names
from tunehand.server.podcasts.fetch import FetchError, check_url

MAX_TITLE = 300


class FeedError(FetchError):
    """The bytes are no feed tunehand can read."""


@dataclass(frozen=True)
class Episode:
    guid: str
    title: str
    published_ms: int | None
    duration_ms: int
    url: str
    mime: str


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    episodes: tuple[Episode, ...]


def parse_duration(raw: object) -> int:
    """`itunes:duration` ("3723", "62:03", "1:02:03") in ms; 0 when unknown."""
    if not isinstance(raw, str):
        return 0
    parts = raw.strip().split(":")
    if not 1 <= len(parts) <= 3:
        return 0
    secs = 0.0
    try:
        for p in parts:
            value = float(p)
            if not 0 <= value < 1e7:
                return 0
            secs = secs * 60 + value
    except ValueError:
        return 0
    return int(secs * 1000)


def _time_ms(entry: Any) -> int | None:
    for key in ("published_parsed", "updated_parsed"):
        value = entry.get(key)
        if value:
            try:
                return calendar.timegm(value) * 1000
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _enclosure(entry: Any) -> tuple[str, str] | None:
    for enc in entry.get("enclosures") or ():
        href = enc.get("href") or enc.get("url")
        mime = str(enc.get("type") or "")
        if not isinstance(href, str) or not (mime == "" or mime.startswith(("audio/", "video/"))):
            continue
        try:
            check_url(href)
        except FetchError:
            continue
        return href, mime[:128]
    return None


def parse(body: bytes, max_episodes: int) -> ParsedFeed:
    """The feed in `body`, its newest `max_episodes` episodes (those with an audio
    enclosure). FeedError when it is no feed."""
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    exc = parsed.get("bozo_exception")
    if parsed.get("bozo") and isinstance(exc, xml.sax.SAXException):
        where = ""
        if isinstance(exc, xml.sax.SAXParseException):
            where = f" (line {exc.getLineNumber()})"
        raise FeedError(f"the feed is not well-formed XML{where}: {exc.getMessage()}")
    feed = parsed.get("feed") or {}
    title = names.clean(str(feed.get("title") or ""), MAX_TITLE)
    entries = parsed.get("entries") or []
    if not title and not entries:
        raise FeedError("no RSS or Atom feed there")
    episodes: list[Episode] = []
    for entry in entries:
        enc = _enclosure(entry)
        if enc is None:
            continue
        url, mime = enc
        guid = str(entry.get("id") or entry.get("guid") or url)[:1000]
        episodes.append(
            Episode(
                guid=guid,
                title=names.clean(str(entry.get("title") or ""), MAX_TITLE) or url[:MAX_TITLE],
                published_ms=_time_ms(entry),
                duration_ms=parse_duration(entry.get("itunes_duration")),
                url=url,
                mime=mime,
            )
        )
    episodes.sort(key=lambda e: e.published_ms or 0, reverse=True)
    return ParsedFeed(title or "untitled podcast", tuple(episodes[:max_episodes]))


def podcast_id(account_id: int, url: str) -> str:
    return "p" + hashlib.sha256(f"{account_id}\x00{url}".encode()).hexdigest()[:20]


def episode_id(podcast: str, guid: str) -> str:
    return "e" + hashlib.sha256(f"{podcast}\x00{guid}".encode()).hexdigest()[:20]
