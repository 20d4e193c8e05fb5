"""A question with a few answers in a modal box: a key or a button per answer.

Each answer is (key, label, value): pressing its key or clicking its button dismisses
the screen with `value`; Escape (or an answer whose value is "") dismisses it with None.
Enter presses the focused button: `focus` picks it (the safe answer, for a deletion);
`danger` shows the first answer as destructive.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tunehand.core import names
from tunehand.tui.keys import key_label

Answer = tuple[str, str, str]
"""(key, label, value)."""


class ChoiceScreen(ModalScreen[str | None]):
    def __init__(
        self, question: str, answers: Sequence[Answer], *, focus: int = 0, danger: bool = False
    ) -> None:
        super().__init__(id="choice")
        self.question = question
        self.answers = tuple(answers)
        self.focus_index = focus
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Static(names.shown(self.question), id="choice-question", markup=False)
            with Horizontal(id="choice-buttons"):
                for i, (key, label, value) in enumerate(self.answers):
                    yield Button(
                        f"{label} ({key_label(key)})",
                        id=f"choice-{i}",
                        variant=("error" if self.danger else "primary") if i == 0 else "default",
                        name=value,
                    )

    def on_mount(self) -> None:
        self.query_one(f"#choice-{self.focus_index}", Button).focus()

    def _answer(self, value: str) -> None:
        self.dismiss(value or None)

    def on_key(self, event: events.Key) -> None:
        for key, _label, value in self.answers:
            if event.key == key:
                event.stop()
                self._answer(value)
                return
        if event.key == "escape":
            event.stop()
            self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._answer(event.button.name or "")
