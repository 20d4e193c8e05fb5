"""Handoff through a Subsonic app's play queue, with a real server and a real receiver
(mpv, ao=null): a phone app that saves its queue at a position makes the session wait
there, and the receiver the session is played on starts from that position; a pause on
the tunehand side is what the app's `getPlayQueue` reads; `getNowPlaying` names the
receiver while it plays.

py-opensonic plays the app. Positions are read from `ctl status --json` and from the
receiver's mpv over its IPC socket (observed properties: nothing polls).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import libopensonic
import pytest

from tests.device_helpers import (
    DeviceDir,
    Receiver,
    add_users,
    ctl_ok,
    login_all,
    make_tones,
    require_mpv,
    short_sock_dir,
    status,
)
from tests.fixtures_server import ServerProc, launch

pytestmark = pytest.mark.skipif(
    shutil.which("sox") is None, reason="sox is not installed (generated audio)"
)

TRACK_S = 40
USER = "phoneuser"


@dataclass
class World:
    srv: ServerProc
    sock_dir: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_mpv()
    root = tmp_path_factory.mktemp("subsonic-handoff")
    music = root / "music"
    make_tones(music, ("Tone A", "Tone B", "Tone C"), album="Tones", duration_s=TRACK_S)
    srv = launch(root, music=music)
    add_users(srv, [USER])
    with short_sock_dir("th-sub-") as sock_dir:
        yield World(srv, sock_dir)
    srv.stop()


def test_a_phone_app_and_a_receiver_hand_the_queue_over_both_ways(
    world: World, tmp_path: Path
) -> None:
    srv = world.srv
    laptop, box = DeviceDir("laptop", tmp_path / "laptop"), DeviceDir("box", tmp_path / "box")
    login_all(srv.url, USER, [laptop, box])
    token = srv.login(USER)["access_token"]
    made = httpx.post(
        srv.url + "/v1/app-passwords",
        json={"name": "phone"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    url = urlsplit(srv.url)
    app = libopensonic.Connection(
        f"http://{url.hostname}", USER, made["password"], port=int(url.port or 80)
    )
    receiver = Receiver.start(box, world.sock_dir)
    try:
        album = app.get_album_list2("alphabeticalByName", size=1)[0]
        songs = [s.id for s in app.get_album(album.id).song or []]
        assert len(songs) == 3
        # The phone played the second tone up to 0:12.3 and saved its queue.
        assert app.save_play_queue(songs, current=songs[1], position=12_300)
        st = status(laptop)
        assert (st["track"]["id"], st["position_ms"], st["playing"]) == (songs[1], 12_300, False)
        # The receiver (the only device that plays) goes on from there.
        ctl_ok(laptop, "play")
        first = receiver.ipc.wait_time_pos(lambda v: v >= 12.0)
        assert first < 13.5, first
        receiver.ipc.wait_time_pos(lambda v: v >= first + 0.5)  # and it plays on
        playing = app.get_now_playing()
        assert [(e.id, e.username, e.player_name) for e in playing] == [(songs[1], USER, "box")]
        # Paused on the tunehand side: the app reads that position.
        ctl_ok(laptop, "pause")
        paused = status(laptop)
        assert paused["playing"] is False and paused["position_ms"] > 12_300
        queue = app.get_play_queue()
        assert (queue.current, queue.position) == (songs[1], paused["position_ms"])
        mpv_at = receiver.ipc.get("time-pos")
        assert abs(mpv_at * 1000 - paused["position_ms"]) < 300, (mpv_at, paused)
    finally:
        receiver.stop()
        app.cleanup()
