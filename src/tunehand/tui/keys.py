"""Every action of the TUI, its default key and its help: one table for keys, help and palette.

`ACTIONS` is the single source: the screens build their `BINDINGS` from it
(`bindings(scope)`), the help screen lists it, the command palette offers every
entry, and `config.toml`'s `keys` table (action name -> key, e.g. `next = "j"`)
overrides the default keys through Textual's keymap (`keymap_from_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType

SCOPES = {
    "main": "Everywhere",
    "tracks": "Track lists",
    "playlists": "Playlists",
    "queue": "Queue",
    "devices": "Devices",
}


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    """The binding id, the key name in config.toml's `keys` table, and `action_<name>`."""
    key: str
    description: str
    scope: str = "main"
    footer: bool = False


ACTIONS: tuple[Action, ...] = (
    Action("play_pause", "space", "Play / pause", footer=True),
    Action("next", "n", "Next track", footer=True),
    Action("prev", "p", "Previous track (or restart)"),
    Action("seek_forward", "right", "Seek forward 5 s"),
    Action("seek_back", "left", "Seek back 5 s"),
    Action("volume_up", "plus,equals_sign", "Volume up"),
    Action("volume_down", "minus", "Volume down"),
    Action("mute", "m", "Mute / unmute"),
    Action("shuffle", "s", "Shuffle on / off"),
    Action("repeat", "r", "Repeat: off → all → one"),
    Action("like", "l", "Like the playing track"),
    Action("unlike", "L", "Unlike the playing track"),
    Action("search", "slash", "Search the library", footer=True),
    Action("show_library", "1", "Library: artists, albums, tracks"),
    Action("show_playlists", "2", "Playlists"),
    Action("show_likes", "3", "Liked tracks"),
    Action("show_history", "4", "Listening history"),
    Action("show_queue", "5", "Queue", footer=True),
    Action("show_continue", "6", "Continue: episodes, audiobooks in progress"),
    Action("show_lyrics", "7", "Lyrics of the playing track"),
    Action("devices", "d", "Devices panel", footer=True),
    Action("pull", "h", "Pull playback here (to this terminal)"),
    Action("push", "t", "Push playback to the selected device"),
    Action("help", "question_mark", "Help: every key", footer=True),
    Action("quit", "q,ctrl+q", "Quit (the session stays paused)"),
    Action("jam_start", "w", "Jam: share this session with other accounts (copies the code)"),
    Action("jam_join", "i", "Jam: join another account's jam with its code"),
    Action("jam_leave", "e", "Jam: leave it (the host ends it for everyone)"),
    Action("jam_copy", "y", "Jam: copy its code"),
    Action("play", "enter", "Play the selected track", "tracks"),
    Action("enqueue", "a", "Add the selected track to the queue", "tracks"),
    Action("enqueue_next", "A", "Play the selected track next", "tracks"),
    Action("go_album", "b", "Go to the track's album", "tracks"),
    Action("go_artist", "B", "Go to the track's artist", "tracks"),
    Action("back", "backspace,escape", "Back up one level", "tracks"),
    Action("playlist_rename", "R", "Rename the playlist", "playlists"),
    Action(
        "playlist_remove",
        "x,delete",
        "Delete the playlist (asks); in one: remove the track",
        "playlists",
    ),
    Action("playlist_move_up", "shift+up,K", "Move the track up", "playlists"),
    Action("playlist_move_down", "shift+down,J", "Move the track down", "playlists"),
    Action("play_entry", "enter", "Play the selected entry", "queue"),
    Action("jump_playing", "o", "Jump to the playing entry", "queue"),
    Action("remove", "x,delete", "Remove the selected entry", "queue"),
    Action("move_up", "shift+up,K", "Move the entry up", "queue"),
    Action("move_down", "shift+down,J", "Move the entry down", "queue"),
    Action("play_next", "A", "Play the entry next", "queue"),
    Action("clear", "C", "Clear the queue", "queue"),
    Action("save_queue", "S", "Save the queue as a playlist", "queue"),
    Action("transfer", "enter", "Push playback to this device", "devices"),
)
BY_NAME: dict[str, Action] = {a.name: a for a in ACTIONS}


def bindings(scope: str) -> list[BindingType]:
    return [
        Binding(a.key, a.name, a.description, show=a.footer, id=a.name)
        for a in ACTIONS
        if a.scope == scope
    ]


def keymap_from_config(keys: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The Textual keymap for config.toml's `keys` table, and a line per unknown name."""
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for name, key in keys.items():
        if name not in BY_NAME:
            problems.append(f"config.toml: keys.{name}: no such action (press ? for the list)")
        elif not key.strip():
            problems.append(f'config.toml: keys.{name}: give a key, e.g. {name} = "j"')
        else:
            keymap[name] = key.strip()
    return keymap, problems


_SHOWN = {
    "space": "space",
    "plus": "+",
    "equals_sign": "=",
    "minus": "-",
    "slash": "/",
    "question_mark": "?",
    "right": "→",
    "left": "←",
    "shift+up": "shift+↑",
    "shift+down": "shift+↓",
}


def key_label(keys: str) -> str:
    """How a binding's key list reads in help: "x,delete" -> "x / delete"."""
    return " / ".join(_SHOWN.get(k.strip(), k.strip()) for k in keys.split(","))


def current_keys(action: Action, keymap: Mapping[str, str]) -> str:
    return keymap.get(action.name, action.key)
