"""`tunehand ctl`'s library actions: search, playlists, likes, history.

Imported by `ctl` only when one of them runs (`ctl._later`).
"""

from __future__ import annotations

import argparse

from tunehand.cli.ctl import Handler, _out, _q
from tunehand.cli.output import format_track_line, track_json
from tunehand.client.http import ApiClient
from tunehand.core import names
from tunehand.errors import UsageError


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


ACTIONS: dict[str, Handler] = {
    "search": _search,
    "playlists": _playlists,
    "like": _like,
    "likes": _likes,
    "history": _history,
}
