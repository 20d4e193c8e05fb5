"""`tunehand ctl`: drive the account's session from scripts, from any machine.

Talks to the server over HTTP (and the channel for `watch`); never imports textual or
mpv. Exit codes: 0 ok, 1 other error, 2 usage, 3 not logged in or refused, 4 server
unreachable, 5 no such device, track or playlist. Read commands take `--json`; the
field names are documented in the README and stay stable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from tunehand.cli.ctl_args import play_what_argv
from tunehand.cli.output import format_status, format_track_line, status_json, track_json
from tunehand.client import root
from tunehand.client.http import ApiClient, quote
from tunehand.core import devices, names
from tunehand.errors import CommandRefused, MediaError, NotFound, UsageError

Json = dict[str, Any]


def client_for(args: argparse.Namespace) -> ApiClient:
    """The API client for this command line (`tunehand.client.root` builds it)."""
    return root.client_for(root.Options.of(args))


def _q(value: str) -> str:
    return quote(value)


def _out(args: argparse.Namespace, obj: object, human: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj, ensure_ascii=False))
    else:
        print(names.shown(human))  # names other devices chose: no escape sequences


def run_ctl(args: argparse.Namespace) -> int:
    action = args.ctl_command
    if action is None:
        raise UsageError("ctl needs an action: status, play, pause, ... (see ctl --help)")
    check_args(args)
    api = client_for(args)
    try:
        handler = _ACTIONS[action]
        code: int = handler(api, args)
        return code
    finally:
        api.http.close()


def check_args(args: argparse.Namespace) -> None:
    """The usage errors found without the server, so they come before reading the login."""
    action = args.ctl_command
    edit = getattr(args, "queue_command", None)
    if action == "seek":
        parse_seek(args.pos)
    elif action == "volume":
        parse_volume(args.level)
    elif action == "queue" and edit in ("add", "next"):
        if not (args.track_ids or args.search or args.album or args.url):
            raise UsageError(f"queue {edit}: give track ids, --search, --album or --url")
    elif action == "queue" and edit == "move" and args.index < 0:
        raise UsageError("queue move: the index must be >= 0")
    elif action == "search" and not 1 <= args.limit <= 500:
        raise UsageError("--limit: 1 to 500")
    elif action == "history" and not 1 <= args.limit <= 1000:
        raise UsageError("--limit: 1 to 1000")
    elif action == "speed":
        parse_speed(args.speed)
    elif action == "sleep":
        parse_sleep(args.when)
    elif action == "watch" and args.format is not None:
        from tunehand.cli.watch import check_template

        check_template(args.format)


# --- commands -------------------------------------------------------------------


class NoDeviceOnline(NotFound):
    """A command needed a device to play on, and none of the account's is online."""


def command(api: ApiClient, op: str, device: str | None = None, **fields: Any) -> Json:
    """Send one command; raise the mapped error when it is refused. `device` (an id, a
    name or a unique name prefix) is resolved by the server into the command's device."""
    body = {"op": op, "command_id": os.urandom(8).hex(), **fields}
    path = "/v1/session/commands" + (f"?device={_q(device)}" if device is not None else "")
    status, payload = api.request_status("POST", path, body)
    result = payload.get("result") if isinstance(payload, dict) else None
    if result is None:
        err = payload.get("error", {}) if isinstance(payload, dict) else {}
        if status == 404 or err.get("code") == "device_offline":
            raise NotFound(err.get("message", "not found"))
        raise CommandRefused(err.get("code", "error"), err.get("message", f"refused ({status})"))
    code = result["code"]
    if code == "ok":
        return payload  # type: ignore[no-any-return]
    if code == "no_device":
        names = _online_names(api)
        if not names:
            raise NoDeviceOnline(result["message"])
        raise NotFound("no device is active; choose one with --device: " + ", ".join(names))
    if code in ("not_found", "device_offline"):
        raise NotFound(result["message"])
    raise CommandRefused(code, result["message"])


def _online_names(api: ApiClient) -> list[str]:
    devices = api.request("GET", "/v1/devices")["devices"]
    return [d["name"] for d in devices if d["online"] and "play" in d.get("capabilities", ())]


