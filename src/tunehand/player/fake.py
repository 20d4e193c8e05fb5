"""`FakePlayer`: the `Player` protocol without audio, for tests at the boundary.

It keeps time with the event loop's clock, knows durations from a map (URLs it has
no duration for play for an hour), fails URLs listed in `broken`, and emits the
same events as `MpvPlayer`, on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tunehand.player.base import Advanced, Ended, EventSink, Failed, PlayerEvent, Ready

DEFAULT_DURATION_MS = 3_600_000


class FakePlayer:
    def __init__(
        self,
        sink: EventSink,
        loop: asyncio.AbstractEventLoop,
        durations: Mapping[str, int] | None = None,
        broken: frozenset[str] = frozenset(),
    ) -> None:
        self._sink = sink
        self._loop = loop
        self._durations = dict(durations or {})
        self._broken = broken
        self._tag: str | None = None
        self._url: str | None = None
        self._next: tuple[str, str] | None = None
        self._paused = True
        self._pos_ms = 0
        self._since = 0.0
        self._end_timer: asyncio.TimerHandle | None = None
        self.volume = 100
        self.speed = 1.0
        self.calls: list[str] = []

    def _emit(self, event: PlayerEvent) -> None:
        self._loop.call_soon(self._sink, event)

    def _now_pos(self) -> int:
        if self._paused or self._tag is None:
            return self._pos_ms
        return self._pos_ms + int((self._loop.time() - self._since) * 1000 * self.speed)

    def _duration(self) -> int:
        return self._durations.get(self._url or "", DEFAULT_DURATION_MS)

    def _schedule_end(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None
        if self._paused or self._tag is None:
            return
        left_s = max(0, self._duration() - self._now_pos()) / 1000 / self.speed
        self._end_timer = self._loop.call_later(left_s, self._finish)

    def _finish(self) -> None:
        self._end_timer = None
        ended = self._tag
        if self._next is not None:
            tag, url = self._next
            self._next = None
            self._tag, self._url, self._pos_ms, self._since = tag, url, 0, self._loop.time()
            self._emit(Advanced(tag, ended))
            self._schedule_end()
        elif ended is not None:
            self._pos_ms = self._duration()
            self._paused = True
            self._emit(Ended(ended))

    def load(
        self, tag: str, url: str, *, position_ms: int, paused: bool, offset: bool = False
    ) -> None:
        self.calls.append(f"load {tag} {position_ms} {'paused' if paused else 'playing'}")
        self._next = None
        if url in self._broken:
            self._tag, self._url, self._paused = None, None, True
            self._emit(Failed(tag, "cannot open the file"))
            return
        self._tag, self._url = tag, url
        self._pos_ms = min(max(0, position_ms), self._duration())
        self._paused = paused
        self._since = self._loop.time()
        self._emit(Ready(tag))
        self._schedule_end()

    def set_next(self, tag: str | None, url: str | None) -> None:
        self._next = (tag, url) if tag is not None and url is not None else None

    def pause(self) -> None:
        self.calls.append("pause")
        self._pos_ms = self._now_pos()
        self._paused = True
        self._schedule_end()

    def resume(self) -> None:
        self.calls.append("resume")
        if self._tag is None:
            return
        self._since = self._loop.time()
        self._paused = False
        self._schedule_end()

    def waiting(self) -> bool:
        return False

    def position_sample(self) -> tuple[int, float] | None:
        if self._tag is None:
            return None
        return self._now_pos(), self._loop.time()

    def paused(self) -> bool:
        return self._paused

    def seek(self, position_ms: int) -> None:
        self.calls.append(f"seek {position_ms}")
        if self._tag is None:
            return
        self._pos_ms = min(max(0, position_ms), self._duration())
        self._since = self._loop.time()
        self._emit(Ready(self._tag))
        self._schedule_end()

    def stop(self) -> None:
        self.calls.append("stop")
        self._tag = self._url = None
        self._next = None
        self._paused = True
        self._schedule_end()

    def set_volume(self, level: int) -> None:
        self.volume = max(0, min(100, level))

    def set_speed(self, speed: float) -> None:
        self._pos_ms = self._now_pos()
        self._since = self._loop.time()
        self.speed = speed
        self._schedule_end()

    def position_ms(self) -> int | None:
        return None if self._tag is None else self._now_pos()

    def playing_tag(self) -> str | None:
        return self._tag

    def retag(self, old: str, new: str) -> None:
        self.calls.append(f"retag {old} {new}")
        if self._tag == old:
            self._tag = new
        if self._next is not None and self._next[0] == old:
            self._next = (new, self._next[1])

    def close(self) -> None:
        self.stop()
