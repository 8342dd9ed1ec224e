"""`dispatcher campaign ...`: create, check, run and report bulk campaigns."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from dispatcher import app
from dispatcher.campaigns.render import CampaignContent, CompiledCampaign
from dispatcher.campaigns.store import CampaignStatus, CampaignStore
from dispatcher.cli.argtypes import row_id
from dispatcher.cli.campaign_create import (
    create_command,
    lint_templates,
    note_inlining,
    read_template,
)
from dispatcher.cli.commands import with_stores
from dispatcher.cli.output import SafeWriter, open_output
from dispatcher.config import Config
from dispatcher.errors import InputError
from dispatcher.feedback.guard import reputation_lines, reputation_view
from dispatcher.feedback.watch import campaign_thresholds


def add_parser(sub: Any) -> None:
    camp = sub.add_parser("campaign", help="bulk campaigns: create, start, watch, report")
    csub = camp.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = csub.add_parser("create", help="import a recipient list and a template")
    create.add_argument("--name", required=True)
    create.add_argument("--from", dest="from_addr", required=True, metavar="ADDRESS")
    create.add_argument("--subject", required=True, help="a template too: {{ first_name }}")
    create.add_argument("--template", required=True, type=Path, help="HTML template (Jinja2)")
    create.add_argument("--recipients", required=True, type=Path, help="CSV with an email column")
    create.add_argument("--text-template", type=Path, help="text part (default: from the HTML)")
    create.add_argument("--reply-to", action="append", default=[], metavar="ADDRESS")
    create.add_argument("--configuration-set", metavar="NAME")
    create.add_argument("--tag", action="append", default=[], metavar="K=V")
    create.add_argument("--send-at", metavar="TIME", help="ISO 8601 with timezone")
    create.add_argument(
        "--unsubscribe-url",
        metavar="TEMPLATE",
        help="List-Unsubscribe URL, e.g. https://x.example/u?e={{ email|urlencode }} (default: "
        "the daemon's own one-click receiver, when feedback.public_url is set)",
    )
    create.add_argument("--priority", type=int, default=-10, help="transactional mail is 0")
    create.add_argument(
        "--ses-template",
        action="store_true",
        help="send with SendBulkEmail (50 recipients a call) from an SES template: the subject "
        "and templates are then SES syntax ({{name}}), rendered by SES",
    )
    create.add_argument(
        "--window",
        metavar="DAYS HH:MM-HH:MM",
        help="send only then, e.g. 'Mon-Fri 09:00-18:00' (others wait for it, none blocked)",
    )
    create.add_argument("--timezone", metavar="ZONE", help="of --window, e.g. Europe/Berlin (UTC)")
    create.add_argument(
        "--timezone-column",
        metavar="COLUMN",
        help="each recipient's own zone for --window, from this CSV column (empty: --timezone)",
    )
    create.add_argument(
        "--contact-list",
        metavar="NAME",
        help="an SES contact list (SES v2 list management): SES adds its own unsubscribe "
        "headers and skips contacts who unsubscribed; replaces --unsubscribe-url",
    )
    create.add_argument("--topic", metavar="NAME", help="a topic of --contact-list")
    create.add_argument("--strict", action="store_true", help="one bad row rejects the file")
    create.add_argument("--force", action="store_true", help="create despite lint errors")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=create_command)

    lint = csub.add_parser("lint", help="check a template for what mail clients break")
    lint.add_argument("file", type=Path)
    lint.add_argument("--text-template", type=Path)
    lint.add_argument("--unsubscribe-url", metavar="TEMPLATE")
    lint.set_defaults(func=_lint_command)

    for name, text, action in (
        ("start", "start sending a draft campaign", _start),
        ("pause", "pause a running campaign (takes effect at once in every daemon)", _pause),
        ("resume", "resume a paused campaign where it stopped", _resume),
        ("cancel", "cancel what is not sent yet", _cancel),
        ("retry-failed", "requeue recipients that failed for a retryable reason", _retry_failed),
    ):
        p = csub.add_parser(name, help=text)
        p.add_argument("id", type=row_id)
        p.set_defaults(func=with_stores(action))
        if name == "resume":
            p.add_argument(
                "--force", action="store_true", help="also after a pause by a safety check"
            )

    status = csub.add_parser("status", help="progress and counts by state")
    status.add_argument("id", type=row_id)
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", action="store_true", help="live progress until it is done")
    status.set_defaults(func=with_stores(_status))

    report = csub.add_parser("report", help="totals, and a per-recipient CSV")
    report.add_argument("id", type=row_id)
    report.add_argument("--csv", type=Path, help="where to write it (default campaign-ID.csv)")
    report.set_defaults(func=with_stores(_report_command))

    lst = csub.add_parser("list", help="all campaigns")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=with_stores(_list))


async def _lint_command(args: argparse.Namespace, cfg: Config) -> int:
    html = read_template(args.file)
    text = read_template(args.text_template) if args.text_template else None
    compiled = CompiledCampaign(CampaignContent("", html, text, args.unsubscribe_url))
    bad = lint_templates(html, text, args.unsubscribe_url)
    note_inlining(compiled)
    if not bad:
        print(f"{args.file}: no errors")
    return 1 if bad else 0


async def _start(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    c = await stores.campaigns.start(args.id)
    when = f" (from {c.send_at:%Y-%m-%d %H:%M %Z})" if c.send_at else ""
    print(f"campaign {c.id} running{when}: {c.recipients} recipients")
    return 0


async def _resume(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    store = stores.campaigns
    current = await store.get(args.id)
    if current.state != "paused":
        raise InputError(f"campaign {args.id} is {current.state}, not paused")
    if current.pause_reason and current.pause_reason.startswith("guard:") and not args.force:
        raise InputError(
            f"campaign {args.id} was paused by the reputation guard "
            f"({current.pause_reason}); resume with --force once you have checked it"
        )
    await store.start(args.id)
    print(f"campaign {args.id} resumed")
    return 0


async def _pause(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    store = stores.campaigns
    if not await store.pause(args.id):
        current = await store.get(args.id)
        raise InputError(f"campaign {args.id} is {current.state}, not running")
    print(f"campaign {args.id} paused")
    return 0


async def _cancel(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    n = await stores.campaigns.cancel(args.id)
    print(f"campaign {args.id} cancelled: {n} unsent message(s) cancelled")
    return 0


async def _retry_failed(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    n = await stores.campaigns.retry_failed(args.id)
    print(f"campaign {args.id}: {n} failed recipient(s) queued again")
    return 0


async def _status(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    store = stores.campaigns
    if args.watch:
        return await _watch(store, args.id)
    st = await store.status(args.id)
    fb = (await stores.feedback.campaign_counts(args.id))[args.id]
    reputation = reputation_view(fb.counts, campaign_thresholds(cfg.guard))
    feedback = {
        "delivered": fb.delivered,
        "bounced": fb.bounced_any,
        "complained": fb.counts.complained,
        "reputation": reputation,
    }
    if args.json:
        print(json.dumps({**st.to_json(), "feedback": feedback}, indent=2))
    else:
        _print_status(st)
        print(
            f"  feedback   delivered {fb.delivered}, bounced {fb.bounced_any} "
            f"({fb.counts.bounced} hard), complained {fb.counts.complained}"
        )
        print("\n".join(reputation_lines(reputation)))
    return 0


async def _list(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    rows = await stores.campaigns.list()
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        for r in rows:
            c = r.campaign
            print(f"{c.id:>6}  {c.state:<9} {r.counts['sent']:>8}/{c.recipients:<8} {c.name}")
    return 0


async def _report_command(args: argparse.Namespace, cfg: Config, stores: app.Stores) -> int:
    return await _report(stores.campaigns, args.id, args.csv)


def _print_status(st: CampaignStatus) -> None:
    c = st.campaign
    total = max(c.recipients, 1)
    print(f"campaign {c.id} {c.name!r}: {c.state}")
    if c.pause_reason:
        print(f"  paused because: {c.pause_reason}")
    if c.contact_list:
        topic = f", topic {c.topic}" if c.topic else ""
        print(f"  SES contact list {c.contact_list}{topic}")
    print(f"  progress   {st.done}/{c.recipients} ({st.done / total:.1%})")
    for state, n in st.counts.items():
        if n:
            print(f"  {state:<10} {n:>9}")
    if st.waiting_for_window:
        print(f"  waiting for their send window ({c.send_window}): {st.waiting_for_window}")
    if st.failures:
        kinds = ", ".join(f"{k} {n}" for k, n in st.failures.items())
        print(f"  failed or in doubt by kind: {kinds}")


async def _watch(store: CampaignStore, campaign_id: int) -> int:
    """A live progress bar: sent / total, rate, ETA, failures by kind; ends when done."""
    tty = sys.stdout.isatty()
    last: tuple[float, int] | None = None
    rate = 0.0
    while True:
        st = await store.status(campaign_id)
        c = st.campaign
        now = time.monotonic()
        sent = st.counts["sent"]
        if last is not None and now > last[0]:
            rate = 0.7 * rate + 0.3 * (sent - last[1]) / (now - last[0])
        last = (now, sent)
        remaining = c.recipients - st.done
        eta = f"{remaining / rate:,.0f} s" if rate > 0 and remaining else "-"
        width = 30
        filled = int(width * st.done / c.recipients) if c.recipients else width
        fails = " ".join(f"{k}={n}" for k, n in st.failures.items()) or "none"
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {sent}/{c.recipients} sent  "
            f"{rate:6.1f}/s  ETA {eta}  failures: {fails}  ({c.state})"
        )
        print(("\r" if tty else "") + line, end="" if tty else "\n", flush=True)
        if c.state in ("finished", "cancelled") or (c.state == "paused" and not tty):
            if tty:
                print()
            return 0
        await asyncio.sleep(1.0)


async def _report(store: CampaignStore, campaign_id: int, path: Path | None) -> int:
    target = path or Path(f"campaign-{campaign_id}.csv")
    await store.get(campaign_id)  # an unknown id: an error, and no empty CSV left behind
    totals: dict[str, int] = {}
    in_doubt: list[str] = []
    with open_output(target) as out:
        writer = SafeWriter(out)
        writer.writerow(
            ["address", "state", "ses_message_id", "outcome", "reason", "attempts",
             "queued_at", "sent_at", "updated_at"]
        )  # fmt: skip
        async for row in store.report_rows(campaign_id):
            totals[row["state"]] = totals.get(row["state"], 0) + 1
            if row["state"] == "unknown":
                in_doubt.append(row["address"])
            writer.writerow(
                [
                    row["address"],
                    row["state"],
                    row["ses_message_id"] or "",
                    row["last_outcome"] or "",
                    row["last_error"] or "",
                    row["attempts"],
                    row["created_at"].isoformat(),
                    row["sent_at"].isoformat() if row["sent_at"] else "",
                    row["updated_at"].isoformat(),
                ]
            )
    st = await store.status(campaign_id)
    for state, n in st.pruned.items():  # removed by retention: counted, no longer in the CSV
        totals[state] = totals.get(state, 0) + n
    print(f"campaign {campaign_id} {st.campaign.name!r}: {st.campaign.state}")
    for state, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {state:<10} {n:>9}")
    for kind, n in st.failures.items():
        print(f"  failure kind {kind}: {n}")
    if in_doubt:
        print(f"  in doubt (may or may not have been sent): {len(in_doubt)}")
        for address in in_doubt[:20]:
            print(f"    {address}")
        if len(in_doubt) > 20:
            print(f"    ... and {len(in_doubt) - 20} more (state unknown in the CSV)")
    if st.pruned:
        print(
            f"  {sum(st.pruned.values())} of them are counted above but not in the CSV: their "
            "rows were removed under [retention]"
        )
    print(f"per-recipient report: {target}")
    return 0
