"""`dispatcher campaign create`: read the template and the list, check every option before
anything is stored (the same checks as `send`), then import; and the template lint both
`create` and `lint` run."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from pathlib import Path

from dispatcher import app
from dispatcher.campaigns.lint import format_findings, has_errors, lint_html
from dispatcher.campaigns.recipients import iter_recipients
from dispatcher.campaigns.render import CampaignContent, CompiledCampaign
from dispatcher.campaigns.store import CampaignSpec
from dispatcher.campaigns.unsubscribe import default_unsubscribe_url
from dispatcher.campaigns.windows import check_zones, parse_window, zone
from dispatcher.cli.progress import counted
from dispatcher.config import Config
from dispatcher.domain.validate import (
    CAMPAIGN_RESERVED_TAGS,
    check_list_management,
    check_one_line,
    validate_envelope,
)
from dispatcher.domain.wire import parse_send_after
from dispatcher.errors import InputError

MAX_TEMPLATE_BYTES = 10 * 1024 * 1024  # SES's v1 message limit; a template cannot be bigger


def read_template(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise InputError(
            f"{path} is {len(data) / 1e6:.1f} MB; SES accepts messages up to 10 MB: "
            "host images and large content elsewhere and link them"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def _columns(path: Path) -> list[str]:
    """The CSV header, to check the template's variables before importing anything."""
    try:
        with path.open("rb") as raw:
            head = raw.readline(1 << 20)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: line 1 is not UTF-8; save the file as UTF-8") from None
    row = next(csv.reader(io.StringIO(text)), [])
    return [c.strip() for c in row]


# The link SES puts in a body sent with ListManagementOptions (its subscription page).
SES_UNSUBSCRIBE_VARIABLE = "amazonSESUnsubscribeUrl"
_SES_VARIABLE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")


def _check_ses_variables(
    templates: tuple[str, ...],
    columns: list[str],
    *,
    has_unsubscribe: bool = False,
    ses_lists: bool = False,
) -> None:
    """SES template syntax: every {{name}} must be a column of the list (or `email`, or
    `unsubscribe_url` when the campaign has one: the sender puts it in the template data, or
    SES's own unsubscribe link with list management)."""
    have = {c.lower() for c in columns} | {"email"}
    if has_unsubscribe:
        have.add("unsubscribe_url")
    if ses_lists:
        have.add(SES_UNSUBSCRIBE_VARIABLE)
    missing = sorted({m.group(1) for t in templates for m in _SES_VARIABLE.finditer(t)} - have)
    if missing:
        raise InputError(
            f"the template uses {', '.join('{{' + m + '}}' for m in missing)} but the list has "
            f"no such column(s); columns: {', '.join(columns)}"
        )


def parse_tags(items: list[str]) -> dict[str, str]:
    """`--tag NAME=VALUE` options as a mapping (the validator checks names and values)."""
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--tag {item!r}: use NAME=VALUE")
        tags[key] = value
    return tags


def lint_templates(
    html: str, text: str | None, unsubscribe_url: str | None, *, ses_lists: bool = False
) -> bool:
    # With list management SES writes the List-Unsubscribe headers.
    findings = lint_html(html, text=text, has_unsubscribe=bool(unsubscribe_url) or ses_lists)
    if findings:
        print(format_findings(findings), file=sys.stderr)
    return has_errors(findings)


def note_inlining(compiled: CompiledCampaign) -> None:
    """Say when the CSS cannot be inlined once for the campaign: each copy then costs more."""
    if compiled.inlined_per_recipient is not None:
        print(
            "note: the CSS will be inlined in each recipient's copy, not once for the campaign, "
            f"because {compiled.inlined_per_recipient} (about twice the CPU per recipient; "
            "README: 'inlined once')",
            file=sys.stderr,
        )


# What str.splitlines() breaks on, plus NUL: the subject and the unsubscribe URL end up in
# mail headers, where a rendered line break fails every recipient at send time.
_LINE_BREAK = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _one_line(flag: str, value: str | None) -> None:
    """Refuse a header template with a line break now, not once per recipient when sending."""
    if value is not None and _LINE_BREAK.search(value):
        raise InputError(
            f"{flag} {value!r} contains a line break; it becomes a mail header, which cannot "
            "hold one: write it on one line"
        )


