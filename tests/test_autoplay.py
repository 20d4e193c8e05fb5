"""Autoplay and radio against a real server: `ctl autoplay on|off`, a queue that runs out
topped up with tracks that fit (the same artist, genre, year; co-listened in this
account's history; never one of the last 50 played), marked `autoplay` in `queue
--json`; `ctl radio TRACK_ID | --artist NAME | --album ALBUM`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import PASSWORD, Device, FakePlayer, add_users, client_env, new_device_id
from tests.fixtures_server import Backend, ServerProc, launch
from tunehand.core.model import Entry, SessionState
from tunehand.server.radio import runs_out

SIGUR = {"Svefn-g-englar", "Starálfur", "Flugufrelsarinn"}
WAIT_S = 30.0

pytestmark = [pytest.mark.every_backend]


def wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    cond = threading.Condition()
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        with cond:
            cond.wait(0.05)


def test_a_queue_runs_out_on_its_last_entry_unless_it_repeats() -> None:
    q = (Entry("e1.0", "t1"), Entry("e1.1", "t2"))
    st = SessionState(queue=q, current="e1.1")
    assert runs_out(st)
    assert not runs_out(SessionState(queue=q, current="e1.0"))
    assert not runs_out(SessionState(queue=q, current="e1.1", repeat="all"))
    assert not runs_out(SessionState(queue=q, current=None))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[ServerProc]:
    s = launch(tmp_path_factory.mktemp(f"autoplay-{backend.name}"), store=backend.store())
    yield s
    s.stop()


def _history(srv: ServerProc, user: str, plays: list[tuple[str, int]]) -> None:
    """Listening history written as the server writes it (a device heard these)."""
    from tunehand.server.db import accounts, userdata
    from tunehand.server.db.engine import default_url, open_engine

    async def run() -> None:
        engine = open_engine(srv.database or default_url(srv.data_dir))
        try:
            async with engine.begin() as conn:
                acct = await accounts.account_by_name(conn, user)
                assert acct is not None
                for track_id, at in plays:
                    await userdata.add_history(conn, acct.id, track_id, "dhistory", at)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _setup(srv: ServerProc, tmp_path: Path, keyring: dict[str, str], user: str) -> Device:
    add_users(srv, [user])
    cfg = tmp_path / user
    dev = Device(cfg, client_env(keyring, cfg), server_log=srv.log)
    assert dev.login(srv.url, user, PASSWORD).returncode == 0
    return dev


def _ids(srv: ServerProc, user: str) -> dict[str, str]:
    """Every track of the library by title, through the API."""
    import httpx

    h = {"Authorization": "Bearer " + srv.login(user)["access_token"]}
    out = {}
    for album in httpx.get(srv.url + "/v1/albums", headers=h).json()["albums"]:
        got = httpx.get(f"{srv.url}/v1/albums/{album['id']}/tracks", headers=h).json()
        out.update({t["title"]: t["id"] for t in got["tracks"]})
    return out


def _queue(dev: Device) -> list[dict[str, Any]]:
    return list(json.loads(dev.ctl("queue", "--json"))["entries"])


def test_autoplay_tops_up_a_queue_that_runs_out(
    srv: ServerProc, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    dev = _setup(srv, tmp_path, secret_service, "auto1")
    assert dev.ctl("autoplay") == "autoplay off\n"
    ids = _ids(srv, "auto1")
    assert SIGUR | {"Crossroads", "Difference", "Morning Song"} <= set(ids)
    t0 = int(time.time() * 1000) - 3 * 3600 * 1000
    # Starálfur was played next to Crossroads (co-listened), and Difference 50 times
    # since: the last 50 played are never picked, the co-listened one is.
    _history(
        srv,
        "auto1",
        [(ids["Starálfur"], t0), (ids["Crossroads"], t0 + 60_000)]
        + [(ids["Difference"], t0 + 3_600_000 + i) for i in range(50)],
    )
    device_id = new_device_id()
    token = srv.login("auto1", device_id=device_id)["access_token"]
    box = FakePlayer(srv.url, token, device_id, "box").start()
    try:
        dev.ctl("play", ids["Morning Song"], "--device", "box")  # autoplay off: nothing added
        assert [e["track"]["title"] for e in _queue(dev)] == ["Morning Song"]
        assert dev.ctl("autoplay", "on") == "autoplay on\n"
        assert dev.ctl("autoplay") == "autoplay on\n"
        dev.ctl("queue", "clear")
        dev.ctl("play", ids["Starálfur"], "--device", "box")
        entries = wait_for(lambda: len(_queue(dev)) > 1 and _queue(dev), "the queue topped up")
        assert entries[0]["track"]["title"] == "Starálfur" and not entries[0]["autoplay"]
        added = entries[1:]
        assert all(e["autoplay"] and e["entry_id"].startswith("a") for e in added)
        titles = [e["track"]["title"] for e in added]
        # Same artist, genre and year, or co-listened; never Difference (played lately).
        assert set(titles) == (SIGUR - {"Starálfur"}) | {"Crossroads"}, titles
        assert "(autoplay)" in dev.ctl("queue")
        # Off again: the next time it runs out, nothing is added.
        dev.ctl("autoplay", "off")
        dev.ctl("queue", "clear")
        dev.ctl("play", ids["Open Road"], "--device", "box")
        dev.ctl("pause")  # one more change to look at
        assert [e["track"]["title"] for e in _queue(dev)] == ["Open Road"]
    finally:
        box.close()


def test_radio_from_a_track_an_artist_or_an_album(
    srv: ServerProc, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    dev = _setup(srv, tmp_path, secret_service, "radio1")
    ids = _ids(srv, "radio1")
    device_id = new_device_id()
    token = srv.login("radio1", device_id=device_id)["access_token"]
    box = FakePlayer(srv.url, token, device_id, "box").start()
    try:
        dev.ctl("radio", ids["Svefn-g-englar"], "--device", "box")
        q = _queue(dev)
        assert q[0]["track"]["title"] == "Svefn-g-englar" and q[0]["current"]
        assert all(e["autoplay"] for e in q)
        assert {e["track"]["title"] for e in q[1:]} == SIGUR - {"Svefn-g-englar"}
        assert json.loads(dev.ctl("status", "--json"))["track"]["title"] == "Svefn-g-englar"

        dev.ctl("radio", "--artist", "the examples")
        q = _queue(dev)
        assert q[0]["track"]["artist"] == "The Examples"
        assert {e["track"]["artist"] for e in q} == {"The Examples"}  # nothing else fits
        assert {e["track"]["title"] for e in q} == {"Morning Song", "Paper Boats", "Signal Fires"}

        dev.ctl("radio", "--album", "analytical")
        q = _queue(dev)
        assert q[0]["track"]["album"] == "Analytical Engines"
        assert {e["track"]["title"] for e in q[1:]} == set()  # its own tracks are the seeds

        assert "no artist 'Nobody At All'" in dev.fails(
            5, "ctl", "radio", "--artist", "Nobody At All"
        )
        assert "give a TRACK_ID" in dev.fails(2, "ctl", "radio")
    finally:
        box.close()
