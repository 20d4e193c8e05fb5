"""Transcoding: time to first byte of a transcoded Subsonic `stream`, and how fast one
encoder runs (real-time factor per core).

A real `tunehand serve` (SQLite) with one 300 s FLAC (a generated stereo 44.1 kHz tone:
an easy signal for an encoder, so the factor is an upper bound for music). An app
password logs in with `p=`; one keep-alive client asks `stream?format=opus&maxBitRate=128`
(and MP3 at 192, and Opus from `timeOffset=150`) 20 times each and times the first body
byte (target: 200 ms median). Then whole streams are read: one alone (its real-time
factor is the track's length over the wall time; one ffmpeg uses one core), and one per
core at once (the factor summed over them, divided by the cores).
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import PASSWORD, USER, Result, check, percentile

TRACK_S = 300.0
RUNS = 20
TTFB_TARGET_MS = 200.0


def _params(password: str, sid: str, **extra: str) -> dict[str, str]:
    return {"u": USER, "p": password, "v": "1.16.1", "c": "bench", "id": sid, **extra}


def _ttfb(client: httpx.Client, url: str, params: dict[str, str]) -> float:
    start = time.perf_counter()
    with client.stream("GET", url, params=params) as r:
        if r.status_code != 200 or not r.headers["content-type"].startswith("audio/"):
            raise RuntimeError(f"stream: {r.status_code} {r.read()[:200]!r}")
        next(r.iter_raw(1024))
        return (time.perf_counter() - start) * 1000


def _whole(url: str, params: dict[str, str]) -> float:
    """Seconds to read a whole transcoded stream."""
    start = time.perf_counter()
    with httpx.Client(timeout=300) as c, c.stream("GET", url, params=params) as r:
        for _ in r.iter_raw(65536):
            pass
    return time.perf_counter() - start


def run() -> list[Result]:
    from tests.audiogen import make_track
    from tests.fixtures_server import Store, launch

    cores = os.cpu_count() or 1
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tunehand-bench-") as tmp:
        music = Path(tmp) / "music"
        make_track(music, "long", "flac", title="Long", artist="B", album="B", duration_s=TRACK_S)
        srv = launch(Path(tmp), music=music, store=Store())
        try:
            srv.add_user(USER, PASSWORD)
            token = srv.login(USER, PASSWORD)["access_token"]
            made = httpx.post(
                srv.url + "/v1/app-passwords",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            password = made["password"]
            url = srv.url + "/rest/stream"
            found = httpx.get(
                srv.url + "/rest/search3",
                params={**_params(password, ""), "query": "Long", "f": "json"},
            ).json()
            sid = found["subsonic-response"]["searchResult3"]["song"][0]["id"]
            kinds = {
                "opus 128": {"format": "opus", "maxBitRate": "128"},
                "mp3 192": {"format": "mp3"},
                "opus 128 from 150 s": {"format": "opus", "timeOffset": "150"},
            }
            with httpx.Client(timeout=30) as client:
                for name, extra in kinds.items():
                    times = [
                        _ttfb(client, url, _params(password, sid, **extra)) for _ in range(RUNS)
                    ]
                    median = statistics.median(times)
                    results.append(
                        check(f"transcode {name}: first byte median", median, "ms", TTFB_TARGET_MS)
                    )
                    results.append(
                        check(f"transcode {name}: first byte p95", percentile(times, 95), "ms")
                    )
            opus = _params(password, sid, format="opus", maxBitRate="128")
            alone = TRACK_S / _whole(url, opus)
            results.append(check("transcode opus 128: real-time factor, one encoder", alone, "x"))
            mp3 = _params(password, sid, format="mp3")
            results.append(
                check(
                    "transcode mp3 192: real-time factor, one encoder",
                    TRACK_S / _whole(url, mp3),
                    "x",
                )
            )
            with concurrent.futures.ThreadPoolExecutor(cores) as pool:
                walls = list(pool.map(lambda _: _whole(url, opus), range(cores)))
            per_core = sum(TRACK_S / w for w in walls) / cores
            results.append(
                check(
                    f"transcode opus 128: real-time factor per core, {cores} at once", per_core, "x"
                )
            )
        finally:
            srv.stop()
    return results
