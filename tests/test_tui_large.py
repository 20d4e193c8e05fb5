"""50,000 tracks stay responsive: lists are virtual, only what is seen is formatted.

How long the walk through the liked list takes, at 1k, 10k and 50k tracks, is
`python -m bench tui_large`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_tui_support import commands, main_screen, running, settle
from tunehand.core.model import MAX_QUEUE
from tunehand.tui.backend_fake import FakeBackend, big_library


@pytest.fixture(scope="module")
def big() -> Any:
    return big_library(50_000)


def counting(table: Any) -> list[int]:
    calls: list[int] = []
    original = table._cells

    def cells(row: Any) -> Any:
        calls.append(1)
        return original(row)

    table._cells = cells
    return calls


async def test_fifty_thousand_liked_tracks_scroll_and_play(big: Any) -> None:
    fake = FakeBackend(big)
    fake.likes_ids = list(big.tracks)
    assert len(fake.likes_ids) == 50_000
    async with running(fake) as (app, pilot, _fake):
        await pilot.press("3")
        await settle(pilot)
        likes = main_screen(app).likes
        table = likes.table
        assert len(table.rows) == 50_000
        assert "Liked tracks · 50000" in str(likes.title.render())
        formatted = counting(table)
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor_row == 49_999
        assert 0 < len(formatted) <= 3 * table.size.height  # only the visible rows
        await pilot.press("pageup", "up", "enter")
        await settle(pilot)
        op, fields = commands(fake)[0]
        assert op == "play" and len(fields["track_ids"]) == MAX_QUEUE
        assert fields["track_ids"][fields["index"]] == table.current.id
        assert fake.state.current_entry is not None
        assert fake.state.current_entry.track_id == table.current.id


async def test_a_ten_thousand_entry_queue_and_a_thousand_artists(big: Any) -> None:
    fake = FakeBackend(big)
    fake.seed(list(big.tracks)[:MAX_QUEUE], index=5_000)
    async with running(fake) as (app, pilot, _fake):
        screen = main_screen(app)
        assert len(screen.library.table.rows) == 1_000
        await pilot.press("5")
        await settle(pilot)
        table = screen.queue.table
        assert len(table.rows) == MAX_QUEUE
        formatted = counting(table)
        for v in range(20):  # a burst of session changes
            fake.apply("volume", value=v)
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor_row == MAX_QUEUE - 1
        assert len(formatted) <= 6 * table.size.height
