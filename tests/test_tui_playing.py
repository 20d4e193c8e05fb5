"""Now playing, playback keys, devices, handoff toasts and the connection state."""

from __future__ import annotations

from tests.test_tui_support import (
    commands,
    main_screen,
    notices,
    now_lines,
    running,
    seeded,
    settle,
)
from tunehand.core.model import SessionState
from tunehand.tui.backend import ChapterMark, SessionSnapshot
from tunehand.tui.backend_fake import FakeBackend
from tunehand.tui.messages import SnapshotChanged

LIVING = "dliving00000000000000"


async def test_the_bar_shows_the_track_and_a_position_that_moves_with_the_clock() -> None:
    async with running(seeded()) as (app, pilot, fake):
        top, bottom = now_lines(app)
        assert top.startswith("▶ Hafið — Aurélie Vasquez · Lumière d'hiver")
        assert top.rstrip().endswith("● online · on this terminal")
        assert bottom.strip().startswith("1:23 ━")
        assert "4:44" in bottom and "vol 100 · shuffle off · repeat off" in bottom
        fake.advance(10_000)  # the clock runs; nobody sends anything
        assert now_lines(app)[1].strip().startswith("1:33 ")
        # Another device plays: the bar follows the session's anchor all the same.
        fake.move_to(LIVING)
        await settle(pilot)
        fake.advance(2_000)
        top, bottom = now_lines(app)
        assert top.rstrip().endswith("on Living room")
        assert bottom.strip().startswith("1:35 ")


async def test_paused_volume_and_modes_are_shown() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await pilot.press("space", "minus", "minus", "s")
        await settle(pilot)
        top, bottom = now_lines(app)
        assert top.startswith("⏸ Hafið")
        assert "vol  90 · shuffle on  · repeat off" in bottom
        fake.advance(60_000)
        assert now_lines(app)[1].strip().startswith("1:23 ")  # paused: holds still


async def test_playback_keys_send_commands() -> None:
    async with running(seeded()) as (_app, pilot, fake):
        await pilot.press("space", "n", "p", "right", "left", "plus", "minus")
        await settle(pilot)
        assert commands(fake) == [
            ("toggle", {}),
            ("next", {}),
            ("prev", {}),
            ("seek", {"delta_ms": 5000}),
            ("seek", {"delta_ms": -5000}),
            ("volume", {"delta": 5}),
            ("volume", {"delta": -5}),
        ]


async def test_devices_panel_push_and_pull_with_toasts() -> None:
    async with running(seeded()) as (app, pilot, fake):
        screen = main_screen(app)
        await pilot.press("d")
        await settle(pilot)
        assert screen.devices.display and app.focused is screen.devices.table
        rows = screen.devices.table.rows
        assert [d.name for d in rows] == ["Living room", "this terminal", "Laptop"]
        cells = [screen.devices._cells(d) for d in rows]
        assert cells[1] == ("▶", "this terminal (this terminal)", "online")
        assert cells[2] == ("○", "Laptop", "offline")
        await pilot.press("enter")  # push to Living room
        await settle(pilot)
        assert fake.state.active_device == LIVING
        assert "Playback moved to Living room" in notices(app)
        await pilot.press("h")  # pull it back here
        await settle(pilot)
        assert fake.state.active_device == fake.device_id
        assert "Playback moved here" in notices(app)
        await pilot.press("end", "enter")  # Laptop is offline: said in place, nothing sent
        await settle(pilot)
        assert "Laptop is offline" in screen.devices.status.text
        assert [c[0] for c in commands(fake)] == ["transfer", "transfer"]
        await pilot.press("d")
        assert not screen.devices.display


async def test_push_key_opens_the_panel_to_choose() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await pilot.press("t")
        await settle(pilot)
        screen = main_screen(app)
        assert screen.devices.display and "choose a device" in screen.devices.status.text
        await pilot.press("t")
        await settle(pilot)
        assert fake.state.active_device == LIVING


async def test_connection_loss_and_return_are_told_and_always_visible() -> None:
    async with running(seeded()) as (app, pilot, fake):
        fake.set_connected(False)
        await settle(pilot)
        assert "Connection to the server lost: reconnecting…" in notices(app)
        assert "○ offline, reconnecting" in now_lines(app)[0]
        fake.set_connected(True)
        await settle(pilot)
        assert "Connected to the server" in notices(app)
        assert "● online" in now_lines(app)[0]


async def test_backend_notices_become_toasts_and_refusals_are_told() -> None:
    async with running(seeded()) as (app, pilot, fake):
        fake.publish("offline: next will be sent when the server is back")
        fake.apply("queue_clear")
        await pilot.press("right")
        await settle(pilot)
        assert "offline: next will be sent when the server is back" in notices(app)
        assert "seek: nothing to seek in" in notices(app)
        assert "nothing is playing" in now_lines(app)[0]


async def test_snapshots_coalesce() -> None:
    snap = SessionSnapshot("d", True, SessionState(), None, (), 0, 0)
    first, second = SnapshotChanged(snap), SnapshotChanged(snap)
    assert second.can_replace(first)
    async with running(seeded()) as (app, pilot, fake):
        seen: list[int] = []
        screen = main_screen(app)
        original = screen.show
        screen.show = lambda s: (seen.append(s.state.volume), original(s))  # type: ignore[method-assign]
        for v in range(0, 50):
            fake.apply("volume", value=v)
        await settle(pilot)
        assert seen[-1] == 49 and len(seen) < 50


async def test_l_likes_and_shift_l_unlikes_the_playing_track() -> None:
    async with running(seeded()) as (app, pilot, fake):
        playing = fake.snapshot().track
        assert playing is not None and playing.id not in fake.likes_ids
        await pilot.press("l")
        await settle(pilot)
        assert fake.likes_ids[0] == playing.id
        assert any(f"Liked {playing.title}" in n.message for n in app._notifications)
        await pilot.press("3")
        await settle(pilot)
        assert [t.id for t in main_screen(app).likes.table.rows][:1] == [playing.id]
        await pilot.press("L")
        await settle(pilot)
        assert playing.id not in fake.likes_ids


async def test_liking_with_nothing_playing_is_a_warning() -> None:
    async with running() as (app, pilot, fake):
        await pilot.press("l")
        await settle(pilot)
        assert not any(c[0] == "set_like" for c in fake.calls)
        assert any("Nothing is playing" in n.message for n in app._notifications)


async def test_the_bar_shows_the_chapter_being_heard() -> None:
    fake = FakeBackend()
    album = next(iter(fake.library.album_tracks.values()))
    playing = album[1]  # `seeded` plays index 1, at 1:23
    fake.chapters_[playing.id] = [
        ChapterMark("Opening", 0),
        ChapterMark("Middle", 60_000),
        ChapterMark("Closing", 120_000),
    ]
    async with running(seeded(fake)) as (app, pilot, fake):
        await settle(pilot)
        top, _ = now_lines(app)
        assert "· ch 2/3 Middle" in top, top
        fake.advance(40_000)  # 2:03: the next chapter, with no request
        assert "· ch 3/3 Closing" in now_lines(app)[0]
        assert ("chapters", {"track_id": playing.id}) in fake.calls
