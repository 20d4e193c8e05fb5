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
import hashlib
import json
import os
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
    status,
    watching,
)
from tests.feed_host import FeedHost, atom, etag_of, feed_host, rss
from tests.fixtures_server import Backend, ServerProc, launch
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


SERVER_ENV = {
    "TUNEHAND_FEED_REFRESH_S": "1",
    "TUNEHAND_FEED_TIMEOUT_S": "3",
    "TUNEHAND_MAX_PODCASTS": "3",
}


@dataclass(kw_only=True)
class World(Users):
    host: FeedHost


def _episodes(host: FeedHost, prefix: str) -> list[tuple[str, str, str, str]]:
    return [
        (f"{prefix}-1", f"{prefix} first", DATES[0], host.url("/audio/ep1.ogg")),
        (f"{prefix}-2", f"{prefix} second", DATES[1], host.url("/audio/ep2.ogg")),
    ]


CHAPTERS = (("Opening", 0), ("Middle", 10_000), ("Closing", 20_000))


def _chaptered_mp3(dir: Path) -> Path:
    """An MP3 episode with ID3 CHAP frames (and a 300 kB picture before them, so its
    tag is longer than the first read of its head)."""
    from mutagen.id3 import APIC, CHAP, CTOC, ID3, TIT2, CTOCFlags

    from tests.audiogen import make_track

    path = make_track(dir, "chapters", "mp3", title="Chaptered", duration_s=30, freq=330)
    tags = ID3(path)
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=os.urandom(300_000)))
    ends = [ms for _, ms in CHAPTERS[1:]] + [30_000]
    for i, ((title, start), end) in enumerate(zip(CHAPTERS, ends, strict=True)):
        tags.add(
            CHAP(
                element_id=f"ch{i}",
                start_time=start,
                end_time=end,
                sub_frames=[TIT2(encoding=3, text=[title])],
            )
        )
    tags.add(
        CTOC(
            element_id="toc",
            flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
            child_element_ids=[f"ch{i}" for i in range(len(CHAPTERS))],
            sub_frames=[TIT2(encoding=3, text=["Chapters"])],
        )
    )
    tags.save(path)
    return path


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
        chaptered = _chaptered_mp3(audio)
        host.put("/audio/chapters.mp3", chaptered.read_bytes(), "audio/mpeg")
        host.put(
            "/chapters.rss",
            rss("Chapter Show", [("ch-1", "chaptered", DATES[0], host.url("/audio/chapters.mp3"))]),
        )
        host.put("/broken.rss", b"<?xml version='1.0'?><rss><channel><title>x</title><item>")
        music = root / "music"
        make_tones(music, ("Short Tone",), album="Tones", duration_s=30)
        srv = launch(
            root,
            music=music,
            store=backend.store(),
            extra_args=("--allow-private-feeds",),
            env=dict(SERVER_ENV),
        )
        users = [f"pod{i}" for i in range(8)]
        add_users(srv, users)
        with short_sock_dir("th-pod-") as sock_dir:
            w = World(srv=srv, host=host, users=users, sock_dir=sock_dir)
            try:
                yield w
            finally:
                w.srv.stop()  # the one running now: a test may have restarted it


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
        r.ipc.wait_prop("path", lambda v: _the_episode(v, episode))
        first = r.ipc.wait_time_pos(lambda v: True)
        assert first >= item["position_ms"] / 1000 - 1.0, (first, item)
        # Handed off like a track: the other box goes on from where this one was.
        r2 = Receiver.start(box2, world.sock_dir)
        before = r.ipc.wait_time_pos(lambda v: v >= first + 1.0)
        ctl_ok(remote, "transfer", "box2")
        r2.ipc.wait_prop("path", lambda v: _the_episode(v, episode))
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


def _the_episode(path: object, episode: str) -> bool:
    """mpv plays `episode`: streamed through the server, or from the device's cache (a
    playing device keeps what it plays, episodes as tracks)."""
    return isinstance(path, str) and (f"/v1/stream/{episode}" in path or Path(path).stem == episode)


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


# --- an episode kept offline ------------------------------------------------------------


def _restart(srv: ServerProc) -> ServerProc:
    """The module's server again (stopped), on its port, with its flags."""
    port = srv.url.rsplit(":", 1)[1]
    new = launch(
        srv.data_dir.parent,
        music=srv.music,
        store=srv.store,
        extra_args=("--allow-private-feeds", "--port", port),
        env=dict(SERVER_ENV),
    )
    assert new.url == srv.url
    return new


def _kept(dev: DeviceDir) -> list[dict[str, object]]:
    r = dev.run("offline", "list", "--json")
    assert r.returncode == 0, r.stderr
    got: list[dict[str, object]] = json.loads(r.stdout)
    return got


