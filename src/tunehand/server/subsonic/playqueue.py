"""The play queue of a Subsonic app is the account's session: `getPlayQueue` reads it
(queue in play order, current entry, position extrapolated to now), `savePlayQueue` is
the app's report of where it is, `getNowPlaying` says what the session plays.

`savePlayQueue` replaces the session's queue with the app's, at the app's current song
and position, paused (`queue_replace` with `index` and `position_ms`), under the ordering
rule every command follows: it names the version it replaces (`if_version`), the one the
app last read or wrote (`Services.play_queue_seen`). So an app never silently reverts a
newer change made elsewhere (a terminal that played on): it is refused (error 0, "get the
play queue again") until it has read the session again. An app that has read nothing yet
may save over a paused session, never over one that plays.
"""

from __future__ import annotations

import time
import uuid

from tunehand.core.commands import Command
from tunehand.server.db import library as ql
from tunehand.server.db import subsonic as qs
from tunehand.server.subsonic import views
from tunehand.server.subsonic.params import Call
from tunehand.server.subsonic.responses import GENERIC, NOT_FOUND, Payload, SubsonicError
from tunehand.server.web import now_ms

SEEN_KEPT = 10_000


def _seen(call: Call, version: int) -> None:
    seen = call.services.play_queue_seen
    if len(seen) >= SEEN_KEPT:
        seen.clear()
    seen[call.principal.device_id] = version


async def get_play_queue(call: Call) -> Payload:
    who = call.principal
    sessions = call.services.sessions
    state = await sessions.state(who.account_id)
    by_entry = {e.entry_id: e for e in state.queue}
    order = [by_entry[i] for i in state.play_order() if i in by_entry]
    async with call.services.engine.connect() as conn:
        found = await ql.get_many(conn, [e.track_id for e in order])
        stars = await qs.starred_among(conn, who.account_id, list(found))
    _seen(call, state.version)
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
    state = await s.sessions.state(who.account_id)
    seen = s.play_queue_seen.get(who.device_id)
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
    if not res.ok:
        raise SubsonicError(GENERIC, res.message or res.code)
    _seen(call, res.version)
    return {}


async def get_now_playing(call: Call) -> Payload:
    """The account's own session, when it plays (never another account's)."""
    who = call.principal
    sessions = call.services.sessions
    state = await sessions.state(who.account_id)
    cur = state.current_entry
    if not state.position.playing or cur is None:
        return {"nowPlaying": {"entry": []}}
    async with call.services.engine.connect() as conn:
        found = await ql.get(conn, cur.track_id)
    if found is None:
        return {"nowPlaying": {"entry": []}}
    names = {d.id: d.name for d in await sessions.devices(who.account_id)}
    entry = views.song(found)
    entry.update(
        {
            "username": who.account_name,
            "minutesAgo": max(0, (now_ms() - state.position.at_ms) // 60_000),
            "playerId": 1,
            "playerName": names.get(state.active_device or "", "tunehand"),
            "positionMs": state.position_at(int(time.time() * 1000)),
        }
    )
    return {"nowPlaying": {"entry": [entry]}}
