"""Podcasts: feeds read from a local podcast host (tests/feed_host.py), the server's own
fetcher against hostile feeds, `ctl podcasts`, refreshes with ETag, and episodes played
by a real receiver through the server, resuming where they were left (`ctl continue`).

The fetcher's limits are checked in-process against the real host (private addresses
without `--allow-private-feeds`, huge, slow, malformed, redirect loops); the rest runs
against a real `tunehand serve --allow-private-feeds` (the host is on 127.0.0.1), on
SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.device_helpers import (
    DeviceDir,
    Receiver,
    Users,
    add_users,
    ctl,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    short_sock_dir,
)
from tests.feed_host import FeedHost, atom, etag_of, feed_host, rss
from tests.fixtures_server import Backend, launch
from tunehand.server.podcasts import feeds
from tunehand.server.podcasts.fetch import Fetcher, FetchError

pytestmark = [
    pytest.mark.skipif(
        shutil.which("sox") is None, reason="sox is not installed (generated audio)"
    ),
    pytest.mark.every_backend,
]

EPISODE_S = 60
DATES = ("Mon, 30 Nov 2026 10:00:00 GMT", "Tue, 01 Dec 2026 10:00:00 GMT")


@dataclass(kw_only=True)
class World(Users):
    host: FeedHost


def _episodes(host: FeedHost, prefix: str) -> list[tuple[str, str, str, str]]:
    return [
        (f"{prefix}-1", f"{prefix} first", DATES[0], host.url("/audio/ep1.ogg")),
        (f"{prefix}-2", f"{prefix} second", DATES[1], host.url("/audio/ep2.ogg")),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[World]:
    from tests.audiogen import make_track

    root = tmp_path_factory.mktemp("podcasts")
    audio = root / "audio"
    with feed_host() as host:
        for i in (1, 2):
            path = make_track(
                audio, f"ep{i}", "ogg", title=f"Episode {i}", duration_s=EPISODE_S, freq=500
            )
            host.put(f"/audio/ep{i}.ogg", path.read_bytes(), "audio/ogg")
        host.put("/show.rss", rss("Test Show", _episodes(host, "rss")))
        host.put("/news.atom", atom("Atom News", _episodes(host, "atom")), "application/atom+xml")
        host.put("/broken.rss", b"<?xml version='1.0'?><rss><channel><title>x</title><item>")
        music = root / "music"
        make_tones(music, ("Short Tone",), album="Tones", duration_s=30)
        srv = launch(
            root,
            music=music,
            store=backend.store(),
            extra_args=("--allow-private-feeds",),
            env={
                "TUNEHAND_FEED_REFRESH_S": "1",
                "TUNEHAND_FEED_TIMEOUT_S": "3",
                "TUNEHAND_MAX_PODCASTS": "3",
            },
        )
        users = [f"pod{i}" for i in range(8)]
        add_users(srv, users)
        with short_sock_dir("th-pod-") as sock_dir:
            yield World(srv=srv, host=host, users=users, sock_dir=sock_dir)
        srv.stop()


@pytest.fixture
def dev(world: World, tmp_path: Path) -> DeviceDir:
    d = DeviceDir("laptop", tmp_path / "laptop")
    login_all(world.srv.url, world.user(), [d])
    return d


def jctl(dev: DeviceDir, *args: str) -> object:
    return json.loads(ctl_ok(dev, *args, "--json"))


# --- the fetcher, in-process, against the real host ---------------------------------


def _fetch(host: FeedHost, path: str, *, allow: bool = True, timeout_s: float = 3.0) -> bytes:
    async def go() -> bytes:
        f = Fetcher(allow, feed_timeout_s=timeout_s, feed_max_bytes=1024 * 1024)
        try:
            got = await f.feed(host.url(path), None, None)
            return got.body
        finally:
            await f.close()

    return asyncio.run(go())


def test_rss_and_atom_are_read_into_episodes(world: World) -> None:
    for path, title, prefix in (
        ("/show.rss", "Test Show", "rss"),
        ("/news.atom", "Atom News", "atom"),
    ):
        parsed = feeds.parse(_fetch(world.host, path), 500)
        assert parsed.title == title
        assert [e.title for e in parsed.episodes] == [f"{prefix} second", f"{prefix} first"]
        newest = parsed.episodes[0]
        assert newest.url == world.host.url("/audio/ep2.ogg") and newest.mime == "audio/ogg"
        assert newest.published_ms == 1796119200000  # 2026-12-01 10:00 UTC
    assert feeds.parse(_fetch(world.host, "/show.rss"), 500).episodes[0].duration_ms == 60_000


def test_private_addresses_are_refused_without_the_flag(world: World) -> None:
    before = len(world.host.requests)
    for url in (world.host.url("/show.rss"), f"http://localhost:{world.host.port}/show.rss"):
        with pytest.raises(FetchError, match="--allow-private-feeds"):
            asyncio.run(_refused(url))
    # Refused before connecting: the host never saw a request.
    assert len(world.host.requests) == before
    for bad in ("file:///etc/passwd", "ftp://example.org/x", "not a url"):
        with pytest.raises(FetchError, match="http"):
            asyncio.run(_refused(bad))


async def _refused(url: str) -> None:
    f = Fetcher(False)
    try:
        await f.feed(url, None, None)
    finally:
        await f.close()


def test_hostile_feeds_give_one_clear_error(world: World) -> None:
    host = world.host
    host.redirects["/loop-a"] = host.url("/loop-b")
    host.redirects["/loop-b"] = "/loop-a"  # relative, resolved against the hop
    for i in range(8):
        host.redirects[f"/hop{i}"] = host.url(f"/hop{i + 1}")
    with pytest.raises(FetchError, match="larger than 1024 KiB"):
        _fetch(host, "/huge.xml")
    with pytest.raises(FetchError, match="did not arrive within 1 s"):
        _fetch(host, "/slow.xml", timeout_s=1.0)
    with pytest.raises(FetchError, match="redirects in a loop"):
        _fetch(host, "/loop-a")
    with pytest.raises(FetchError, match="more than 5 redirects"):
        _fetch(host, "/hop0")
    with pytest.raises(FetchError, match="answered 404"):
        _fetch(host, "/nothing-here")
    with pytest.raises(feeds.FeedError, match="not well-formed XML"):
        feeds.parse(_fetch(host, "/broken.rss"), 500)
    # Only the newest episodes are kept.
    newest = feeds.parse(_fetch(host, "/show.rss"), 1).episodes
    assert [e.title for e in newest] == ["rss second"]
    with pytest.raises(feeds.FeedError, match="no RSS or Atom feed"):
        feeds.parse(b"<?xml version='1.0'?><html><body>hi</body></html>", 500)


# --- ctl podcasts against a real server ----------------------------------------------


def test_ctl_podcasts_add_list_episodes_and_remove(world: World, dev: DeviceDir) -> None:
    out = ctl_ok(dev, "podcasts", "add", world.host.url("/show.rss"))
    assert "subscribed to Test Show (2 episodes)" in out
    added = jctl(dev, "podcasts", "add", world.host.url("/news.atom"))
    assert isinstance(added, dict) and added["title"] == "Atom News"
    listed = jctl(dev, "podcasts")
    assert isinstance(listed, list)
    assert sorted(p["title"] for p in listed) == ["Atom News", "Test Show"]
    eps = jctl(dev, "podcasts", "episodes", "test sh")  # a prefix, any case
    assert isinstance(eps, list)
    assert [set(e) for e in eps] == [
        {"id", "title", "published", "duration_ms", "position_ms", "played"}
    ] * 2
    assert eps[0]["title"] == "rss second" and eps[0]["published"] == "2026-12-01T10:00:00Z"
    assert eps[0]["duration_ms"] == 60_000 and eps[0]["position_ms"] == 0
    assert eps[0]["played"] is False and eps[0]["id"].startswith("e")
    # A malformed feed: one line, exit 1, nothing subscribed.
    r = ctl(dev, "podcasts", "add", world.host.url("/broken.rss"))
    assert r.returncode == 1 and "not well-formed XML" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = ctl(dev, "podcasts", "episodes", "No Such Show")
    assert r.returncode == 5 and "no podcast 'No Such Show'" in r.stderr, r.stderr
    ctl_ok(dev, "podcasts", "remove", "Atom News")
    listed = jctl(dev, "podcasts")
    assert isinstance(listed, list) and [p["title"] for p in listed] == ["Test Show"]
    # The account's limit (3 here): a fourth feed is refused, one kept may be added again.
    for i in (1, 2):
        world.host.put(f"/more{i}.rss", rss(f"More {i}", _episodes(world.host, f"m{i}")))
        ctl_ok(dev, "podcasts", "add", world.host.url(f"/more{i}.rss"))
    r = ctl(dev, "podcasts", "add", world.host.url("/news.atom"))
    assert r.returncode == 1 and "3 podcasts, the most it may keep" in r.stderr, r.stderr
    ctl_ok(dev, "podcasts", "add", world.host.url("/show.rss"))


def test_feeds_are_refreshed_on_a_timer_with_their_etag(world: World, dev: DeviceDir) -> None:
    host = world.host
    body = rss("Changing Show", _episodes(host, "chg")[:1])
    host.put("/changing.rss", body)
    ctl_ok(dev, "podcasts", "add", host.url("/changing.rss"))
    # The next refresh asks with the ETag, and the host answers 304.
    host.wait(
        lambda r: (
            r.path == "/changing.rss"
            and r.headers.get("if-none-match") == etag_of(body)
            and r.status == 304
        )
    )
    newer = rss("Changing Show", _episodes(host, "chg"))
    host.put("/changing.rss", newer)
    host.wait(
        lambda r: (
            r.path == "/changing.rss"
            and r.status == 200
            and r.headers.get("if-none-match") == etag_of(body)
        )
    )
    deadline_titles: list[str] = []
    for _ in range(100):  # the refresh stores right after the fetch: poll the API
        eps = jctl(dev, "podcasts", "episodes", "Changing Show")
        assert isinstance(eps, list)
        deadline_titles = [e["title"] for e in eps]
        if "chg second" in deadline_titles:
            break
    assert deadline_titles == ["chg second", "chg first"]


# --- playing an episode on a real receiver --------------------------------------------


def test_an_episode_plays_through_the_server_and_resumes_where_it_was(
    world: World, tmp_path: Path
) -> None:
    require_mpv()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    box = DeviceDir("box", tmp_path / "box")
    box2 = DeviceDir("box2", tmp_path / "box2")
    login_all(world.srv.url, world.user(), [remote, box, box2])
    ctl_ok(remote, "podcasts", "add", world.host.url("/show.rss"))
    eps = jctl(remote, "podcasts", "episodes", "Test Show")
    assert isinstance(eps, list)
    episode = eps[1]["id"]  # "rss first": /audio/ep1.ogg
    r = Receiver.start(box, world.sock_dir)
    r2: Receiver | None = None
    try:
        ctl_ok(remote, "play", "--episode", episode, "--device", "box")
        path = r.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/e" in v)
        assert "127.0.0.1:" + str(world.host.port) not in path  # through the server
        r.ipc.wait_time_pos(lambda v: v >= 6.0, timeout=30)
        # Something else plays: the episode keeps its place.
        ctl_ok(remote, "play", "--search", "Short Tone")
        r.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/t" in v)
        items = jctl(remote, "continue")
        assert isinstance(items, list) and [i["id"] for i in items] == [episode], items
        item = items[0]
        assert set(item) == {"id", "title", "kind", "position_ms", "duration_ms", "updated_ms"}
        assert item["kind"] == "episode" and item["title"] == "rss first"
        assert 6000 <= item["position_ms"] <= 20_000 and item["duration_ms"] == 60_000
        listed = jctl(remote, "podcasts", "episodes", "Test Show")
        assert isinstance(listed, list)
        assert listed[1]["position_ms"] == item["position_ms"] and not listed[1]["played"]
        # Back to the episode: mpv starts where it was left, not at 0.
        ctl_ok(remote, "play", "--episode", episode)
        r.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/e" in v)
        first = r.ipc.wait_time_pos(lambda v: True)
        assert first >= item["position_ms"] / 1000 - 1.0, (first, item)
        # Handed off like a track: the other box goes on from where this one was.
        r2 = Receiver.start(box2, world.sock_dir)
        before = r.ipc.wait_time_pos(lambda v: v >= first + 1.0)
        ctl_ok(remote, "transfer", "box2")
        r2.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/e" in v)
        assert r2.ipc.wait_time_pos(lambda v: True) >= before
        # Heard to the end (the server streams it with Range, so mpv seeks): played.
        ctl_ok(remote, "seek", "58")
        r2.ipc.wait_time_pos(lambda v: v >= 58.0, timeout=20)
        ctl_ok(remote, "play", "--search", "Short Tone")
        r2.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/t" in v)
        listed = jctl(remote, "podcasts", "episodes", "Test Show")
        assert isinstance(listed, list) and listed[1]["played"] is True, listed
        assert jctl(remote, "continue") == []
    finally:
        for rec in (r, r2):
            if rec is not None:
                rec.stop()
                print(rec.lines.text())


def test_another_account_never_sees_or_plays_a_podcast_of_ours(
    world: World, tmp_path: Path
) -> None:
    a = DeviceDir("a-laptop", tmp_path / "a")
    b = DeviceDir("b-laptop", tmp_path / "b")
    login_all(world.srv.url, world.user(), [a])
    login_all(world.srv.url, world.user(), [b])
    ctl_ok(a, "podcasts", "add", world.host.url("/show.rss"))
    podcasts = jctl(a, "podcasts")
    assert isinstance(podcasts, list)
    pid = podcasts[0]["id"]
    eps = jctl(a, "podcasts", "episodes", pid)
    assert isinstance(eps, list)
    episode = eps[0]["id"]
    assert jctl(b, "podcasts") == []
    for args in (("podcasts", "episodes", pid), ("podcasts", "remove", pid)):
        r = ctl(b, *args)
        assert r.returncode == 5 and "no podcast" in r.stderr, r.stderr
    r = ctl(b, "queue", "add", episode)
    assert r.returncode == 5 and "no such track" in r.stderr, r.stderr
    # B subscribing to the same feed gets podcast and episode ids of its own.
    ctl_ok(b, "podcasts", "add", world.host.url("/show.rss"))
    theirs = jctl(b, "podcasts")
    assert isinstance(theirs, list) and theirs[0]["id"] != pid
    b_eps = jctl(b, "podcasts", "episodes", "Test Show")
    assert isinstance(b_eps, list) and episode not in {e["id"] for e in b_eps}
    assert jctl(a, "podcasts", "episodes", pid) == eps  # A's untouched
