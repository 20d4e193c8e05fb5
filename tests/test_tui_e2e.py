"""End to end: the real TUI (live backend, its own silent mpv) pulls playback from a
running receiver and pushes it back, against a real server.

A real `tunehand serve`, a real `tunehand receiver` subprocess ("living-room", ao=null),
and `TunehandApp` on `LiveBackend` in-process through `run_test()`, logged in with the
insecure token file and `[mpv_options] ao = "null"` in its config.toml. Every wait has a
deadline: receiver log lines on a condition variable (in a thread, so the app's event
loop keeps running), the app's state by a bounded loop of short `pilot.pause()`s.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audiogen import make_track
from tests.device_helpers import (
    DeviceDir,
    Receiver,
    add_users,
    ctl_ok,
    live_tui,
    login_all,
    require_mpv,
    short_sock_dir,
    status,
    wait_app,
)
from tests.fixtures_server import ServerProc

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TITLE = "Long Tone"
USER = "tuiuser"
WAIT_S = 20.0


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_sock_dir("th-tui-") as path:
        yield path


async def test_tui_pulls_playback_from_a_receiver_and_pushes_it_back(
    start_server: Callable[..., ServerProc],
    tmp_path: Path,
    sock_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_mpv()
    from tunehand.tui.screens.main import MainScreen

    music = tmp_path / "music"
    make_track(
        music, "01 Long Tone", "flac", title=TITLE, artist="Tester", album="Tones", duration_s=30
    )
    srv = start_server(music=music)
    await asyncio.to_thread(add_users, srv, [USER])  # it runs its own event loop
    living = DeviceDir("living-room", tmp_path / "living")
    remote = DeviceDir("remote", tmp_path / "remote")
    term = DeviceDir("tui-term", tmp_path / "term")
    login_all(srv.url, USER, [living, remote, term])
    with (term.config_dir / "config.toml").open("a", encoding="utf-8") as f:
        f.write('\n[mpv_options]\nao = "null"\n')
    living_id, term_id = living.device_id(), term.device_id()

    receiver = Receiver.start(living, sock_dir)
    try:
        mark = receiver.mark()
        ctl_ok(remote, "play", "--device", "living-room", "--search", TITLE)
        receiver.wait_for(f"playing {TITLE}", since=mark)
        assert status(remote)["device"] == {"id": living_id, "name": "living-room"}

        # The TUI in-process, as `tunehand --config-dir TERM` builds it (token file only).
        app = live_tui(term, monkeypatch)
        async with app.run_test(size=(120, 34)) as pilot:

            def snap_ok(check: Callable[[Any], bool]) -> Callable[[], bool]:
                return lambda: app.snapshot is not None and check(app.snapshot)

            await wait_app(pilot, "the main screen", lambda: isinstance(app.screen, MainScreen))
            screen = app.screen
            assert isinstance(screen, MainScreen)
            await wait_app(
                pilot,
                "connected, living-room playing and online",
                snap_ok(
                    lambda s: (
                        s.connected
                        and s.device_id == term_id
                        and s.state.active_device == living_id
                        and any(d.id == living_id and d.online for d in s.devices)
                    )
                ),
            )

            # Pull: the devices panel, then `h`.
            await pilot.press("d")
            await wait_app(
                pilot, "the devices panel has the focus", lambda: screen.devices.table.has_focus
            )
            mark = receiver.mark()
            await pilot.press("h")
            await wait_app(
                pilot,
                "this terminal is active",
                snap_ok(lambda s: s.state.active_device == term_id),
            )
            await asyncio.to_thread(
                receiver.wait_for, "playback moved to another device", WAIT_S, mark
            )
            s = await asyncio.to_thread(status, remote)
            assert s["device"] == {"id": term_id, "name": "tui-term"}, s
            assert s["playing"] is True and s["track"]["title"] == TITLE, s
            assert ("transfer", {"device_id": term_id}) in [
                (c.op, dict(c.fields)) for c in app.sent
            ]

            # Push: select living-room in the panel, then `t`.
            table = screen.devices.table
            await wait_app(
                pilot,
                "living-room listed",
                lambda: any(d.id == living_id for d in table.rows),
            )
            target = next(i for i, d in enumerate(table.rows) if d.id == living_id)
            step = "down" if target > table.cursor_row else "up"
            for _ in range(abs(target - table.cursor_row)):
                await pilot.press(step)
            await wait_app(
                pilot,
                "living-room selected",
                lambda: table.current is not None and table.current.id == living_id,
            )
            mark = receiver.mark()
            await pilot.press("t")
            await wait_app(
                pilot,
                "living-room is active again",
                snap_ok(lambda s: s.state.active_device == living_id),
            )
            await asyncio.to_thread(receiver.wait_for, "playback moved here", WAIT_S, mark)
            s = await asyncio.to_thread(status, remote)
            assert s["device"] == {"id": living_id, "name": "living-room"}, s
            assert s["playing"] is True, s

            await app.action_quit()
        assert not [w for w in app.workers if w.group == "commands" and w.error]
    finally:
        receiver.stop()
        print(f"--- receiver (exit {receiver.proc.returncode}):\n{receiver.lines.text()}")


async def test_the_live_backend_searches_in_sections_and_renames_and_deletes_playlists(
    start_server: Callable[..., ServerProc], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LiveBackend` against a real server: search with artists, albums and playlists;
    rename (a taken name is refused), edit and delete a playlist."""
    from tunehand.errors import CommandRefused, NotFound
    from tunehand.tui.backend import PlaylistInfo

    music = tmp_path / "music"
    for n, title in enumerate(("Harbour Lights", "Night Ferry"), 1):
        make_track(music, f"0{n} {title}", "flac", title=title, artist="Tester", album="Tones")
    srv = start_server(music=music)
    await asyncio.to_thread(add_users, srv, [USER])
    term = DeviceDir("tui-term", tmp_path / "term")
    login_all(srv.url, USER, [term])
    backend = live_tui(term, monkeypatch).backend
    try:
        found = await backend.search("tones")
        assert [(a.title, a.artist, a.tracks) for a in found.albums] == [("Tones", "Tester", 2)]
        assert found.artists == [] and found.playlists == []
        ids = [t.id for t in found.tracks]
        assert len(ids) == 2
        await backend.save_playlist("Tones / best", ids)
        await backend.save_playlist("Taken", ids[:1])
        found = await backend.search("tester")
        assert [(a.name, a.albums, a.tracks) for a in found.artists] == [("Tester", 1, 2)]
        assert [p.name for p in (await backend.search("best")).playlists] == ["Tones / best"]
        with pytest.raises(CommandRefused, match="exists already"):
            await backend.rename_playlist("Tones / best", "Taken")
        await backend.rename_playlist("Tones / best", "Evening ✓")
        assert await backend.playlists() == [PlaylistInfo("Evening ✓", 2), PlaylistInfo("Taken", 1)]
        assert [t.id for t in await backend.playlist("Evening ✓")] == ids
        await backend.save_playlist("Evening ✓", ids[::-1])  # an edit: the new order
        assert [t.id for t in await backend.playlist("Evening ✓")] == ids[::-1]
        await backend.delete_playlist("Evening ✓")
        assert await backend.playlists() == [PlaylistInfo("Taken", 1)]
        with pytest.raises(NotFound):
            await backend.rename_playlist("Evening ✓", "Again")
    finally:
        await backend.close()
