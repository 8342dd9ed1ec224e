"""`dispatcher doctor [--domain D] [--json] [--nameserver HOST[:PORT]]`: the pre-flight of a new or
changed set-up. Exit 0 when nothing fails (warnings allowed), 1 when a check fails, 2 for bad
arguments."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, replace
from typing import Any

from dispatcher.accounts.settings import effective_accounts
from dispatcher.config import Config
from dispatcher.doctor.checks import evaluate
from dispatcher.doctor.draft import production_access_draft
from dispatcher.doctor.facts import Check, Facts, worst
from dispatcher.doctor.gather import gather
from dispatcher.doctor.settings import parse_nameservers
from dispatcher.errors import ConfigError, DispatcherError

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def domain_argument(text: str) -> str:
    """A domain name as SES and DNS spell it: lower-case, IDNA, at least two labels."""
    name = text.strip().rstrip(".").lower()
    if "@" in name:
        raise argparse.ArgumentTypeError(
            f"{text!r} is an address; give its domain ({name.rpartition('@')[2]})"
        )
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        name = ""
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise argparse.ArgumentTypeError(f"{text!r} is not a domain name (e.g. example.com)")
    return name


def nameserver_argument(text: str) -> str:
    """HOST[:PORT], checked now so a typo is a usage error."""
    try:
        if not parse_nameservers(text):
            raise ConfigError("--nameserver needs HOST[:PORT], e.g. 127.0.0.1:5353")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--nameserver ")) from None
    return text


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="pre-flight: the SES account, identities, DKIM/MAIL FROM/DMARC records, "
        "configuration set, feedback and guard, each with the fix",
    )
    doctor.add_argument(
        "--domain",
        action="append",
        default=[],
        type=domain_argument,
        metavar="DOMAIN",
        help="a domain you send from (repeatable); the senders of queued mail and campaigns "
        "are checked too",
    )
    doctor.add_argument("--json", action="store_true", help="the checks as JSON")
    doctor.add_argument(
        "--nameserver",
        action="append",
        default=[],
        type=nameserver_argument,
        metavar="HOST[:PORT]",
        help="DNS server to ask (repeatable; default: doctor.nameservers, else the system's)",
    )
    doctor.set_defaults(func=cmd_doctor)


@dataclass(frozen=True, slots=True)
class Report:
    """What doctor found for one SES account."""

    account: str
    facts: Facts
    checks: list[Check]

    @property
    def status(self) -> str:
        return worst(self.checks)

    @property
    def draft(self) -> list[str] | None:
        sandboxed = self.facts.account is not None and not self.facts.account.production_access
        return production_access_draft(self.facts) if sandboxed else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "region": self.facts.region,
            "checks": [c.to_json() for c in self.checks],
        }
        if (draft := self.draft) is not None:
            out["production_access_draft"] = draft
        return out


async def cmd_doctor(args: argparse.Namespace, cfg: Config) -> int:
    """Gather, check, print (text or JSON) for each SES account; 1 when a check fails."""
    domains = list(dict.fromkeys(args.domain))
    nameservers = ",".join(args.nameserver) if args.nameserver else None
    accounts = effective_accounts(cfg.accounts, cfg.ses, cfg.pacing)
    reports: list[Report] = []
    for name, ses, _ in accounts:
        try:
            facts = await gather(
                replace(cfg, ses=ses), domains, nameservers, name if len(accounts) > 1 else None
            )
        except DispatcherError as exc:
            if len(accounts) == 1:
                raise
            raise type(exc)(f"account {name}: {exc}") from exc
        reports.append(Report(name, facts, evaluate(facts)))
    several = len(reports) > 1
    status = worst([c for r in reports for c in r.checks])
    if args.json:
        # One account: the report itself, as before accounts existed; several: one each.
        out = (
            {"status": status, "accounts": [{"account": r.account, **r.to_json()} for r in reports]}
            if several
            else reports[0].to_json()
        )
        print(json.dumps(out, indent=2))
    else:
        print("\n\n".join(render(r, several) for r in reports))
    if status != "fail":
        return 0
    failed = sorted(
        {
            f"{f'{r.account}: ' if several else ''}{c.id} ({c.subject})"
            for r in reports
            for c in r.checks
            if c.status == "fail"
        }
    )
    # One line on stderr as well, for scripts and CI logs that keep only that.
    print(
        f"dispatcher: doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr
    )
    return 1


def render(report: Report, named: bool = False) -> str:
    """The report for a person: one line per check, its fix indented under it, then the counts."""
    facts, checks, draft = report.facts, report.checks, report.draft
    account = f" (account {report.account})" if named else ""
    lines = [f"dispatcher doctor: SES in {facts.region}{account}"]
    for check in checks:
        lines.append(f"{_MARK[check.status]}  {check.id:<19} {check.subject}: {check.summary}")
        if check.status != "ok":
            lines += [f"{'fix:' if i == 0 else '':>12} {step}" for i, step in enumerate(check.fix)]
    if facts.senders_note and facts.senders:
        lines.append(f"note: {facts.senders_note}")
    if draft is not None:
        lines += ["", "Draft of the production-access request (fill in the [...] parts):"]
        lines += [f"  {line}" for line in draft]
    counts = {s: sum(c.status == s for c in checks) for s in ("fail", "warn", "ok")}
    lines += [
        "",
        f"{counts['fail']} failed, {counts['warn']} warning(s), {counts['ok']} ok"
        + (": ready to send" if counts["fail"] == 0 else ": fix the FAIL lines first"),
    ]
    return "\n".join(lines)
