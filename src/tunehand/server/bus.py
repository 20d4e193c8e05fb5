"""Fan-out between server instances: in-process by default, Redis pub/sub with `--redis`.

A bus carries opaque bytes on per-account topics. Delivery is at most once; clients
recover from a gap through `version` (they resync). On Redis every channel is the
deployment's prefix (`--redis-prefix`, default `tunehand:`) followed by the topic, so
several deployments can share one Redis without seeing each other's messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("tunehand.bus")

Handler = Callable[[str, bytes], Awaitable[None] | None]

DEFAULT_PREFIX = "tunehand:"
"""Put before every Redis key and pub/sub channel of a deployment (`--redis-prefix`)."""
LISTEN_IDLE_S = 30.0
"""Silence on the subscription after which the bus pings Redis (and reconnects when
that goes unanswered as long again)."""
TIMEOUT_S = 5.0
"""A Redis that drops packets (rather than refusing) fails a connection or a command
after this, not the system's minutes (`?socket_connect_timeout=` and
`?socket_timeout=` in the URL override it). The subscription is watched by its own
pings instead (LISTEN_IDLE_S)."""
KEEPALIVE = "keepalive"
"""Topic the Redis bus listens on while it has no other, so its connection stays up."""


class Bus(Protocol):
    async def start(self, handler: Handler) -> None: ...
    async def publish(self, topic: str, data: bytes) -> None: ...
    async def subscribe(self, topic: str) -> None: ...
    async def unsubscribe(self, topic: str) -> None: ...
    async def close(self) -> None: ...


class MemoryBus:
    """One process: publish calls the handler directly for subscribed topics."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._topics: set[str] = set()

    async def start(self, handler: Handler) -> None:
        self._handler = handler

    async def publish(self, topic: str, data: bytes) -> None:
        if self._handler is not None and topic in self._topics:
            res = self._handler(topic, data)
            if res is not None:
                await res

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    async def close(self) -> None:
        self._topics.clear()


