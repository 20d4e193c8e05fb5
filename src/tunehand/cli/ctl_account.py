"""`tunehand ctl`'s account actions: revoking a device, approving a device-code login,
the passwords of Subsonic apps and scrobbling.

Imported by `ctl` only when one of them runs (`ctl._later`).
"""

from __future__ import annotations

import argparse
import sys
import time

from tunehand.cli.ctl import Handler, _out, _q, resolve_device
from tunehand.client.http import ApiClient
from tunehand.core import names
from tunehand.errors import CommandRefused, UsageError


def _revoke(api: ApiClient, args: argparse.Namespace) -> int:
    dev = resolve_device(api, args.device)
    api.request("DELETE", f"/v1/devices/{_q(dev['id'])}")
    print(f"revoked {names.line(dev['name'])}: it is logged out")
    return 0


def _app_passwords(api: ApiClient, args: argparse.Namespace) -> int:
    """Passwords for Subsonic apps: `create NAME` prints the new one once (it is kept
    encrypted on the server and never shown again), `revoke NAME`, or the list."""
    edit = getattr(args, "app_password_command", None)
    if edit == "create":
        made = api.request("POST", "/v1/app-passwords", {"name": args.name})
        base = api.http.server.rstrip("/")
        _out(
            args,
            {**made, "server": base},
            f"app password {names.line(made['name'])}: {made['password']}\n"
            f"Give the app the server {base}, your user name and this password; it is"
            " shown only now.",
        )
    elif edit == "revoke":
        api.request("DELETE", f"/v1/app-passwords/{_q(args.name)}")
        print(f"revoked the app password {names.line(args.name)}: the app is logged out")
    else:
        rows = api.request("GET", "/v1/app-passwords")["app_passwords"]

        def when(ms: int | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "never"

        lines = [
            f"{names.line(p['name']):<24} {p['device_id']:<24} created {when(p['created_ms'])},"
            f" last used {when(p['last_used_ms'])}"
            for p in rows
        ]
        _out(args, rows, "\n".join(lines) or "no app passwords (see `app-passwords create`)")
    return 0


def _approve(api: ApiClient, args: argparse.Namespace) -> int:
    """Show the device that asked for the code and ask y/N (`--yes` for scripts) before
    approving: a code someone else sent would log in *their* device (RFC 8628 §5.4)."""
    allow = not args.deny
    if allow:
        p = api.request("POST", "/v1/auth/device/review", {"user_code": args.code})
        asked = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["asked_ms"] / 1000))
        print(
            names.shown(
                f"code {p['user_code']} asks to log in as {p['user']}:\n"
                f"  device   {names.clean(p['device_name']) or p['device_id']}\n"
                f"  address  {p['address'] or 'unknown'}\n"
                f"  asked    {asked} (expires in {p['expires_in']} s)"
            )
        )
        if not args.yes:
            print("Approve it? Only if you started this login yourself. [y/N] ", end="")
            sys.stdout.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                raise CommandRefused(
                    "not_approved",
                    "not approved: the code stays pending (answer y, or pass --yes in scripts)",
                )
    answer = api.request(
        "POST", "/v1/auth/device/approve", {"user_code": args.code, "approve": allow}
    )
    name = names.clean(answer["device_name"])
    if allow:
        print(names.shown(f"approved: {name} is logged in as {answer['user']}"))
    else:
        print(names.shown(f"denied: {name} stays logged out"))
    return 0


LASTFM_WAIT_S = 600
LASTFM_POLL_S = 3.0


def _scrobble(api: ApiClient, args: argparse.Namespace) -> int:
    """The account's scrobbling: list, `add listenbrainz --token-stdin [--url]`, `add
    lastfm` (prints the page to approve on and waits, like the device-code login),
    `remove NAME`."""
    edit = getattr(args, "scrobble_command", None)
    if edit is None:
        rows = api.request("GET", "/v1/scrobble")["services"]
        lines = [
            f"{r['name']}  {r['user'] or '?'}  {r['url']}"
            + (f"  ({r['queued']} waiting)" if r["queued"] else "")
            for r in rows
        ]
        _out(args, rows, "\n".join(lines) or "no scrobbling: see `ctl scrobble add`")
        return 0
    if edit == "remove":
        api.request("DELETE", f"/v1/scrobble/{_q(args.name)}")
        return 0
    if args.service == "listenbrainz":
        if not args.token_stdin:
            raise UsageError("scrobble add listenbrainz: give the token on stdin: --token-stdin")
        token = sys.stdin.readline().strip()
        if not token:
            raise UsageError("scrobble add listenbrainz: no token on stdin")
        body = {"token": token, **({"url": args.url} if args.url else {})}
        got = api.request("PUT", "/v1/scrobble/listenbrainz", body)
        print(names.shown(f"scrobbling to ListenBrainz as {got['user'] or '?'}"))
        return 0
    if args.token_stdin or args.url:
        raise UsageError("scrobble add lastfm: takes no --token-stdin or --url")
    started = api.request("POST", "/v1/scrobble/lastfm/start")
    print(f"Approve tunehand on Last.fm: {started['url']}", flush=True)
    deadline = time.monotonic() + LASTFM_WAIT_S
    while True:
        status, payload = api.request_status(
            "POST", "/v1/scrobble/lastfm/finish", {"token": started["token"]}
        )
        if status == 200:
            print(names.shown(f"scrobbling to Last.fm as {payload['user'] or '?'}"))
            return 0
        err = payload.get("error", {}) if isinstance(payload, dict) else {}
        if err.get("code") != "authorization_pending":
            raise CommandRefused(
                err.get("code", "error"), err.get("message", f"refused ({status})")
            )
        if time.monotonic() > deadline:
            raise CommandRefused("expired", "not approved on Last.fm in time: run it again")
        time.sleep(LASTFM_POLL_S)  # the service's pace, as the device-code login polls


ACTIONS: dict[str, Handler] = {
    "revoke": _revoke,
    "approve": _approve,
    "app-passwords": _app_passwords,
    "scrobble": _scrobble,
}
