"""`attempt`: await the backend and turn any failure into one line for the user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tunehand.errors import TunehandError

T = TypeVar("T")


async def attempt(work: Awaitable[T], on_error: Callable[[str], None]) -> T | None:
    """Await `work`; on failure call `on_error` with one line and return None."""
    try:
        return await work
    except TunehandError as exc:
        on_error(str(exc))
    except Exception as exc:  # a bug in an adapter must not take the app down
        on_error(f"unexpected error: {type(exc).__name__}: {exc}")
    return None
