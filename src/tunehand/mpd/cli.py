"""`tunehand mpd`: serve the MPD protocol over this account's session and library.

It connects as a remote-only device (it never plays: the account's devices do), waits
for the session, listens (loopback by default), prints one line naming the address,
and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from tunehand.errors import TunehandError, UsageError

log = logging.getLogger("tunehand.mpd")


def _password(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--password-file: cannot read {path}: {exc.strerror}") from None
    password = text.strip("\r\n")
    if not password:
        raise UsageError(f"--password-file: {path} is empty")
    return password


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; any other name or address reaches beyond."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_remote(host: str, password: str | None, allow: bool) -> None:
    """Refuse to serve beyond loopback without a password unless told to, then warn."""
    if password is not None or is_loopback(host):
        return
    if not allow:
        raise UsageError(
            f"--host {host} reaches beyond loopback: give --password-file, or "
            "--allow-remote-without-password to serve it to anyone who can connect"
        )
    print(
        f"tunehand: warning: --host {host} without --password-file: "
        "anyone who can connect controls this account's session",
        file=sys.stderr,
        flush=True,
    )


async def _run(args: argparse.Namespace) -> int:
    from tunehand.client.root import Options, build_agent, client_for
    from tunehand.mpd.frontend import Frontend
    from tunehand.mpd.server import start

    if not 0 <= args.port < 65536:
        raise UsageError("--port: 0 to 65535 (0 picks a free port)")
    if args.default_output is not None and not args.default_output.strip():
        raise UsageError("--default-output: give the name of a device that plays")
    password = _password(args.password_file)
    _check_remote(args.host, password, args.allow_remote_without_password)
    options = Options.of(args)
    api = client_for(options)
    fe: list[Frontend] = []  # the agent's publish hook reaches the frontend made next
    agent = build_agent(options, on_snapshot=lambda snap: fe[0].on_snapshot(snap), kind="mpd")
    fe.append(Frontend(agent, api, default_output=args.default_output))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("mpd frontend: waiting for the session from %s", agent.channel.server)
    runner = asyncio.create_task(agent.run())
    first = asyncio.create_task(agent.first_state.wait())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, first, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        first.cancel()
        stopper.cancel()
        runner.result()  # raises why it ended (a refused login)
        return 1
    if stopper in done:
        first.cancel()
        runner.cancel()
        return 0
    try:
        server = await start(fe[0], args.host, args.port, password)
    except OSError as exc:
        runner.cancel()
        raise TunehandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    port = server.sockets[0].getsockname()[1]
    print(f"mpd frontend listening on {args.host}:{port}", flush=True)
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if runner in done:
        stopper.cancel()
        runner.result()
        return 1
    await fe[0].stop_update()
    await agent.leave()
    runner.cancel()
    api.http.close()
    return 0


def run_mpd(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    return asyncio.run(_run(args))
