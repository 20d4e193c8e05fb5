"""`POST /v1/session/commands?device=NAME`: the server resolves a device name (id, exact
name, unique name prefix, any case; the online one among several) into the command's
device, so `ctl transfer NAME` is one request. Scoped to the account; an unknown name is
a 404 listing the account's devices, an offline transfer target a 409.

Every test runs on SQLite and on PostgreSQL + Redis (`shared_server`).
"""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures_server import ServerProc
from tests.test_api import accounts, acmd, all_tracks, async_http, channel, unique
from tunehand.core.devices import pick, unknown

pytestmark = [pytest.mark.every_backend, pytest.mark.usefixtures("shared_server_log_clean")]


async def named(http: httpx.AsyncClient, device: str, op: str, **fields: object) -> httpx.Response:
    body = {"op": op, "command_id": unique("c"), **fields}
    return await http.post("/v1/session/commands", params={"device": device}, json=body)


async def test_a_command_names_its_device_and_the_server_finds_it(
    shared_server: ServerProc,
) -> None:
    with accounts(shared_server) as make:
        a, b = make(), make()
        track = all_tracks(a)[0]["id"]
        kitchen, patio = unique("Kitchen-"), unique("patio-")
        async with (
            async_http(a) as http,
            async_http(b) as http_b,
            channel(a.srv, a.token, device_id=kitchen, capabilities=("play",)),
            channel(a.srv, a.token, device_id=patio, capabilities=("play",)),
            channel(b.srv, b.token, device_id=unique("elsewhere-"), capabilities=("play",)),
        ):
            await acmd(http, "queue_add", track_ids=[track])
            # play --device by exact name, any case.
            r = await named(http, kitchen.upper(), "play", paused=True)
            assert r.status_code == 200, r.text
            assert r.json()["state"]["active_device"] == kitchen
            # transfer by a unique prefix, then by id.
            r = await named(http, "PATIO", "transfer", paused=True)
            assert (r.status_code, r.json()["state"]["active_device"]) == (200, patio), r.text
            r = await named(http, kitchen, "transfer", paused=True)
            assert r.json()["state"]["active_device"] == kitchen, r.text

            # No such device: a 404 naming the account's devices, and only those.
            r = await named(http, "garage", "transfer")
            err = r.json()["error"]
            assert (r.status_code, err["code"]) == (404, "not_found"), r.text
            assert "'garage'" in err["message"] and kitchen in err["message"]
            assert patio in err["message"] and "elsewhere" not in err["message"]
            # Another account's device is not found from here (nor this one's from there).
            r = await named(http, "elsewhere", "transfer", paused=True)
            assert r.status_code == 404, r.text
            r = await named(http_b, kitchen, "transfer", paused=True)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["message"].count("elsewhere") == 1

            # Bad names: one line, 422.
            for bad in ("", "x" * 201, "kit\x00chen"):
                r = await named(http, bad, "transfer")
                assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid"), r.text

        # Both devices gone: a transfer to one is refused as offline, by its name.
        async with async_http(a) as http:
            r = await named(http, patio, "transfer")
            err = r.json()["error"]
            assert (r.status_code, err["code"]) == (409, "device_offline"), r.text
            assert err["message"] == f"device {patio} is offline"
            assert (await http.get("/v1/session")).json()["state"]["active_device"] != patio


def test_the_one_rule_for_names() -> None:
    """`core.devices.pick`, which `ctl` (for reads) and the server share."""
    listed = [("d1", "Kitchen", True), ("d2", "kitchen-2", False), ("d3", "Patio", False)]
    assert pick(listed, "d3") == 2  # by id
    assert pick(listed, "KITCHEN") == 0  # exact name beats the prefix it also is
    assert pick(listed, "pat") == 2  # unique prefix
    two_online = [("d1", "room a", True), ("d2", "room b", True)]
    assert pick(two_online, "room") is None  # ambiguous
    one_online = [("d1", "room a", False), ("d2", "room b", True)]
    assert pick(one_online, "room") == 1  # the one online among several
    assert pick(listed, "garage") is None
    assert unknown(listed, "garage") == (
        "no device 'garage'; devices: Kitchen, kitchen-2 (offline), Patio (offline)"
    )
    assert unknown([], "x") == "no device 'x'; devices: none"
