"""`tunehand admin`: users and the library, on the server's own data dir or database.

Works while the server runs (SQLite in WAL mode, or PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from tunehand.cli.password import read_password
from tunehand.cli.serverside import settings_from
from tunehand.errors import NotFound, TunehandError, UsageError
from tunehand.server import auth, security
from tunehand.server.app import open_database
from tunehand.server.clock import now_ms
from tunehand.server.db import accounts as qa
from tunehand.server.library.service import Library


def run_admin(args: argparse.Namespace) -> int:
    action = args.admin_command
    if action is None:
        raise UsageError("admin needs an action: add-user, list-users, remove-user, rescan")
    if action == "demo-library":
        from tunehand.demo import make_demo_library

        make_demo_library(Path(args.dir), tracks=args.tracks, log=print)
        return 0
    return asyncio.run(_run(args, action))


async def _run(args: argparse.Namespace, action: str) -> int:
    settings = settings_from(args)
    if action == "add-user":
        name = auth.check_name(args.name)
        password = read_password(args.password_stdin)
        pw_hash = await auth.hash_password(password)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if action in ("add-user", "remove-user"):
        security.to_file(settings.data_dir)
    engine = await open_database(settings)
    try:
        if action == "add-user":
            try:
                async with engine.begin() as conn:
                    await qa.create_account(conn, name, pw_hash, now_ms())
            except IntegrityError:
                raise TunehandError(f"user {name!r} already exists") from None
            security.event(security.USER_ADDED, user=name, by="admin")
            print(f"added user {name}")
        elif action == "list-users":
            async with engine.connect() as conn:
                users = await qa.list_accounts(conn)
            if args.json:
                print(json.dumps([{"id": u.id, "name": u.name} for u in users]))
            else:
                print("\n".join(u.name for u in users) or "no users")
        elif action == "remove-user":
            async with engine.begin() as conn:
                account = await qa.account_by_name(conn, args.name)
                if account is None:
                    raise NotFound(f"no user {args.name!r}")
                await qa.delete_account(conn, account.id)
            security.event(security.USER_REMOVED, user=args.name, by="admin")
            print(f"removed user {args.name} and all their data")
        elif action == "rescan":
            if not settings.music:
                raise UsageError(
                    "no music folders known: pass --music DIR (or start serve with it)"
                )
            logging.basicConfig(level=logging.WARNING, format="%(message)s")
            lib = Library(engine, settings.music, lambda line: print(line, file=sys.stderr))
            s = await lib.rescan()
            print(
                f"library: {s.tracks} tracks ({s.changed} new or changed, "
                f"{s.removed} removed, {s.skipped} skipped)"
            )
    finally:
        await engine.dispose()
    return 0
