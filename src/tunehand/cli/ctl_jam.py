"""`tunehand ctl jam`: start, join, leave, end and show a jam, and manage its guests.

Imported by `ctl` only when it runs (`ctl._later`).
"""

from __future__ import annotations

import argparse

from tunehand.cli.ctl import Handler, _out
from tunehand.client.http import ApiClient
from tunehand.core import names


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


ACTIONS: dict[str, Handler] = {
    "jam": _jam,
}
