"""`tunehand ctl watch`: one JSON object per state change, for status bars.

Holds a channel connection (as an observer: it never becomes a playing device),
reconnects forever with jittered backoff, and exits only on a refused login (3).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tunehand.cli.output import status_json
from tunehand.client.config import default_device_name, load_config
from tunehand.client.hooks import Hooks, view_of_status
from tunehand.client.http import ApiClient
from tunehand.core import names
from tunehand.core.backoff import backoff
from tunehand.core.clock import clock
from tunehand.errors import AuthError, ServerUnreachable, UsageError


def _ws_url(server: str) -> str:
    return ("wss://" + server[8:] if server.startswith("https://") else "ws://" + server[7:]) + (
        "/v1/channel"
    )


def _registered_name(api: ApiClient, my_id: str) -> str | None:
    """This device's name on the server (as given at login), so watching never renames it."""
    for d in api.request("GET", "/v1/devices")["devices"]:
        if d.get("id") == my_id and isinstance(d.get("name"), str) and d["name"]:
            return str(d["name"])
    return None


FIELDS = (
    "title",
    "artist",
    "album",
    "elapsed",
    "duration",
    "device",
    "state",
    "icon",
    "volume",
    "shuffle",
    "repeat",
    "art_url",
)


def template_fields(st: dict[str, Any]) -> dict[str, str]:
    """The `--format` fields of a `status --json` object."""
    track = st["track"] or {}
    state = "stopped" if not track else ("playing" if st["playing"] else "paused")
    return {
        "title": track.get("title") or "",
        "artist": track.get("artist") or "",
        "album": track.get("album") or "",
        "elapsed": clock(st["position_ms"]) if track else "",
        "duration": clock(track.get("duration_ms") or None) if track else "",
        "device": names.clean((st["device"] or {}).get("name") or ""),
        "state": state,
        "icon": {"playing": "▶", "paused": "⏸", "stopped": "■"}[state],
        "volume": str(st["volume"]),
        "shuffle": "on" if st["shuffle"] else "off",
        "repeat": st["repeat"],
        "art_url": track.get("art_url") or "",
    }


def check_template(template: str) -> None:
    try:
        template.format(**dict.fromkeys(FIELDS, ""))
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"--format: {exc} is not a field; use {', '.join('{' + f + '}' for f in FIELDS)}"
        ) from None


def formatter(template: str | None, waybar: bool) -> Callable[[dict[str, Any]], str]:
    """One output line for a status object: JSON, a template, or waybar's JSON."""
    if waybar:

        def bar(st: dict[str, Any]) -> str:
            f = template_fields(st)
            text = (template or "{icon} {title} — {artist}").format(**f) if st["track"] else ""
            tip = f"{f['title']} — {f['artist']} ({f['album']})\non {f['device']}"
            return json.dumps(
                {"text": text, "tooltip": tip, "class": f["state"], "alt": f["state"]},
                ensure_ascii=False,
            )

        return bar
    if template is not None:
        return lambda st: template.format(**template_fields(st))
    return lambda st: json.dumps(st, ensure_ascii=False)


def merged_devices(devices: list[Any], msg: dict[str, Any]) -> list[Any]:
    """The device list after a `devices` message: a full list, or a patch of the devices
    that changed and the ids removed (as `Mirror.on_devices`)."""
    if not msg.get("patch"):
        return list(msg["devices"])
    changed = {d["id"]: d for d in msg["devices"]}
    gone = set(msg.get("removed", ()))
    kept = [changed.pop(d["id"], d) for d in devices if d["id"] not in gone]
    return kept + [d for d in changed.values() if d["id"] not in gone]


def watch(
    api: ApiClient,
    out: IO[str],
    fmt: Callable[[dict[str, Any]], str] | None = None,
    tick: bool = False,
    hooks: Hooks | None = None,
) -> int:
    """Print one line per state change; with `tick` (a template showing `{elapsed}`),
    also every second while playing."""
    fmt = fmt or formatter(None, False)
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    config = load_config(api.config_dir)
    my_id = api.device_id()
    name = config.device_name
    delays = backoff(random.Random())
    last_printed: str | None = None
    while True:
        try:
            api.request("GET", "/v1/auth/whoami")  # refreshes the token when needed
            if name is None:
                name = _registered_name(api, my_id) or default_device_name()
            me = {"id": my_id, "name": name}
            creds = api.credentials()
            ssl_ctx = None
            if api.http.server.startswith("https://"):
                import ssl

                ssl_ctx = ssl.create_default_context(cafile=api.http.ca_file)
            with connect(
                _ws_url(api.http.server),
                ssl=ssl_ctx,
                additional_headers={"Authorization": f"Bearer {creds.access_token}"},
                max_size=1 << 22,
                open_timeout=10,
            ) as ws:
                ws.send(json.dumps({"type": "auth", "device": {**me, "capabilities": []}}))
                devices: list[Any] = []
                state_msg: Any = None
                while True:
                    try:
                        raw = ws.recv(timeout=1.0 if tick else None)
                    except TimeoutError:
                        raw = None
                    msg: dict[str, Any] = json.loads(raw) if raw is not None else {"type": "tick"}
                    kind = msg.get("type")
                    if kind == "error" and msg.get("code") == "unauthorized":
                        raise AuthError(msg.get("message", "refused"))
                    if kind == "hello":
                        devices = msg["devices"]
                        state_msg = msg["state"]
                    elif kind == "devices":
                        devices = merged_devices(devices, msg)
                        if not hooks:
                            continue
                    elif kind == "state":
                        if state_msg is not None and msg["version"] <= state_msg["version"]:
                            continue  # older than what we show: a delivery overtaken
                        state_msg = msg
                    elif kind != "tick":
                        continue
                    if state_msg is None:
                        continue
                    payload = {
                        "state": state_msg["state"],
                        "track": state_msg["track"],
                        "devices": devices,
                        "server_time_ms": time.time_ns() // 1_000_000,
                    }
                    st = status_json(payload, api.http.server)
                    if hooks:
                        hooks.feed(view_of_status(st, devices))
                    line = fmt(st)
                    if line != last_printed:
                        out.write(line + "\n")
                        out.flush()
                        last_printed = line
                    delays = backoff(random.Random())
        except (
            ServerUnreachable,
            ConnectionClosed,
            InvalidStatus,
            WebSocketException,
            OSError,
        ) as exc:
            print(
                f"tunehand: watch: connection lost ({type(exc).__name__}); reconnecting",
                file=sys.stderr,
            )
        time.sleep(next(delays))