class RedisBus:
    """Redis pub/sub; resubscribes after Redis comes back, and the hub resyncs clients.

    Topics are channels `prefix + topic` on Redis; the handler sees the topic alone."""

    def __init__(
        self,
        url: str,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._redis = redis_client(url)
        self._subscriber = redis_client(url)
        """The subscription's own pool: a connection redis-py is still reconnecting for
        an old subscription never ends up publishing."""
        self._pubsub = self._subscriber.pubsub()
        self._resubscribing = False
        """The subscription broke: until `_resubscribe` has every topic on a new one,
        (un)subscribing only records the topic."""
        self._prefix = prefix
        self._handler: Handler | None = None
        self._topics: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.on_reconnect = on_reconnect

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        await self._redis.ping()
        await self._subscribe_all()  # so that what is subscribed from now on is heard
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        import redis.exceptions

        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError):
                pass
            except Exception:
                log.exception("bus: the Redis subscription failed; subscribing again")
            self._resubscribing = True
            await self._resubscribe()

    async def _listen(self) -> None:
        """Read the subscription's messages as they come, a whole read at a time.

        redis-py's `get_message` costs a retry wrapper, a health check and a timeout per
        message, a tenth of a busy instance's CPU when every state of every account
        crosses the bus; here each read of the socket is parsed by hiredis at once and
        its messages handed over in order. Commands (SUBSCRIBE, UNSUBSCRIBE) still go out
        through redis-py's PubSub on the same connection; their replies come back here."""
        import hiredis

        if self._pubsub.connection is None:
            await self._subscribe_all()
        conn = self._pubsub.connection
        stream: asyncio.StreamReader | None = getattr(conn, "_reader", None)
        if stream is None:
            raise ConnectionError("the Redis subscription is not connected")
        parser = hiredis.Reader()
        prefix = self._prefix.encode()
        pinged = False
        while True:
            try:
                data = await asyncio.wait_for(stream.read(1 << 16), LISTEN_IDLE_S)
            except TimeoutError:
                # Silence: a connection cut without a reset (a NAT or a failover) would
                # leave this instance deaf for good. Ping; still nothing: reconnect.
                if pinged:
                    raise ConnectionError("Redis did not answer a ping") from None
                pinged = True
                await self._pubsub.ping()
                continue
            pinged = False
            if not data:
                raise ConnectionError("Redis closed the subscription's connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    log.warning("bus: Redis refused a subscription command: %s", reply)
                    continue
                if not isinstance(reply, list) or len(reply) != 3 or reply[0] != b"message":
                    continue  # (un)subscribe confirmations, pongs
                channel, payload = reply[1], reply[2]
                if self._handler is None or not channel.startswith(prefix):
                    continue
                res = self._handler(channel[len(prefix) :].decode(), payload)
                if res is not None:
                    await res

    async def _subscribe_all(self) -> None:
        """Connect the subscription with every topic. Only this connects it: redis-py's
        PubSub connects on its first command, and two commands at once while it has no
        connection (devices joining as the bus starts or reconnects) would each open
        one, the bus reading only the last. A topic added while this connects is taken
        along by the next round; after the last one, `subscribe` finds it connected."""
        sent: set[str] = set()
        while todo := (self._topics or {KEEPALIVE}) - sent:
            await self._pubsub.subscribe(*(self._channel(t) for t in todo))
            sent |= todo
        if gone := sent - self._topics - {KEEPALIVE}:  # unsubscribed while connecting
            await self._pubsub.unsubscribe(*(self._channel(t) for t in gone))

    async def _resubscribe(self) -> None:
        """Retry (with backoff) until a new pub/sub connection has every topic again,
        then let the hub resync its devices with what they missed meanwhile."""
        import redis.exceptions

        backoff = 0.2
        while True:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            try:
                await self._pubsub.aclose()
                self._pubsub = self._subscriber.pubsub()
                await self._subscribe_all()
            except (redis.exceptions.RedisError, OSError):
                continue  # still down; a failed subscribe leaves the new pubsub unconnected
            self._resubscribing = False
            break
        log.warning("bus: connected to Redis again; resyncing devices")
        if self.on_reconnect is not None:
            try:
                await self.on_reconnect()
            except Exception as exc:  # e.g. the database is down too: devices catch up later
                log.warning("bus: could not resync devices: %r", exc)

    async def publish(self, topic: str, data: bytes) -> None:
        """At most once: while Redis is down the message is lost (the change it carries is
        already committed), and every device is resynced once the bus is back."""
        import redis.exceptions

        try:
            await self._redis.publish(self._channel(topic), data)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("bus: cannot publish (%s); devices resync when Redis is back", exc)

    async def _command(self, name: str, topic: str) -> None:
        """SUBSCRIBE or UNSUBSCRIBE on the subscription, if it is up. While it is being
        connected, or breaks meanwhile, `_subscribe_all` makes it match `_topics`."""
        import redis.exceptions

        if self._pubsub.connection is None or self._resubscribing:
            return
        try:
            await getattr(self._pubsub, name)(self._channel(topic))
        except (redis.exceptions.RedisError, OSError):
            pass  # breaking: `_resubscribe` follows
        except Exception as exc:  # redis-py mid-reconnect: the same
            log.warning("bus: could not %s %s now (%r)", name, topic, exc)

    async def subscribe(self, topic: str) -> None:
        """Recorded first: if Redis is down now, the reconnect loop subscribes it."""
        self._topics.add(topic)
        await self._command("subscribe", topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        await self._command("unsubscribe", topic)
        # redis-py forgets a channel when it reads the confirmation, which `_listen`
        # reads instead: forget it here, or a reconnect of redis-py's would subscribe
        # every account ever seen again.
        channel = self._channel(topic).encode()
        self._pubsub.channels.pop(channel, None)
        self._pubsub.pending_unsubscribe_channels.discard(channel)

    def _channel(self, topic: str) -> str:
        return self._prefix + topic

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()
        await self._subscriber.aclose()
        await self._redis.aclose()


def redis_client(url: str) -> Redis:
    """A Redis client that retries a command once its connection is found broken: after a
    Redis restart every pooled connection is dead, and without retries the first command
    on each fails although Redis is back (a lost publish, a missed presence beat)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    return aioredis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.01), 2),
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
    )


def open_bus(url: str | None, prefix: str = DEFAULT_PREFIX) -> Bus:
    if not url or url == "memory://":
        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBus(url, prefix=prefix)
    from tunehand.errors import UsageError

    raise UsageError(f"--redis: unsupported URL {url.split('://')[0]!r}; use redis://HOST:PORT")
