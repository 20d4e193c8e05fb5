"""MPD commands about playback and outputs: status, currentsong, stats, play, pause,
seek, volume, random/repeat/single, the account's devices as outputs, library rescans,
and the player options the session has no notion of (consume, crossfade, replay gain,
partitions), answered as MPD does for a player without them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from tunehand.mpd.frontend import Frontend
from tunehand.mpd.library import tracks_under
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_NO_EXIST,
    ACK_PLAYER_SYNC,
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
    lines = status_lines(st, fe.now_ms(), fe.song_id, duration)
    if fe.updating is not None:
        lines.append(f"updating_db: {fe.updating}")
    if fe.error is not None:
        lines.append(f"error: {fe.error}")
    return lines


async def currentsong(fe: Frontend, args: list[str]) -> list[str]:
    st = fe.state
    cur = st.current_entry
    if cur is None:
        return []
    tracks = await fe.queue_tracks()
    pos = [e.entry_id for e in st.queue].index(cur.entry_id)
    return song_lines(tracks[cur.track_id], pos, fe.song_id(cur.entry_id), fe.adder(cur))


async def stats(fe: Frontend, args: list[str]) -> list[str]:
    lib = await fe.library()
    return [
        f"artists: {len({t.get('artist') for t in lib})}",
        f"albums: {len({t.get('album_id') for t in lib})}",
        f"songs: {len(lib)}",
        f"uptime: {int(time.time() - fe.started)}",
        f"db_playtime: {sum(int(t.get('duration_ms') or 0) for t in lib) // 1000}",
        f"db_update: {int(fe.db_update)}",
        f"playtime: {fe.playtime_s()}",
    ]


async def play(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if args and to_int(args[0]) >= 0:
        await fe.play(entry_id=fe.entry_at(to_int(args[0])))
    elif fe.state.queue:
        await fe.play()
    return []  # MPD: play on an empty queue does nothing


async def playid(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 0, 1)
    if args and to_int(args[0]) >= 0:
        await fe.play(entry_id=fe.entry_of(to_int(args[0])))
    elif fe.state.queue:
        await fe.play()
    return []


async def pause(fe: Frontend, args: list[str]) -> list[str]:
    """pause 1 pauses, pause 0 resumes, pause toggles; stopped (nothing current), MPD
    does nothing."""
    _arity(args, 0, 1)
    playing = fe.state.position.playing
    want = (not playing) if not args else not to_bool(args[0])
    if want and not playing and fe.state.current_entry is not None:
        await fe.play()
    elif not want and playing:
        await fe.run("pause")
    return []


async def stop(fe: Frontend, args: list[str]) -> list[str]:
    """The session has no "stopped": pause and go back to the start of the song."""
    if fe.state.current_entry is not None:
        await fe.run("pause")
        await fe.run("seek", position_ms=0)
    return []


def _playing(fe: Frontend) -> None:
    """MPD's next, previous and seekcur need a current song (playing or paused)."""
    if fe.state.current_entry is None:
        raise MpdError(ACK_PLAYER_SYNC, "Not playing")


async def next_(fe: Frontend, args: list[str]) -> list[str]:
    _playing(fe)
    await fe.run("next")
    return []


async def previous(fe: Frontend, args: list[str]) -> list[str]:
    _playing(fe)
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
        await fe.play(entry_id=entry_id, position_ms=pos)


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
    _playing(fe)
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
    """single 1 is repeat one; single 0 goes back to repeat all. The session cannot stop
    after the current song, so `oneshot` is refused (as MPD refuses a mode it lacks)."""
    _arity(args, 1, 1)
    if args[0] == "oneshot":
        raise MpdError(
            ACK_ARG, "single oneshot: the session cannot stop after one song (use single 1)"
        )
    if to_bool(args[0]):
        await fe.run("repeat", mode="one")
    elif fe.state.repeat == "one":
        await fe.run("repeat", mode="all")
    return []


