"""The bus and presence contracts, on the in-process fakes and on Redis alike, and the
Redis prefix (`--redis-prefix`) that keeps deployments sharing one Redis apart.

The Redis cases use a fresh prefix per test (TUNEHAND_TEST_REDIS_URL; skipped without
it), so parallel runs never hear each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from argparse import Namespace
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.fixtures_server import NO_SERVICE, REDIS_ENV
from tests.services import Redis, ServiceMissing
from tunehand.cli.serverside import redis_prefix
from tunehand.errors import UsageError
from tunehand.server import presence as presence_mod
from tunehand.server.bus import DEFAULT_PREFIX, Bus, MemoryBus, RedisBus
from tunehand.server.presence import LocalPresence, Presence, RedisPresence

TIMEOUT_S = 5.0

Heard = asyncio.Queue[tuple[str, bytes]]


def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set {NO_SERVICE}")
    return url


def fresh_prefix() -> str:
    return f"tunehand-test-{secrets.token_hex(6)}:"


async def started(bus: Bus) -> Heard:
    heard: Heard = asyncio.Queue()

    async def handler(topic: str, data: bytes) -> None:
        await heard.put((topic, data))

    await bus.start(handler)
    return heard


async def next_heard(heard: Heard) -> tuple[str, bytes]:
    return await asyncio.wait_for(heard.get(), TIMEOUT_S)


async def assert_not_heard(bus: Bus, heard: Heard, gone: str, *, then: str) -> None:
    """A message on `gone`, then one on `then` (subscribed): one Redis delivers in
    order, so had `gone` still been subscribed its message would come first."""
    await bus.publish(gone, b"gone")
    await bus.publish(then, b"here")
    assert await next_heard(heard) == (then, b"here")


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[str], Bus]]:
    """Factory: `make_bus(prefix)`; every memory bus is its own deployment."""
    url = redis_url() if request.param == "redis" else ""
    made: list[Bus] = []

    def make(prefix: str) -> Bus:
        bus: Bus = RedisBus(url, prefix=prefix) if url else MemoryBus()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


async def test_a_subscribed_topic_is_heard_by_its_name(make_bus: Callable[[str], Bus]) -> None:
    bus = make_bus(fresh_prefix())
    heard = await started(bus)
    await bus.subscribe("acct:1")
    await bus.publish("acct:2", b"not subscribed")
    await bus.publish("acct:1", b"hello")
    assert await next_heard(heard) == ("acct:1", b"hello")
    await bus.unsubscribe("acct:1")
    await bus.subscribe("acct:3")
    await bus.publish("acct:1", b"unsubscribed")
    await bus.publish("acct:3", b"after")
    assert await next_heard(heard) == ("acct:3", b"after")


async def test_instances_with_one_prefix_hear_each_other_and_others_do_not() -> None:
    url, ours = redis_url(), fresh_prefix()
    a, b = RedisBus(url, prefix=ours), RedisBus(url, prefix=ours)
    other = RedisBus(url, prefix=fresh_prefix())
    try:
        heard = await started(a)
        for bus in (b, other):
            await started(bus)
        await a.subscribe("acct:1")
        await other.publish("acct:1", b"theirs")
        await b.publish("acct:1", b"ours")
        # One Redis delivers in order: had `a` heard `other`, "theirs" would come first.
        assert await next_heard(heard) == ("acct:1", b"ours")
    finally:
        for bus in (a, b, other):
            await bus.close()


@pytest.fixture(params=["local", "redis"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    p: Presence = (
        RedisPresence(redis_url(), fresh_prefix()) if request.param == "redis" else LocalPresence()
    )
    yield p
    await p.close()


async def test_presence_tracks_devices_and_capabilities(presence: Presence) -> None:
    await presence.join(1, "phone", ("play",))
    await presence.join(1, "laptop", ())
    await presence.join(2, "radio", ("play",))
    assert await presence.devices(1) == {"phone": ("play",), "laptop": ()}
    assert await presence.online(1) == ["laptop", "phone"]
    assert await presence.online(1, "play") == ["phone"]
    await presence.leave(1, "phone")
    assert await presence.online(1) == ["laptop"]
    assert await presence.online(2) == ["radio"]


async def test_presence_under_another_prefix_is_not_seen() -> None:
    url, prefix = redis_url(), fresh_prefix()
    ours, same = RedisPresence(url, prefix), RedisPresence(url, prefix)
    theirs = RedisPresence(url, fresh_prefix())
    try:
        await theirs.join(1, "phone", ("play",))
        await ours.join(1, "laptop", ())
        assert await ours.devices(1) == {"laptop": ()}
        assert await same.devices(1) == {"laptop": ()}
    finally:
        for p in (ours, theirs, same):
            await p.close()


class Deployment:
    """Presence instances sharing one fresh prefix on the test Redis, and a plain client
    to look at (or tamper with) what they wrote; all closed at the end."""

    def __init__(self) -> None:
        import redis.asyncio as aioredis

        self.url, self.prefix = redis_url(), fresh_prefix()
        self.raw: Any = aioredis.from_url(self.url)
        self.made: list[RedisPresence] = []

    async def instance(self, *, start: bool = True) -> RedisPresence:
        p = RedisPresence(self.url, self.prefix)
        self.made.append(p)
        if start:
            await p.start()
        return p

    def key(self, account_id: int) -> str:
        return f"{self.prefix}presence:{account_id}"

    @property
    def instances(self) -> str:
        return f"{self.prefix}instances"


@pytest.fixture
async def deployment() -> AsyncIterator[Deployment]:
    d = Deployment()
    yield d
    await d.raw.aclose()
    for p in d.made:
        await p.close()


async def join_five(p: RedisPresence) -> None:
    for account in range(1, 6):
        await p.join(account, f"dev{account}", ("play",))


def on_pipelines(
    monkeypatch: pytest.MonkeyPatch,
    p: RedisPresence,
    hook: Callable[[int], Awaitable[None]],
    *,
    after: bool = False,
) -> list[int]:
    """Run `hook(n)` before (or after) the n-th pipeline of `p` is sent; returns the
    list that counts them."""
    real_pipeline = p._redis.pipeline
    sent: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute() -> Any:
            sent.append(1)
            if not after:
                await hook(len(sent))
            done = await real_execute()
            if after:
                await hook(len(sent))
            return done

        pipe.execute = execute
        return pipe

    monkeypatch.setattr(p._redis, "pipeline", pipeline)
    return sent


async def nothing(n: int) -> None:
    pass


async def test_a_heartbeat_is_one_record_however_many_devices(deployment: Deployment) -> None:
    """A beat moves the instance's own heartbeat, and writes no device again: an entry
    deleted behind its back stays deleted."""
    ours, theirs = await deployment.instance(), await deployment.instance()
    await join_five(ours)
    await deployment.raw.delete(deployment.key(3))
    await deployment.raw.zadd(deployment.instances, {ours._instance: 1.0})
    await ours.beat()
    assert await deployment.raw.zscore(deployment.instances, ours._instance) > time.time() - 60
    assert await theirs.online(3) == []
    assert await theirs.online(4, "play") == ["dev4"]


async def test_after_redis_lost_presence_the_next_beat_writes_every_device_again(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis keeps nothing on disk: after a restart an instance finds its heartbeat
    record gone and writes all its devices again, a few accounts per round trip."""
    monkeypatch.setattr(presence_mod, "HEARTBEAT_BATCH", 2)
    ours, theirs = await deployment.instance(), await deployment.instance()
    await join_five(ours)
    keys = [deployment.key(a) for a in range(1, 6)]
    await deployment.raw.delete(*keys, deployment.instances)  # what a restart leaves
    assert await theirs.online(3) == []
    pipelines = on_pipelines(monkeypatch, ours, nothing)
    await ours.beat()
    assert len(pipelines) == 3  # 5 accounts 2 at a time
    for account in range(1, 6):
        assert await theirs.online(account, "play") == [f"dev{account}"]


