"""Shared fixtures. Fixture modules live beside this file and are loaded as plugins.

The PostgreSQL + Redis tests use TUNEHAND_TEST_POSTGRES_URL and TUNEHAND_TEST_REDIS_URL
when they are set (as `.ci/run` does), unchanged. When one is not set, the session
starts a throwaway server for it (`tests.services`: PostgreSQL with an empty database
`test`, Redis) and sets the variable to it before any test module is imported; the
server starts while the tests are collected, is waited for before the first test
runs, and is stopped at the end. Where its binaries are missing (or it fails to start),
the variable stays unset, the tests that need it are skipped, and the run's first line
says why. Set one empty to skip its tests without starting anything.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Generator

import pytest

from tests.services import POSTGRES_ENV, REDIS_ENV, Postgres, Redis, ServiceMissing

pytest_plugins = [
    "tests.fixtures_audio",
    "tests.fixtures_keyring",
    "tests.fixtures_server",
    "tests.web_helpers",
]

Server = Postgres | Redis

_starting: list[tuple[str, Server, concurrent.futures.Future[Server]]] = []
_started: list[tuple[str, Server]] = []
_header: list[str] = []
_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="services-start")


@pytest.hookimpl(trylast=True)  # after the terminal reporter is made
def pytest_configure(config: pytest.Config) -> None:
    if _starting or _started or _header:  # configured already (pytest run in-process)
        return
    for env, make in ((POSTGRES_ENV, Postgres), (REDIS_ENV, Redis)):
        given = os.environ.get(env)
        if given is not None:
            _header.append(f"{env}={given}" if given else f"{env} is empty: its tests skip")
            continue
        server: Server = make()
        try:
            server.check()
        except ServiceMissing as e:
            _no_service(config, env, str(e))
            continue
        os.environ[env] = server.pick_port()
        _starting.append((env, server, _pool.submit(server.start)))
        _header.append(f"{env}={server.url} (a throwaway {server.name} of this run)")


def _await_services(config: pytest.Config) -> None:
    """Wait until the servers started at configure answer (or failed)."""
    while _starting:
        env, server, future = _starting.pop(0)
        try:
            future.result()
        except Exception as e:
            server.close()
            os.environ.pop(env, None)
            _no_service(config, env, str(e))
            continue
        _started.append((env, server))
        os.environ[env] = server.url  # the same, unless its port was taken meanwhile


def _no_service(config: pytest.Config, env: str, why: str) -> None:
    line = f"{env} is not set and no throwaway server started: {why}; its tests skip"
    _header.append(line)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # also under -q, which hides the header
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    _await_services(session.config)
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return list(_header)


def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        _await_services(config)
    finally:
        while _started:
            env, server = _started.pop()
            server.close()
            os.environ.pop(env, None)
        _header.clear()
