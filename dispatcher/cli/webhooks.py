"""`dispatcher webhooks`: each webhook endpoint's backlog (events not delivered yet), the oldest
of them and the last error, as the database has them (every daemon's endpoints)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from dispatcher import app
from dispatcher.cli.commands import with_stores
from dispatcher.config import Config
from dispatcher.webhooks.settings import shown_url
from dispatcher.webhooks.store import WebhookStore


def add_parser(sub: Any) -> None:
    hooks = sub.add_parser("webhooks", help="webhook endpoints: backlog, oldest waiting event")
    hooks.add_argument("--json", action="store_true", help="machine-readable output")
    hooks.set_defaults(func=with_stores(cmd_webhooks))


async def cmd_webhooks(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    endpoints = await WebhookStore(stores.queue.pool).status()
    now = datetime.now(UTC)
    rows = [
        {
            "url": shown_url(e.url),
            "events": list(e.events),
            "subscribed": bool(e.events),
            "backlog": e.backlog,
            "oldest_pending": e.oldest_pending.isoformat() if e.oldest_pending else None,
            "oldest_pending_seconds": (
                round((now - e.oldest_pending).total_seconds(), 1) if e.oldest_pending else None
            ),
            "delivered": e.delivered,
            "given_up": e.given_up,
            "last_error": e.last_error,
        }
        for e in endpoints
    ]
    if args.json:
        print(json.dumps({"endpoints": rows, "backlog": sum(r["backlog"] for r in rows)}))
        return 0
    if not rows:
        print("no webhook endpoints (add [[webhooks]] to the config and start the daemon)")
        return 0
    for r in rows:
        state = "" if r["subscribed"] else " (no longer configured: gets no new events)"
        oldest = (
            f", oldest waiting {r['oldest_pending_seconds']:.0f} s"
            if r["oldest_pending_seconds"] is not None
            else ""
        )
        print(
            f"{r['url']}{state}\n  backlog {r['backlog']}{oldest}; delivered {r['delivered']}, "
            f"given up {r['given_up']} (last 7 days)"
        )
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
    return 0
