"""The encoder limit of `tunehand serve --workers 2 --max-transcodes 2` is one limit for
the command, shared live (real workers, real ffmpeg, PostgreSQL + Redis): one worker may
run both encoders; a request to the other worker is then queued (its queue full, it is
refused at once), served when an encoder ends in the first worker, or refused with one
line when none frees; a process holding slots that is killed (SIGKILL) frees them.

Each request goes through an HTTP connection pinned to a known worker (which worker
holds the server's end of it, from /proc)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.audiogen import make_track
from tests.fixtures_server import Backend, ServerProc, child_pids, launch
from tests.test_api import accounts
from tests.test_encoder_slots import Other
from tests.test_subsonic import App, make_app
from tests.test_transcode import song_id
from tests.test_workers import server_side_inode, socket_inodes

LONG_S = 1800.0


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, postgres_backend: Backend
) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("transcode-workers")
    music = root / "music"
    make_track(music, "long", "flac", title="Long", artist="Tx", album="T", duration_s=LONG_S)
    server = launch(
        root,
        music=music,
        store=postgres_backend.store(),
        extra_args=("--workers", "2", "--max-transcodes", "2"),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(srv: ServerProc) -> Iterator[App]:
    with accounts(srv) as make:
        yield make_app(srv, make("tw"))


def _query(app: App, **extra: str) -> str:
    auth = {"u": app.api.name, "p": app.password, "v": "1.16.1", "c": "t", "f": "json"}
    return urlencode({**auth, **extra})


def _worker_of(srv: ServerProc, conn: http.client.HTTPConnection) -> int:
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = server_side_inode(client_port, int(urlsplit(srv.url).port or 0))
    for pid in child_pids(srv.proc.pid):
        if inode in socket_inodes(pid):
            return pid
    raise AssertionError("no worker holds the connection")


@pytest.fixture
def pinned(srv: ServerProc, app: App) -> Iterator[list[list[http.client.HTTPConnection]]]:
    """Three kept-alive connections to each of the two workers: [[first's], [other's]]."""
    url = urlsplit(srv.url)
    by_worker: dict[int, list[http.client.HTTPConnection]] = {}
    opened = []
    for _ in range(64):
        conn = http.client.HTTPConnection(str(url.hostname), url.port, timeout=60)
        opened.append(conn)
        conn.request("GET", "/rest/ping?" + _query(app))
        r = conn.getresponse()
        assert r.status == 200 and b'"ok"' in r.read()
        by_worker.setdefault(_worker_of(srv, conn), []).append(conn)
        if len(by_worker) == 2 and all(len(c) >= 3 for c in by_worker.values()):
            break
    else:
        raise AssertionError("64 connections never gave both workers three")
    yield [c[:3] for c in by_worker.values()]
    for conn in opened:
        conn.close()
    _wait_no_encoders(srv)  # the next test starts with every encoder free


def _stream(app: App, conn: http.client.HTTPConnection, sid: str) -> http.client.HTTPResponse:
    """A long MP3 transcode on `conn`: for a 200, headers and a first chunk read and the
    rest left unread, so its encoder stays busy; a refusal read whole."""
    conn.request("GET", "/rest/stream?" + _query(app, id=sid, format="mp3", maxBitRate="320"))
    r = conn.getresponse()
    if r.status == 200:
        assert r.getheader("content-type") == "audio/mpeg"
        assert len(r.read(4096)) == 4096
    return r


def _refusal(r: http.client.HTTPResponse) -> str:
    assert r.status == 503 and r.getheader("retry-after") == "5", r.status
    message: str = json.loads(r.read())["subsonic-response"]["error"]["message"]
    assert "\n" not in message
    return message


def _encoders(worker: int) -> int:
    count = 0
    for pid in child_pids(worker):
        try:
            count += Path(f"/proc/{pid}/comm").read_text().strip() == "ffmpeg"
        except OSError:
            continue  # gone meanwhile
    return count


def _wait_no_encoders(srv: ServerProc) -> None:
    # Polled with a deadline: the workers' children give no event to wait on.
    deadline = time.monotonic() + 10
    while any(_encoders(w) for w in child_pids(srv.proc.pid)):
        assert time.monotonic() < deadline, "encoders still running"
        time.sleep(0.05)


Waiting = list[concurrent.futures.Future[http.client.HTTPResponse]]


def _queue_two(
    pool: concurrent.futures.ThreadPoolExecutor,
    app: App,
    conns: list[http.client.HTTPConnection],
    sid: str,
) -> Waiting:
    """Three requests at once to one worker with no encoder free: two wait in its queue
    (two places), the third (whichever comes last) is refused at once; the two queued."""
    started = time.monotonic()
    asked = [pool.submit(_stream, app, c, sid) for c in conns]
    done, _ = concurrent.futures.wait(asked, return_when="FIRST_COMPLETED")
    refused = done.pop()
    assert "encoders are busy and 2 requests wait already" in _refusal(refused.result())
    assert time.monotonic() - started < 3
    waiting = [f for f in asked if f is not refused]
    assert not any(w.done() for w in waiting)
    return waiting


def _workers(srv: ServerProc, pinned: list[list[http.client.HTTPConnection]]) -> list[int]:
    return [_worker_of(srv, conns[0]) for conns in pinned]


def test_two_workers_each_run_one(
    srv: ServerProc, app: App, pinned: list[list[http.client.HTTPConnection]]
) -> None:
    long = song_id(app, "Long")
    (a, _, _), (b, _, _) = pinned
    assert _stream(app, a, long).status == 200
    assert _stream(app, b, long).status == 200  # both held open at once
    assert [_encoders(w) for w in _workers(srv, pinned)] == [1, 1]


def test_one_worker_may_run_every_encoder_and_the_other_queues(
    srv: ServerProc, app: App, pinned: list[list[http.client.HTTPConnection]]
) -> None:
    long = song_id(app, "Long")
    (a1, a2, _), b = pinned
    first, second = _workers(srv, pinned)
    # Both encoders in the first worker (each worker had half of them before).
    held = [_stream(app, a1, long), _stream(app, a2, long)]
    assert [r.status for r in held] == [200, 200]
    assert (_encoders(first), _encoders(second)) == (2, 0)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        # The second worker runs no encoder, yet none is free: it queues.
        waiting = _queue_two(pool, app, b, long)
        # An encoder ends in the first worker: a request queued in the second gets it.
        a1.close()
        done, _ = concurrent.futures.wait(waiting, return_when="FIRST_COMPLETED")
        served = done.pop()
        assert served.result().status == 200
        # The other stays queued (the two encoders are busy again) and is refused at
        # the end of its wait, with one line.
        last = next(w for w in waiting if w is not served)
        assert "encoders stayed busy for 5 s" in _refusal(last.result(timeout=30))
    assert (_encoders(first), _encoders(second)) == (1, 1)


def test_a_killed_holder_frees_its_encoders(
    srv: ServerProc, app: App, pinned: list[list[http.client.HTTPConnection]]
) -> None:
    """A process holding both slots of the command's folder the way a worker does, killed
    with SIGKILL (a worker killed so ends the whole command: its supervisor stops the
    others), frees them at once: the requests queued meanwhile are served."""
    long = song_id(app, "Long")
    other = Other(srv.data_dir / "encoders", 2)
    try:
        assert other.take() == 0 and other.take() == 1
        a, _ = pinned
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            waiting = _queue_two(pool, app, a, long)
            other.kill()
            assert [w.result(timeout=30).status for w in waiting] == [200, 200]
    finally:
        if other.proc.is_alive():
            other.kill()
