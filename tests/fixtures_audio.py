"""Generated audio fixtures: a shared read-only library and a fresh folder per test.

`audio_library` is built once per session by `tests.audiogen.make_library` (its contents
are described by `tests.audiogen.library_tracks()`); tests must not modify it. Tests that
write audio use `audio_dir` and `tests.audiogen.make_track`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.audiogen import make_library


@pytest.fixture(scope="session")
def audio_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated library (12 tagged tracks, one untagged, one broken, a cover). Read-only."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh empty folder for a test's own generated audio."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    return tmp_path_factory.mktemp("audio")
