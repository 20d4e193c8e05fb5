"""Keys: help lists every key, config.toml's keys and theme apply, the palette has every action."""

from __future__ import annotations

import io
import re

from rich.console import Console

from tests.test_tui_support import commands, main_screen, notices, running, seeded, settle
from tunehand.tui import keys
from tunehand.tui.screens.help import HelpScreen, help_table


def help_text(screen: HelpScreen) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    for scopes in (("main",), ("tracks", "playlists", "queue", "devices")):
        console.print(help_table(screen.keymap, scopes))
    return console.export_text()


async def test_help_lists_every_action_with_its_key() -> None:
    async with running(seeded(), keys_config={"next": "j"}) as (app, pilot, _fake):
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = help_text(app.screen)
        for action in keys.ACTIONS:
            assert action.description in text, action.name
        assert re.search(r"^j +Next track", text, re.M)
        assert "x / delete" in text and "Remove the selected entry" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_keys_from_config_replace_the_defaults_and_unknown_names_are_told() -> None:
    async with running(seeded(), keys_config={"next": "j", "nope": "x"}) as (app, pilot, fake):
        assert any("keys.nope: no such action" in n for n in notices(app))
        app.screen.set_focus(None)
        await pilot.press("j", "n")
        await settle(pilot)
        assert commands(fake) == [("next", {})]


async def test_every_action_is_in_the_command_palette() -> None:
    async with running(seeded()) as (app, pilot, fake):
        screen = main_screen(app)
        found = {c.title: c for c in app.get_system_commands(screen)}
        for action in keys.ACTIONS:
            if action.name == "quit":
                assert "Quit" in found
                continue
            titles = [t for t in found if t.endswith(action.description)]
            assert titles, action.name
        await found["Next track"].callback()
        await found["Queue: Clear the queue"].callback()  # not in the queue: told, not done
        await settle(pilot)
        assert commands(fake) == [("next", {})]
        await pilot.press("5")
        await settle(pilot)
        await found["Queue: Play the entry next"].callback()
        await found["Queue: Remove the selected entry"].callback()
        await settle(pilot)
        assert commands(fake)[-1][0] == "queue_remove"


async def test_the_palette_opens_and_runs_an_action() -> None:
    async with running(seeded()) as (_app, pilot, fake):
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Next track")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert commands(fake) == [("next", {})]


async def test_theme_from_config_and_an_unknown_theme() -> None:
    async with running(seeded(), theme="nord") as (app, _pilot, _fake):
        assert app.theme == "nord"
    async with running(seeded(), theme="no-such-theme") as (app, _pilot, _fake):
        assert any("theme 'no-such-theme' is unknown" in n for n in notices(app))
