"""Cover art: found while scanning (embedded in FLAC/MP3/Ogg/MP4, or a folder's cover.jpg),
served by a real server at signed URLs, resized, cached by ETag, and refused when forged,
expired or broken.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.audiogen import embed_picture, make_picture, make_track
from tests.fixtures_server import Backend, ServerProc, launch
from tests.test_api import Api, bind_path, new_account
from tunehand.errors import MediaError
from tunehand.server.library import art
from tunehand.server.library.scan import read_track, scan_folders
from tunehand.server.streams import ART_TTL_S, Signer

Json = dict[str, Any]
pytestmark = pytest.mark.every_backend

RED = make_picture(1200, 1200, (200, 40, 40))
BLUE = make_picture(800, 600, (40, 40, 200))
GREEN_PNG = make_picture(300, 300, (40, 160, 40), "PNG")
BROKEN = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


# --- scanning ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["flac", "mp3", "ogg"])
def test_embedded_pictures_are_found_by_content(audio_dir: Path, fmt: Any) -> None:
    path = make_track(audio_dir, "one", fmt, title="One")
    embed_picture(path, RED)
    (audio_dir / "cover.jpg").write_bytes(BLUE)  # embedded art wins over the folder's
    track = read_track(path)
    assert track.art_id == art.art_id(RED)
    assert track.art_file is None
    assert art.load(track.path, track.art_file, track.art_id) == RED


def test_mp4_cover_is_found(audio_dir: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (needed to write an MP4 file)")
    path = audio_dir / "one.m4a"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(path)],
        check=True,
    )
    embed_picture(path, GREEN_PNG, "image/png")
    assert read_track(path).art_id == art.art_id(GREEN_PNG)


def test_folder_covers_in_any_case_and_by_preference(audio_dir: Path) -> None:
    a = make_track(audio_dir / "a", "t1", "flac", title="A1")
    a2 = make_track(audio_dir / "a", "t2", "wav", title="A2")
    (audio_dir / "a" / "Folder.JPG").write_bytes(RED)
    (audio_dir / "a" / "COVER.png").write_bytes(GREEN_PNG)  # cover.* before folder.*
    b = make_track(audio_dir / "b", "t1", "ogg", title="B1")
    (audio_dir / "b" / "folder.jpg").write_bytes(BLUE)
    (audio_dir / "b" / "back.jpg").write_bytes(RED)  # not a cover name
    c = make_track(audio_dir / "c", "t1", "mp3", title="C1")
    (audio_dir / "c" / "notes.txt").write_text("no picture here")

    result = scan_folders([audio_dir])
    by_path = {t.path: t for t in result.tracks}
    for p in (a, a2):
        t = by_path[str(p.resolve())]
        assert (t.art_id, t.art_file) == (
            art.art_id(GREEN_PNG),
            str((audio_dir / "a" / "COVER.png").resolve()),
        )
    assert by_path[str(b.resolve())].art_id == art.art_id(BLUE)
    assert (by_path[str(c.resolve())].art_id, by_path[str(c.resolve())].art_file) == (None, None)


def test_resize_fits_the_box_and_never_enlarges() -> None:
    assert [art.snap_size(n) for n in (1, 64, 65, 300, 512, 513, 5000)] == [
        64,
        64,
        128,
        512,
        512,
        1024,
        1024,
    ]
    pic = art.resize(BLUE, 256)
    assert (pic.mime, pic.width, pic.height) == ("image/jpeg", 256, 192)
    with Image.open(io.BytesIO(pic.data)) as img:
        assert (img.format, img.size) == ("JPEG", (256, 192))
    assert (art.resize(GREEN_PNG, 1024).width, art.resize(GREEN_PNG, 1024).height) == (300, 300)
    with pytest.raises(MediaError, match="cannot be decoded"):
        art.resize(BROKEN, 128)
    with pytest.raises(MediaError):
        art.resize(b"", 128)


def test_cache_is_bounded_in_bytes() -> None:
    cache = art.ArtCache(max_bytes=250)
    for i in range(5):
        cache.put((f"c{i}", 64), art.Picture(b"x" * 100, "image/jpeg", 1, 1))
    assert len(cache) == 2
    assert cache.get(("c4", 64)) is not None and cache.get(("c0", 64)) is None


# --- the server --------------------------------------------------------------------------


def _library(root: Path) -> Path:
    music = root / "music"
    red = music / "Red Band" / "Red Album"
    for i, fmt in enumerate(("flac", "mp3", "ogg")):
        path = make_track(red, f"{i + 1:02d} red {fmt}", fmt, title=f"Red {fmt}", album="Red")
        embed_picture(path, RED)
    blue = music / "Blue Band" / "Blue Album"
    make_track(blue, "01 blue one", "flac", title="Blue one", album="Blue")
    make_track(blue, "02 blue two", "mp3", title="Blue two", album="Blue")
    (blue / "Cover.jpg").write_bytes(BLUE)
    make_track(music / "Plain", "01 plain", "ogg", title="Plain one", album="Plain")
    broken = music / "Broken"
    make_track(broken, "01 broken", "wav", title="Broken one", album="Broken")
    (broken / "cover.jpg").write_bytes(BROKEN)
    return music


@pytest.fixture(scope="module")
def art_server(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[ServerProc]:
    """One server per backend for the module, on `_library`."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    root = tmp_path_factory.mktemp("art-server")
    srv = launch(root, music=_library(root), store=backend.store())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(art_server: ServerProc) -> Iterator[Api]:
    a = new_account(art_server, "art")
    yield a
    a.close()


