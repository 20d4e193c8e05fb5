"""The MPD connections (asyncio streams): the greeting, line framing (a line over
64 KiB closes the connection, and so does a line that looks like HTTP), the password
(wrong guesses are throttled per connection and per address), command lists,
idle/noidle, client-to-client messages (subscribe, channels, sendmessage,
readmessages) and cover art sent as binary chunks (albumart, readpicture)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from tunehand.mpd import library, player, queue
from tunehand.mpd.frontend import Frontend
from tunehand.mpd.protocol import (
    ACK_ARG,
    ACK_EXIST,
    ACK_NO_EXIST,
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
    to_int,
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
        "subscribe",
        "unsubscribe",
        "sendmessage",
        "albumart",
        "readpicture",
        "binarylimit",
    }
)
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
MAX_SUBSCRIPTIONS = 16
MAX_MESSAGES = 64
"""Per connection, as MPD: channels it may join, and unread messages kept."""
BINARY_LIMIT = 8192
"""Bytes of a picture per albumart/readpicture answer, until `binarylimit` says."""
MIN_BINARY_LIMIT = 64
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


Out = Sequence[str | bytes]
"""An answer: text lines, and a picture chunk as bytes (sent as `binary: N`)."""


class Connection:
    def __init__(
        self,
        fe: Frontend,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        password: str | None,
        throttle: Throttle,
        clients: set[Connection],
    ) -> None:
        self.fe = fe
        self.clients = clients
        self.channels: set[str] = set()
        self.messages: list[tuple[str, str]] = []
        self.binary_limit = BINARY_LIMIT
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
        self.clients.add(self)
        try:
            self.writer.write(GREETING)
            await self.writer.drain()
            while True:
                await self._one()
        except (Close, ConnectionError):
            pass
        finally:
            unlisten()
            self.clients.discard(self)
            if self.channels:
                self._tell_all("subscription")
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

    async def _send(self, lines: Out) -> None:
        # A line break inside a value (a name another client chose) would forge a line.
        out = bytearray()
        for line in lines:
            if isinstance(line, bytes):
                out += f"binary: {len(line)}\n".encode() + line + b"\n"
            else:
                out += (_one_line(line) + "\n").encode("utf-8")
        self.writer.write(bytes(out))
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
        out: list[str | bytes] = []
        for i, line in enumerate(lines):
            got, error = await self._execute(line, i)
            out += got
            if error is not None:
                await self._send([*out, error])
                return
            if ok_each:
                out.append("list_OK")
        await self._send([*out, "OK"])

    async def _execute(self, line: str, index: int) -> tuple[Out, str | None]:
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

    async def _run(self, name: str, args: list[str]) -> Out:
        if name == "ping":
            return []
        if name == "clearerror":
            self.fe.error = None
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
        if name == "decoders":
            return []
        if name in ("subscribe", "unsubscribe", "channels", "readmessages", "sendmessage"):
            return self._message_command(name, args)
        if name in ("albumart", "readpicture"):
            return await self._picture(name, args)
        if name == "binarylimit":
            if len(args) != 1:
                raise MpdError(ACK_ARG, "wrong number of arguments")
            limit = to_int(args[0])
            if limit < MIN_BINARY_LIMIT:
                raise MpdError(ACK_ARG, "Value too small")
            self.binary_limit = limit
            return []
        if name in ("idle", "noidle", "command_list_end") or name.startswith("command_list"):
            raise MpdError(ACK_ARG, f"{name} is not allowed here")
        handler = HANDLERS.get(name)
        if handler is None:
            raise MpdError(ACK_UNKNOWN, f'unknown command "{name}"')
        return await handler(self.fe, args)

    # --- messages between clients -------------------------------------------------

    def _tell_all(self, subsystem: str) -> None:
        for c in list(self.clients):
            c._changed({subsystem})

    def _message_command(self, name: str, args: list[str]) -> list[str]:
        want = {"channels": 0, "readmessages": 0, "sendmessage": 2}.get(name, 1)
        if len(args) != want:
            raise MpdError(ACK_ARG, "wrong number of arguments")
        if name == "channels":
            every = set().union(*(c.channels for c in self.clients))
            return [f"channel: {ch}" for ch in sorted(every)]
        if name == "readmessages":
            got, self.messages = self.messages, []
            return [x for ch, text in got for x in (f"channel: {ch}", f"message: {text}")]
        channel = args[0]
        if name == "unsubscribe":
            if channel not in self.channels:
                raise MpdError(ACK_NO_EXIST, "not subscribed to this channel")
            self.channels.discard(channel)
            self._tell_all("subscription")
            return []
        if not CHANNEL_NAME.fullmatch(channel):
            raise MpdError(ACK_ARG, "invalid channel name")
        if name == "subscribe":
            if channel in self.channels:
                raise MpdError(ACK_EXIST, "already subscribed to this channel")
            if len(self.channels) >= MAX_SUBSCRIPTIONS:
                raise MpdError(ACK_EXIST, "subscription list is full")
            self.channels.add(channel)
            self._tell_all("subscription")
            return []
        sent = False
        for c in list(self.clients):
            if channel in c.channels and len(c.messages) < MAX_MESSAGES:
                c.messages.append((channel, args[1]))
                c._changed({"message"})
                sent = True
            elif channel in c.channels:
                sent = True  # its inbox is full: MPD drops the message for it
        if not sent:
            raise MpdError(ACK_NO_EXIST, "nobody is subscribed to this channel")
        return []

    # --- cover art --------------------------------------------------------------------

    async def _picture(self, name: str, args: list[str]) -> Out:
        """`albumart URI OFFSET` / `readpicture URI OFFSET`: the track's cover, at most
        `binarylimit` bytes from OFFSET, after its total `size` (and `type`)."""
        if len(args) != 2:
            raise MpdError(ACK_ARG, "wrong number of arguments")
        offset = to_int(args[1])
        if offset < 0:
            raise MpdError(ACK_ARG, f"Number is negative: {args[1]}")
        found = await self.fe.art(args[0])
        if found is None:
            if name == "albumart":
                raise MpdError(ACK_NO_EXIST, "No file exists")
            return []  # readpicture: no picture is an empty answer
        data, mime = found
        if offset > len(data):
            raise MpdError(ACK_ARG, "Offset too large" if name == "albumart" else "Bad file offset")
        chunk = data[offset : offset + self.binary_limit]
        head = [f"size: {len(data)}"]
        if name == "readpicture":
            head.append(f"type: {mime}")
        return [*head, chunk]

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
    clients: set[Connection] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(fe, reader, writer, password, throttle, clients).serve()

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE)
