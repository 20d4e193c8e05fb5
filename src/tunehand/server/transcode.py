"""Transcoding with ffmpeg: a track re-encoded to Opus (in Ogg) or MP3 at a bitrate,
sent to the client while it encodes.

ffmpeg runs as a subprocess (no shell) reading the file, from `-ss OFFSET` placed before
`-i` (a fast seek), and writing to a pipe that the response reads in chunks. The process
is killed and reaped when the response ends for any reason (the client went away, the
server stops). At most `limit` encoders run at once (default: one per core); a request
past them waits up to `QUEUE_WAIT_S` in a queue of `limit` places, and past the queue
(or the wait) it is refused with `Busy`. A server without ffmpeg refuses transcoding
with `Unavailable` (one line), and still serves originals.

The workers of one `tunehand serve --workers N` share the `limit` live through slot
files (`encoder_slots.FileSlots`): a worker runs an encoder whenever any of the
command's slots is free. The queue and the per-device and per-account caps stay per
worker (each worker queues up to `limit` requests; a device or an account holds at
most its share in each worker it reaches).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tunehand.server.encoder_slots import CountedSlots, FileSlots, Slots

QUEUE_WAIT_S = 5.0
"""How long a request waits in the queue for an encoder before it is refused."""
RETRY_AFTER_S = 5
PER_HOLDER = 2
"""Encoders one device may hold: the track playing and the next, prefetched."""


def per_account(limit: int) -> int:
    """Encoders one account may hold: half of them (but at least a device's), so two
    paused phones of one account never hold every encoder of a server of 4 or more."""
    return max(PER_HOLDER, -(-limit // 2))


CHUNK = 16 * 1024
FFMPEG_ENV = "TUNEHAND_FFMPEG"
"""The ffmpeg program to run (default: `ffmpeg` on PATH)."""


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    encoder: str
    muxer: str
    mime: str
    lo_kbps: int
    hi_kbps: int
    options: tuple[str, ...] = ()


OPUS = Codec("opus", "libopus", "ogg", "audio/ogg", 16, 256, ("-vbr", "constrained"))
"""Constrained VBR: the bitrate asked is what a slow link gets (plain VBR gives a pure
tone half as much again)."""
MP3 = Codec("mp3", "libmp3lame", "mp3", "audio/mpeg", 32, 320)
CODECS = {c.name: c for c in (OPUS, MP3)}


class TranscodeError(Exception):
    """A transcode refused; `message` is one line for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Busy(TranscodeError):
    """Every encoder is in use and the queue is full (or the wait ran out)."""


class Unavailable(TranscodeError):
    """No ffmpeg on this server, or it failed before writing anything."""


def find_ffmpeg(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    wanted = environ.get(FFMPEG_ENV) or "ffmpeg"
    return shutil.which(wanted)


def command(
    ffmpeg: str, path: str, codec: Codec, kbps: int, offset_s: float, keep_time: bool = False
) -> list[str]:
    """`keep_time`: the output's timestamps start at `offset_s` (Ogg keeps them), so a
    player shows the track's position; otherwise they start at 0 (as Subsonic apps,
    which add the offset themselves, expect)."""
    args = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if offset_s > 0:
        args += ["-ss", f"{offset_s:.3f}"]
    args += ["-i", path, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1"]
    if offset_s > 0 and keep_time:
        args += ["-output_ts_offset", f"{offset_s:.3f}"]
    args += ["-c:a", codec.encoder, "-b:a", f"{kbps}k", *codec.options, "-flush_packets", "1"]
    return [*args, "-f", codec.muxer, "pipe:1"]


class Transcoder:
    """This server process's encoders: the limit, the queue, and the processes. With
    `slots_dir` (the workers of one command) the limit is shared with every process
    using that folder; without it, it is this process's own."""

    def __init__(
        self, limit: int | None = None, ffmpeg: str | None = None, slots_dir: Path | None = None
    ) -> None:
        self.limit = max(1, limit if limit is not None else (os.cpu_count() or 1))
        self.queue = self.limit
        self.ffmpeg = ffmpeg
        self.slots: Slots = (
            CountedSlots(self.limit) if slots_dir is None else FileSlots(slots_dir, self.limit)
        )
        self.running = 0
        """Encoders this process runs."""
        self.waiting = 0
        self._freed = asyncio.Condition()
        self.procs: set[asyncio.subprocess.Process] = set()
        self.held: dict[str, list[Transcode]] = {}
        """The encoders of each holder (a device), oldest first: past PER_HOLDER, a new
        one ends the oldest, so a paused or vanished player cannot keep encoders."""
        self.accounts: dict[str, list[Transcode]] = {}
        """The same per account, past `per_account(limit)`: the account's devices
        together (two phones) cannot keep every encoder either."""

    def _take(self) -> int | None:
        try:
            slot = self.slots.take()
        except OSError as exc:
            raise Unavailable(f"cannot take an encoder slot: {exc.strerror or exc}") from None
        if slot is not None:
            self.running += 1
        return slot

    async def _acquire(self) -> int:
        """A slot (its number), at once, or after a wait in the queue, or `Busy`."""
        if (slot := self._take()) is not None:
            return slot
        if self.waiting >= self.queue:
            raise Busy(
                f"all {self.limit} encoders are busy and {self.queue} requests wait already:"
                f" try again in a few seconds"
            )
        self.waiting += 1
        try:
            async with self._freed:
                with anyio.move_on_after(QUEUE_WAIT_S):
                    while (slot := self._take()) is None:
                        # A release here notifies at once; one in another worker (shared
                        # slots) is only seen by looking again, every poll_s while queued.
                        with anyio.move_on_after(self.slots.poll_s or math.inf):
                            await self._freed.wait()
                if slot is None:
                    raise Busy(
                        f"all {self.limit} encoders stayed busy for {QUEUE_WAIT_S:.0f} s:"
                        " try again in a few seconds"
                    )
                return slot
        finally:
            self.waiting -= 1

    async def _release(self, slot: int) -> None:
        self.slots.give(slot)
        self.running -= 1
        async with self._freed:
            self._freed.notify()

    async def open(
        self,
        path: str,
        codec: Codec,
        kbps: int,
        offset_s: float,
        keep_time: bool = False,
        holder: str = "",
        account: str = "",
    ) -> Transcode:
        """A running encoder with its first bytes read (so a file ffmpeg cannot read is a
        refusal, not an empty 200), or `Busy`/`Unavailable`. A `holder` (the device asking)
        keeps at most PER_HOLDER encoders (the track playing and the one prefetched after
        it): a new one stops its oldest; an `account` keeps at most `per_account(limit)`
        across its devices, the same way."""
        if self.ffmpeg is None:
            raise Unavailable(
                "transcoding needs ffmpeg, which this server does not have (install the"
                " ffmpeg package); the original file is still available"
            )
        kbps = max(codec.lo_kbps, min(codec.hi_kbps, kbps))
        if holder:
            for old in self.held.get(holder, [])[: -PER_HOLDER + 1 or None]:
                old.stop()  # its response ends and frees the encoder, which this may take
        if account:
            cap = per_account(self.limit)
            for old in self.accounts.get(account, [])[: -cap + 1 or None]:
                old.stop()
        slot = await self._acquire()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command(self.ffmpeg, path, codec, kbps, offset_s, keep_time),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            await self._release(slot)
            raise Unavailable(f"cannot run ffmpeg: {exc.strerror or exc}") from None
        job = Transcode(self, proc, codec, slot, holder, account)
        self.procs.add(proc)
        if holder:
            self.held.setdefault(holder, []).append(job)
        if account:
            self.accounts.setdefault(account, []).append(job)
        try:
            assert proc.stdout is not None
            first = await proc.stdout.read(CHUNK)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await job.close()
            raise
        if not first:
            with anyio.CancelScope(shield=True):
                why = await job.close()
            raise Unavailable(f"ffmpeg could not encode the track: {why or 'no output'}")
        job.first = first
        return job

    async def close(self) -> None:
        """Kill every encoder still running (the server stops)."""
        for proc in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in list(self.procs):
            await proc.wait()


class Transcode:
    """One running ffmpeg: `chunks` yields its output; `close` kills and reaps it and
    frees its encoder (once)."""

    def __init__(
        self,
        owner: Transcoder,
        proc: asyncio.subprocess.Process,
        codec: Codec,
        slot: int,
        holder: str = "",
        account: str = "",
    ) -> None:
        self.owner, self.proc, self.codec, self.holder = owner, proc, codec, holder
        self.slot = slot
        self.account = account
        self.first = b""
        self._closed = False
        self._err_tail = b""
        # stderr is read all along (a file that makes ffmpeg complain on every frame must
        # not fill the pipe and stall it), keeping its end for the refusal's message.
        self._drain = asyncio.create_task(self._read_errors())

    async def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._err_tail = (self._err_tail + chunk)[-2048:]

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.first
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(CHUNK):
            yield chunk

    def stop(self) -> None:
        """End the encoder now (its output ends; `close` still reaps it)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self) -> str:
        """Stop the process (if it still runs), reap it, and return the last line it
        wrote to stderr (empty when none)."""
        if self._closed:
            return ""
        self._closed = True
        for table, key in ((self.owner.held, self.holder), (self.owner.accounts, self.account)):
            jobs = table.get(key)
            if jobs is not None and self in jobs:
                jobs.remove(self)
                if not jobs:
                    del table[key]
        proc = self.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        with contextlib.suppress(Exception):
            await self._drain
        self.owner.procs.discard(proc)
        await self.owner._release(self.slot)
        err = self._err_tail.decode(errors="replace")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""


class TranscodeResponse(StreamingResponse):
    """The encoder's output as it comes (no length, no Range); the process is killed and
    reaped when the response ends, however it ends."""

    def __init__(self, job: Transcode) -> None:
        headers = {"Cache-Control": "private", "Accept-Ranges": "none"}
        super().__init__(job.chunks(), media_type=job.codec.mime, headers=headers)
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.job.close()