def _tracks(api: Api, q: str) -> dict[str, Json]:
    return {t["title"]: t for t in api.ok("GET", "/v1/search", params={"q": q})["tracks"]}


def _get(srv: ServerProc, url: str, size: int | None = None, **kw: Any) -> httpx.Response:
    """GET a signed URL, with no Authorization: the signature is the credential."""
    return httpx.get(srv.url + url + (f"&size={size}" if size is not None else ""), **kw)


def test_tracks_carry_signed_art_urls_shared_by_content(api: Api) -> None:
    red = _tracks(api, "red")
    assert len(red) == 3
    urls = {t["art_url"] for t in red.values()}
    assert len({httpx.URL(u).path for u in urls}) == 1  # one picture, one id
    assert next(iter(urls)).startswith(f"/v1/art/{art.art_id(RED)}?exp=")
    assert _tracks(api, "plain")["Plain one"]["art_url"] is None
    # Every other way a track reaches a client carries it too.
    tr = red["Red flac"]
    assert api.ok("GET", f"/v1/tracks/{tr['id']}")["art_url"] == tr["art_url"]
    album = api.ok("GET", f"/v1/albums/{tr['album_id']}/tracks")["tracks"]
    assert all(t["art_url"] == tr["art_url"] for t in album)


def test_ctl_json_gives_absolute_art_urls(art_server: ServerProc, api: Api, tmp_path: Path) -> None:
    from tests.cli_helpers import NO_KEYRING, Device, client_env

    dev = Device(tmp_path / "dev", client_env(NO_KEYRING, tmp_path / "dev"))
    r = dev.login(art_server.url, api.name, "secret-pw", "--insecure-token-file")
    assert r.returncode == 0, r.stderr
    found = {t["title"]: t for t in dev.json("ctl", "search", "red")}
    url = found["Red flac"]["art_url"]
    assert url.startswith(f"{art_server.url}/v1/art/{art.art_id(RED)}?exp=")
    got = httpx.get(url + "&size=64")  # as a status bar would: no token
    assert got.status_code == 200
    with Image.open(io.BytesIO(got.content)) as img:
        assert max(img.size) == 64
    assert dev.json("ctl", "search", "plain")[0]["art_url"] is None


