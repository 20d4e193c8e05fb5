"""`tunehand ctl`'s long-form listening actions: podcasts, what is in progress
(`continue`), chapters, speed and the sleep timer, and the parsing of their arguments.

Imported by `ctl` only when one of them runs (`ctl._later`), or to check a speed or a
sleep argument (`ctl.check_args`).
"""

from __future__ import annotations

import argparse
import time

from tunehand.cli.ctl import Handler, Json, _out, _q, command
from tunehand.cli.output import status_json
from tunehand.client.http import ApiClient
from tunehand.core import names
from tunehand.errors import NotFound, UsageError


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "never"


def _clock(ms: int) -> str:
    s = max(0, ms) // 1000
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def resolve_podcast(api: ApiClient, name: str) -> Json:
    """A podcast by id, exact title, or unique title prefix (case-insensitive)."""
    rows: list[Json] = api.request("GET", "/v1/podcasts")["podcasts"]
    for p in rows:
        if p["id"] == name:
            return p
    key = name.casefold()
    exact = [p for p in rows if p["title"].casefold() == key]
    prefix = [p for p in rows if p["title"].casefold().startswith(key)]
    for group in (exact, prefix):
        if len(group) == 1:
            return group[0]
        if len(group) > 1:
            listed = ", ".join(f"{names.line(p['title'])} ({p['id']})" for p in group)
            raise UsageError(f"{name!r} names several podcasts: {listed}")
    titles = ", ".join(names.line(p["title"]) for p in rows)
    raise NotFound(f"no podcast {name!r}; podcasts: {titles or 'none (see podcasts add)'}")


def _podcasts(api: ApiClient, args: argparse.Namespace) -> int:
    edit = getattr(args, "podcast_command", None)
    if edit == "add":
        p = api.request("POST", "/v1/podcasts", {"url": args.url})
        _out(args, p, f"subscribed to {names.line(p['title'])} ({p['episodes']} episodes)")
    elif edit == "remove":
        p = resolve_podcast(api, args.name)
        api.request("DELETE", f"/v1/podcasts/{_q(p['id'])}")
        print(names.shown(f"unsubscribed from {names.line(p['title'])}"))
    elif edit == "episodes":
        p = resolve_podcast(api, args.name)
        eps = api.request("GET", f"/v1/podcasts/{_q(p['id'])}/episodes")["episodes"]
        lines = [
            f"{e['id']}  {'✓' if e['played'] else ' '} {(e['published'] or '')[:10]:<10} "
            f"{names.line(e['title'])}"
            + (
                f"  [{_clock(e['position_ms'])}/{_clock(e['duration_ms'])}]"
                if e["position_ms"]
                else ""
            )
            for e in eps
        ]
        _out(args, eps, "\n".join(lines) or "no episodes")
    else:
        rows = api.request("GET", "/v1/podcasts")["podcasts"]
        lines = [
            f"{names.line(p['title'])}  ({p['episodes']} episodes,"
            f" refreshed {_when(p['refreshed_ms'])})"
            + (f"  error: {names.line(p['error'])}" if p["error"] else "")
            for p in rows
        ]
        _out(args, rows, "\n".join(lines) or "no podcasts (see `ctl podcasts add URL`)")
    return 0


def parse_speed(raw: str) -> float:
    try:
        speed = float(raw.rstrip("x"))
    except ValueError:
        speed = -1.0
    if not 0.5 <= speed <= 3.0:  # also refuses nan
        raise UsageError(f"speed: {raw!r} is not a speed from 0.5 to 3.0 (e.g. 1.5)")
    return speed


def parse_sleep(raw: str) -> Json:
    """ "30m", "1h", "90s", "45" (minutes) -> in N minutes; "end"; "off"."""
    if raw in ("end", "off"):
        return {"mode": raw}
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in units else (raw, "m")
    try:
        minutes = float(number) * units[unit]
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= 24 * 60:
        raise UsageError(f"sleep: {raw!r} is not 30m, 1h, 90s, end or off (at most 24h)")
    return {"mode": "in", "minutes": minutes}


PREV_RESTARTS_MS = 3000


def _chapter(api: ApiClient, args: argparse.Namespace) -> int:
    st = status_json(api.request("GET", "/v1/session"), api.http.server)
    marks, at = st["chapters"], st["chapter"]
    if not marks or at is None:
        raise NotFound("what plays has no chapters")
    if args.where == "next":
        if at + 1 >= len(marks):
            raise NotFound("this is the last chapter")
        target = marks[at + 1]
    elif st["position_ms"] - marks[at]["start_ms"] > PREV_RESTARTS_MS or at == 0:
        target = marks[at]
    else:
        target = marks[at - 1]
    command(api, "seek", position_ms=target["start_ms"])
    print(names.shown(f"chapter {marks.index(target) + 1}: {names.line(target['title'])}"))
    return 0


def _speed(api: ApiClient, args: argparse.Namespace) -> int:
    done = api.request(
        "PUT", "/v1/listening/speed", {"speed": parse_speed(args.speed), "kind": args.kind or ""}
    )
    kind = "long-form" if done["kind"] == "long" else "music"
    print(f"{kind} plays at {done['speed']:g}x")
    return 0


def _sleep(api: ApiClient, args: argparse.Namespace) -> int:
    done = api.request("PUT", "/v1/listening/sleep", parse_sleep(args.when))
    if done["sleep_at_ms"]:
        at = time.strftime("%H:%M:%S", time.localtime(done["sleep_at_ms"] / 1000))
        print(f"pausing at {at}")
    elif done["sleep_entry"]:
        print("pausing at the end of this one")
    else:
        print("sleep timer off")
    return 0


def _continue(api: ApiClient, args: argparse.Namespace) -> int:
    items = api.request("GET", "/v1/continue")["items"]
    lines = [
        f"{i['id']}  {i['kind']:<9} {_clock(i['position_ms'])}/{_clock(i['duration_ms'])}  "
        f"{names.line(i['title'])}"
        for i in items
    ]
    _out(args, items, "\n".join(lines) or "nothing in progress")
    return 0


ACTIONS: dict[str, Handler] = {
    "podcasts": _podcasts,
    "continue": _continue,
    "speed": _speed,
    "chapter": _chapter,
    "sleep": _sleep,
}
