"""`tunehand login` (password or device code), `logout` and `auth status`: tokens into
(and out of) the OS keyring.

Tokens go to the OS keyring only; with no keyring, login fails with one line naming
the fix unless the user asks for `--insecure-token-file` (0600, with a warning).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from tunehand.cli.password import read_password
from tunehand.client import device_login
from tunehand.client.config import (
    default_device_name,
    ensure_config_dir,
    load_config,
    resolve_config_dir,
    save_device_id,
    save_server,
    save_setting,
    stored_device_id,
)
from tunehand.client.credentials import (
    Credentials,
    FileStore,
    KeyringStore,
    not_logged_in,
    open_store,
)
from tunehand.client.http import HttpClient, check_server_url
from tunehand.core import names
from tunehand.errors import KeyringError, ServerUnreachable, UsageError

TOKEN_FILE = "tokens.json"  # noqa: S105 - a file name, not a secret


def run_auth(args: argparse.Namespace) -> int:
    config_dir = resolve_config_dir(getattr(args, "config_dir", None), os.environ)
    if args.command == "login":
        return _login(args, config_dir)
    if args.command == "logout":
        return _logout(args, config_dir)
    return _status(args, config_dir)


def _login(args: argparse.Namespace, config_dir: os.PathLike[str] | object) -> int:
    from pathlib import Path

    cdir = Path(str(config_dir))
    config = load_config(cdir)
    server = args.url or getattr(args, "server", None) or config.server
    if not server:
        raise UsageError("login: give the server URL (tunehand login http://HOST:8440)")
    server = check_server_url(server)
    if os.environ.get("TUNEHAND_TOKEN"):
        raise UsageError("TUNEHAND_TOKEN is set: unset it to log in")
    # Choose where the tokens go before asking the server, so a missing keyring
    # fails before a login is spent.
    ensure_config_dir(cdir)
    store: FileStore | KeyringStore
    if args.insecure_token_file:
        store = FileStore(cdir / TOKEN_FILE)
        print(
            f"tunehand: warning: tokens will be kept in the plain file {cdir / TOKEN_FILE}",
            file=sys.stderr,
        )
    else:
        store = KeyringStore(cdir)
        try:
            store.check()
        except KeyringError as exc:
            raise KeyringError(str(exc)) from None
    dev = stored_device_id(cdir)  # None on a first login: the server mints the id
    given = args.device_name or config.device_name
    name = given or default_device_name()
    http = HttpClient(server, ca_file=getattr(args, "ca_file", None) or config.ca_file)
    try:
        if getattr(args, "device_code", False):
            payload = device_code_login(http, dev, name, default=not given)
        else:
            payload = _password_login(http, args, dev, name, default=not given)
    finally:
        http.close()
    user = str(payload.get("user") or "")
    dev = save_device_id(cdir, payload.get("device_id"))
    creds = Credentials(
        server=server,
        user=user,
        device_id=dev,
        access_token=payload["access_token"],
        access_expires_at=time.time() + float(payload["expires_in"]),
        refresh_token=payload["refresh_token"],
    )
    store.save(creds)
    if not args.insecure_token_file:
        # A keyring login replaces an earlier opted-in file.
        FileStore(cdir / TOKEN_FILE).delete()
    save_server(cdir, server)
    if args.device_name:
        save_setting(cdir, "device_name", args.device_name)
    name = str(payload.get("device_name") or name)  # a default made unique: HOST-2
    print(
        f"logged in to {server} as {user} (device {names.line(name)}); tokens in {store.location}"
    )
    return 0


def _password_login(
    http: HttpClient, args: argparse.Namespace, dev: str | None, name: str, *, default: bool
) -> dict[str, Any]:
    user = args.user
    if not user:
        if not sys.stdin.isatty():
            raise UsageError("login: pass --user NAME (no terminal to ask on)")
        user = input("User: ").strip()
    if args.password_stdin:
        password = read_password(True)
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for a password: use --password-stdin")
        password = getpass.getpass("Password: ")
    login: dict[str, object] = {"user": user, "password": password, "device_name": name}
    if default:
        login["device_name_default"] = True  # the server makes it unique: HOST-2, ...
    if dev:
        login["device_id"] = dev
    status, payload = http.request("POST", "/v1/auth/login", login)
    if status != 200:
        _raise_login_error(status, payload)
    answer: dict[str, Any] = dict(payload)
    answer["user"] = user
    return answer


def _raise_login_error(status: int, payload: Any) -> NoReturn:
    device_login.raise_login_error(status, payload)


def device_code_login(
    http: HttpClient,
    dev: str | None,
    name: str,
    sleep: Callable[[float], None] = time.sleep,
    *,
    default: bool = False,
) -> dict[str, Any]:
    """RFC 8628: get a code, show it, poll at the announced interval until approved."""
    code = device_login.start(http, dev, name, default=default)
    print(f"Your code: {code.user_code}", flush=True)
    print(device_login.instructions(code), flush=True)
    print(
        f"Waiting for approval (the code expires in {code.expires_in_s // 60} min)...",
        flush=True,
    )
    interval = code.interval_s
    while True:
        sleep(interval)
        answer = device_login.poll(http, code, interval)
        if answer.tokens is not None:
            return answer.tokens
        interval = answer.interval_s


def _logout(args: argparse.Namespace, config_dir: object) -> int:
    from pathlib import Path

    cdir = Path(str(config_dir))
    config = load_config(cdir)
    store = open_store(cdir, os.environ, getattr(args, "server", None) or config.server)
    creds = store.load()
    if creds is None:
        print("not logged in")
        return 0
    http = HttpClient(creds.server, ca_file=config.ca_file)
    try:
        http.request("POST", "/v1/auth/logout", None, creds.access_token)
    except ServerUnreachable:
        print("tunehand: the server is unreachable; forgetting the tokens here", file=sys.stderr)
    finally:
        http.close()
    store.delete()
    print("logged out")
    return 0


def _status(args: argparse.Namespace, config_dir: object) -> int:
    from pathlib import Path

    cdir = Path(str(config_dir))
    config = load_config(cdir)
    store = open_store(cdir, os.environ, getattr(args, "server", None) or config.server)
    creds = store.load()
    if creds is None:
        if getattr(store, "missing", None):
            print(not_logged_in(store, getattr(args, "server", None) or config.server or "URL"))
        else:
            print(f"not logged in (tokens would go to {store.location})")
        return 3
    print(f"logged in to {creds.server} as {creds.user or '?'}; token in {store.location}")
    return 0
