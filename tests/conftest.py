"""Shared fixtures. Fixture modules live beside this file and are loaded as plugins.

The PostgreSQL + Redis tests use TUNEHAND_TEST_POSTGRES_URL and TUNEHAND_TEST_REDIS_URL
when they are set (as `.ci/run` does), unchanged. When one is not set, the session
starts a throwaway server for it (`tests.services`: PostgreSQL with an empty database
`test`, Redis), sets the variable to it before any test module is imported, and stops
the server at the end. Where the server's binaries are missing, the variable stays
unset, the tests that need it are skipped, and the run's header says why. Set one
empty to skip its tests without starting anything.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.services import POSTGRES_ENV, REDIS_ENV, Postgres, Redis, ServiceError

pytest_plugins = ["tests.fixtures_audio", "tests.fixtures_keyring", "tests.fixtures_server"]

_started: list[tuple[str, Postgres | Redis]] = []
_header: list[str] = []


@pytest.hookimpl(trylast=True)  # after the terminal reporter is made
def pytest_configure(config: pytest.Config) -> None:
    if _started or _header:  # configured already (pytest run in-process, twice)
        return
    for env, make in ((POSTGRES_ENV, Postgres), (REDIS_ENV, Redis)):
        given = os.environ.get(env)
        if given is not None:
            _header.append(f"{env}={given}" if given else f"{env} is empty: its tests skip")
            continue
        server = make()
        try:
            server.start()
        except ServiceError as e:
            why = f"{env} is not set and no throwaway server started: {e}; its tests skip"
            _header.append(why)
            _say(config, why)
            continue
        _started.append((env, server))
        os.environ[env] = server.url
        _header.append(f"{env}={server.url} (a throwaway {server.name} of this run)")


def _say(config: pytest.Config, line: str) -> None:
    """One line on the terminal, also under -q (which hides the header)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return list(_header)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _started:
        env, server = _started.pop()
        server.close()
        os.environ.pop(env, None)
    _header.clear()
