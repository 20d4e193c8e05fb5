"""The MPD connections (asyncio streams): the greeting, line framing (a line over
64 KiB closes the connection, and so does a line that looks like HTTP), the password
(wrong guesses are throttled per connection and per address), command lists, and
idle/noidle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from tunehand.mpd import library, player, queue
from tunehand.mpd.frontend import Frontend
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_PASSWORD,
    ACK_PERMISSION,
    ACK_UNKNOWN,
    GREETING,
    MAX_LINE,
    SUBSYSTEMS,
    MpdError,
    ack,
    looks_like_http,
    parse_line,
)

log = logging.getLogger("tunehand.mpd")

HANDLERS: dict[str, player.Handler] = {**player.HANDLERS, **queue.HANDLERS, **library.HANDLERS}
OPEN_COMMANDS = frozenset({"password", "ping", "close"})
SERVER_COMMANDS = frozenset(
    {
        "ping",
        "password",
        "close",
        "idle",
        "noidle",
        "commands",
        "notcommands",
        "tagtypes",
        "urlhandlers",
        "decoders",
        "command_list_begin",
        "command_list_ok_begin",
        "command_list_end",
        "clearerror",
        "channels",
        "readmessages",
    }
)
MAX_LIST_BYTES = 2 * 1024 * 1024
"""A command list may hold this much text (MPD's default max_command_list_size)."""


FREE_GUESSES = 3
"""Wrong passwords answered at once; each further one waits `guess_delay`."""
MAX_GUESS_DELAY_S = 30.0
MAX_ADDRESSES = 4096
"""Addresses whose failures are remembered (the oldest are forgotten first)."""


def guess_delay(failures: int) -> float:
    """Seconds an attempt waits after `failures` wrong passwords: 0 for the first
    three, then 1, 2, 4 ... up to 30."""
    if failures < FREE_GUESSES:
        return 0.0
    return min(2.0 ** (failures - FREE_GUESSES), MAX_GUESS_DELAY_S)


def _one_line(line: str) -> str:
    if "\n" in line or "\r" in line:
        return line.replace("\r", " ").replace("\n", " ")
    return line


@dataclass
class _Address:
    failures: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Throttle:
    """Wrong passwords per client address, across its connections (reset by a right
    one). One attempt per address at a time: parallel connections wait in turn, so
    guesses cost the sum of their delays."""

    def __init__(self) -> None:
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def _entry(self, address: str) -> _Address:
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address()
            while len(self._addresses) > MAX_ADDRESSES:
                self._addresses.popitem(last=False)
        return entry

    async def attempt(self, address: str, own_failures: int, right: bool) -> bool:
        """Wait this attempt's delay (the larger of the connection's and the address's
        failures decides it), then count it; True when the password was right."""
        entry = self._entry(address)
        async with entry.lock:
            delay = guess_delay(max(own_failures, entry.failures))
            if delay:
                await asyncio.sleep(delay)
            entry.failures = 0 if right else entry.failures + 1
            if self._addresses.get(address) is entry:
                self._addresses.move_to_end(address)
            return right


class Close(Exception):
    """The connection ends (close, a protocol violation, end of input)."""


class Connection:
    def __init__(
        self,
        fe: Frontend,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        password: str | None,
        throttle: Throttle,
    ) -> None:
        self.fe = fe
        self.reader = reader
        self.writer = writer
        self.password = password
        self.authorized = password is None
        self.throttle = throttle
        self.failures = 0
        peer = writer.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.pending: set[str] = set()
        self.wake = asyncio.Event()
        self._read: asyncio.Task[bytes] | None = None

    def _changed(self, subsystems: set[str]) -> None:
        self.pending |= subsystems
        self.wake.set()

    async def serve(self) -> None:
        unlisten = self.fe.listen(self._changed)
        try:
            self.writer.write(GREETING)
            await self.writer.drain()
            while True:
                await self._one()
        except (Close, ConnectionError):
            pass
        finally:
            unlisten()
            if self._read is not None:
                self._read.cancel()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    # --- reading --------------------------------------------------------------------

    async def _line(self) -> str:
        if self._read is None:
            self._read = asyncio.ensure_future(self.reader.readuntil(b"\n"))
        try:
            raw = await self._read
        except asyncio.IncompleteReadError:
            raise Close from None
        except asyncio.LimitOverrunError:
            await self._send([ack(ACK_ARG, 0, "", "line too long")])
            raise Close from None
        finally:
            if self._read is not None and self._read.done():
                self._read = None
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            await self._send([ack(ACK_ARG, 0, "", "the line is not UTF-8")])
            raise Close from None
        if looks_like_http(line):
            log.warning("mpd: closed a connection from %s that spoke HTTP", self.address)
            raise Close  # a browser's cross-site request: nothing of it may run
        return line

    async def _send(self, lines: list[str]) -> None:
        # A line break inside a value (a name another client chose) would forge a line.
        text = "".join(_one_line(line) + "\n" for line in lines)
        self.writer.write(text.encode("utf-8"))
        await self.writer.drain()

    # --- commands -------------------------------------------------------------------

    async def _one(self) -> None:
        line = await self._line()
        words = line.split(None, 1)
        name = words[0] if words else ""
        if name in ("command_list_begin", "command_list_ok_begin"):
            await self._command_list(name == "command_list_ok_begin")
        elif name == "idle":
            await self._idle(line)
        elif name == "noidle":
            pass  # not idling: nothing to end
        elif name == "close":
            raise Close
        else:
            out, error = await self._execute(line, 0)
            await self._send([*out, error or "OK"])

    async def _command_list(self, ok_each: bool) -> None:
        lines: list[str] = []
        size = 0
        while True:
            line = await self._line()
            if line == "command_list_end":
                break
            size += len(line) + 1
            if size > MAX_LIST_BYTES:
                await self._send([ack(ACK_ARG, 0, "", "command list is too long")])
                raise Close
            lines.append(line)
        out: list[str] = []
        for i, line in enumerate(lines):
            got, error = await self._execute(line, i)
            out += got
            if error is not None:
                await self._send([*out, error])
                return
            if ok_each:
                out.append("list_OK")
        await self._send([*out, "OK"])

    async def _execute(self, line: str, index: int) -> tuple[list[str], str | None]:
        """Run one command: its answer lines, and the ACK line when it failed."""
        try:
            words = parse_line(line)
        except MpdError as exc:
            return [], ack(exc.code, index, "", exc.message)
        if not words:
            return [], ack(ACK_UNKNOWN, index, "", "No command given")
        name, args = words[0].lower(), words[1:]
        if not self.authorized and name not in OPEN_COMMANDS:
            return [], ack(ACK_PERMISSION, index, name, "you don't have permission")
        try:
            return await self._run(name, args), None
        except MpdError as exc:
            return [], ack(exc.code, index, name, exc.message)
        except Close:
            raise
        except Exception as exc:  # a bug must not end the frontend for everyone
            log.exception("%s failed", name)
            return [], ack(52, index, name, f"internal error: {exc}")

    async def _run(self, name: str, args: list[str]) -> list[str]:
        if name == "ping" or name == "clearerror":
            return []
        if name == "close":
            raise Close
        if name == "password":
            right = len(args) == 1 and self.password is not None and args[0] == self.password
            if not await self.throttle.attempt(self.address, self.failures, right):
                self.failures += 1
                raise MpdError(ACK_PASSWORD, "incorrect password")
            self.failures = 0
            self.authorized = True
            return []
        if name == "commands":
            return [f"command: {c}" for c in sorted(HANDLERS.keys() | SERVER_COMMANDS)]
        if name == "notcommands":
            return []
        if name == "tagtypes":
            if args:
                return []  # tagtypes enable/disable/clear/all: every tag is always sent
            return [
                f"tagtype: {t}"
                for t in (
                    "Artist",
                    "Album",
                    "AlbumArtist",
                    "Title",
                    "Track",
                    "Disc",
                    "Date",
                    "Genre",
                )
            ]
        if name == "urlhandlers":
            return ["handler: http://", "handler: https://"]
        if name in ("decoders", "channels", "readmessages"):
            return []
        if name in ("idle", "noidle", "command_list_end") or name.startswith("command_list"):
            raise MpdError(ACK_ARG, f"{name} is not allowed here")
        handler = HANDLERS.get(name)
        if handler is None:
            raise MpdError(ACK_UNKNOWN, f'unknown command "{name}"')
        return await handler(self.fe, args)

    # --- idle -----------------------------------------------------------------------

    async def _idle(self, line: str) -> None:
        try:
            words = parse_line(line)[1:]
        except MpdError as exc:
            await self._send([ack(exc.code, 0, "idle", exc.message)])
            return
        if not self.authorized:
            await self._send([ack(ACK_PERMISSION, 0, "idle", "you don't have permission")])
            return
        bad = [w for w in words if w.lower() not in SUBSYSTEMS]
        if bad:
            await self._send([ack(ACK_ARG, 0, "idle", f"Unrecognized idle event: {bad[0]}")])
            return
        wanted = {w.lower() for w in words} or set(SUBSYSTEMS)
        while not self.pending & wanted:
            self.wake.clear()
            if self._read is None:
                self._read = asyncio.ensure_future(self.reader.readuntil(b"\n"))
            waker = asyncio.ensure_future(self.wake.wait())
            try:
                await asyncio.wait({self._read, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
            if self._read.done():
                got = await self._line()
                if got.strip() != "noidle":
                    raise Close  # only noidle may come while idle (as MPD does)
                break
        fired = sorted(self.pending & wanted)
        self.pending -= wanted
        await self._send([*(f"changed: {s}" for s in fired), "OK"])


async def start(fe: Frontend, host: str, port: int, password: str | None) -> asyncio.Server:
    throttle = Throttle()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(fe, reader, writer, password, throttle).serve()

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE)
