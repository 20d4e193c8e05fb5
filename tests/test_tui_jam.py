"""The TUI and jams (through its backend only): w starts a jam and copies its code, i
joins one, e leaves it, y copies the code; the queue's title says whose jam it is and
who else is in it, and every entry says who added it."""

from __future__ import annotations

from dataclasses import replace

from tests.test_tui_support import main_screen, notices, running, seeded, settle, wait_until
from tunehand.tui.backend import JamInfo
from tunehand.tui.backend_fake import FakeBackend


def queue_title(app: object) -> str:
    return str(main_screen(app).queue.title.render())  # type: ignore[arg-type]


async def test_start_copies_the_code_and_the_queue_says_so() -> None:
    async with running(seeded()) as (app, pilot, fake):
        await pilot.press("5")
        await pilot.press("y")
        await wait_until(pilot, lambda: any("Not in a jam" in n for n in notices(app)))
        await pilot.press("w")
        await wait_until(pilot, lambda: any("Jam code BCDF-GHJK" in n for n in notices(app)))
        assert app.clipboard == "BCDF-GHJK"
        assert "your jam · code BCDF-GHJK" in queue_title(app)
        assert ("jam_start", {}) in fake.calls


async def test_join_shows_the_host_and_who_added_what_then_leave() -> None:
    fake = seeded(FakeBackend())
    fake.open_jams["BCDF-GHJK"] = JamInfo("hana", ("hana", "gus"), "BCDF-GHJK")
    # The jam's queue: hana added the first entry, gus the others.
    queue = tuple(
        replace(e, added_by="hana" if i == 0 else "gus") for i, e in enumerate(fake.state.queue)
    )
    fake.state = replace(fake.state, queue=queue)
    async with running(fake) as (app, pilot, _):
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press(*"bcdf-ghjk", "enter")
        await wait_until(pilot, lambda: any("Joined hana's jam" in n for n in notices(app)))
        assert ("jam_join", {"code": "bcdf-ghjk"}) in fake.calls
        title = queue_title(app)
        assert "in hana's jam with gus · code BCDF-GHJK" in title, title
        pane = main_screen(app).queue
        cells = [pane._cells(e)[0] for e in fake.state.queue]
        assert cells[0].endswith("· hana") and all(c.endswith("· gus") for c in cells[1:])
        await pilot.press("y")
        await wait_until(pilot, lambda: app.clipboard == "BCDF-GHJK")
        await pilot.press("e")
        await wait_until(pilot, lambda: any("left hana's jam" in n for n in notices(app)))
        assert "jam" not in queue_title(app)


async def test_a_wrong_code_says_so() -> None:
    async with running(seeded()) as (app, pilot, _fake):
        await pilot.press("i")
        await settle(pilot)
        await pilot.press(*"zzzz", "enter")
        await wait_until(pilot, lambda: any("no jam with that code" in n for n in notices(app)))
        assert main_screen(app).jam is None
