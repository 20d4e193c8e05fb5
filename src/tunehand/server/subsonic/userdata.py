"""Subsonic methods on the account's own things: the user, playlists, stars, scrobbles.
Everything is scoped to the authenticated account."""

from __future__ import annotations

import sqlalchemy as sa

from tunehand.server import quotas
from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.db import subsonic_state as qst
from tunehand.server.db import userdata as qu
from tunehand.server.db.userdata import Playlist
from tunehand.server.limits import QUOTAS
from tunehand.server.subsonic import views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import (
    GENERIC,
    NOT_AUTHORIZED,
    NOT_FOUND,
    Payload,
    SubsonicError,
)
from tunehand.server.web import now_ms


async def get_user(call: Call) -> Payload:
    who = call.principal
    name = call.one("username") or who.account_name
    if name != who.account_name:
        raise SubsonicError(NOT_AUTHORIZED, "a user may only read its own details")
    roles = {
        "scrobblingEnabled": True,
        "adminRole": False,
        "settingsRole": False,
        "downloadRole": True,
        "uploadRole": False,
        "playlistRole": True,
        "coverArtRole": False,
        "commentRole": False,
        "podcastRole": False,
        "streamRole": True,
        "jukeboxRole": False,
        "shareRole": False,
        "videoConversionRole": False,
    }
    return {"user": {"username": who.account_name, **roles, "folder": [views.FOLDER_ID]}}


# --- playlists ------------------------------------------------------------------------


def _pid(sid: str) -> int:
    raw = sid.removeprefix(views.PLAYLIST_PREFIX)
    if not sid.startswith(views.PLAYLIST_PREFIX) or not (raw.isascii() and raw.isdigit()):
        raise SubsonicError(NOT_FOUND, f"Playlist not found: {sid[:80]}")
    return int(raw[:12])


async def _playlist_or_404(call: Call, sid: str) -> Playlist:
    async with call.services.engine.connect() as conn:
        p = await qs.playlist_by_id(conn, call.principal.account_id, _pid(sid))
    if p is None:
        raise SubsonicError(NOT_FOUND, f"Playlist not found: {sid[:80]}")
    return p


def _playlist(call: Call, p: Playlist, songs: list[ql.StoredTrack]) -> Payload:
    return {
        "id": f"{views.PLAYLIST_PREFIX}{p.id}",
        "name": p.name,
        "owner": call.principal.account_name,
        "public": False,
        "songCount": len(songs),
        "duration": sum(t.view.duration_ms for t in songs) // 1000,
        "created": views.iso(p.updated_ms),
        "changed": views.iso(p.updated_ms),
        "coverArt": next((t.art_id for t in songs if t.art_id), None),
    }


async def _songs(call: Call, ids: tuple[str, ...] | list[str]) -> list[ql.StoredTrack]:
    async with call.services.engine.connect() as conn:
        found = await ql.get_many(conn, ids)
    return [found[i] for i in ids if i in found]


async def get_playlists(call: Call) -> Payload:
    who = call.principal
    if call.one("username") not in ("", who.account_name):
        raise SubsonicError(NOT_AUTHORIZED, "a user may only list its own playlists")
    async with call.services.engine.connect() as conn:
        lists = await qu.list_playlists(conn, who.account_id)
        found = await ql.get_many(conn, [t for p in lists for t in p.track_ids])
    out = [_playlist(call, p, [found[t] for t in p.track_ids if t in found]) for p in lists]
    return {"playlists": {"playlist": out}}


async def get_playlist(call: Call) -> Payload:
    p = await _playlist_or_404(call, call.required("id"))
    return {"playlist": await _with_entries(call, p)}


async def _with_entries(call: Call, p: Playlist) -> Payload:
    songs = await _songs(call, p.track_ids)
    async with call.services.engine.connect() as conn:
        stars = await qs.starred_among(conn, call.principal.account_id, [t.view.id for t in songs])
    out = _playlist(call, p, songs)
    out["entry"] = [views.song(t, stars) for t in songs]
    return out


