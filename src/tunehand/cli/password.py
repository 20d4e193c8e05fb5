"""Reading a password from standard input or the terminal, for `login` and `admin add-user`.

Kept apart from `tunehand.cli.admin` so that `login` does not import the server.
"""

from __future__ import annotations

import getpass
import sys

from tunehand.errors import UsageError


def read_password(from_stdin: bool) -> str:
    """The first line of stdin (`--password-stdin`), else asked twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise UsageError("the passwords differ")
    return first