def test_an_episode_kept_offline_is_checked_and_plays_from_the_cache_with_the_server_down(
    world: World, tmp_path: Path
) -> None:
    """`offline add --episode ID`: the enclosure comes through the server (which has no
    digest for it: the size it says is checked, the hash is made and kept here), is listed
    as an episode, a copy that no longer matches is fetched again, and a receiver plays it
    from its file and goes on with the server stopped."""
    require_mpv()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    box = DeviceDir("box", tmp_path / "box")
    box.env["XDG_CACHE_HOME"] = str(tmp_path / "box-cache")
    login_all(world.srv.url, world.user(), [remote, box])
    ctl_ok(remote, "podcasts", "add", world.host.url("/show.rss"))
    eps = jctl(remote, "podcasts", "episodes", "Test Show")
    assert isinstance(eps, list)
    episode = eps[1]["id"]  # "rss first": /audio/ep1.ogg
    enclosure = world.host.files["/audio/ep1.ogg"][0]

    r = box.run("offline", "add", "--episode", episode)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("kept 1 of 1 episodes offline"), r.stderr
    assert world.host.wait(lambda s: s.path == "/audio/ep1.ogg" and s.status == 200)
    [kept] = _kept(box)
    assert kept["id"] == episode and kept["kind"] == "episode", kept
    assert kept["title"] == "rss first" and kept["album"] == "Test Show", kept
    assert kept["size"] == len(enclosure)
    assert kept["sha256"] == hashlib.sha256(enclosure).hexdigest()
    assert kept["pinned"] == ["episode"]
    path = Path(str(kept["path"]))
    assert path.read_bytes() == enclosure and path.suffix == ".ogg"

    # A copy that no longer matches (same size, mtime put back) is fetched again.
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = box.run("offline", "add", "--episode", episode)
    assert r.returncode == 0 and "did not match its hash, fetched again" in r.stderr, r.stderr
    assert path.read_bytes() == enclosure

    # Bad ids: one line each.
    for args, code, says in (
        (("--episode", "t0000"), 2, "is not an episode id"),
        (("--episode", "e-nope"), 5, "no episode 'e-nope'"),
        (("--episode", episode, "--album", "x"), 2, "not allowed with"),
    ):
        r = box.run("offline", "add", *args)
        assert r.returncode == code and says in r.stderr, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

    rec = Receiver.start(box, world.sock_dir)
    try:
        mark = rec.mark()
        ctl_ok(remote, "play", "--episode", episode, "--device", "box")
        playing = rec.ipc.wait_prop("path", lambda p: bool(p))
        assert Path(playing) == path, playing  # from its file, not through the server
        rec.ipc.wait_advancing(0.5)
        world.srv.stop()
        try:
            rec.wait_for("offline: playing on from the cache", since=mark, timeout=30)
            # mpv's own clock moves on in the cached file with no server.
            rec.ipc.wait_advancing(1.0)
            assert rec.ipc.get("path") == playing
        finally:
            world.srv = _restart(world.srv)
        rec.wait_for("back online", since=mark, timeout=40)
    finally:
        rec.stop()
        print(rec.lines.text())
    assert "Traceback" not in rec.lines.text()
    r = box.run("offline", "remove", "--episode", episode)
    assert r.returncode == 0 and r.stdout.strip() == "removed 1 episode from the offline cache"
    assert _kept(box) == [] and not path.exists()


def test_an_episode_has_the_chapters_of_its_file(world: World, tmp_path: Path) -> None:
    """An MP3 episode with ID3 chapters (its tag larger than the first read): `status
    --json` has them, read by the server from the head of the enclosure on its host, and
    `ctl chapter next|prev` moves mpv between them; an episode without marks has none."""
    require_mpv()
    remote = DeviceDir("laptop", tmp_path / "laptop")
    box = DeviceDir("box", tmp_path / "box")
    login_all(world.srv.url, world.user(), [remote, box])
    ctl_ok(remote, "podcasts", "add", world.host.url("/chapters.rss"))
    ctl_ok(remote, "podcasts", "add", world.host.url("/show.rss"))
    [ep] = jctl(remote, "podcasts", "episodes", "Chapter Show")  # type: ignore[misc]
    plain = jctl(remote, "podcasts", "episodes", "Test Show")
    assert isinstance(plain, list)
    r = Receiver.start(box, world.sock_dir)
    try:
        ctl_ok(remote, "play", "--episode", plain[0]["id"], "--device", "box")
        r.ipc.wait_prop("path", lambda v: isinstance(v, str) and "/v1/stream/e" in v)
        assert status(remote)["chapters"] == []
        no = ctl(remote, "chapter", "next")
        assert no.returncode == 5 and "no chapters" in no.stderr, no.stderr
        with watching(remote) as w:
            ctl_ok(remote, "play", "--episode", ep["id"])
            w.wait(lambda st: bool(st["track"]) and st["track"]["id"] == ep["id"])
        r.ipc.wait_prop("path", lambda v: isinstance(v, str) and f"/v1/stream/{ep['id']}" in v)
        st = status(remote)
        assert st["chapters"] == [{"title": t, "start_ms": ms} for t, ms in CHAPTERS], st
        assert st["chapter"] == 0
        assert "chapter 2: Middle" in ctl_ok(remote, "chapter", "next")
        r.ipc.wait_time_pos(lambda v: 10.0 <= v < 14.0)
        assert status(remote)["chapter"] == 1
        assert "chapter 3: Closing" in ctl_ok(remote, "chapter", "next")
        r.ipc.wait_time_pos(lambda v: 20.0 <= v < 24.0)
        last = ctl(remote, "chapter", "next")
        assert last.returncode == 5 and "last chapter" in last.stderr, last.stderr
        assert "chapter 2: Middle" in ctl_ok(remote, "chapter", "prev")  # within 3 s
        r.ipc.wait_time_pos(lambda v: 10.0 <= v < 13.0)
        assert "Middle" in ctl_ok(remote, "status")
    finally:
        r.stop()
        print(r.lines.text())
    # The server read the head of the file with a Range request, not the whole of it.
    assert world.host.wait(
        lambda s: s.path == "/audio/chapters.mp3" and s.headers.get("range") == "bytes=0-4194303"
    )
