"""The `tunehand` entry: what it prints before (or instead of) argparse."""

from __future__ import annotations

import argparse

import pytest

from tunehand import __version__
from tunehand.cli.main import build_parser, main


def test_version_is_printed_as_argparse_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    quick = capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        build_parser(["--version"]).parse_args(["--version"])
    assert exited.value.code == 0
    assert quick == capsys.readouterr().out == f"tunehand {__version__}\n"


@pytest.mark.parametrize("argv", [[], ["ctl"], ["ctl", "status"], ["login"]], ids=str)
def test_help_is_as_wide_as_argparse_makes_it(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The formatter finds the width without shutil, and wraps exactly as argparse's."""
    texts = []
    for columns in ("44", "160", "nonsense"):
        monkeypatch.setenv("COLUMNS", columns)
        parser = build_parser(argv)
        ours = parser.format_help()
        parser.formatter_class = argparse.HelpFormatter
        assert ours == parser.format_help()
        texts.append(ours)
    assert texts[0] != texts[1]  # the width is honoured
