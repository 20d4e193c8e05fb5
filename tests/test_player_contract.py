"""One contract for every `Player`: the same cases against `FakePlayer` and the real
`MpvPlayer` (libmpv with ao=null), on generated audio files. Waits are on events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tunehand.player.base import Advanced, Ended, Failed, Player, PlayerEvent, Ready
from tunehand.player.fake import FakePlayer
from tunehand.player.mpv_player import MpvPlayer

EVENT_TIMEOUT_S = 10.0


@dataclass
class Harness:
    player: Player
    volume: Callable[[], float]
    """The level the player really plays at (its own state; the protocol has no getter)."""
    events: asyncio.Queue[PlayerEvent] = field(default_factory=asyncio.Queue)
    seen: list[PlayerEvent] = field(default_factory=list)

    async def next(self, kind: type, tag: str | None = None) -> PlayerEvent:
        """The next event of `kind` (for `tag`), skipping others."""
        while True:
            ev = await asyncio.wait_for(self.events.get(), EVENT_TIMEOUT_S)
            self.seen.append(ev)
            if isinstance(ev, kind) and (tag is None or getattr(ev, "tag", None) == tag):
                return ev


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("contract")
    long = make_track(d, "long", "flac", title="Long", duration_s=6.0)
    short1 = make_track(d, "short1", "ogg", title="Short 1", duration_s=0.6)
    short2 = make_track(d, "short2", "mp3", title="Short 2", duration_s=0.6, freq=660)
    broken = d / "broken.flac"
    broken.write_bytes(b"not audio at all" * 100)
    return {
        "long": str(long),
        "short1": str(short1),
        "short2": str(short2),
        "broken": str(broken),
        "missing": str(d / "missing.flac"),
    }


Factory = Callable[[Callable[[PlayerEvent], None], asyncio.AbstractEventLoop], Player]


def _fake(tracks: dict[str, str]) -> Factory:
    durations = {tracks["long"]: 6000, tracks["short1"]: 600, tracks["short2"]: 600}
    broken = frozenset({tracks["broken"], tracks["missing"]})
    return lambda sink, loop: FakePlayer(sink, loop, durations, broken)


def _mpv(tracks: dict[str, str]) -> Factory:
    return lambda sink, loop: MpvPlayer(sink, loop, {"ao": "null"})


@pytest.fixture(params=["fake", "mpv"])
async def h(request: pytest.FixtureRequest, tracks: dict[str, str]) -> AsyncIterator[Harness]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[PlayerEvent] = asyncio.Queue()
    factory = _fake(tracks) if request.param == "fake" else _mpv(tracks)
    player = factory(queue.put_nowait, loop)
    if isinstance(player, FakePlayer):
        fake = player
        harness = Harness(player, lambda: fake.volume, queue)
    else:
        assert isinstance(player, MpvPlayer)
        mpv = player._mpv
        harness = Harness(player, lambda: float(mpv.volume), queue)
    yield harness
    player.close()


async def test_load_paused_at_position(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["long"], position_ms=2500, paused=True)
    await h.next(Ready, "e1")
    assert h.player.paused()
    assert h.player.playing_tag() == "e1"
    pos = h.player.position_ms()
    assert pos is not None and abs(pos - 2500) < 60


async def test_resume_pause_and_seek(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["long"], position_ms=0, paused=True)
    await h.next(Ready, "e1")
    h.player.resume()
    assert not h.player.paused()
    h.player.seek(4000)
    await h.next(Ready, "e1")
    h.player.pause()
    pos = h.player.position_ms()
    assert pos is not None and 3950 <= pos <= 4600
    assert h.player.paused()


async def test_end_of_track(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["short1"], position_ms=0, paused=False)
    ev = await h.next(Ended, "e1")
    assert ev == Ended("e1")


async def test_gapless_advance_to_prefetched_entry(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["short1"], position_ms=0, paused=False)
    await h.next(Ready, "e1")
    h.player.set_next("e2", tracks["short2"])
    ev = await h.next(Advanced)
    assert ev == Advanced("e2", "e1")
    assert h.player.playing_tag() == "e2"
    await h.next(Ended, "e2")
    assert not any(isinstance(e, Ended) and e.tag == "e1" for e in h.seen)


async def test_prefetch_can_be_withdrawn(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["short1"], position_ms=0, paused=False)
    await h.next(Ready, "e1")
    h.player.set_next("e2", tracks["short2"])
    h.player.set_next(None, None)
    await h.next(Ended, "e1")
    assert not any(isinstance(e, Advanced) for e in h.seen)


@pytest.mark.parametrize("which", ["broken", "missing"])
async def test_unplayable_file_is_an_event(h: Harness, tracks: dict[str, str], which: str) -> None:
    h.player.load("bad", tracks[which], position_ms=0, paused=False)
    ev = await h.next(Failed, "bad")
    assert isinstance(ev, Failed) and ev.message
    # The player keeps working after a failure.
    h.player.load("e1", tracks["long"], position_ms=1000, paused=True)
    await h.next(Ready, "e1")


async def test_stop(h: Harness, tracks: dict[str, str]) -> None:
    h.player.load("e1", tracks["long"], position_ms=0, paused=True)
    await h.next(Ready, "e1")
    h.player.stop()
    assert h.player.playing_tag() is None
    assert h.player.position_ms() is None


@pytest.mark.parametrize(
    ("level", "plays_at"),
    [(40, 40), (0, 0), (100, 100), (140, 100), (101, 100), (10**6, 100), (-1, 0), (-40, 0)],
)
async def test_volume_is_clamped_to_0_100(
    h: Harness, tracks: dict[str, str], level: int, plays_at: int
) -> None:
    """Out of range is clamped, not an error (mpv itself would go to 130 or raise)."""
    h.player.load("e1", tracks["long"], position_ms=0, paused=True)
    await h.next(Ready, "e1")
    h.player.set_volume(50)
    h.player.set_volume(level)
    assert h.volume() == plays_at
    h.player.stop()
    assert h.volume() == plays_at  # the level outlives the track


def test_missing_libmpv_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from tunehand.errors import MediaError
    from tunehand.player import mpv_player

    real_import = builtins.__import__

    def no_mpv(name: str, *args: object, **kw: object) -> object:
        if name == "mpv":
            raise OSError("Cannot find libmpv in the usual places.")
        return real_import(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_mpv)
    with pytest.raises(MediaError, match="apt-get install libmpv2"):
        mpv_player.import_mpv()


def test_bad_mpv_option_is_one_line(tmp_path: Path) -> None:
    from tunehand.errors import MediaError

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(MediaError) as info:
            MpvPlayer(lambda e: None, loop, {"no-such-option-xyz": "1"})
    finally:
        loop.close()
    assert "\n" not in str(info.value)
