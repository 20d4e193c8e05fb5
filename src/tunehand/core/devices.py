"""Which device a name given on a command line means: one rule for `ctl` and the server.

A device is named by its id, its exact name, or a prefix of its name unique among the
account's devices (case-insensitive); when several match, the single online one wins.
Pure: the caller lists the devices as (id, name, online).
"""

from __future__ import annotations

from collections.abc import Sequence

Listed = tuple[str, str, bool]
"""(id, name, online) of one device."""


def pick(devices: Sequence[Listed], name: str) -> int | None:
    """The index in `devices` of the one device `name` means, or None."""
    for i, (dev_id, _, _) in enumerate(devices):
        if dev_id == name:
            return i
    folded = name.casefold()
    exact = [i for i, d in enumerate(devices) if d[1].casefold() == folded]
    prefix = [i for i, d in enumerate(devices) if d[1].casefold().startswith(folded)]
    for group in (exact, prefix):
        if len(group) == 1:
            return group[0]
        if len(group) > 1:
            online = [i for i in group if devices[i][2]]
            if len(online) == 1:
                return online[0]
    return None


def unknown(devices: Sequence[Listed], name: str) -> str:
    """The one-line message for a name that means no single device."""
    shown = ", ".join(f"{d[1]}{'' if d[2] else ' (offline)'}" for d in devices)
    return f"no device {name!r}; devices: {shown or 'none'}"
