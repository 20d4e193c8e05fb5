"""Subsonic lyrics: `getLyrics` (by artist and title, plain text) and OpenSubsonic's
`getLyricsBySongId` (the `songLyrics` extension: structured, synced when timed).

Both read what `GET /v1/tracks/{id}/lyrics` reads (`server.lyrics`): the file, an `.lrc`
beside it, then LRCLIB when the server enables it.
"""

from __future__ import annotations

from tunehand.core import search
from tunehand.server.db import library as ql
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import NOT_FOUND, Payload, SubsonicError

CANDIDATES = 50


async def get_lyrics_by_song_id(call: Call) -> Payload:
    sid = call.required("id")
    async with call.services.engine.connect() as conn:
        track = await ql.get(conn, sid)
    if track is None:
        raise SubsonicError(NOT_FOUND, f"Song not found: {sid[:80]}")
    found = await call.services.lyrics.for_track(track)
    if found is None:
        return {"lyricsList": {"structuredLyrics": []}}
    lines: list[Payload] = [
        {"start": ln.time_ms, "value": ln.text} if found.lyrics.synced else {"value": ln.text}
        for ln in found.lyrics.lines
    ]
    return {
        "lyricsList": {
            "structuredLyrics": [
                {
                    "displayArtist": track.view.artist,
                    "displayTitle": track.view.title,
                    "lang": "xxx",
                    "offset": 0,
                    "synced": found.lyrics.synced,
                    "line": lines,
                }
            ]
        }
    }


async def get_lyrics(call: Call) -> Payload:
    artist, title = call.one("artist"), call.one("title")
    if not title.strip():
        return {"lyrics": {}}
    async with call.services.engine.connect() as conn:
        candidates = await ql.find(conn, f"{artist} {title}"[:200], CANDIDATES)
    want_title, want_artist = search.normalize(title), search.normalize(artist)
    for track in candidates:
        v = track.view
        if search.normalize(v.title) != want_title:
            continue
        if want_artist and want_artist not in (
            search.normalize(v.artist),
            search.normalize(v.album_artist),
        ):
            continue
        found = await call.services.lyrics.for_track(track)
        if found is not None:
            return {"lyrics": {"artist": v.artist, "title": v.title, "value": found.lyrics.text}}
    return {"lyrics": {}}