def _simple(op: str, **fields: Any) -> Any:
    def run(api: ApiClient, args: argparse.Namespace) -> int:
        command(api, op, **fields)
        return 0

    return run


def _status(api: ApiClient, args: argparse.Namespace) -> int:
    payload = api.request("GET", "/v1/session")
    st = status_json(payload, api.http.server)
    _out(args, st, format_status(st))
    return 0


def _track_ids(api: ApiClient, args: argparse.Namespace) -> list[str]:
    ids = list(getattr(args, "track_ids", None) or [])
    if getattr(args, "track_id", None):
        ids.append(args.track_id)
    if getattr(args, "search", None):
        found = api.request("GET", f"/v1/search?q={_q(args.search)}&limit=1")["tracks"]
        if not found:
            raise NotFound(f"nothing in the library matches {args.search!r}")
        ids.append(found[0]["id"])
    if getattr(args, "album", None):
        from tunehand.cli.lookup import album_tracks

        ids.extend(t["id"] for t in album_tracks(api, args.album))
    if getattr(args, "url", None):
        ids.append(api.request("POST", "/v1/tracks/remote", {"url": args.url})["id"])
    if getattr(args, "episode", None):
        ids.append(args.episode)
    return ids


def play_request(api: ApiClient, args: argparse.Namespace) -> Json:
    """The fields of the `play` command that `ctl play` and `resume` ARGS send: the
    tracks asked for (a playlist or an album replaces the queue), or none (resume)."""
    if getattr(args, "playlist", None):
        from tunehand.cli.lookup import playlist

        pl = playlist(api, args.playlist)
        if not pl["track_ids"]:
            raise UsageError(f"playlist {pl['name']!r} is empty")
        return {"track_ids": pl["track_ids"], "replace": True}
    ids = _track_ids(api, args)
    return {"track_ids": ids, "replace": bool(getattr(args, "album", None))} if ids else {}


def _play(api: ApiClient, args: argparse.Namespace) -> int:
    fields: Json = {}
    if args.device:
        fields["device"] = args.device
    url = None if getattr(args, "no_wait", False) else getattr(args, "url", None)
    before = _failure_at(api) if url else 0
    request = play_request(api, args)
    try:
        command(api, "play", **request, **fields)
    except NoDeviceOnline as exc:
        return _offer_to_play_here(args, exc)
    if url:
        _wait_for_url(api, url, request["track_ids"][-1], before)
    return 0


URL_VERDICT_S = 10.0
"""`play --url` waits this long for the device to start the stream or fail."""


def _failure_at(api: ApiClient) -> int:
    failure = api.request("GET", "/v1/session")["state"].get("failure")
    return int(failure["at_ms"]) if failure else 0


def _wait_for_url(api: ApiClient, url: str, track_id: str, failed_before: int) -> None:
    """Wait until the device plays the stream (exit 0) or reports it cannot (one line,
    exit 1): a dead URL is never skipped in silence. Polls the session with a deadline."""
    deadline = time.monotonic() + URL_VERDICT_S
    while time.monotonic() < deadline:
        state = api.request("GET", "/v1/session")["state"]
        failure = state.get("failure")
        if failure and failure["track_id"] == track_id and failure["at_ms"] > failed_before:
            raise MediaError(f"cannot play {names.line(url)}: {names.line(failure['message'])}")
        current = next((e for e in state["queue"] if e["entry_id"] == state["current"]), None)
        if current is None or current["track_id"] != track_id:
            return  # the session moved on (another command), not for a failure
        if state["position"]["playing"] and state["position"]["rate"] > 0:
            return
        time.sleep(0.25)
    print(f"{names.line(url)}: not playing yet (the device is still loading it)", file=sys.stderr)


