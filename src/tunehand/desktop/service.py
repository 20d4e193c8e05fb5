"""`Desktop`: connects to the session bus, owns the MPRIS name, sends notifications.

Build it before the agent (its `on_snapshot` is a no-op until started), `await
start(agent)` once the loop runs, `await close()` at the end. Everything runs on the
agent's asyncio loop and never blocks: notifications are sent without waiting for the
reply. With no session bus (DBUS_SESSION_BUS_ADDRESS unset or not connectable) it logs
one debug line and stays off; dbus-fast errors never leave this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from tunehand.client.agent import Agent
from tunehand.core.snapshot import Snapshot
from tunehand.desktop.notify import APP_NAME, Notices

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

    from tunehand.desktop.mpris import PlayerIface

log = logging.getLogger("tunehand.desktop")

BUS_NAME = "org.mpris.MediaPlayer2.tunehand"
CONNECT_TIMEOUT_S = 3.0
NOTIFY_TIMEOUT_MS = 5000


class Desktop:
    def __init__(self, *, notifications: bool = True) -> None:
        self.notifications = notifications
        self.bus: MessageBus | None = None
        self.name: str | None = None
        self._player: PlayerIface | None = None
        self._notices = Notices()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, agent: Agent) -> bool:
        """Connect and publish; False (and off) when there is no usable session bus."""
        await self.close()  # started again (a new agent): start afresh
        self._notices = Notices()
        if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            log.debug("no D-Bus session bus: MPRIS and notifications are off")
            return False
        try:
            from dbus_fast import BusType, NameFlag, RequestNameReply
            from dbus_fast.aio import MessageBus

            from tunehand.desktop.mpris import OBJECT_PATH, PlayerIface, RootIface

            bus = await asyncio.wait_for(
                MessageBus(bus_type=BusType.SESSION).connect(), CONNECT_TIMEOUT_S
            )
        except Exception as exc:  # any failure means: no bus, stay off
            log.debug("no D-Bus session bus (%s): MPRIS and notifications are off", exc)
            return False
        try:
            player = PlayerIface(agent)
            bus.export(OBJECT_PATH, RootIface())
            bus.export(OBJECT_PATH, player)
            name = BUS_NAME
            reply = await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
            if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
                name = f"{BUS_NAME}.instance{os.getpid()}"
                await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
        except Exception as exc:
            log.debug("cannot publish MPRIS on the session bus (%s)", exc)
            bus.disconnect()
            return False
        self.bus, self.name, self._player = bus, name, player
        log.debug("MPRIS published as %s", name)
        return True

    def on_snapshot(self, snap: Snapshot) -> None:
        if self.bus is None or not self.bus.connected:
            return
        try:
            if self._player is not None:
                self._player.publish(snap)
        except Exception as exc:  # a bus error must not stop the agent
            log.debug("MPRIS update failed: %s", exc)
        notices = self._notices.feed(snap)
        if self.notifications:
            for summary, body in notices:
                self._spawn(self._notify(summary, body))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, summary: str, body: str) -> None:
        from dbus_fast import Message

        bus = self.bus
        if bus is None:
            return
        msg = Message(
            destination="org.freedesktop.Notifications",
            path="/org/freedesktop/Notifications",
            interface="org.freedesktop.Notifications",
            member="Notify",
            signature="susssasa{sv}i",
            body=[APP_NAME, 0, "audio-x-generic", summary, body, [], {}, NOTIFY_TIMEOUT_MS],
        )
        try:
            await asyncio.wait_for(bus.call(msg), CONNECT_TIMEOUT_S)
        except Exception as exc:  # no notification daemon is fine
            log.debug("notification not shown: %s", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._player is not None:
            self._player.close()
            self._player = None
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


def desktop_for(config_dir: str | None) -> Desktop:
    """A `Desktop` following `notifications` in the config dir's `config.toml`."""
    from tunehand.client.config import load_config, resolve_config_dir

    try:
        notifications = load_config(resolve_config_dir(config_dir, os.environ)).notifications
    except Exception:  # a config error is reported by build_agent, with one clear line
        notifications = True
    return Desktop(notifications=notifications)