async def test_a_join_redis_missed_is_written_by_the_next_beat(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    ours, theirs = await deployment.instance(), await deployment.instance()

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is restarting")

    monkeypatch.setattr(ours._redis, "eval", down)
    await ours.join(1, "dev1", ("play",))
    monkeypatch.undo()
    assert await theirs.online(1) == []
    await ours.beat()
    assert await theirs.online(1, "play") == ["dev1"]


async def test_a_rewrite_that_failed_is_tried_again_at_the_next_beat(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis went away again during the rewrite after a restart: the next beat finds
    its record there, and still writes the devices."""
    import redis.exceptions

    ours, theirs = await deployment.instance(), await deployment.instance()
    await join_five(ours)
    await deployment.raw.delete(*(deployment.key(a) for a in range(1, 6)), deployment.instances)
    real_write_all = ours._write_all
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise redis.exceptions.ConnectionError("Redis went away again")
        await real_write_all()

    monkeypatch.setattr(ours, "_write_all", flaky)
    with pytest.raises(redis.exceptions.ConnectionError):
        await ours.beat()
    assert await theirs.online(3) == []
    await ours.beat()
    assert len(calls) == 2
    assert await theirs.online(3, "play") == ["dev3"]


async def test_a_leave_redis_missed_is_retried_by_the_next_beat(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    ours, theirs = await deployment.instance(), await deployment.instance()
    await ours.join(1, "dev1", ("play",))

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is unreachable")

    monkeypatch.setattr(ours._redis, "eval", down)
    await ours.leave(1, "dev1")
    monkeypatch.undo()
    assert await theirs.online(1) == ["dev1"]  # Redis was never told
    await ours.beat()
    assert await theirs.online(1) == []


@pytest.mark.parametrize("ours_first", [True, False])
async def test_a_rewrite_never_takes_over_a_later_join_elsewhere(
    deployment: Deployment, ours_first: bool
) -> None:
    """The device moved from `ours` (its old connection half-open, not noticed yet) to
    `theirs`; Redis restarts and both write their devices again, in either order. The
    later join stands, and `ours` letting go of the device at last does not delete it."""
    ours, theirs = await deployment.instance(), await deployment.instance()
    await ours.join(1, "dev1", ())
    await theirs.join(1, "dev1", ("play",))
    await deployment.raw.delete(deployment.key(1), deployment.instances)
    for p in (ours, theirs) if ours_first else (theirs, ours):
        await p.beat()
    assert await ours.devices(1) == {"dev1": ("play",)}
    await ours.leave(1, "dev1")
    assert await theirs.online(1) == ["dev1"]


async def test_liveness_is_judged_on_redis_clock_and_the_readers_own_beats(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats are timed by Redis: a reader whose wall clock is an hour out still sees
    the devices of beating instances. What it read at its last beat ages with it: if its
    own beats stop for STALE_S, it no longer vouches for the others."""
    real = time
    ours, theirs = await deployment.instance(), await deployment.instance()
    await ours.join(1, "dev1", ("play",))
    await theirs.beat()

    class Skewed:
        time = staticmethod(lambda: real.time() + 3600)
        monotonic = staticmethod(real.monotonic)

    monkeypatch.setattr(presence_mod, "time", Skewed)
    assert await theirs.online(1) == ["dev1"]

    class Later:
        time = staticmethod(real.time)
        monotonic = staticmethod(lambda: real.monotonic() + presence_mod.STALE_S + 1)

    monkeypatch.setattr(presence_mod, "time", Later)
    assert await theirs.online(1) == []


async def test_a_retried_leave_does_not_delete_the_devices_next_join_here(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.exceptions

    ours, theirs = await deployment.instance(), await deployment.instance()
    await ours.join(1, "dev1", ("play",))
    real_eval = ours._redis.eval

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is unreachable")

    monkeypatch.setattr(ours._redis, "eval", down)
    await ours.leave(1, "dev1")
    monkeypatch.setattr(ours._redis, "eval", real_eval)
    await ours.join(1, "dev1", ("play",))  # back before the leave could be retried
    await ours.beat()
    assert not ours._leaving
    assert await theirs.online(1) == ["dev1"]


async def test_a_device_leaving_during_a_rewrite_is_not_written_back(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrite's batch with the device was sent before its leave and lands after
    it: the beat deletes it again."""
    monkeypatch.setattr(presence_mod, "HEARTBEAT_BATCH", 1)
    ours, theirs = await deployment.instance(), await deployment.instance()
    for account in (1, 2):
        await ours.join(account, f"dev{account}", ("play",))
    await deployment.raw.delete(deployment.key(1), deployment.key(2), deployment.instances)

    async def overtaken(n: int) -> None:
        if n == 2:  # the batch with dev2 is on its way...
            await ours.leave(2, "dev2")  # ...and its leave overtakes it

    on_pipelines(monkeypatch, ours, overtaken)
    await ours.beat()
    assert await theirs.online(1) == ["dev1"]
    assert await theirs.online(2) == []


async def test_devices_of_an_instance_that_stopped_beating_are_offline(
    deployment: Deployment,
) -> None:
    """An entry counts while its instance beat within STALE_S; an instance not among
    the heartbeats read (it started since) counts while its entry is that recent."""
    gone = await deployment.instance()
    await gone.join(1, "dev1", ("play",))
    # As if `gone` had beaten last STALE_S + 1 s ago and died then:
    stale = time.time() - presence_mod.STALE_S - 1
    await deployment.raw.zadd(deployment.instances, {gone._instance: stale})
    theirs = await deployment.instance()
    assert await theirs.online(1) == []
    late = await deployment.instance(start=False)  # not among the beats `theirs` read
    await late.join(1, "dev2", ("play",))
    assert await theirs.online(1) == ["dev2"]
    old = json.dumps({"i": "unheard-of", "c": ["play"], "t": stale})
    await deployment.raw.hset(deployment.key(1), "dev3", old)
    assert await theirs.online(1) == ["dev2"]


async def test_leaving_keeps_the_entry_the_device_wrote_on_another_instance(
    deployment: Deployment,
) -> None:
    ours, theirs = await deployment.instance(), await deployment.instance()
    await ours.join(1, "dev1", ())
    await theirs.join(1, "dev1", ("play",))  # it reconnected there
    await ours.leave(1, "dev1")  # the old connection's goodbye comes late
    assert await ours.devices(1) == {"dev1": ("play",)}
    await theirs.leave(1, "dev1")
    assert await ours.devices(1) == {}


async def test_a_closed_instance_takes_its_devices_and_heartbeat_along(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_mod, "HEARTBEAT_BATCH", 2)
    ours, theirs = await deployment.instance(), await deployment.instance()
    await join_five(ours)
    await theirs.join(1, "mine", ())
    await ours.close()
    assert await theirs.online(1) == ["mine"]
    for account in range(2, 6):
        assert await deployment.raw.exists(deployment.key(account)) == 0
    assert await deployment.raw.zscore(deployment.instances, ours._instance) is None


def test_the_prefix_comes_from_the_flag_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TUNEHAND_REDIS_PREFIX", raising=False)
    assert redis_prefix(Namespace(redis_prefix=None)) == DEFAULT_PREFIX == "tunehand:"
    monkeypatch.setenv("TUNEHAND_REDIS_PREFIX", "staging:")
    assert redis_prefix(Namespace(redis_prefix=None)) == "staging:"
    assert redis_prefix(Namespace(redis_prefix="prod:")) == "prod:"
    for bad in ("a b", "tab\there", "x" * 101):
        with pytest.raises(UsageError, match="--redis-prefix"):
            redis_prefix(Namespace(redis_prefix=bad))


def test_redis_replies_are_parsed_in_c() -> None:
    """hiredis is installed with tunehand, so redis-py uses its C parser: every state a
    server fans out through the bus is parsed once per instance."""
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE


class _Conn:
    def __init__(self, account_id: int, device_id: str) -> None:
        self.account_id, self.device_id = account_id, device_id
        self.capabilities: tuple[str, ...] = ("play",)
        self.family = "f"
        self.joined = (0, "")
        self.replaced = False
        self.got: list[bytes] = []

    def push(self, data: bytes) -> bool:
        self.got.append(data)
        return True

    def close(self, code: int, reason: str) -> None:
        pass


async def test_the_hub_keeps_presence_until_a_device_joins_or_leaves_anywhere() -> None:
    """Every command asks which devices are online; for an account with devices here the
    hub asks the presence store only after a join or leave (here, or announced on the bus
    by another instance) or once PRESENCE_CACHE_S passed."""
    from tunehand.server.hub import DEVICES, Hub

    class Counting(LocalPresence):
        reads = 0

        async def devices(self, account_id: int) -> dict[str, tuple[str, ...]]:
            Counting.reads += 1
            return await super().devices(account_id)

    store = Counting()
    hub = Hub(MemoryBus(), store)
    await hub.start()
    here = _Conn(1, "here")
    await hub.attach(here)
    assert await hub.online(1, "play") == ["here"]
    assert await hub.online(1) == ["here"]
    assert Counting.reads == 1  # kept
    await store.join(1, "elsewhere", ("play",))  # another instance's device...
    assert await hub.online(1) == ["here"]
    await hub.send(1, b'{"type":"devices"}', version=DEVICES)  # ...announced on the bus
    assert await hub.online(1, "play") == ["elsewhere", "here"]
    assert Counting.reads == 2
    await hub.attach(_Conn(1, "third"))  # a join here
    assert await hub.online(1) == ["elsewhere", "here", "third"]
    assert Counting.reads == 3
    hub._online[1] = (0.0, hub._online[1][1])  # PRESENCE_CACHE_S passed
    assert await hub.online(1) == ["elsewhere", "here", "third"]
    assert Counting.reads == 4
    assert await hub.online(2) == [] and await hub.online(2) == []  # no device here
    assert Counting.reads == 6
    await hub.detach(here)
    assert await hub.online(1) == ["elsewhere", "third"]


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A throwaway Redis for this test alone, for what would disturb others."""
    try:
        server = Redis().start()
    except ServiceMissing as e:
        pytest.skip(f"no throwaway Redis: {e}")
    with server:
        yield server


async def test_a_silent_subscription_is_pinged_and_a_dead_one_reconnects(
    monkeypatch: pytest.MonkeyPatch, own_redis: Redis
) -> None:
    """The subscription pings Redis after LISTEN_IDLE_S of silence; answered, it stays;
    unanswered as long again (a connection cut without a reset), it subscribes again and
    resyncs. Redis answering nothing is made with CLIENT PAUSE, on a throwaway Redis of
    the test's own (a pause holds every client of the server)."""
    import redis.asyncio as aioredis

    from tunehand.server import bus as bus_mod

    monkeypatch.setattr(bus_mod, "LISTEN_IDLE_S", 0.2)
    url = own_redis.url
    bus = RedisBus(url, prefix=fresh_prefix())
    reconnected = asyncio.Event()
    pings: list[int] = []
    pinged_twice = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    bus.on_reconnect = on_reconnect
    heard = await started(bus)
    await bus.subscribe("acct:1")
    real_ping = bus._pubsub.ping

    def counting_ping() -> Any:
        pings.append(1)
        if len(pings) >= 2:
            pinged_twice.set()
        return real_ping()

    monkeypatch.setattr(bus._pubsub, "ping", counting_ping)
    raw = aioredis.from_url(url)
    try:
        await asyncio.wait_for(pinged_twice.wait(), TIMEOUT_S)  # silent, pinged, answered
        assert not reconnected.is_set()
        await bus.publish("acct:1", b"still here")
        assert await next_heard(heard) == ("acct:1", b"still here")
        await raw.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # answers nothing
        await asyncio.wait_for(reconnected.wait(), TIMEOUT_S)
        await bus.publish("acct:1", b"back")
        assert await next_heard(heard) == ("acct:1", b"back")
    finally:
        await raw.execute_command("CLIENT", "UNPAUSE")
        await raw.aclose()
        await bus.close()


async def test_writing_every_device_again_skips_a_device_that_left_meanwhile(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch of a rewrite (after Redis lost presence) reads the devices when it is
    sent: a device that leaves after the rewrite began is not written back as online."""
    monkeypatch.setattr(presence_mod, "HEARTBEAT_BATCH", 1)
    ours, theirs = await deployment.instance(), await deployment.instance()
    for account in (1, 2):
        await ours.join(account, f"dev{account}", ("play",))

    async def leaves(n: int) -> None:
        if n == 1:  # between the first batch and the second one
            await ours.leave(2, "dev2")

    sent = on_pipelines(monkeypatch, ours, leaves, after=True)
    await ours._write_all()
    assert len(sent) == 1  # the second batch found nothing left to write
    assert await theirs.online(1) == ["dev1"]
    assert await theirs.online(2) == []


async def test_an_unsubscribed_topic_is_forgotten_by_the_subscription() -> None:
    """The bus reads the unsubscribe confirmations itself, so it prunes redis-py's list
    of channels (which a reconnect of redis-py's would subscribe again)."""
    prefix = fresh_prefix()
    bus = RedisBus(redis_url(), prefix=prefix)
    heard = await started(bus)
    try:
        await bus.subscribe("acct:1")
        await bus.subscribe("acct:2")
        await bus.unsubscribe("acct:1")
        channels = set(bus._pubsub.channels)
        assert f"{prefix}acct:2".encode() in channels
        assert f"{prefix}acct:1".encode() not in channels
        await assert_not_heard(bus, heard, "acct:1", then="acct:2")
    finally:
        await bus.close()


async def test_subscriptions_made_at_once_share_one_connection() -> None:
    """redis-py's PubSub connects on its first command: devices joining together while
    the bus has no connection (it starts, or reconnects) must not open one each, as the
    bus would read only the last and the others would leak. The one that connects takes
    every topic along."""
    bus = RedisBus(redis_url(), prefix=fresh_prefix())
    try:
        await asyncio.gather(*(bus.subscribe(f"acct:{n}") for n in range(5)))
        pool = bus._pubsub.connection_pool
        assert len(pool._in_use_connections) == 0  # nobody connected it yet
        heard = await started(bus)
        late = asyncio.create_task(bus.subscribe("acct:5"))  # while it connects
        for n in range(6):
            await asyncio.wait_for(late, TIMEOUT_S)
            await bus.publish(f"acct:{n}", b"%d" % n)
            assert await next_heard(heard) == (f"acct:{n}", b"%d" % n)
        assert len(pool._in_use_connections) == 1
    finally:
        await bus.close()


async def test_a_topic_unsubscribed_while_the_bus_connects_is_not_heard() -> None:
    """The connect takes along every topic it was given; one dropped meanwhile (its last
    device left) is unsubscribed once connected, not kept until the next reconnect."""
    bus = RedisBus(redis_url(), prefix=fresh_prefix())
    try:
        await bus.subscribe("acct:1")
        await bus.subscribe("acct:2")
        real_subscribe = bus._pubsub.subscribe

        async def subscribe(*channels: Any) -> Any:
            await bus.unsubscribe("acct:2")  # while no connection is there yet
            return await real_subscribe(*channels)

        bus._pubsub.subscribe = subscribe  # type: ignore[method-assign]
        heard = await started(bus)
        await assert_not_heard(bus, heard, "acct:2", then="acct:1")
    finally:
        await bus.close()


async def test_while_the_subscription_is_rebuilt_topics_are_only_recorded() -> None:
    """After the subscription broke, (un)subscribing leaves the old one alone (redis-py
    may still be reconnecting it) and the new one takes every topic as recorded."""
    bus = RedisBus(redis_url(), prefix=fresh_prefix())
    try:
        heard = await started(bus)
        entered, rebuilt = asyncio.Event(), asyncio.Event()
        real_resubscribe = bus._resubscribe

        async def resubscribe() -> None:
            entered.set()
            await real_resubscribe()
            rebuilt.set()

        bus._resubscribe = resubscribe  # type: ignore[method-assign]
        old = bus._pubsub
        assert old.connection is not None
        old.connection._writer.transport.abort()  # the connection breaks
        await asyncio.wait_for(entered.wait(), TIMEOUT_S)
        sent: list[tuple[Any, ...]] = []

        async def record(*channels: Any) -> None:
            sent.append(channels)

        old.subscribe = record  # type: ignore[method-assign]
        old.unsubscribe = record  # type: ignore[method-assign]
        await bus.subscribe("acct:7")
        await bus.unsubscribe("keepalive")
        assert sent == []
        await asyncio.wait_for(rebuilt.wait(), TIMEOUT_S)
        assert bus._pubsub is not old
        await bus.publish("acct:7", b"back")
        assert await next_heard(heard) == ("acct:7", b"back")
    finally:
        await bus.close()


async def test_malformed_presence_entries_are_skipped_and_written_over(
    deployment: Deployment,
) -> None:
    """Whatever else sits in a presence hash (another program, a corrupted write), a
    reader skips it and the scripts neither fail on it nor keep it from being replaced."""
    ours, theirs = await deployment.instance(), await deployment.instance()
    junk = {"a": "not json", "b": "123", "c": '{"i": 5, "t": "soon"}', "d": "null"}
    await deployment.raw.hset(deployment.key(1), mapping=junk)
    assert await theirs.devices(1) == {}
    await ours.join(1, "a", ("play",))
    await ours.leave(1, "b")  # not ours: left alone, and no script error
    assert await deployment.raw.hget(deployment.key(1), "b") == b"123"
    await ours.join(1, "c", ())
    await deployment.raw.hset(deployment.key(1), mapping=junk)  # garbled again
    await deployment.raw.delete(deployment.instances)  # and Redis "restarted"
    await ours.beat()  # the rewrite goes over the junk
    assert await theirs.devices(1) == {"a": ("play",), "c": ()}