def _offer_to_play_here(args: argparse.Namespace, exc: NoDeviceOnline) -> int:
    """No device is online: in a terminal of a machine that can play, offer to play here
    (`tunehand resume` with the same arguments); else say how, in one line."""
    resume = ["tunehand", "resume", *play_what_argv(args)]
    if not (sys.stdin.isatty() and sys.stdout.isatty() and _can_play_here()):
        raise NotFound(
            f"no device is online: play here with `{' '.join(resume)}`, or start "
            "`tunehand receiver` on a machine with speakers"
        ) from None
    print(f"No device is online. Play here (`{' '.join(resume)}`)? [Y/n] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("", "y", "yes"):
        raise NotFound(str(exc)) from None
    argv = [sys.executable, "-m", "tunehand", *_global_argv(args), *resume[1:]]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - this same program, with the user's args
    return 0  # not reached


def _can_play_here() -> bool:
    """libmpv can be found (checked without importing mpv: `ctl` never does)."""
    import ctypes.util

    return ctypes.util.find_library("mpv") is not None


def _global_argv(args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("config_dir", "server", "ca_file"):
        value = getattr(args, name, None)
        if value:
            out += [f"--{name.replace('_', '-')}", value]
    return out


def parse_seek(pos: str) -> Json:
    """ "90", "1:30" -> absolute; "+10", "-10" -> relative (seconds)."""
    try:
        if pos[:1] in "+-" and pos[1:]:
            return {"delta_ms": int(float(pos) * 1000)}
        parts = pos.split(":")
        if len(parts) > 3 or not pos:
            raise ValueError(pos)
        secs = 0.0
        for p in parts:
            secs = secs * 60 + float(p)
        if secs < 0:
            raise ValueError(pos)
        return {"position_ms": int(secs * 1000)}
    except ValueError:
        raise UsageError(f"seek: {pos!r} is not a position (90, 1:30, +10 or -10)") from None


def _seek(api: ApiClient, args: argparse.Namespace) -> int:
    command(api, "seek", **parse_seek(args.pos))
    return 0


def parse_volume(level: str) -> Json:
    try:
        n = int(level)
    except ValueError:
        raise UsageError(f"volume: {level!r} is not a number (50, +5 or -5)") from None
    if level[:1] in "+-":
        return {"delta": n}
    if not 0 <= n <= 100:
        raise UsageError("volume: must be 0 to 100")
    return {"value": n}


def _volume(api: ApiClient, args: argparse.Namespace) -> int:
    command(api, "volume", **parse_volume(args.level))
    return 0


def _shuffle(api: ApiClient, args: argparse.Namespace) -> int:
    command(api, "shuffle", on=args.mode == "on")
    return 0


def _repeat(api: ApiClient, args: argparse.Namespace) -> int:
    command(api, "repeat", mode=args.mode)
    return 0


def _queue(api: ApiClient, args: argparse.Namespace) -> int:
    edit = args.queue_command
    if edit is None:
        q = api.request("GET", "/v1/session/queue")
        entries = [
            {
                "entry_id": e["entry_id"],
                "current": e["current"],
                "autoplay": bool(e.get("autoplay")),
                "track": track_json(e["track"], api.http.server) if e["track"] else None,
                "added_by": e.get("added_by", ""),
            }
            for e in q["entries"]
        ]
        shared = len({e["added_by"] for e in entries}) > 1
        lines = [
            ("▶ " if e["current"] else "  ")
            + f"{e['entry_id']:<10} "
            + (format_track_line(e["track"]) if e["track"] else "(track gone)")
            + (f"  [{e['added_by']}]" if shared and e["added_by"] else "")
            + ("  (autoplay)" if e["autoplay"] else "")
            for e in entries
        ]
        _out(
            args,
            {"version": q["version"], "current": q["current"], "entries": entries},
            "\n".join(lines) or "the queue is empty",
        )
        return 0
    if edit in ("add", "next"):
        ids = _track_ids(api, args)
        if not ids:
            raise UsageError(f"queue {edit}: give track ids, --search, --album or --url")
        command(api, "queue_add" if edit == "add" else "queue_next", track_ids=ids)
    elif edit == "remove":
        command(api, "queue_remove", entry_ids=args.entry_ids)
    elif edit == "move":
        op = "order_move" if args.play_order else "queue_move"
        command(api, op, entry_id=args.entry_id, index=args.index)
    elif edit == "clear":
        command(api, "queue_clear")
    return 0


def device_list(api: ApiClient) -> list[Json]:
    devices: list[Json] = api.request("GET", "/v1/devices")["devices"]
    return devices


def resolve_device(api: ApiClient, name: str) -> Json:
    """A device by id, exact name, or unique name prefix (case-insensitive)."""
    found = device_list(api)
    listed = [(d["id"], d["name"], bool(d["online"])) for d in found]
    i = devices.pick(listed, name)
    if i is None:
        raise NotFound(devices.unknown(listed, name))
    return found[i]


def _devices(api: ApiClient, args: argparse.Namespace) -> int:
    if getattr(args, "devices_command", None) == "rename":
        dev = resolve_device(api, args.device)
        done = api.request("PATCH", f"/v1/devices/{_q(dev['id'])}", {"name": args.new_name})
        _out(args, done, f"renamed {names.line(dev['name'])} to {names.line(done['name'])}")
        return 0
    payload = api.request("GET", "/v1/session")
    active = payload["state"]["active_device"]
    devices = [d for d in payload["devices"] if args.all or d["online"]]
    out = [
        {
            "id": d["id"],
            "name": d["name"],
            "online": d["online"],
            "active": d["id"] == active,
            "last_seen_ms": d["last_seen_ms"],
            "address": d["address"],
            "kind": d.get("kind", "terminal"),
            "warm": bool(d.get("warm", False)),
        }
        for d in devices
    ]
    lines = [
        f"{'*' if d['active'] else ' '} {names.line(d['name']):<24} {d['id']:<24} "
        f"{d['kind']:<9} {'online' if d['online'] else 'offline'}{'  warm' if d['warm'] else ''}"
        for d in out
    ]
    _out(args, out, "\n".join(lines) or "no device is online (see --all)")
    return 0


def _transfer(api: ApiClient, args: argparse.Namespace) -> int:
    # The server resolves the name (`?device=`): no device list first, one round trip.
    command(api, "transfer", device=args.device, paused=args.paused)
    return 0


def _search(api: ApiClient, args: argparse.Namespace) -> int:
    tracks = api.request("GET", f"/v1/search?q={_q(args.query)}&limit={args.limit}")["tracks"]
    out = [track_json(t, api.http.server) for t in tracks]
    lines = [f"{t['id']}  {format_track_line(t)}" for t in out]
    _out(args, out, "\n".join(lines) or "no match")
    return 0


def _playlists(api: ApiClient, args: argparse.Namespace) -> int:
    edit = args.playlist_command
    if edit is None:
        lists = api.request("GET", "/v1/playlists")["playlists"]
        _out(
            args,
            lists,
            "\n".join(f"{names.line(p['name'])}  ({p['tracks']} tracks)" for p in lists)
            or "no playlists",
        )
    elif edit == "show":
        pl = api.request("GET", f"/v1/playlists/{_q(args.name)}")
        tracks = [track_json(t, api.http.server) for t in pl["tracks"] if t]
        _out(
            args,
            {"name": pl["name"], "tracks": tracks},
            "\n".join(f"{t['id']}  {format_track_line(t)}" for t in tracks) or "empty",
        )
    elif edit == "save":
        ids = list(args.track_ids)
        if not ids:
            q = api.request("GET", "/v1/session/queue")
            ids = [e["track_id"] for e in q["entries"]]
        if not ids:
            raise UsageError("playlists save: the queue is empty; give track ids")
        api.request("PUT", f"/v1/playlists/{_q(args.name)}", {"track_ids": ids})
    elif edit == "delete":
        api.request("DELETE", f"/v1/playlists/{_q(args.name)}")
    return 0


def _like(api: ApiClient, args: argparse.Namespace) -> int:
    track_id = args.track_id
    if track_id is None:
        track = api.request("GET", "/v1/session")["track"]
        if track is None:
            raise UsageError("like: nothing is playing; give a track id")
        track_id = track["id"]
    api.request("DELETE" if args.remove else "PUT", f"/v1/likes/{_q(track_id)}")
    return 0


def _likes(api: ApiClient, args: argparse.Namespace) -> int:
    tracks = [track_json(t, api.http.server) for t in api.request("GET", "/v1/likes")["tracks"]]
    _out(args, tracks, "\n".join(f"{t['id']}  {format_track_line(t)}" for t in tracks) or "none")
    return 0


def _history(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.request("GET", f"/v1/history?limit={args.limit}")["history"]
    out = [
        {
            "track": track_json(r["track"], api.http.server) if r["track"] else None,
            "played_ms": r["played_ms"],
            "device_id": r["device_id"],
        }
        for r in rows
    ]
    lines = [format_track_line(r["track"]) if r["track"] else "(gone)" for r in out]
    _out(args, out, "\n".join(lines) or "nothing played yet")
    return 0


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


def _watch(api: ApiClient, args: argparse.Namespace) -> int:
    from tunehand.cli.watch import formatter, watch

    tick = bool(args.format and "{elapsed}" in args.format)
    hooks = None
    if args.hooks:
        from tunehand.client.config import load_config
        from tunehand.client.hooks import Hooks

        hooks = Hooks(load_config(api.config_dir).hooks)
        if not hooks:
            raise UsageError(
                f"watch --hooks: {api.config_dir / 'config.toml'} has no [hooks] to run"
            )
    return watch(api, sys.stdout, formatter(args.format, args.waybar), tick, hooks)


def _revoke(api: ApiClient, args: argparse.Namespace) -> int:
    dev = resolve_device(api, args.device)
    api.request("DELETE", f"/v1/devices/{_q(dev['id'])}")
    print(f"revoked {names.line(dev['name'])}: it is logged out")
    return 0


def _app_passwords(api: ApiClient, args: argparse.Namespace) -> int:
    """Passwords for Subsonic apps: `create NAME` prints the new one once (it is kept
    encrypted on the server and never shown again), `revoke NAME`, or the list."""
    edit = getattr(args, "app_password_command", None)
    if edit == "create":
        made = api.request("POST", "/v1/app-passwords", {"name": args.name})
        base = api.http.server.rstrip("/")
        _out(
            args,
            {**made, "server": base},
            f"app password {names.line(made['name'])}: {made['password']}\n"
            f"Give the app the server {base}, your user name and this password; it is"
            " shown only now.",
        )
    elif edit == "revoke":
        api.request("DELETE", f"/v1/app-passwords/{_q(args.name)}")
        print(f"revoked the app password {names.line(args.name)}: the app is logged out")
    else:
        rows = api.request("GET", "/v1/app-passwords")["app_passwords"]

        def when(ms: int | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "never"

        lines = [
            f"{names.line(p['name']):<24} {p['device_id']:<24} created {when(p['created_ms'])},"
            f" last used {when(p['last_used_ms'])}"
            for p in rows
        ]
        _out(args, rows, "\n".join(lines) or "no app passwords (see `app-passwords create`)")
    return 0


def _approve(api: ApiClient, args: argparse.Namespace) -> int:
    """Show the device that asked for the code and ask y/N (`--yes` for scripts) before
    approving: a code someone else sent would log in *their* device (RFC 8628 §5.4)."""
    allow = not args.deny
    if allow:
        p = api.request("POST", "/v1/auth/device/review", {"user_code": args.code})
        asked = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["asked_ms"] / 1000))
        print(
            names.shown(
                f"code {p['user_code']} asks to log in as {p['user']}:\n"
                f"  device   {names.clean(p['device_name']) or p['device_id']}\n"
                f"  address  {p['address'] or 'unknown'}\n"
                f"  asked    {asked} (expires in {p['expires_in']} s)"
            )
        )
        if not args.yes:
            print("Approve it? Only if you started this login yourself. [y/N] ", end="")
            sys.stdout.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                raise CommandRefused(
                    "not_approved",
                    "not approved: the code stays pending (answer y, or pass --yes in scripts)",
                )
    answer = api.request(
        "POST", "/v1/auth/device/approve", {"user_code": args.code, "approve": allow}
    )
    name = names.clean(answer["device_name"])
    if allow:
        print(names.shown(f"approved: {name} is logged in as {answer['user']}"))
    else:
        print(names.shown(f"denied: {name} stays logged out"))
    return 0


def _jam_code(raw: str) -> str:
    """The code from `ABCD-EFGH` or from the link `jam start --json` gives."""
    if "jam=" in raw:
        raw = raw.split("jam=", 1)[1].split("&", 1)[0]
    return raw.strip()


def _jam(api: ApiClient, args: argparse.Namespace) -> int:
    edit = getattr(args, "jam_command", None)
    if edit == "start":
        got = api.request("POST", "/v1/jam", {"guests_can_control": args.guests_can_control})
        _out(
            args,
            {"code": got["code"], "url": got["url"]},
            f"jam started: others join with `tunehand ctl jam join {got['code']}`",
        )
    elif edit == "join":
        got = api.request("POST", "/v1/jam/join", {"code": _jam_code(args.code)})
        print(names.shown(f"joined {names.line(got['host'])}'s jam"))
    elif edit == "leave":
        got = api.request("POST", "/v1/jam/leave", {})
        print(names.shown(f"left {names.line(got['host'])}'s jam: back to your own session"))
    elif edit == "end":
        api.request("DELETE", "/v1/jam")
        print("jam ended: the guests are back on their own sessions")
    elif edit == "kick":
        api.request("POST", "/v1/jam/kick", {"user": args.user})
        print(names.shown(f"removed {names.line(args.user)} from the jam"))
    elif edit == "set":
        got = api.request("PATCH", "/v1/jam", {"guests_can_control": args.control})
        state = "on" if got["guests_can_control"] else "off"
        print(f"guests can control: {state}")
    else:
        got = api.request("GET", "/v1/jam")
        lines = [
            f"{names.line(got['host'])}'s jam  code {got['code']}"
            f"  guests can control: {'on' if got['guests_can_control'] else 'off'}"
        ]
        for m in got["members"]:
            devices = ", ".join(names.line(d) for d in m["devices"]) or "no device online"
            lines.append(f"  {names.line(m['user'])}: {devices}")
        _out(args, got, "\n".join(lines))
    return 0


def _lyrics(api: ApiClient, args: argparse.Namespace) -> int:
    """The current track's lyrics: `{synced, lines: [{time_ms, text}]}` with --json;
    otherwise the lines (with their times when synced), the one playing now marked."""
    from tunehand.core.lyrics import from_json, line_at

    payload = api.request("GET", "/v1/session")
    st = status_json(payload, api.http.server)
    if st["track"] is None:
        raise NotFound("lyrics: nothing is playing")
    answer = api.request("GET", f"/v1/tracks/{_q(st['track']['id'])}/lyrics")
    found = from_json(answer)
    if found is None:
        raise CommandRefused("invalid", "the server sent lyrics in a form this ctl cannot read")
    now = line_at(found, st["position_ms"])
    human = []
    for i, ln in enumerate(found.lines):
        mark = "> " if i == now else "  "
        t = ln.time_ms or 0
        stamp = (
            f"[{t // 60000:02d}:{t // 1000 % 60:02d}.{t % 1000 // 10:02d}] " if found.synced else ""
        )
        human.append(f"{mark}{stamp}{ln.text}" if found.synced else ln.text)
    _out(args, found.to_json(), "\n".join(human) or "no lyrics for this track")
    return 0


def _autoplay(api: ApiClient, args: argparse.Namespace) -> int:
    if args.mode is None:
        on = api.request("GET", "/v1/autoplay")["on"]
    else:
        on = api.request("PUT", "/v1/autoplay", {"on": args.mode == "on"})["on"]
    print(f"autoplay {'on' if on else 'off'}")
    return 0


def _radio(api: ApiClient, args: argparse.Namespace) -> int:
    if sum(bool(x) for x in (args.track_id, args.artist, args.album)) != 1:
        raise UsageError("radio: give a TRACK_ID, --artist NAME or --album ALBUM")
    if args.artist:
        body: Json = {"artist": args.artist}
    elif args.album:
        from tunehand.cli.lookup import album_tracks

        body = {"track_ids": [t["id"] for t in album_tracks(api, args.album)]}
    else:
        body = {"track_ids": [args.track_id]}
    ids = api.request("POST", "/v1/radio", body)["track_ids"]
    fields: Json = {"track_ids": ids, "replace": True, "index": 0, "autoplay": True}
    if args.device:
        fields["device"] = args.device
    command(api, "play", **fields)
    return 0


LASTFM_WAIT_S = 600
LASTFM_POLL_S = 3.0


def _scrobble(api: ApiClient, args: argparse.Namespace) -> int:
    """The account's scrobbling: list, `add listenbrainz --token-stdin [--url]`, `add
    lastfm` (prints the page to approve on and waits, like the device-code login),
    `remove NAME`."""
    edit = getattr(args, "scrobble_command", None)
    if edit is None:
        rows = api.request("GET", "/v1/scrobble")["services"]
        lines = [
            f"{r['name']}  {r['user'] or '?'}  {r['url']}"
            + (f"  ({r['queued']} waiting)" if r["queued"] else "")
            for r in rows
        ]
        _out(args, rows, "\n".join(lines) or "no scrobbling: see `ctl scrobble add`")
        return 0
    if edit == "remove":
        api.request("DELETE", f"/v1/scrobble/{_q(args.name)}")
        return 0
    if args.service == "listenbrainz":
        if not args.token_stdin:
            raise UsageError("scrobble add listenbrainz: give the token on stdin: --token-stdin")
        token = sys.stdin.readline().strip()
        if not token:
            raise UsageError("scrobble add listenbrainz: no token on stdin")
        body = {"token": token, **({"url": args.url} if args.url else {})}
        got = api.request("PUT", "/v1/scrobble/listenbrainz", body)
        print(names.shown(f"scrobbling to ListenBrainz as {got['user'] or '?'}"))
        return 0
    if args.token_stdin or args.url:
        raise UsageError("scrobble add lastfm: takes no --token-stdin or --url")
    started = api.request("POST", "/v1/scrobble/lastfm/start")
    print(f"Approve tunehand on Last.fm: {started['url']}", flush=True)
    deadline = time.monotonic() + LASTFM_WAIT_S
    while True:
        status, payload = api.request_status(
            "POST", "/v1/scrobble/lastfm/finish", {"token": started["token"]}
        )
        if status == 200:
            print(names.shown(f"scrobbling to Last.fm as {payload['user'] or '?'}"))
            return 0
        err = payload.get("error", {}) if isinstance(payload, dict) else {}
        if err.get("code") != "authorization_pending":
            raise CommandRefused(
                err.get("code", "error"), err.get("message", f"refused ({status})")
            )
        if time.monotonic() > deadline:
            raise CommandRefused("expired", "not approved on Last.fm in time: run it again")
        time.sleep(LASTFM_POLL_S)  # the service's pace, as the device-code login polls


_ACTIONS: dict[str, Any] = {
    "status": _status,
    "play": _play,
    "pause": _simple("pause"),
    "toggle": _simple("toggle"),
    "next": _simple("next"),
    "prev": _simple("prev"),
    "seek": _seek,
    "volume": _volume,
    "shuffle": _shuffle,
    "repeat": _repeat,
    "queue": _queue,
    "devices": _devices,
    "transfer": _transfer,
    "search": _search,
    "playlists": _playlists,
    "like": _like,
    "likes": _likes,
    "podcasts": _podcasts,
    "continue": _continue,
    "speed": _speed,
    "chapter": _chapter,
    "sleep": _sleep,
    "history": _history,
    "watch": _watch,
    "revoke": _revoke,
    "approve": _approve,
    "app-passwords": _app_passwords,
    "jam": _jam,
    "lyrics": _lyrics,
    "scrobble": _scrobble,
    "autoplay": _autoplay,
    "radio": _radio,
}
