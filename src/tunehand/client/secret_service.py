"""A fast read of one secret from the Secret Service (D-Bus), for the `ctl` hot path.

`keyring` with its SecretService backend costs about 100 ms to import; this module
asks the same D-Bus service directly with jeepney (a plain-text session over the
private session bus), in a few ms. It only reads, and only items that are unlocked;
anything else (no bus, a locked collection, an odd answer) returns `Unavailable`, and
the caller falls back to the full `keyring` path, which can prompt and write.
"""

from __future__ import annotations

import os
import time
from typing import Any

SERVICE = "org.freedesktop.secrets"
PATH = "/org/freedesktop/secrets"
IFACE = "org.freedesktop.Secret.Service"
ITEM_IFACE = "org.freedesktop.Secret.Item"


class Unavailable(Exception):
    """The fast path cannot answer; use the full keyring path."""


class Hung(Exception):
    """The Secret Service did not answer in time: the full path would hang as well."""


def read_secret(attributes: dict[str, str], timeout_s: float) -> str:
    """The secret of the unlocked item with these attributes."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS") or os.environ.get("PYTHON_KEYRING_BACKEND"):
        raise Unavailable("no session bus, or a keyring backend was chosen explicitly")
    try:
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection
    except ImportError as exc:
        raise Unavailable("jeepney is not installed") from exc
    service = DBusAddress(PATH, bus_name=SERVICE, interface=IFACE)
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Hung("the Secret Service did not answer in time")
        return remaining

    try:
        conn = open_dbus_connection(bus="SESSION", auth_timeout=left())
    except TimeoutError as exc:
        raise Hung(str(exc)) from exc
    except Exception as exc:  # any failure to reach the bus: fall back
        raise Unavailable(str(exc)) from exc
    try:
        reply: Any = conn.send_and_get_reply(
            new_method_call(service, "SearchItems", "a{ss}", (attributes,)), timeout=left()
        )
        unlocked, _locked = _body(reply)
        if not unlocked:
            # Not found, or locked: only the full path can tell "logged out" from a
            # locked keyring (and offer to unlock it). Being logged out is the rare case.
            raise Unavailable("no unlocked item")
        reply = conn.send_and_get_reply(
            new_method_call(service, "OpenSession", "sv", ("plain", ("s", ""))), timeout=left()
        )
        _, session = _body(reply)
        item = DBusAddress(unlocked[0], bus_name=SERVICE, interface=ITEM_IFACE)
        reply = conn.send_and_get_reply(
            new_method_call(item, "GetSecret", "o", (session,)), timeout=left()
        )
        (secret,) = _body(reply)
        value: bytes = secret[2]
        return value.decode("utf-8")
    except (Unavailable, Hung):
        raise
    except TimeoutError as exc:
        raise Hung(str(exc)) from exc
    except Exception as exc:  # D-Bus errors, unexpected shapes: fall back
        raise Unavailable(str(exc)) from exc
    finally:
        conn.close()


def _body(reply: Any) -> Any:
    from jeepney import MessageType

    if reply.header.message_type == MessageType.error:
        raise Unavailable(f"D-Bus error: {reply.body!r}"[:200])
    return reply.body
