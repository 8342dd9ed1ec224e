"""`dispatcher prune [--dry-run]`: remove the finished mail `[retention]` says is due, now."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dispatcher import app
from dispatcher.cli.commands import with_stores
from dispatcher.cli.progress import bar, on_terminal
from dispatcher.config import Config
from dispatcher.errors import DispatcherError
from dispatcher.retention import Pruner


def add_parser(sub: Any) -> None:
    prune = sub.add_parser(
        "prune",
        help="remove finished mail past [retention]: its content, then its rows (as the "
        "daemon does every retention.interval seconds)",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count what would be removed; change nothing"
    )
    prune.add_argument("--json", action="store_true", help="machine-readable output")
    prune.set_defaults(func=with_stores(cmd_prune))


async def cmd_prune(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    pruner = Pruner(stores.queue.pool, cfg.retention)
    with bar("pruning", unit="row") as progress:

        def planned(total: int) -> None:
            progress.total = total
            progress.refresh()

        # The count behind the bar's total costs a scan: only made when a person sees the bar.
        report = await pruner.run(
            dry_run=args.dry_run,
            progress=progress.update,
            planned=planned if on_terminal() and not args.dry_run else None,
        )
    if report is None:
        raise DispatcherError(
            "another process is pruning right now (it holds the pruner's lock); try again "
            "when it is done"
        )
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines()))
    return 0