# --- outputs: the account's devices that can play -----------------------------------


async def outputs(fe: Frontend, args: list[str]) -> list[str]:
    lines: list[str] = []
    for o in fe.output_list():
        state = "online" if o.can_play else ("offline" if not o.device.online else "cannot-play")
        lines += [
            f"outputid: {o.id}",
            f"outputname: {o.label}",
            "plugin: tunehand",
            f"outputenabled: {int(fe.enabled(o))}",
            f"attribute: device={state}",
        ]
    return lines


def _output_arg(fe: Frontend, args: list[str]) -> int:
    _arity(args, 1, 1)
    return to_int(args[0])


async def enableoutput(fe: Frontend, args: list[str]) -> list[str]:
    await fe.enable(fe.output(_output_arg(fe, args)))
    return []


async def disableoutput(fe: Frontend, args: list[str]) -> list[str]:
    """The active output stops by pausing there; the others are disabled already."""
    await fe.disable(fe.output(_output_arg(fe, args)))
    return []


async def toggleoutput(fe: Frontend, args: list[str]) -> list[str]:
    o = fe.output(_output_arg(fe, args))
    if fe.enabled(o):
        await fe.disable(o)
    else:
        await fe.enable(o)
    return []


async def outputset(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 3, 3)
    fe.output(to_int(args[0]))
    raise MpdError(ACK_ARG, f"Unsupported attribute: {args[1]}")


# --- the library --------------------------------------------------------------------


async def update(fe: Frontend, args: list[str]) -> list[str]:
    """Rescan the server's music folders; with a URI (a directory of `lsinfo`, "Artist"
    or "Artist/Album", or a song's file), only the folders that hold its songs."""
    _arity(args, 0, 1)
    uri = args[0].strip("/") if args else ""
    if not uri:
        return [f"updating_db: {fe.start_update()}"]
    tracks = await fe.library()
    ids = [t["id"] for t in tracks if t["id"] == uri] or [
        t["id"] for t in await tracks_under(fe, uri)
    ]
    if not ids:
        raise MpdError(ACK_NO_EXIST, "No such directory")
    return [f"updating_db: {fe.start_update(ids)}"]


# --- what the session has no notion of ------------------------------------------------


async def consume(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    if args[0] not in ("0", "1", "oneshot"):
        raise MpdError(ACK_ARG, f"Unrecognized consume mode: {args[0]}")
    if args[0] != "0":
        raise MpdError(ACK_ARG, "consume: the session keeps played songs in the queue")
    return []


async def crossfade(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    if to_int(args[0]) < 0:
        raise MpdError(ACK_ARG, f"Number too large or negative: {args[0]}")
    if to_int(args[0]) != 0:
        raise MpdError(ACK_ARG, "crossfade: the devices play gaplessly, without crossfading")
    return []


async def replay_gain_mode(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    if args[0] not in ("off", "track", "album", "auto"):
        raise MpdError(ACK_ARG, f"Unrecognized replay gain mode: {args[0]}")
    if args[0] != "off":
        raise MpdError(ACK_ARG, "replay_gain_mode: the devices apply no replay gain")
    return []


async def replay_gain_status(fe: Frontend, args: list[str]) -> list[str]:
    return ["replay_gain_mode: off"]


async def listpartitions(fe: Frontend, args: list[str]) -> list[str]:
    return ["partition: default"]


async def partition(fe: Frontend, args: list[str]) -> list[str]:
    _arity(args, 1, 1)
    if args[0] != "default":
        raise MpdError(ACK_NO_EXIST, "partition does not exist")
    return []


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
    "outputset": outputset,
    "update": update,
    "rescan": update,
    "consume": consume,
    "crossfade": crossfade,
    "replay_gain_mode": replay_gain_mode,
    "replay_gain_status": replay_gain_status,
    "listpartitions": listpartitions,
    "partition": partition,
}
