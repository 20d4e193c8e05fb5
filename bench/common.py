"""What the benchmarks share: the `Result` row, statistics, and a real server to measure.

`running_server()` starts `python -m tunehand serve --port 0` through the test suite's
own `tests.fixtures_server.launch()` (a generated library, SQLite by default or a fresh
PostgreSQL database), creates one user, and stops the server (and drops the database)
when the block ends, whatever happened inside it.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from tests.fixtures_server import (
    ServerProc,
    Store,
    _drop_redis_keys,
    fresh_postgres_database,
    launch,
)

POSTGRES_ENV = "TUNEHAND_TEST_POSTGRES_URL"
REDIS_ENV = "TUNEHAND_TEST_REDIS_URL"
USER = "bench"
PASSWORD = "bench-password"


@dataclass(frozen=True, slots=True)
class Result:
    """One figure. `target` is an upper bound in `unit`; None means "for reference"."""

    name: str
    value: float
    unit: str
    target: float | None = None
    ok: bool | None = None
    """True/False against `target`; None when there is no target or nothing was measured."""
    note: str = ""


def check(
    name: str, value: float, unit: str, target: float | None = None, note: str = ""
) -> Result:
    """A `Result` judged against an upper-bound `target` (no target: for reference)."""
    ok = None if target is None or math.isnan(value) else value <= target
    return Result(name, value, unit, target, ok, note)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def tunehand_bin() -> Path:
    """The `tunehand` console entry of the interpreter running the benchmarks."""
    return Path(sys.executable).parent / "tunehand"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that would pick another identity."""
    env = dict(os.environ)
    for key in ("TUNEHAND_TOKEN", "TUNEHAND_CONFIG_DIR", "PYTHON_KEYRING_BACKEND"):
        env.pop(key, None)
    return {**env, **(extra or {})}


def postgres_configured() -> bool:
    return bool(os.environ.get(POSTGRES_ENV))


def _reap_orphan_server(marker: str) -> None:
    """Stop a child server that `launch()` started but gave up on (it keeps no handle).

    Only our own children whose command line names this run's private data dir.
    """
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and marker in cmdline:
            pid = int(entry.name)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def redis_configured() -> bool:
    return bool(os.environ.get(REDIS_ENV))


@contextmanager
def running_server(
    backend: str = "sqlite", env: dict[str, str] | None = None
) -> Iterator[ServerProc]:
    """A real server on loopback with user `USER` (`env`: extra environment for it);
    stopped when the block ends. `backend`: "sqlite", "postgres" (a fresh database,
    in-process bus and presence) or "postgres+redis" (and the bus and presence on
    TUNEHAND_TEST_REDIS_URL, under a fresh key prefix)."""
    drop = None
    with tempfile.TemporaryDirectory(prefix="tunehand-bench-") as tmp:
        srv: ServerProc | None = None
        store = Store()
        try:
            if backend in ("postgres", "postgres+redis"):
                database, drop = fresh_postgres_database()
                store = Store(database)
                if backend == "postgres+redis":
                    prefix = f"bench-{secrets.token_hex(4)}:"
                    store = Store(database, os.environ[REDIS_ENV], prefix)
            elif backend != "sqlite":
                raise ValueError(f"unknown backend {backend!r}")
            try:
                srv = launch(Path(tmp), store=store, env=env)
            except BaseException:
                _reap_orphan_server(tmp)
                raise
            srv.add_user(USER, PASSWORD)
            yield srv
        finally:
            if srv is not None:
                srv.stop()
            if store.redis and store.redis_prefix:
                _drop_redis_keys(store.redis, store.redis_prefix)
            if drop is not None:
                drop()


def login_cli(srv: ServerProc, config_dir: Path, env: dict[str, str], *, file_store: bool) -> None:
    """`tunehand login URL --user ... --password-stdin` into `config_dir`."""
    args = [str(tunehand_bin()), "login", srv.url, "--user", USER, "--password-stdin"]
    if file_store:
        args.append("--insecure-token-file")
    r = subprocess.run(
        args,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env={**env, "TUNEHAND_CONFIG_DIR": str(config_dir)},
        timeout=60,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"tunehand login failed ({r.returncode}): {r.stderr.strip()}")


def ms(seconds: float) -> float:
    return seconds * 1000.0


class Named(Protocol):
    @property
    def name(self) -> str: ...


C = TypeVar("C", bound=Named)


def selected_cases(cases: Iterable[C], env_name: str) -> list[C]:
    """The cases named in the environment variable `env_name` (comma-separated; all
    when it is unset or empty), in the order of `cases`; an unknown name is an error."""
    cases = list(cases)
    wanted = os.environ.get(env_name)
    names = [n.strip() for n in wanted.split(",")] if wanted else [c.name for c in cases]
    unknown = [n for n in names if n not in {c.name for c in cases}]
    if unknown:
        raise RuntimeError(f"{env_name}: no case {', '.join(unknown)}")
    return [c for c in cases if c.name in names]
