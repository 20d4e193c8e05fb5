"""The account's devices that can play, as MPD outputs whose ids never change.

A device gets an output id the first time this frontend sees it online with the "play"
capability (the first ones in name order), and keeps it: the map device id -> output id
is kept in the config dir (`mpd-outputs.json`), with the last device that was active, so
a new login never renumbers `kitchen` and a restart keeps both. Devices that never
played (REST logins, `ctl`, the MPD frontend itself) are no outputs. An output whose
device is offline is listed, disabled and says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tunehand.client.config import write_file_atomic
from tunehand.core.model import DeviceInfo

log = logging.getLogger("tunehand.mpd")

STATE_FILE = "mpd-outputs.json"


@dataclass(frozen=True, slots=True)
class Output:
    id: int
    device: DeviceInfo

    @property
    def can_play(self) -> bool:
        return self.device.online and "play" in self.device.capabilities

    @property
    def label(self) -> str:
        """The output's name: the device's, and why it cannot play now."""
        if not self.device.online:
            return f"{self.device.name} (offline)"
        if not self.can_play:
            return f"{self.device.name} (cannot play)"
        return self.device.name


class Outputs:
    def __init__(self, path: Path | None, own_device: str) -> None:
        self.path = path
        self.own = own_device
        self.ids: dict[str, int] = {}
        self.last_active: str | None = None
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("mpd: cannot read %s (%s): output ids start afresh", self.path, exc)
            return
        ids = data.get("outputs") if isinstance(data, dict) else None
        if isinstance(ids, dict):
            self.ids = {
                str(k): v for k, v in ids.items() if isinstance(v, int) and not isinstance(v, bool)
            }
        last = data.get("last_active") if isinstance(data, dict) else None
        self.last_active = last if isinstance(last, str) else None

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"outputs": self.ids, "last_active": self.last_active}
        try:
            write_file_atomic(self.path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            log.warning("mpd: cannot write %s: %s", self.path, exc.strerror or exc)

    def seen(self, devices: tuple[DeviceInfo, ...], active: str | None) -> bool:
        """Number the devices seen able to play for the first time (in name order, after
        every id ever given) and remember the active one; True when outputs changed."""
        new = sorted(
            (
                d
                for d in devices
                if d.id != self.own and "play" in d.capabilities and d.id not in self.ids
            ),
            key=lambda d: (d.name.casefold(), d.id),
        )
        nxt = max(self.ids.values(), default=-1) + 1
        for i, d in enumerate(new):
            self.ids[d.id] = nxt + i
        changed = bool(new)
        if active is not None and active != self.last_active:
            self.last_active = active
            changed = True
        if changed:
            self._save()
        return bool(new)

    def listed(self, devices: tuple[DeviceInfo, ...]) -> list[Output]:
        """The outputs, by id: every numbered device the account still has."""
        out = [Output(self.ids[d.id], d) for d in devices if d.id in self.ids]
        return sorted(out, key=lambda o: o.id)
