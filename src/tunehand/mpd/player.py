"""MPD commands about playback and outputs: status, currentsong, stats, play, pause,
seek, volume, random/repeat/single, and the account's devices as outputs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from tunehand.mpd.frontend import Frontend
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_NO_EXIST,
    MpdError,
    song_lines,
    status_lines,
    to_bool,
    to_float,
    to_int,
)

Handler = Callable[[Frontend, list[str]], Awaitable[list[str]]]


def _arity(args: list[str], lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        raise MpdError(ACK_ARG, "wrong number of arguments")


async def status(fe: Frontend, args: list[str]) -> list[str]:
    st = fe.state
    cur = st.current_entry
    duration = cur.duration_ms if cur else 0
    if cur is not None and not duration:
        duration = int((await fe.queue_tracks()).get(cur.track_id, {}).get("duration_ms") or 0)
    return status_lines(st, fe.now_ms(), fe.song_id, duration)


async def currentsong(fe: Frontend, args: list[str]) -> list[str]:
    st = fe.state
    cur = st.current_entry
    if cur is None:
        return []
    tracks = await fe.queue_tracks()
    pos = [e.entry_id for e in st.queue].index(cur.entry_id)
    return song_lines(tracks[cur.track_id], pos, fe.song_id(cur.entry_id))


async def stats(fe: Frontend, args: list[str]) -> list[str]:
    lib = await fe.library()
    return [
        f"artists: {len({t.get('artist') for t in lib})}",
        f"albums: {len({t.get('album_id') for t in lib})}",
        f"songs: {len(lib)}",
        f"uptime: {int(time.time() - fe.started)}",
        f"db_playtime: {sum(int(t.get('duration_ms') or 0) for t in lib) // 1000}",
        f"db_update: {int(fe.started)}",
        "playtime: 0",
    ]


async def play(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if args and to_int(args[0]) >= 0:
        await fe.run("play", entry_id=fe.entry_at(to_int(args[0])))
    else:
        await fe.run("play")
    return []


async def playid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if args and to_int(args[0]) >= 0:
        await fe.run("play", entry_id=fe.entry_of(to_int(args[0])))
    else:
        await fe.run("play")
    return []


async def pause(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if not args:
        await fe.run("toggle")
    elif to_bool(args[0]):
        await fe.run("pause")
    elif fe.state.current_entry is not None:
        await fe.run("play")
    return []


async def stop(fe: Frontend, args: list[str]) -> list[str]:
    """The session has no "stopped": pause and go back to the start of the song."""
    if fe.state.current_entry is not None:
        await fe.run("pause")
        await fe.run("seek", position_ms=0)
    return []


async def next_(fe: Frontend, args: list[str]) -> list[str]:
    await fe.run("next")
    return []


async def previous(fe: Frontend, args: list[str]) -> list[str]:
    await fe.run("prev")
    return []


def _ms(value: str) -> int:
    secs = to_float(value)
    if secs < 0:
        raise MpdError(ACK_ARG, f"Bad time: {value}")
    return int(secs * 1000)


async def _seek_entry(fe: Frontend, entry_id: str, time_s: str) -> None:
    pos = _ms(time_s)
    if entry_id == fe.state.current:
        await fe.run("seek", position_ms=pos)
    else:
        await fe.run("play", entry_id=entry_id, position_ms=pos)


async def seek(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await _seek_entry(fe, fe.entry_at(to_int(args[0])), args[1])
    return []


async def seekid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 2, 2)
    await _seek_entry(fe, fe.entry_of(to_int(args[0])), args[1])
    return []


async def seekcur(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    value = args[0]
    if value[:1] in "+-":
        await fe.run("seek", delta_ms=int(to_float(value) * 1000))
    else:
        await fe.run("seek", position_ms=_ms(value))
    return []


async def setvol(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    level = to_int(args[0])
    if not 0 <= level <= 100:
        raise MpdError(ACK_ARG, "Invalid volume value")
    await fe.run("volume", value=level)
    return []


async def volume(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    await fe.run("volume", delta=to_int(args[0]))
    return []


async def getvol(fe: Frontend, args: list[str]) -> list[str]:
    return [f"volume: {fe.state.volume}"]


async def random(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    await fe.run("shuffle", on=to_bool(args[0]))
    return []


async def repeat(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    on = to_bool(args[0])
    if not on:
        await fe.run("repeat", mode="off")
    elif fe.state.repeat == "off":
        await fe.run("repeat", mode="all")
    return []


async def single(fe: Frontend, args: list[str]) -> list[str]:
    """single 1 is repeat one; single 0 goes back to repeat all."""
    _arity(args, 1, 1)
    if args[0] == "oneshot":
        raise MpdError(ACK_ARG, "single oneshot is not supported")
    if to_bool(args[0]):
        await fe.run("repeat", mode="one")
    elif fe.state.repeat == "one":
        await fe.run("repeat", mode="all")
    return []


# --- outputs: the account's devices -------------------------------------------------


async def outputs(fe: Frontend, args: list[str]) -> list[str]:
    active = fe.state.active_device
    lines: list[str] = []
    for i, d in enumerate(fe.agent.mirror.devices):
        lines += [
            f"outputid: {i}",
            f"outputname: {d.name}",
            "plugin: tunehand",
            f"outputenabled: {int(d.id == active)}",
        ]
    return lines


def _device(fe: Frontend, args: list[str]) -> str:
    _arity(args, 1, 1)
    i = to_int(args[0])
    devices = fe.agent.mirror.devices
    if not 0 <= i < len(devices):
        raise MpdError(ACK_NO_EXIST, "No such audio output")
    return devices[i].id


async def enableoutput(fe: Frontend, args: list[str]) -> list[str]:
    dev = _device(fe, args)
    if dev != fe.state.active_device:
        await fe.run("transfer", device_id=dev)
    return []


async def disableoutput(fe: Frontend, args: list[str]) -> list[str]:
    """A device stops being the output by pausing there (the session keeps its place)."""
    dev = _device(fe, args)
    if dev == fe.state.active_device and fe.state.position.playing:
        await fe.run("pause")
    return []


async def toggleoutput(fe: Frontend, args: list[str]) -> list[str]:
    dev = _device(fe, args)
    if dev == fe.state.active_device:
        return await disableoutput(fe, args)
    return await enableoutput(fe, args)


HANDLERS: dict[str, Handler] = {
    "status": status,
    "currentsong": currentsong,
    "stats": stats,
    "play": play,
    "playid": playid,
    "pause": pause,
    "stop": stop,
    "next": next_,
    "previous": previous,
    "seek": seek,
    "seekid": seekid,
    "seekcur": seekcur,
    "setvol": setvol,
    "volume": volume,
    "getvol": getvol,
    "random": random,
    "repeat": repeat,
    "single": single,
    "outputs": outputs,
    "enableoutput": enableoutput,
    "disableoutput": disableoutput,
    "toggleoutput": toggleoutput,
}
