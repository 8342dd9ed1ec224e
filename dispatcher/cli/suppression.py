"""`dispatcher suppression ...`: the addresses never to be mailed again (add, remove, list,
import, export, and sync from the SES account-level list). Bounces and complaints add to it on
their own (dispatcher.feedback)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dispatcher import app
from dispatcher.cli.argtypes import positive_int
from dispatcher.cli.commands import with_stores
from dispatcher.cli.output import SafeWriter, open_output, unescape_cell
from dispatcher.cli.progress import counted
from dispatcher.config import Config
from dispatcher.errors import DispatcherError, InputError
from dispatcher.ses.adapter import SesAdapter
from dispatcher.ses.errors import SesError

if TYPE_CHECKING:
    pass

MANUAL_REASON = "added by operator"
SES_LIST_REASON = "on the SES account suppression list"
_HEADER_NAMES = ("address", "email", "emailaddress", "email_address")


def add_parser(sub: Any) -> None:
    sup = sub.add_parser(
        "suppression", help="the suppression list: add, remove, list, import, export, sync"
    )
    ssub = sup.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = ssub.add_parser("add", help="never mail these addresses again")
    add.add_argument("addresses", nargs="+", metavar="ADDRESS")
    add.add_argument("--reason", default=MANUAL_REASON)
    add.set_defaults(func=with_stores(_add))

    remove = ssub.add_parser("remove", help="allow mail to these addresses again")
    remove.add_argument("addresses", nargs="+", metavar="ADDRESS")
    remove.set_defaults(func=with_stores(_remove))

    lst = ssub.add_parser("list", help="suppressed addresses (all, or the ones given)")
    lst.add_argument("addresses", nargs="*", metavar="ADDRESS")
    lst.add_argument("--limit", type=positive_int, default=None, help="at most this many")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=with_stores(_list))

    imp = ssub.add_parser(
        "import", help="add addresses from a CSV (address[,reason]; header optional; - = stdin)"
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--reason", default="imported", help="for rows without a reason")
    imp.set_defaults(func=with_stores(_import))

    exp = ssub.add_parser("export", help="write the list as CSV (address,reason,created_at)")
    exp.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdout")
    exp.set_defaults(func=with_stores(_export))

    sync_ = ssub.add_parser(
        "sync",
        help="add the SES account-level suppression list (ListSuppressedDestinations) to ours",
    )
    sync_.set_defaults(func=_sync)


def read_rows(stream: TextIO, default_reason: str) -> Iterator[tuple[str, str]]:
    """(address, reason) per CSV row; a first row naming the columns is skipped; blank rows and
    `#` comments too. InputError names the line of a row with no address. A cell our own
    export escaped against formula injection (`'=x@example.com`) is read as it was."""
    reader = csv.reader(stream)
    for row in reader:
        cells = [unescape_cell(c.strip()) for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if reader.line_num == 1 and cells[0].lower().replace(" ", "") in _HEADER_NAMES:
            continue
        if not cells[0]:
            raise InputError(f"line {reader.line_num}: no address in the first column")
        reason = cells[1] if len(cells) > 1 and cells[1] else default_reason
        yield cells[0], reason


def _read_in(name: str) -> TextIO:
    """The whole file (`-`: stdin) as text; InputError names the first line that is not UTF-8."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{name}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    return io.StringIO(text, newline="")


async def _add(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    added = await stores.feedback.suppress(args.addresses, args.reason)
    already = len({a.strip().lower() for a in args.addresses}) - len(added)
    print(f"{len(added)} added" + (f", {already} already suppressed" if already else ""))
    return 0


async def _remove(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    removed = await stores.feedback.unsuppress(args.addresses)
    missing = len({a.strip().lower() for a in args.addresses}) - len(removed)
    print(f"{len(removed)} removed" + (f", {missing} were not suppressed" if missing else ""))
    return 0


async def _list(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    store = stores.feedback
    if args.addresses:
        found = await store.lookup(args.addresses)
        rows = [found[k] for k in sorted(found)]
    else:
        rows = []
        async for s in store.iter_suppressions():
            if args.limit is not None and len(rows) >= args.limit:
                break
            rows.append(s)
    for s in rows:
        if args.json:
            item = {"address": s.address, "reason": s.reason}
            print(json.dumps({**item, "created_at": s.created_at.isoformat()}))
        else:
            print(f"{s.address}\t{s.reason}\t{s.created_at:%Y-%m-%d %H:%M:%S%z}")
    # Asked about specific addresses: exit 1 if any of them is not suppressed.
    wanted = {a.strip().lower() for a in args.addresses}
    if len(rows) < len(wanted):
        print(f"{len(wanted) - len(rows)} of them not suppressed", file=sys.stderr)
        return 1
    return 0


async def _import(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    stream = _read_in(args.file)
    try:
        rows = counted(read_rows(stream, args.reason), "importing")
        added = await stores.feedback.import_suppressions(rows)
    except csv.Error as exc:
        raise InputError(f"{args.file}: not a CSV file: {exc}") from None
    print(f"{len(added)} added")
    return 0


async def _export(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    n = 0
    with open_output(args.file) as out:
        writer = SafeWriter(out)
        writer.writerow(["address", "reason", "created_at"])
        async for s in stores.feedback.iter_suppressions():
            writer.writerow([s.address, s.reason, s.created_at.isoformat()])
            n += 1
    if args.file != "-":
        print(f"{n} addresses written to {args.file}", file=sys.stderr)
    return 0


async def _sync(args: argparse.Namespace, cfg: Config) -> int:
    return await sync(cfg)


async def sync(cfg: Config, page_size: int = 1000) -> int:
    """Pull SES's account-level suppression list into ours (one way: SES adds our bounces and
    complaints to its own list by itself, when account-level suppression is on)."""
    rows: list[tuple[str, str]] = []
    try:
        async with SesAdapter.open(cfg.ses) as ses:
            async for address, reason in ses.list_suppressed(page_size):
                rows.append((address, f"{SES_LIST_REASON}: {reason.lower()}"))
    except SesError as exc:
        said = " ".join(str(exc).split())  # one line, even when the endpoint answered a page
        said = said if len(said) <= 300 else said[:297] + "..."
        raise DispatcherError(
            f"could not read the SES account-level suppression list: {said} (it needs "
            "ses:ListSuppressedDestinations, and account-level suppression turned on)"
        ) from None
    async with app.open_stores(cfg) as stores:
        added = await stores.feedback.import_suppressions(rows)
    already = len({a.lower() for a, _ in rows}) - len(added)
    print(
        f"{len(added)} added from the SES account-level suppression list"
        + (f", {already} already suppressed" if already else "")
    )
    return 0