async def _known(call: Call, ids: list[str]) -> list[str]:
    if len(ids) > QUOTAS.playlist_entries:
        raise SubsonicError(GENERIC, f"a playlist holds at most {QUOTAS.playlist_entries} songs")
    found = {t.view.id for t in await _songs(call, ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise SubsonicError(NOT_FOUND, f"Song not found: {missing[0][:80]}")
    return ids


async def create_playlist(call: Call) -> Payload:
    """`name` makes a playlist (or replaces the songs of the one of that name);
    `playlistId` replaces the songs of that one."""
    who = call.principal
    ids = await _known(call, call.many("songId"))
    async with call.services.engine.begin() as conn:
        if call.one("playlistId"):
            pid = _pid(call.one("playlistId"))
            if await qs.playlist_by_id(conn, who.account_id, pid) is None:
                raise SubsonicError(NOT_FOUND, "Playlist not found")
            await qs.set_playlist_tracks(conn, who.account_id, pid, ids, now_ms())
            p = await qs.playlist_by_id(conn, who.account_id, pid)
        else:
            name = _name(call.required("name"))
            await quotas.room_for_playlist(conn, who.account_id, name)
            await qu.save_playlist(conn, who.account_id, name, ids, now_ms())
            p = await qu.playlist(conn, who.account_id, name)
    assert p is not None
    return {"playlist": await _with_entries(call, p)}


def _name(raw: str) -> str:
    from tunehand.core import names

    name = names.clean(raw, 200)
    if not name or len(raw) > 200:
        raise SubsonicError(GENERIC, "name: a playlist name has 1 to 200 characters")
    return name


async def update_playlist(call: Call) -> Payload:
    who = call.principal
    p = await _playlist_or_404(call, call.required("playlistId"))
    ids = list(p.track_ids)
    drop: set[int] = set()
    for raw in call.many("songIndexToRemove"):
        if not (raw.isascii() and raw.isdigit()) or int(raw) >= len(ids):
            raise SubsonicError(GENERIC, f"songIndexToRemove: no index {raw[:20]}")
        drop.add(int(raw))
    ids = [t for i, t in enumerate(ids) if i not in drop]
    ids += await _known(call, call.many("songIdToAdd"))
    if len(ids) > QUOTAS.playlist_entries:
        raise SubsonicError(GENERIC, f"a playlist holds at most {QUOTAS.playlist_entries} songs")
    async with call.services.engine.begin() as conn:
        await qs.set_playlist_tracks(conn, who.account_id, p.id, ids, now_ms())
        if call.one("name"):
            new = _name(call.one("name"))
            try:
                outcome = await qu.rename_playlist(conn, who.account_id, p.name, new, now_ms())
            except sa.exc.IntegrityError:
                outcome = "conflict"
            if outcome == "conflict":
                raise SubsonicError(GENERIC, f"a playlist named {new!r} exists already")
    return {}


async def delete_playlist(call: Call) -> Payload:
    p = await _playlist_or_404(call, call.required("id"))
    async with call.services.engine.begin() as conn:
        await qu.delete_playlist(conn, call.principal.account_id, p.name)
    return {}


# --- stars ----------------------------------------------------------------------------


async def _star_ids(call: Call) -> list[str]:
    """The ids of `id`, `albumId` and `artistId`, each checked to exist."""
    songs = call.many("id")
    albums = call.many("albumId")
    artists = call.many("artistId")
    if len(songs) + len(albums) + len(artists) > 500:
        raise SubsonicError(GENERIC, "at most 500 ids at once")
    async with call.services.engine.connect() as conn:
        found = await ql.get_many(conn, songs)
        for sid in songs:
            if sid not in found:
                raise SubsonicError(NOT_FOUND, f"Song not found: {sid[:80]}")
        known = {a.id for a in await qs.albums_by_id(conn, albums)}
        for sid in albums:
            if sid not in known:
                raise SubsonicError(NOT_FOUND, f"Album not found: {sid[:80]}")
        for sid in artists:
            key = views.artist_key(sid)
            if key is None or not await ql.artists(conn, [key]):
                raise SubsonicError(NOT_FOUND, f"Artist not found: {sid[:80]}")
    return [*songs, *albums, *artists]


async def star(call: Call) -> Payload:
    ids = await _star_ids(call)
    account = call.principal.account_id
    async with call.services.engine.begin() as conn:
        for sid in ids:
            await quotas.room_for_like(conn, account, sid)
            await qu.like(conn, account, sid, now_ms())
    return {}


async def unstar(call: Call) -> Payload:
    ids = [*call.many("id"), *call.many("albumId"), *call.many("artistId")][:500]
    account = call.principal.account_id
    async with call.services.engine.begin() as conn:
        for sid in ids:
            await qu.unlike(conn, account, sid)
    return {}


async def starred_things(
    call: Call,
) -> tuple[
    list[ql.ArtistRow], list[qs.AlbumAgg], list[ql.StoredTrack], dict[str, int], dict[str, int]
]:
    account = call.principal.account_id
    async with call.services.engine.connect() as conn:
        stars = dict(await qs.starred(conn, account))
        album_ids = [i for i in stars if i.startswith("a") and not i.startswith("ar")]
        keys = [k for i in stars if (k := views.artist_key(i)) is not None]
        albums = await qs.albums_by_id(conn, album_ids)
        artists = await ql.artists(conn, keys) if keys else []
        found = await ql.get_many(conn, [i for i in stars if i.startswith("t")])
        rated = await qst.ratings_among(conn, account, list(stars))
    songs = [found[i] for i in stars if i in found]
    return artists, albums, songs, stars, rated


async def get_starred2(call: Call) -> Payload:
    artists, albums, songs, stars, rated = await starred_things(call)
    return {
        "starred2": {
            "artist": [views.artist(a, stars, rated) for a in artists],
            "album": [views.album(a, stars, rated) for a in albums],
            "song": [views.song(t, stars, rated) for t in songs],
        }
    }


# --- scrobbles ------------------------------------------------------------------------


async def scrobble(call: Call) -> Payload:
    """`submission=true` (the default) enters each `id` into the history, at `time` (ms)
    when given; `submission=false` says the app now plays `id` (`getNowPlaying` shows it
    until the track would have ended) and enters nothing into the history.

    Both go on to the account's ListenBrainz / Last.fm (`Scrobbler.report`: the app is a
    device, its scrobble is its play report, one listen per play): a scrobble sent again
    (the same `id` and `time`, or playing-now of the track it already plays) is not."""
    ids = call.many("id")
    if not ids:
        call.required("id")
    times = call.many("time")
    who = call.principal
    scrobbler = call.services.scrobbler
    async with call.services.engine.connect() as conn:
        found = await ql.get_many(conn, ids[:500])
    for sid in ids:
        if sid not in found:
            raise SubsonicError(NOT_FOUND, f"Song not found: {sid[:80]}")
    now = now_ms()
    if not call.flag("submission", True):
        track = found[ids[-1]]
        async with call.services.engine.begin() as conn:
            before = await qst.now_playing_of(conn, who.account_id)
            again = any(
                device == who.device_id
                and tid == track.view.id
                and now - since < track.view.duration_ms
                for device, tid, since in before
            )
            await qst.set_now_playing(conn, who.account_id, who.device_id, ids[-1], now)
        await scrobbler.report(who.account_id, track, listen=False, at_ms=now, fresh=not again)
        return {}
    heard: list[tuple[str, int]] = []
    async with call.services.engine.begin() as conn:
        for i, sid in enumerate(ids[:500]):
            at = now
            given = i < len(times) and times[i].isascii() and times[i].isdigit()
            if given:
                at = min(now, int(times[i][:15]))
            if given and await qu.has_history(conn, who.account_id, sid, who.device_id, at):
                continue  # the app sent this one before
            await qu.add_history(conn, who.account_id, sid, who.device_id, at)
            await qst.clear_now_playing(conn, who.account_id, who.device_id, sid)
            heard.append((sid, at))
    for sid, at in heard:
        await scrobbler.report(who.account_id, found[sid], listen=True, at_ms=at)
    return {}
