"""An account's listening settings: the speed of music and of long-form items
(`ctl speed`), and the sleep timer (`ctl sleep`), with the timer's loop.

A speed is kept per kind and goes to devices in the track views they are sent
(`TrackView.speed`): setting one makes a new session version (a zero volume change), so
every device gets views with the new speed at once. The sleep timer pauses the session
at a time, or (`end`) when the current entry ends: then the device has already moved on,
and the server pauses the next entry at its start.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunehand.core.commands import Command
from tunehand.errors import StoreError
from tunehand.server.db import podcasts as qp
from tunehand.server.db.engine import unavailable
from tunehand.server.service import SessionService
from tunehand.server.web import ApiError, body, json, now_ms, principal, services

log = logging.getLogger("tunehand.server.sleep")

MIN_SPEED = 0.5
MAX_SPEED = 3.0
MAX_SLEEP_MIN = 24 * 60
SLEEP_TICK_S = 1.0


@dataclass(frozen=True)
class SpeedBody:
    speed: float
    kind: str = ""
    """"music" or "long"; empty: the kind of what is current (music when nothing is)."""


@dataclass(frozen=True)
class SleepBody:
    mode: str
    """"in" (after `minutes`), "end" (at the end of the current entry) or "off"."""
    minutes: float = 0


def _touch() -> Command:
    """A command that changes nothing but the session's version (devices then get the
    track views again, with their new speed)."""
    return Command(op="volume", command_id="lis-" + os.urandom(8).hex(), delta=0)


async def set_speed(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, SpeedBody)
    if not MIN_SPEED <= b.speed <= MAX_SPEED:  # also refuses nan
        raise ApiError(422, "invalid", f"speed: {MIN_SPEED} to {MAX_SPEED}")
    if b.kind not in ("", "music", "long"):
        raise ApiError(422, "invalid", "kind: music or long")
    s = services(request)
    kind = b.kind
    async with s.engine.begin() as conn:
        if not kind:
            state = await s.sessions.state(who.account_id)
            cur = state.current_entry
            long = await s.sessions.longform.kinds(
                conn, who.account_id, [cur.track_id] if cur else []
            )
            kind = "long" if long else "music"
        li = await qp.listening_of(conn, who.account_id)
        if kind == "long":
            li = replace(li, long_speed=round(b.speed, 3))
        else:
            li = replace(li, music_speed=round(b.speed, 3))
        await qp.save_listening(conn, who.account_id, li)
    s.sessions.forget_tracks(who.account_id)
    await s.sessions.execute(who.account_id, _touch(), None)
    return json({"kind": kind, "speed": round(b.speed, 3)})


async def get_listening(request: Request) -> Response:
    who = await principal(request)
    async with services(request).engine.connect() as conn:
        li = await qp.listening_of(conn, who.account_id)
    return json(
        {
            "music_speed": li.music_speed,
            "long_speed": li.long_speed,
            "sleep_at_ms": li.sleep_at_ms,
            "sleep_entry": li.sleep_entry,
        }
    )


async def set_sleep(request: Request) -> Response:
    who = await principal(request)
    b = await body(request, SleepBody)
    s = services(request)
    at_ms: int | None = None
    entry: str | None = None
    if b.mode == "in":
        if not 0 < b.minutes <= MAX_SLEEP_MIN:
            raise ApiError(422, "invalid", f"minutes: more than 0, at most {MAX_SLEEP_MIN}")
        at_ms = now_ms() + int(b.minutes * 60_000)
    elif b.mode == "end":
        state = await s.sessions.state(who.account_id)
        if state.current is None:
            raise ApiError(409, "empty_queue", "nothing is playing: nothing to end")
        entry = state.current
    elif b.mode != "off":
        raise ApiError(422, "invalid", "mode: in, end or off")
    async with s.engine.begin() as conn:
        li = await qp.listening_of(conn, who.account_id)
        await qp.save_listening(
            conn, who.account_id, replace(li, sleep_at_ms=at_ms, sleep_entry=entry)
        )
    return json({"sleep_at_ms": at_ms, "sleep_entry": entry})


async def run_sleep(sessions: SessionService) -> None:
    """Pause every session whose sleep timer ran out (each instance runs this; the
    pause's command id is the timer's, so it applies once)."""
    while True:
        try:
            now = now_ms()
            async with sessions.engine.connect() as conn:
                due = await qp.sleep_due(conn, now, 100)
            for account_id in due:
                async with sessions.engine.begin() as conn:
                    li = await qp.listening_of(conn, account_id)
                    if li.sleep_at_ms is None or li.sleep_at_ms > now:
                        continue
                    await qp.save_listening(conn, account_id, replace(li, sleep_at_ms=None))
                cmd = Command(op="pause", command_id=f"sleep-{account_id}-{li.sleep_at_ms}")
                await sessions.execute(account_id, cmd, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, StoreError) or unavailable(exc):
                # The database is down or restarting: one line, and the next tick tries again.
                log.warning("sleep timer: the database is unavailable (%s)", type(exc).__name__)
            else:
                log.exception("sleep timer failed")
        await asyncio.sleep(SLEEP_TICK_S)


routes = [
    Route("/v1/listening", get_listening),
    Route("/v1/listening/speed", set_speed, methods=["PUT"]),
    Route("/v1/listening/sleep", set_sleep, methods=["PUT"]),
]
