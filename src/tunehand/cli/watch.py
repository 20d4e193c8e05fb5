"""`tunehand ctl watch`: one JSON object per state change, for status bars.

Holds a channel connection (as an observer: it never becomes a playing device),
reconnects forever with jittered backoff, and exits only on a refused login (3).
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import IO, Any

from tunehand.cli.output import status_json
from tunehand.client.config import default_device_name, device_id, load_config
from tunehand.client.http import ApiClient
from tunehand.core.backoff import backoff
from tunehand.errors import AuthError, ServerUnreachable


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


def watch(api: ApiClient, out: IO[str]) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    config = load_config(api.config_dir)
    my_id = device_id(api.config_dir)
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
            with connect(
                _ws_url(api.http.server),
                additional_headers={"Authorization": f"Bearer {creds.access_token}"},
                max_size=1 << 22,
                open_timeout=10,
            ) as ws:
                ws.send(json.dumps({"type": "auth", "device": {**me, "capabilities": []}}))
                devices: list[Any] = []
                for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    if kind == "error" and msg.get("code") == "unauthorized":
                        raise AuthError(msg.get("message", "refused"))
                    if kind == "hello":
                        devices = msg["devices"]
                        state_msg = msg["state"]
                    elif kind == "devices":
                        devices = msg["devices"]
                        continue
                    elif kind == "state":
                        state_msg = msg
                    else:
                        continue
                    if state_msg is None:
                        continue
                    payload = {
                        "state": state_msg["state"],
                        "track": state_msg["track"],
                        "devices": devices,
                        "server_time_ms": time.time_ns() // 1_000_000,
                    }
                    line = json.dumps(status_json(payload), ensure_ascii=False)
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