async def create_command(args: argparse.Namespace, cfg: Config) -> int:
    # The same checks as `send`, before anything is read: a bad sender would fail every recipient.
    tags = parse_tags(args.tag)
    validate_envelope(
        args.from_addr,
        tuple(args.reply_to),
        args.configuration_set,
        tags,
        args.priority,
        reserved_tags=CAMPAIGN_RESERVED_TAGS,
    )
    _one_line("--subject", args.subject)
    check_one_line("--subject", args.subject)
    _one_line("--unsubscribe-url", args.unsubscribe_url)
    listed = check_list_management(args.contact_list, args.topic)
    if listed is not None and args.unsubscribe_url is not None:
        # Two List-Unsubscribe headers, each with its own list: a mailbox provider may honour
        # either, and an unsubscribe recorded by one is unknown to the other.
        raise InputError(
            "--contact-list and --unsubscribe-url both write List-Unsubscribe headers; with "
            "--contact-list SES adds its own: drop --unsubscribe-url (link "
            "{{amazonSESUnsubscribeUrl}} in the body instead)"
        )
    unsubscribe_url = args.unsubscribe_url
    if unsubscribe_url is None and cfg.feedback.public_url is not None and listed is None:
        unsubscribe_url = default_unsubscribe_url(cfg.feedback.public_url)
    html = read_template(args.template)
    text = read_template(args.text_template) if args.text_template else None
    columns = _columns(args.recipients)
    _check_window(args, columns)
    if args.ses_template:
        _check_ses_variables(
            (args.subject, html, text or ""),
            columns,
            has_unsubscribe=unsubscribe_url is not None,
            ses_lists=listed is not None,
        )
    else:
        compiled = CompiledCampaign(CampaignContent(args.subject, html, text, unsubscribe_url))
        compiled.check_variables(columns)
        for warning in compiled.shadowed_columns(columns):
            print(f"warning: {args.recipients}: {warning}", file=sys.stderr)
        note_inlining(compiled)
    if lint_templates(html, text, unsubscribe_url, ses_lists=listed is not None) and not args.force:
        raise InputError(
            "the template has errors (above); fix them, or pass --force to create anyway"
        )
    spec = CampaignSpec(
        name=args.name,
        from_addr=args.from_addr,
        subject=args.subject,
        html=html,
        text=text,
        reply_to=tuple(args.reply_to),
        configuration_set=args.configuration_set,
        tags=tags,
        unsubscribe_url=unsubscribe_url,
        send_at=parse_send_after(args.send_at) if args.send_at else None,
        priority=args.priority,
        mode="ses_template" if args.ses_template else "render",
        send_window=args.window.strip() if args.window else None,
        timezone=args.timezone,
        timezone_column=args.timezone_column,
        contact_list=args.contact_list,
        topic=args.topic,
    )
    began = time.monotonic()
    try:
        stream = args.recipients.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {args.recipients}: {exc.strerror}") from None
    with stream:
        async with app.open_stores(cfg) as stores:
            rows = iter_recipients(stream, source=str(args.recipients))
            if args.timezone_column:  # a bad zone name is a bad row, reported like the others
                rows = check_zones(rows, args.timezone_column)
            result = await stores.campaigns.create(
                spec, counted(rows, "importing"), strict=args.strict
            )
    elapsed = time.monotonic() - began
    if args.json:
        print(
            json.dumps(
                {
                    "id": result.id,
                    "imported": result.imported,
                    "rejected": [
                        {"line": r.line, "email": r.email, "reason": r.reason}
                        for r in result.rejected
                    ],
                }
            )
        )
        return 0
    for r in result.rejected[:50]:
        print(f"{args.recipients}: line {r.line}: {r.email}: {r.reason}", file=sys.stderr)
    if len(result.rejected) > 50:
        print(f"... and {len(result.rejected) - 50} more (use --json)", file=sys.stderr)
    print(result.id)
    print(
        f"campaign {result.id} created: {result.imported} recipients imported in {elapsed:.1f} s, "
        f"{len(result.rejected)} skipped ({result.duplicates} duplicate(s), "
        f"{result.suppressed} suppressed); start it with `dispatcher campaign start {result.id}`",
        file=sys.stderr,
    )
    return 0


def _check_window(args: argparse.Namespace, columns: list[str]) -> None:
    """--window and its zone options make sense together; InputError saying what to fix."""
    if args.window is None:
        for flag, value in (
            ("--timezone", args.timezone),
            ("--timezone-column", args.timezone_column),
        ):
            if value is not None:
                raise InputError(f"{flag} needs --window (e.g. --window 'Mon-Fri 09:00-18:00')")
        return
    parse_window(args.window)
    if args.timezone is not None:
        zone(args.timezone)
    if args.timezone_column is not None and args.timezone_column not in columns:
        raise InputError(
            f"--timezone-column {args.timezone_column!r} is not a column of {args.recipients} "
            f"(its columns: {', '.join(columns)})"
        )
