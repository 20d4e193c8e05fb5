"""A keyring backend that never answers, to test KeyringStore's deadline.

Selected with PYTHON_KEYRING_BACKEND=tests.hanging_keyring.HangingKeyring (see the
`hanging_keyring` fixture). Every call sets ENTERED and blocks until RELEASE is set, so the
fixture can free the stuck thread at teardown. The class is only viable while it is named
in PYTHON_KEYRING_BACKEND: keyring registers every backend subclass globally, and
`keyring.get_keyring()` must never pick this one by itself.
"""

from __future__ import annotations

import os
import threading

from keyring.backend import KeyringBackend
from keyring.compat import properties

NAME = "tests.hanging_keyring.HangingKeyring"
ENTERED = threading.Event()
RELEASE = threading.Event()


class HangingKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        if os.environ.get("PYTHON_KEYRING_BACKEND") != NAME:
            raise RuntimeError("only used when selected by PYTHON_KEYRING_BACKEND")
        return 1

    def get_password(self, service: str, username: str) -> str | None:
        ENTERED.set()
        RELEASE.wait()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        ENTERED.set()
        RELEASE.wait()

    def delete_password(self, service: str, username: str) -> None:
        ENTERED.set()
        RELEASE.wait()
