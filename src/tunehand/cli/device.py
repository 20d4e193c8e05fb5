"""What `receiver`, `resume` share: building a playing device's agent from the command line.

The agent itself is built by the client's composition root (`tunehand.client.root`);
this adds the mpv player, so the root never imports mpv.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tunehand.client.agent import Agent
from tunehand.client.root import Options, build_agent
from tunehand.core.snapshot import Snapshot


def build_playing_agent(
    args: argparse.Namespace, *, on_snapshot: Callable[[Snapshot], None] | None = None
) -> Agent:
    from tunehand.player.mpv_player import mpv_factory

    return build_agent(Options.of(args), on_snapshot=on_snapshot, player=mpv_factory)