@pytest.mark.parametrize(("asked", "side"), [(64, 64), (100, 128), (512, 512), (5000, 1024)])
def test_art_is_resized_to_the_next_size(
    art_server: ServerProc, api: Api, asked: int, side: int
) -> None:
    url = _tracks(api, "red")["Red mp3"]["art_url"]
    r = _get(art_server, url, size=asked)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (side, side)
        assert img.getpixel((side - 1, 0))[0] > 150  # still the red picture


def test_folder_cover_keeps_its_shape(art_server: ServerProc, api: Api) -> None:
    blue = _tracks(api, "blue")
    assert blue["Blue one"]["art_url"] == blue["Blue two"]["art_url"]
    r = _get(art_server, blue["Blue one"]["art_url"], size=256)
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (256, 192)
    default = _get(art_server, blue["Blue one"]["art_url"])
    with Image.open(io.BytesIO(default.content)) as img:
        assert img.size == (512, 384)


def test_etag_answers_not_modified(art_server: ServerProc, api: Api) -> None:
    url = _tracks(api, "red")["Red ogg"]["art_url"]
    first = _get(art_server, url, size=128)
    etag = first.headers["etag"]
    assert etag == f'"{art.art_id(RED)}-128"'
    assert "max-age" in first.headers["cache-control"]
    again = _get(art_server, url, size=128, headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    other = _get(art_server, url, size=256, headers={"If-None-Match": etag})
    assert other.status_code == 200


def test_forged_expired_and_stream_signatures_are_refused(art_server: ServerProc, api: Api) -> None:
    tr = _tracks(api, "red")["Red flac"]
    url = httpx.URL(art_server.url + tr["art_url"])
    exp, sig = url.params["exp"], url.params["sig"]
    base = art_server.url + url.path
    forged = ("A" if sig[0] != "A" else "B") + sig[1:]
    stream = httpx.URL(tr["url"])
    for params in (
        {"exp": exp, "sig": forged},
        {"exp": str(int(exp) + 3600), "sig": sig},
        {"exp": exp},
        {},
        {"exp": stream.params["exp"], "sig": stream.params["sig"]},
    ):
        r = httpx.get(base, params=params)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    signer = Signer((art_server.data_dir / "signing.key").read_bytes().strip())
    expired = bind_path(
        signer, signer.art_path(art.art_id(RED), int(time.time()) - 2 * ART_TTL_S), api.device_id
    )
    assert _get(art_server, expired).status_code == 403
    # A picture the library does not have, correctly signed: not found.
    missing = bind_path(signer, signer.art_path("c" + "0" * 32, int(time.time())), api.device_id)
    r = _get(art_server, missing)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


def test_broken_picture_is_a_clean_error(art_server: ServerProc, api: Api) -> None:
    url = _tracks(api, "broken")["Broken one"]["art_url"]
    assert url is not None
    for _ in range(2):  # the second answer comes from the cache
        r = _get(art_server, url, size=64)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == {
            "code": "bad_picture",
            "message": "the picture cannot be decoded",
        }
    assert not any("Traceback" in line for line in art_server.log)


def test_a_new_cover_is_found_by_a_rescan_and_a_changed_one_refused(
    art_server: ServerProc, api: Api
) -> None:
    plain = art_server.music / "Plain"
    (plain / "folder.png").write_bytes(GREEN_PNG)
    blue_cover = art_server.music / "Blue Band" / "Blue Album" / "Cover.jpg"
    old_blue = _tracks(api, "blue")["Blue one"]["art_url"]
    blue_cover.write_bytes(RED)  # changed after the scan: the old id no longer matches
    r = _get(art_server, old_blue, size=1024)
    assert r.status_code == 404 and "rescan" in r.json()["error"]["message"]
    api.ok("POST", "/v1/library/rescan")
    url = _tracks(api, "plain")["Plain one"]["art_url"]
    assert url is not None and art.art_id(GREEN_PNG) in url
    r = _get(art_server, url, size=64)
    assert r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (64, 64)
    assert art.art_id(RED) in _tracks(api, "blue")["Blue one"]["art_url"]
