"""`dispatcher keys ...`: the keys applications use at the doors (create, list, revoke)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dispatcher import app
from dispatcher.cli.commands import with_stores
from dispatcher.config import Config
from dispatcher.doors.keys import ApiKey, KeyStore, MasterKey, master_key_path
from dispatcher.errors import InputError


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="keys for the SMTP, HTTP and SES-compatible doors")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = ksub.add_parser("create", help="make a key; prints its id and secret once")
    create.add_argument("name", metavar="NAME", help="what the key is for, e.g. shop-web")
    create.add_argument(
        "--from",
        dest="senders",
        action="append",
        default=[],
        metavar="PATTERN",
        help="senders the key may use: '*@shop.example', 'news@shop.example' or a domain "
        "(repeatable; default: any)",
    )
    create.add_argument(
        "--max-priority",
        type=int,
        default=None,
        metavar="N",
        help="highest priority the key may queue at (default: any)",
    )
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=with_stores(_create))

    lst = ksub.add_parser("list", help="every key (never its secret)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=with_stores(_list))

    revoke = ksub.add_parser("revoke", help="revoke a key at once, for every door")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(func=with_stores(_revoke))


def master_key(cfg: Config, *, create: bool) -> MasterKey:
    """The master key this configuration names (made on first use when `create`)."""
    path = master_key_path(cfg.keys.master_file, cfg.database.data_dir)
    return MasterKey.load(path, create=create)


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "senders": list(key.senders),
        "max_priority": key.max_priority,
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


async def _create(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    master = master_key(cfg, create=True)
    key, secret = await KeyStore(stores.queue.pool).create(
        master, args.name, senders=args.senders, max_priority=args.max_priority
    )
    if args.json:
        print(json.dumps({**_key_json(key), "secret": secret}))
        return 0
    print(f"id:     {key.id}")
    print(f"secret: {secret}")
    print("The secret is shown only now; store it where the application reads it.")
    print(f"SMTP: user {key.id}, password the secret. HTTP: curl -u {key.id}:SECRET ...")
    return 0


async def _list(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    keys = await KeyStore(stores.queue.pool).list()
    if args.json:
        for key in keys:
            print(json.dumps(_key_json(key)))
        return 0
    if not keys:
        print("no keys; make one with `dispatcher keys create NAME`")
        return 0
    print(f"{'ID':<22}{'NAME':<24}{'STATE':<10}{'MAX PRIO':<10}SENDERS")
    for key in keys:
        state = "active" if key.active else "revoked"
        prio = "-" if key.max_priority is None else str(key.max_priority)
        senders = ", ".join(key.senders) or "any"
        print(f"{key.id:<22}{key.name[:23]:<24}{state:<10}{prio:<10}{senders}")
    return 0


async def _revoke(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    key = await KeyStore(stores.queue.pool).revoke(args.key_id)
    if key is None:
        raise InputError(f"no key {args.key_id!r}; `dispatcher keys list` shows the ids")
    print(f"revoked {key.id} ({key.name})")
    return 0
