"""The play queue of a Subsonic app is the account's session: `getPlayQueue` reads it
(queue in play order, current entry, position extrapolated to now), `savePlayQueue` is
the app's report of where it is, `getNowPlaying` says what the session plays.

`savePlayQueue` replaces the session's queue with the app's, at the app's current song
and position, paused (`queue_replace` with `index` and `position_ms`), under the ordering
rule every command follows: it names the version it replaces (`if_version`), the one the
app last read or wrote (kept in the database, `play_queue_seen`, so the guard holds
across `--workers` and instances). So an app never silently reverts a
newer change made elsewhere (a terminal that played on): it is refused (error 0, "get the
play queue again") until it has read the session again. An app that has read nothing yet
may save over a paused session, never over one that plays.

In a jam, the session is the jam's (`SessionService.view`): a guest's app reads the
shared queue, and saves over it only as the guest's role allows (error 50 otherwise).

The app reports as a device named after its `c` parameter ("Symfonium"), made unique
within the account as default names are (`ctl devices` lists it so; a rename there
stays).
"""

from __future__ import annotations

import time
import uuid

from tunehand.core import names
from tunehand.core.commands import Command
from tunehand.server.db import accounts as qa
from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.db import subsonic_state as qst
from tunehand.server.subsonic import views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import (
    GENERIC,
    NOT_AUTHORIZED,
    NOT_FOUND,
    Payload,
    SubsonicError,
)
from tunehand.server.web import client_address, now_ms

NOW_PLAYING_GRACE_MS = 60_000
# How long after its track's end an app's now playing is still shown.


async def _seen(call: Call, version: int) -> None:
    who = call.principal
    async with call.services.engine.begin() as conn:
        await qst.set_seen(conn, who.account_id, who.device_id, version)


async def _name_device(call: Call) -> None:
    """Name the app's device after its `c` parameter, when it gives a usable one."""
    name = names.clean(call.client, 128)
    if not name:
        return
    who = call.principal
    async with call.services.engine.begin() as conn:
        await qa.upsert_device(
            conn,
            who.account_id,
            who.device_id,
            name,
            now_ms(),
            client_address(call.request),
            default=True,
        )


async def get_play_queue(call: Call) -> Payload:
    who = call.principal
    sessions = call.services.sessions
    _, state = await sessions.view(who.account_id)
    by_entry = {e.entry_id: e for e in state.queue}
    order = [by_entry[i] for i in state.play_order() if i in by_entry]
    async with call.services.engine.connect() as conn:
        found = await ql.get_many(conn, [e.track_id for e in order])
        stars = await qs.starred_among(conn, who.account_id, list(found))
    await _seen(call, state.version)
    cur = state.current_entry
    out: Payload = {
        "username": who.account_name,
        "changed": views.iso(state.position.at_ms or now_ms()),
        "changedBy": "tunehand",
        "entry": [views.song(found[e.track_id], stars) for e in order if e.track_id in found],
    }
    if cur is not None and cur.track_id in found:
        out["current"] = cur.track_id
        out["position"] = state.position_at(now_ms())
    return {"playQueue": out}


async def save_play_queue(call: Call) -> Payload:
    who = call.principal
    ids = call.many("id")
    s = call.services
    await _name_device(call)
    _, state = await s.sessions.view(who.account_id)
    async with s.engine.connect() as conn:
        seen = await qst.seen_version(conn, who.account_id, who.device_id)
    if seen is None:
        if state.position.playing:
            raise SubsonicError(
                GENERIC, "the session plays on another device: get the play queue first"
            )
        seen = state.version
    if not ids:
        cmd = Command("queue_clear", "sub-" + uuid.uuid4().hex, if_version=seen)
    else:
        async with s.engine.connect() as conn:
            found = await ql.get_many(conn, ids[:10_000])
        missing = [i for i in ids if i not in found]
        if missing:
            raise SubsonicError(NOT_FOUND, f"Song not found: {missing[0][:80]}")
        current = call.one("current")
        index = ids.index(current) if current in ids else 0
        cmd = Command(
            "queue_replace",
            "sub-" + uuid.uuid4().hex,
            if_version=seen,
            track_ids=tuple(ids),
            index=index,
            position_ms=call.int_("position", 0, 0, 7 * 24 * 3600 * 1000),
        )
    res = await s.sessions.execute(who.account_id, cmd, who.device_id)
    if res.code == "conflict":
        raise SubsonicError(
            GENERIC, "the play queue changed on another device: get the play queue again"
        )
    if res.code == "forbidden":  # a jam's guest without control
        raise SubsonicError(NOT_AUTHORIZED, res.message or "not allowed in this jam")
    if not res.ok:
        raise SubsonicError(GENERIC, res.message or res.code)
    await _seen(call, res.version)
    return {}


async def get_now_playing(call: Call) -> Payload:
    """The account's own session when it plays, then what its Subsonic apps said they
    play (`scrobble` with `submission=false`) until the track would have ended (never
    another account's)."""
    who = call.principal
    sessions = call.services.sessions
    _, state = await sessions.view(who.account_id)
    now = now_ms()
    cur = state.current_entry
    playing: list[tuple[str, str, int, int]] = []  # device, track, since ms, position ms
    if state.position.playing and cur is not None:
        position = state.position_at(int(time.time() * 1000))
        playing.append((state.active_device or "", cur.track_id, state.position.at_ms, position))
    async with call.services.engine.connect() as conn:
        apps = await qst.now_playing_of(conn, who.account_id)
        found = await ql.get_many(conn, [p[1] for p in playing] + [t for _, t, _ in apps])
    for device, track, since in apps:
        t = found.get(track)
        if t is not None and now - since <= t.view.duration_ms + NOW_PLAYING_GRACE_MS:
            playing.append((device, track, since, max(0, now - since)))
    device_names = {d.id: d.name for d in await sessions.devices_view(who.account_id)}
    out = []
    for player, (device, track, since, position) in enumerate(playing, 1):
        if track not in found:
            continue
        entry = views.song(found[track])
        entry.update(
            {
                "username": who.account_name,
                "minutesAgo": max(0, (now - since) // 60_000),
                "playerId": player,
                "playerName": device_names.get(device, "tunehand"),
                "positionMs": position,
            }
        )
        out.append(entry)
    return {"nowPlaying": {"entry": out}}
