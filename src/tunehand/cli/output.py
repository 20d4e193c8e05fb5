"""What `ctl` prints: the stable `--json` shapes and the human one-liners."""

from __future__ import annotations

from typing import Any

from tunehand.core import names
from tunehand.core.clock import clock, extrapolate

Json = dict[str, Any]


TRACK_KEYS = ("id", "title", "artist", "album", "duration_ms", "album_id")


def track_json(t: Json, server: str = "") -> Json:
    """A track as every `--json` output shows it (documented in README); `art_url` is the
    absolute, signed picture URL (it expires: fetch it when you read it), or null."""
    out = {k: t.get(k) for k in TRACK_KEYS}
    art = t.get("art_url")
    out["art_url"] = server.rstrip("/") + art if isinstance(art, str) and art else None
    return out


def status_json(payload: Json, server: str = "") -> Json:
    """The `status --json` object from a `GET /v1/session` answer (documented in README)."""
    state = payload["state"]
    track = payload.get("track")
    active = state.get("active_device")
    device = None
    for d in payload.get("devices", []):
        if d["id"] == active:
            device = {"id": d["id"], "name": d["name"]}
    if active is not None and device is None:
        device = {"id": active, "name": active}
    duration = track["duration_ms"] if track else 0
    current = next((e for e in state["queue"] if e["entry_id"] == state["current"]), None)
    p = state["position"]
    now = int(payload["server_time_ms"])
    pos = extrapolate(p["position_ms"], p["at_ms"], p["playing"], p["rate"], now, duration)
    chapters = [
        {"title": str(c["title"]), "start_ms": int(c["start_ms"])}
        for c in payload.get("chapters") or ()
    ]
    return {
        "device": device,
        "playing": bool(state["position"]["playing"]),
        "track": track_json(track, server) if track else None,
        "position_ms": pos if track else 0,
        "volume": state["volume"],
        "shuffle": state["shuffle"],
        "repeat": state["repeat"],
        "queue_length": len(state["queue"]),
        "entry_id": state["current"],
        "version": state["version"],
        "error": _failure(state.get("failure"), now),
        "added_by": current.get("added_by", "") if current else None,
        "jam": payload.get("jam"),
        "chapters": chapters,
        "chapter": current_chapter(chapters, pos) if track else None,
        "speed": track.get("speed", 1.0) if track else 1.0,
    }


FAILURE_SHOWN_MS = 10 * 60 * 1000
"""`status` says the last entry that could not be played for this long."""


def _failure(failure: Json | None, now_ms: int) -> Json | None:
    if not failure or now_ms - int(failure["at_ms"]) > FAILURE_SHOWN_MS:
        return None
    return {k: failure[k] for k in ("message", "track_id", "entry_id", "at_ms")}


def current_chapter(chapters: list[Json], position_ms: int) -> int | None:
    """The index of the chapter `position_ms` is in, or None when there are none."""
    at = None
    for i, c in enumerate(chapters):
        if c["start_ms"] <= position_ms:
            at = i
    return at if at is not None or not chapters else 0


def format_track_line(t: Json) -> str:
    artist = t.get("artist") or "Unknown artist"
    line = f"{t.get('title')} — {artist}"
    if t.get("album"):
        line += f" ({t['album']})"
    if t.get("duration_ms"):
        line += f"  {clock(t['duration_ms'])}"
    return line


def format_status(st: Json) -> str:
    track = st["track"]
    if track is None:
        head = "nothing is playing" + (" (the queue is empty)" if not st["queue_length"] else "")
    else:
        head = ("▶ " if st["playing"] else "⏸ ") + format_track_line({**track, "duration_ms": 0})
    where = names.line(st["device"]["name"]) if st["device"] else "no active device"
    detail = (
        f"  {clock(st['position_ms'])} / {clock(track['duration_ms'] if track else None)}"
        f"  on {where}  vol {st['volume']}  shuffle {'on' if st['shuffle'] else 'off'}"
        f"  repeat {st['repeat']}  queue {st['queue_length']}"
    )
    if st.get("speed", 1.0) != 1.0:
        detail += f"  speed {st['speed']:g}x"
    marks, at = st.get("chapters") or [], st.get("chapter")
    if marks and at is not None:
        detail += f"\n  chapter {at + 1}/{len(marks)}: {names.line(marks[at]['title'])}"
    err = st.get("error")
    tail = f"\n  skipped an entry it could not play: {names.line(err['message'])}" if err else ""
    return head + "\n" + detail + tail
