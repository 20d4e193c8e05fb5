"""An in-memory `Backend` for tests and screenshots, on the real session core.

Owns `FakeLibrary` (a generated library: a small realistic demo, or a large one such
as 50,000 tracks) and `FakeBackend`, which applies every command with the pure
`tunehand.core.session.apply` exactly as the server would, acts as the active
device's speaker (positions run at rate 1 at once), and publishes `SessionSnapshot`s.
Its clock only moves when told (`advance`), so what it shows is deterministic. Tests
drive the world through its helpers (`set_connected`, `move_to`, `fail_next`, `give_art`, ...)
and read what the TUI asked for in `calls`.

What it answers is what the server answers (tests/test_tui_backend_contract.py runs the
same cases on it and on `LiveBackend`): search ranks as the server does
(`tunehand.core.search`), a track or device that does not exist is
`not_found`, a track enters the history when it starts being heard, and `close` leaves
the session paused if this terminal plays.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any

from tunehand.core import search as ranking
from tunehand.core import session as core
from tunehand.core.commands import Command, Result
from tunehand.core.lyrics import Lyrics
from tunehand.core.model import DeviceInfo, Position, SessionState
from tunehand.core.protocol import TrackView
from tunehand.errors import AuthError, KeyringError, NotFound, TunehandError, UsageError
from tunehand.tui.backend import (
    Account,
    Album,
    Artist,
    ChapterMark,
    DeviceLogin,
    InProgress,
    JamInfo,
    Played,
    PlaylistInfo,
    QueueItem,
    SearchResults,
    SessionSnapshot,
    SnapshotSink,
)

_ARTISTS = (
    ("Aurélie Vasquez", ("Lumière d'hiver", "Café des Brumes"), "Chanson"),
    ("Nordlys Ensemble", ("Fjörður", "Norðurljós"), "Ambient"),
    ("Los Hermanos Peña", ("Canciones del Río",), "Folk"),
    ("Zoë & the Quiet Hours", ("Paper Lanterns", "Glasshouse"), "Indie"),
    ("Kenji Morita Trio", ("Blue Hour Sessions",), "Jazz"),
    ("The Salt Marsh Choir", ("Tidewater", "Low Country Hymns"), "Folk"),
    ("Mina Adebayo", ("Harmattan",), "Afrobeat"),
    ("Ciudad Nocturna", ("Neón", "Avenida"), "Electronic"),
    ("Halvard Lie", ("Stille Vann",), "Classical"),
    ("Priya & The Monsoon", ("Petrichor",), "Indie"),
    ("Sigur Rós Tribute Band", ("Ágætis Cover",), "Post-rock"),
    ("Wren Calloway", ("Field Notes", "Small Hours"), "Singer-songwriter"),
)
_WORDS = (
    "Première neige",
    "Rue Océane",
    "Minuit",
    "Ísbjörn",
    "Hafið",
    "Dögun",
    "Mañana",
    "El Puente",
    "Corazón de Agua",
    "Small Hours",
    "Lanterns",
    "Naïve Heart",
    "Slow Rivers",
    "Coda",
    "Tidewater",
    "Night Ferry",
    "Paper Moon",
    "Glass Bells",
    "Harbour Lights",
    "Northbound",
    "Letters Home",
    "Quiet Streets",
    "Amber",
    "Undertow",
    "Morning Static",
    "Cinder",
    "Open Water",
    "Lighthouse",
)
_ADJ = ("Silver", "Hollow", "Quiet", "Electric", "Golden", "Paper", "Velvet", "Northern")
_NOUN = ("Rivers", "Lanterns", "Owls", "Harbours", "Engines", "Orchards", "Tides", "Foxes")


@dataclass
class FakeLibrary:
    artists: list[Artist] = field(default_factory=list)
    albums: dict[str, list[Album]] = field(default_factory=dict)
    """artist key -> albums."""
    album_tracks: dict[str, list[TrackView]] = field(default_factory=dict)
    tracks: dict[str, TrackView] = field(default_factory=dict)

    def add_album(self, artist: str, title: str, year: int, genre: str, titles: list[str]) -> None:
        key = artist.casefold()
        if key not in self.albums:
            self.artists.append(Artist(key, artist))
            self.albums[key] = []
        album_id = f"al{len(self.album_tracks) + 1:05d}"
        rng = random.Random(album_id)
        views = []
        for i, name in enumerate(titles, 1):
            tid = f"t{len(self.tracks) + 1:06d}"
            view = TrackView(
                tid,
                name,
                artist,
                title,
                artist,
                rng.randrange(95_000, 420_000),
                i,
                1,
                year,
                genre,
                album_id=album_id,
            )
            self.tracks[tid] = view
            views.append(view)
        self.album_tracks[album_id] = views
        self.albums[key].append(Album(album_id, title, artist, year, len(views)))

    def finish(self) -> FakeLibrary:
        self.artists = sorted(
            (
                replace(a, albums=len(self.albums[a.key]))
                for a in self.artists
                if a.key in self.albums
            ),
            key=lambda a: a.key,
        )
        self.artists = [
            replace(a, tracks=sum(al.tracks for al in self.albums[a.key])) for a in self.artists
        ]
        return self


def demo_library() -> FakeLibrary:
    """A small library that looks real: a dozen artists, accents and all."""
    lib = FakeLibrary()
    rng = random.Random(7)
    for n, (artist, albums, genre) in enumerate(_ARTISTS):
        for k, album in enumerate(albums):
            count = 6 + (n + k) % 5
            titles = rng.sample(_WORDS, count)
            lib.add_album(artist, album, 2008 + (n * 3 + k * 2) % 17, genre, titles)
    return lib.finish()


def big_library(
    tracks: int = 50_000, per_album: int = 10, albums_per_artist: int = 5
) -> FakeLibrary:
    """A large generated library: `tracks` tracks in albums of `per_album`."""
    lib = FakeLibrary()
    albums = max(1, tracks // per_album)
    for a in range(albums):
        artist_no = a // albums_per_artist
        artist = (
            f"{_ADJ[artist_no % len(_ADJ)]} {_NOUN[artist_no // len(_ADJ) % len(_NOUN)]}"
            f" {artist_no // (len(_ADJ) * len(_NOUN)) + 1}"
        )
        titles = [f"{_WORDS[(a + i) % len(_WORDS)]} {i + 1}" for i in range(per_album)]
        lib.add_album(artist, f"Album {a + 1}", 1970 + a % 55, "Rock", titles)
    return lib.finish()


def _here() -> DeviceInfo:
    return DeviceInfo("dthis0000000000000000", "this terminal", True, 0, "127.0.0.1", ("play",))


DEFAULT_DEVICES = (
    _here(),
    DeviceInfo("dliving00000000000000", "Living room", True, 0, "192.0.2.10", ("play",)),
    DeviceInfo("dlaptop0000000000000", "Laptop", False, 0, "192.0.2.11", ("play",)),
)


class FakeBackend:
    """A `Backend` in memory. See the module docstring."""

    def __init__(
        self,
        library: FakeLibrary | None = None,
        *,
        account: Account | None = None,
        logged_in: bool = True,
        devices: tuple[DeviceInfo, ...] = DEFAULT_DEVICES,
        now_ms: int = 1_750_000_000_000,
        plays: bool = True,
    ) -> None:
        self.library = library if library is not None else demo_library()
        self.account_ = account or (Account("http://127.0.0.1:8440", "demo") if logged_in else None)
        self.password = "demo"  # noqa: S105 - the fake account's password
        self.keyring_missing: str | None = None
        """Set to a reason to play a machine with no OS keyring."""
        self.token_file = False
        self.devices = devices
        self.device_id = devices[0].id
        self.now_ms = now_ms
        self.plays = plays
        self.state = SessionState()
        self.connected = True
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: dict[str, TunehandError] = {}
        self.search_gate: asyncio.Event | None = None
        self.likes_ids: list[str] = []
        self.playlists_: dict[str, list[str]] = {}
        self.history_: list[Played] = []
        self.in_progress_: list[InProgress] = []
        """What `in_progress` answers (the server keeps these; a test sets them)."""
        self.chapters_: dict[str, list[ChapterMark]] = {}
        """What `in_progress` answers (the server keeps these; a test sets them)."""
        """Newest first, as the server answers it."""
        self.jam_: JamInfo | None = None
        self.open_jams: dict[str, JamInfo] = {}
        """Jams of other accounts this fake account can join, by code."""
        self._heard: str | None = None
        """The entry last recorded in the history (the server's history marker)."""
        self.closed = False
        self._sink: SnapshotSink | None = None
        self._n = 0
        self._approval: asyncio.Future[Account] | None = None
        self.device_login_server = ""
        self.pictures: dict[str, bytes] = {}
        """Cover art by art URL path (see `give_art`)."""
        self.lyrics_: dict[str, Lyrics] = {}
        """Lyrics by track id (a track not here has none)."""

    # --- test helpers -------------------------------------------------------------

    def answer_device_login(self, user: str | None) -> None:
        """Approve the pending device-code login as `user`, or deny it (None)."""
        assert self._approval is not None, "no device-code login is waiting"
        if user is None:
            self._approval.set_exception(AuthError("the login was denied: denied by the user"))
        else:
            self._approval.set_result(Account(self.device_login_server, user))

    @property
    def device_login_waiting(self) -> bool:
        return self._approval is not None and not self._approval.done()

    def give_art(self, album_id: str, picture: bytes) -> str:
        """Give an album's tracks cover art (any bytes: broken pictures too); returns its URL."""
        url = f"/v1/art/c{album_id}?exp=1&sig=fake"
        self.pictures[url.split("?", 1)[0]] = picture
        views = [replace(t, art_url=url) for t in self.library.album_tracks[album_id]]
        self.library.album_tracks[album_id] = views
        self.library.tracks.update((t.id, t) for t in views)
        return url

    def fail_next(self, method: str, error: TunehandError) -> None:
        """Make the next call of `method` raise `error`."""
        self.errors[method] = error

    def _check(self, method: str, **fields: Any) -> None:
        self.calls.append((method, fields))
        err = self.errors.pop(method, None)
        if err is not None:
            raise err

    def publish(self, event: str = "") -> None:
        if self._sink is not None:
            self._sink(self.snapshot(event))

    def snapshot(self, event: str = "") -> SessionSnapshot:
        cur = self.state.current_entry
        return SessionSnapshot(
            self.device_id,
            self.connected,
            self.state,
            self.library.tracks.get(cur.track_id) if cur else None,
            self.devices,
            self.now_ms,
            self.state.position_at(self.now_ms),
            event,
            self.plays,
        )

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def set_connected(self, up: bool) -> None:
        self.connected = up
        self.publish()

    def set_devices(self, devices: tuple[DeviceInfo, ...]) -> None:
        self.devices = devices
        self.publish()

    def apply(self, op: str, sender: str | None = None, **fields: Any) -> Result:
        """Apply a command as the server would (from any device), and publish."""
        self._n += 1
        cmd = Command(op=op, command_id=f"c{self._n}", **fields)  # type: ignore[arg-type]
        missing = [t for t in cmd.track_ids if t not in self.library.tracks]
        if missing:  # as the server refuses them, before the core sees the command
            return Result(cmd.command_id, "not_found", "no such track: " + missing[0], 0)
        if cmd.device_id is not None and all(d.id != cmd.device_id for d in self.devices):
            return Result(cmd.command_id, "not_found", "no such device", 0)
        ids = (*cmd.track_ids, *(e.track_id for e in self.state.queue))
        durations = {t: self.library.tracks[t].duration_ms for t in ids if t in self.library.tracks}
        online = [d.id for d in self.devices if d.online and "play" in d.capabilities]
        ctx = core.Context(self.now_ms, durations, online, seed=self._n, sender=sender)
        out = core.apply(self.state, cmd, ctx)
        if out.result.ok:
            st = out.state
            p = st.position
            if p.playing and p.rate == 0 and st.active_device is not None:
                st = replace(st, position=Position(p.position_ms, p.at_ms, True, 1.0))
            self.state = st
            self._record_history()
            self.publish()
        return out.result

    def _record_history(self) -> None:
        """A track enters the history when it starts being heard (as on the server)."""
        st = self.state
        cur = st.current_entry
        if cur is None or not (st.position.playing and st.position.rate > 0):
            return
        if self._heard == cur.entry_id:
            return
        self._heard = cur.entry_id
        track = self.library.tracks.get(cur.track_id)
        self.history_.insert(0, Played(cur.track_id, track, self.now_ms, st.active_device))

    def move_to(self, device_id: str) -> None:
        """Another device takes playback (as if pushed from elsewhere)."""
        self.apply("transfer", sender=device_id, device_id=device_id)

    def seed(self, track_ids: list[str], *, index: int = 0, position_ms: int = 0) -> None:
        """Start the session: play `track_ids` from `index` on this device, at `position_ms`."""
        self.apply(
            "play", track_ids=tuple(track_ids), replace=True, index=index, device_id=self.device_id
        )
        if position_ms:
            self.apply("seek", position_ms=position_ms)

    # --- Backend ------------------------------------------------------------------

    @property
    def default_server(self) -> str:
        """The server logged in to (as the live backend keeps it), else the configured one."""
        return self.account_.server if self.account_ is not None else "http://127.0.0.1:8440"

    async def account(self) -> Account | None:
        self._check("account")
        return self.account_

    async def token_store_problem(self) -> str | None:
        self._check("token_store_problem")
        return None if self.token_file else self.keyring_missing

    def use_token_file(self) -> str:
        self.calls.append(("use_token_file", {}))
        self.token_file = True
        return "/fake/config/tokens.json"

    async def login(self, server: str, user: str, password: str) -> Account:
        self._check("login", server=server, user=user)
        if self.keyring_missing and not self.token_file:
            raise KeyringError(self.keyring_missing)
        if not server.startswith(("http://", "https://")):
            raise TunehandError(f"server URL must look like http://HOST:PORT, not {server!r}")
        if password != self.password:
            raise AuthError("wrong user name or password")
        self.account_ = Account(server, user)
        return self.account_

    async def start_device_login(self, server: str) -> DeviceLogin:
        self._check("start_device_login", server=server)
        if not server.startswith(("http://", "https://")):
            raise TunehandError(f"server URL must look like http://HOST:PORT, not {server!r}")
        self.device_login_server = server
        self._approval = asyncio.get_running_loop().create_future()
        return DeviceLogin(server, "WDJB-MJHT", server + "/approve", 600)

    async def finish_device_login(self, pending: DeviceLogin) -> Account:
        self._check("finish_device_login", user_code=pending.user_code)
        assert self._approval is not None
        self.account_ = await self._approval
        return self.account_

    async def run(self, on_snapshot: SnapshotSink) -> None:
        self._check("run")
        self._sink = on_snapshot
        self.publish()
        try:
            await asyncio.Event().wait()
        finally:
            self._sink = None

    def server_now(self) -> int:
        return self.now_ms

    async def search(self, query: str, limit: int = 200) -> SearchResults:
        self._check("search", query=query)
        if self.search_gate is not None:
            await self.search_gate.wait()
        if not query.strip():
            raise UsageError("q: give 1 to 200 characters to search for")
        words = ranking.query_words(query[:200])
        if not words:
            return SearchResults([], [], [], [])
        scored = []
        for t in self.library.tracks.values():
            score = ranking.score(words, t.title, t.artist, t.album)
            if score is not None:
                scored.append((-score, t.title.casefold(), t))
        scored.sort(key=lambda x: x[:2])

        def match(*fields: str) -> bool:
            return any(ranking.score(words, f, "", "") is not None for f in fields)

        lib = self.library
        return SearchResults(
            [t for _, _, t in scored[:limit]],
            [a for a in lib.artists if match(a.name)],
            [al for a in lib.artists for al in lib.albums[a.key] if match(al.title, al.artist)],
            [PlaylistInfo(n, len(ids)) for n, ids in sorted(self.playlists_.items()) if match(n)],
        )

    async def artists(self) -> list[Artist]:
        self._check("artists")
        return list(self.library.artists)

    async def albums(self, artist_key: str) -> list[Album]:
        self._check("albums", artist_key=artist_key)
        if artist_key not in self.library.albums:
            raise NotFound(f"no artist {artist_key!r}")
        return list(self.library.albums[artist_key])

    async def album_tracks(self, album_id: str) -> list[TrackView]:
        self._check("album_tracks", album_id=album_id)
        if album_id not in self.library.album_tracks:
            raise NotFound(f"no album {album_id!r}")
        return list(self.library.album_tracks[album_id])

    async def playlists(self) -> list[PlaylistInfo]:
        self._check("playlists")
        return [PlaylistInfo(n, len(ids)) for n, ids in sorted(self.playlists_.items())]

    async def playlist(self, name: str) -> list[TrackView]:
        self._check("playlist", name=name)
        if name not in self.playlists_:
            raise NotFound(f"no playlist named {name!r}")
        return [self.library.tracks[t] for t in self.playlists_[name]]

    async def likes(self) -> list[TrackView]:
        self._check("likes")
        return [self.library.tracks[t] for t in self.likes_ids]

    async def set_like(self, track_id: str, liked: bool) -> None:
        self._check("set_like", track_id=track_id, liked=liked)
        if track_id not in self.library.tracks:
            raise NotFound(f"no track {track_id}")
        if liked and track_id not in self.likes_ids:
            self.likes_ids.insert(0, track_id)
        elif not liked and track_id in self.likes_ids:
            self.likes_ids.remove(track_id)

    async def save_playlist(self, name: str, track_ids: list[str]) -> None:
        self._check("save_playlist", name=name, tracks=len(track_ids))
        if not name.strip() or len(name) > 200:
            raise TunehandError("a playlist name has 1 to 200 characters")
        missing = [t for t in track_ids if t not in self.library.tracks]
        if missing:
            raise NotFound(f"no such track: {missing[0]}")
        self.playlists_[name] = list(track_ids)

    async def rename_playlist(self, name: str, new_name: str) -> None:
        self._check("rename_playlist", name=name, new_name=new_name)
        if name not in self.playlists_:
            raise NotFound(f"no playlist named {name!r}")
        if not new_name.strip() or len(new_name) > 200:
            raise TunehandError("a playlist name has 1 to 200 characters")
        if new_name != name and new_name in self.playlists_:
            raise TunehandError(f"a playlist named {new_name!r} exists already")
        self.playlists_[new_name] = self.playlists_.pop(name)

    async def delete_playlist(self, name: str) -> None:
        self._check("delete_playlist", name=name)
        if self.playlists_.pop(name, None) is None:
            raise NotFound(f"no playlist named {name!r}")

    async def history(self) -> list[Played]:
        self._check("history")
        return list(self.history_)

    async def jam(self) -> JamInfo | None:
        self._check("jam")
        return self.jam_

    async def jam_start(self) -> JamInfo:
        self._check("jam_start")
        assert self.account_ is not None
        if self.jam_ is None:
            self.jam_ = JamInfo(self.account_.user, (self.account_.user,), "BCDF-GHJK")
        return self.jam_

    async def jam_join(self, code: str) -> JamInfo:
        self._check("jam_join", code=code)
        found = self.open_jams.get(code.strip().upper())
        if found is None:
            raise NotFound("no jam with that code: check the code the host shows")
        assert self.account_ is not None
        self.jam_ = replace(found, members=(*found.members, self.account_.user))
        return self.jam_

    async def jam_leave(self) -> str:
        self._check("jam_leave")
        jam, self.jam_ = self.jam_, None
        if jam is None:
            raise NotFound("not in a jam")
        if self.account_ is not None and jam.host == self.account_.user:
            return "jam ended: the guests are back on their own sessions"
        return f"left {jam.host}'s jam: back to your own session"

    async def chapters(self, track_id: str) -> list[ChapterMark]:
        self._check("chapters", track_id=track_id)
        return list(self.chapters_.get(track_id, ()))

    async def in_progress(self) -> list[InProgress]:
        self._check("in_progress")
        return list(self.in_progress_)

    async def queue(self) -> list[QueueItem]:
        self._check("queue")
        tracks = self.library.tracks
        return [QueueItem(e.entry_id, e.track_id, tracks.get(e.track_id)) for e in self.state.queue]

    async def art(self, url: str, size: int) -> bytes | None:
        self._check("art", url=url, size=size)
        return self.pictures.get(url.split("?", 1)[0])

    async def lyrics(self, track_id: str) -> Lyrics | None:
        self._check("lyrics", track_id=track_id)
        if track_id not in self.library.tracks:
            raise NotFound(f"no track {track_id}")
        return self.lyrics_.get(track_id)

    async def command(self, op: str, **fields: Any) -> Result:
        self._check("command", op=op, **fields)
        return self.apply(op, sender=self.device_id, **fields)

    async def pull(self) -> Result:
        self._check("pull")
        return self.apply("transfer", sender=self.device_id, device_id=self.device_id)

    async def close(self) -> None:
        """Leave: if this terminal plays, the session stays paused where it was."""
        st = self.state
        if not self.closed and st.active_device == self.device_id and st.position.playing:
            self.apply("pause", sender=self.device_id)
        self.closed = True
