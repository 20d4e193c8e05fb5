"""`tunehand ctl`: drive the account's session from scripts, from any machine.

Talks to the server over HTTP (and the channel for `watch`); never imports textual or
mpv. Exit codes: 0 ok, 1 other error, 2 usage, 3 not logged in or refused, 4 server
unreachable, 5 no such device, track or playlist. Read commands take `--json`; the
field names are documented in the README and stay stable.

This module holds the dispatch, the playback actions and what every action shares; the
others live in `ctl_library`, `ctl_listening`, `ctl_account` and `ctl_jam`, each
imported only when one of its actions runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tunehand.cli.ctl_args import play_what_argv
from tunehand.cli.output import format_status, format_track_line, status_json, track_json
from tunehand.client import root
from tunehand.client.http import ApiClient, quote
from tunehand.core import devices, names
from tunehand.errors import CommandRefused, MediaError, NotFound, UsageError

Json = dict[str, Any]
Handler = Callable[[ApiClient, argparse.Namespace], int]


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
        from tunehand.cli.ctl_listening import parse_speed

        parse_speed(args.speed)
    elif action == "sleep":
        from tunehand.cli.ctl_listening import parse_sleep

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


# --- actions in their own modules, imported when they run ---------------------------


def _later(actions: Callable[[], dict[str, Handler]]) -> Handler:
    """An action of a module imported only when it runs: `ctl` starts with only what the
    playback actions need (a benchmark times `ctl transfer` from process start)."""

    def run(api: ApiClient, args: argparse.Namespace) -> int:
        return actions()[args.ctl_command](api, args)

    return run


def _library() -> dict[str, Handler]:
    from tunehand.cli.ctl_library import ACTIONS

    return ACTIONS


def _listening() -> dict[str, Handler]:
    from tunehand.cli.ctl_listening import ACTIONS

    return ACTIONS


def _account() -> dict[str, Handler]:
    from tunehand.cli.ctl_account import ACTIONS

    return ACTIONS


def _jam() -> dict[str, Handler]:
    from tunehand.cli.ctl_jam import ACTIONS

    return ACTIONS


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
    "search": _later(_library),
    "playlists": _later(_library),
    "like": _later(_library),
    "likes": _later(_library),
    "podcasts": _later(_listening),
    "continue": _later(_listening),
    "speed": _later(_listening),
    "chapter": _later(_listening),
    "sleep": _later(_listening),
    "history": _later(_library),
    "watch": _watch,
    "revoke": _later(_account),
    "approve": _later(_account),
    "app-passwords": _later(_account),
    "jam": _later(_jam),
    "lyrics": _lyrics,
    "scrobble": _later(_account),
    "autoplay": _autoplay,
    "radio": _radio,
}
