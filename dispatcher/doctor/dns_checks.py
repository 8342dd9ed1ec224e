"""The checks of what DNS must hold: Easy DKIM's CNAMEs, the custom MAIL FROM domain's MX and
SPF records, and DMARC with its alignment. Pure: the answers come in with the facts."""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.doctor.facts import Check, DomainIdentity, Facts, Lookup, Sender, Status
from dispatcher.doctor.identities import VERIFIED, domain_identity_of
from dispatcher.doctor.records import (
    dkim_record,
    dmarc_names,
    mail_from_records,
    parse_dmarc,
    spf_records,
)

# -- DKIM and custom MAIL FROM -------------------------------------------------------------------


Answers = Mapping[tuple[str, str], Lookup]


def _answer(dns: Answers, name: str, rdtype: str) -> Lookup:
    return dns.get((name, rdtype)) or Lookup(problem="not looked up")


def dkim_check(domain: DomainIdentity, dns: Answers) -> Check:
    """Easy DKIM's status at SES next to its three CNAME records in DNS."""
    name, status = domain.name, domain.dkim_status
    if domain.dkim_origin == "EXTERNAL":
        if status == VERIFIED:
            return Check("dkim", name, "ok", "DKIM (your own key, BYODKIM) verified")
        return Check(
            "dkim",
            name,
            "fail",
            f"DKIM with your own key (BYODKIM) is {status}",
            (f"publish the public key as TXT at <selector>._domainkey.{name}",),
        )
    if not domain.dkim_tokens:
        return Check(
            "dkim",
            name,
            "fail",
            f"DKIM is {status}: no Easy DKIM tokens, so SES signs nothing with {name}",
            (
                f"aws sesv2 put-email-identity-dkim-signing-attributes --email-identity {name} "
                "--signing-attributes-origin AWS_SES; then publish the three CNAME records",
            ),
        )
    wrong: list[str] = []
    unknown: list[str] = []
    lines: list[str] = []
    for token in domain.dkim_tokens:
        record, target = dkim_record(token, name)
        answer = _answer(dns, record, "CNAME")
        line = f"{record} CNAME {target}"
        if answer.problem is not None:
            unknown.append(f"{record}: {answer.problem}")
        elif target not in answer.records:
            now = f" (now: {', '.join(answer.records)})" if answer.records else " (missing)"
            wrong.append(record)
            line += now
        lines.append(line)
    if wrong:
        return Check(
            "dkim",
            name,
            "fail",
            f"DKIM is {status} and {len(wrong)} of {len(lines)} CNAME records are missing or "
            "wrong in DNS",
            (f"publish in the DNS zone of {name}:", *lines),
        )
    signing_off = not domain.dkim_signing
    if status == VERIFIED and not unknown and not signing_off:
        return Check(
            "dkim", name, "ok", f"DKIM verified; its {len(lines)} CNAME records are in DNS"
        )
    if status == "FAILED":
        return Check(
            "dkim",
            name,
            "fail",
            "DKIM FAILED: SES did not find the records within 72 hours",
            (
                "the records are in DNS now; restart: SES console > Verified identities > "
                f"{name} > Authentication > Retry DKIM verification",
            ),
        )
    if signing_off:
        return Check(
            "dkim",
            name,
            "warn",
            f"DKIM is {status} but signing is turned off: mail is not DKIM-signed",
            (
                f"aws sesv2 put-email-identity-dkim-attributes --email-identity {name} "
                "--signing-enabled",
            ),
        )
    if unknown:
        return Check(
            "dkim",
            name,
            "warn",
            f"DKIM is {status}; could not look up: {'; '.join(unknown)}",
            ("expected records:", *lines),
        )
    return Check(
        "dkim",
        name,
        "warn",
        f"DKIM is {status}: the CNAME records are in DNS, SES has not confirmed them yet (it "
        "looks for up to 72 hours)",
    )


def mail_from_check(domain: DomainIdentity, dns: Answers, region: str) -> Check:
    """The custom MAIL FROM domain: SES's status, BehaviorOnMxFailure, its MX and SPF records."""
    name = domain.name
    mail_from = domain.mail_from_domain
    if not mail_from:
        suggested = f"mail.{name}"
        return Check(
            "mail_from",
            name,
            "warn",
            "no custom MAIL FROM domain: the envelope sender is under amazonses.com, so SPF "
            "cannot align for DMARC (only DKIM can)",
            (
                f"aws sesv2 put-email-identity-mail-from-attributes --email-identity {name} "
                f"--mail-from-domain {suggested} --behavior-on-mx-failure USE_DEFAULT_VALUE "
                f"--region {region}",
                f"and publish: {'; '.join(mail_from_records(suggested, region))}",
            ),
        )
    mx_record, spf_record = mail_from_records(mail_from, region)
    exchange = mx_record.split()[-1]
    mx = _answer(dns, mail_from, "MX")
    txt = _answer(dns, mail_from, "TXT")
    problems: list[str] = []
    unknown: list[str] = []
    fix: list[str] = []
    if mx.problem is not None:
        unknown.append(f"MX: {mx.problem}")
    elif exchange not in mx.records:
        problems.append(
            "its MX record is missing"
            if not mx.records
            else f"its MX points to {', '.join(mx.records)}"
        )
        fix.append(f"publish: {mx_record}")
    if txt.problem is not None:
        unknown.append(f"TXT: {txt.problem}")
    else:
        spf = spf_records(txt.records)
        if len(spf) > 1:
            problems.append(f"{len(spf)} SPF records (SPF fails with more than one)")
            fix.append(f"keep one: {spf_record}")
        elif not spf or "include:amazonses.com" not in spf[0].lower().split():
            problems.append(
                "its SPF record does not include amazonses.com"
                if spf
                else "its SPF record is missing"
            )
            fix.append(f"publish: {spf_record}")
    behavior = domain.mail_from_behavior or "USE_DEFAULT_VALUE"
    status = domain.mail_from_status or "PENDING"
    rejects = behavior == "REJECT_MESSAGE"
    if status != VERIFIED:
        problems.insert(0, f"SES reports it {status}")
    if not problems and not unknown:
        return Check(
            "mail_from",
            name,
            "ok",
            f"custom MAIL FROM {mail_from} verified, MX and SPF in place (on MX failure: "
            f"{behavior})",
        )
    consequence = (
        f"with BehaviorOnMxFailure REJECT_MESSAGE SES refuses mail from {name} while it is not "
        "verified"
        if rejects
        else "with BehaviorOnMxFailure USE_DEFAULT_VALUE mail goes out under amazonses.com "
        "meanwhile (SPF does not align)"
    )
    severity: Status = (
        "fail" if rejects and (status != VERIFIED or any("MX" in p for p in problems)) else "warn"
    )
    summary = f"custom MAIL FROM {mail_from}: " + "; ".join(problems + unknown)
    return Check("mail_from", name, severity, f"{summary}; {consequence}", tuple(fix))


# -- DMARC ---------------------------------------------------------------------------------------


def dmarc_check(from_domain: str, facts: Facts) -> Check:
    """The DMARC record that applies to `from_domain`, and whether DKIM or SPF aligns with it."""
    suggested = (
        f'_dmarc.{from_domain} TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{from_domain}"'
    )
    unknown: list[str] = []
    ignored: list[str] = []
    for name in dmarc_names(from_domain):
        answer = _answer(facts.dns, name, "TXT")
        if answer.problem is not None:
            unknown.append(f"{name}: {answer.problem}")
            continue
        records = [r for r in answer.records if r.replace(" ", "").startswith("v=DMARC1")]
        ignored += [f"{name}: {r!r}" for r in answer.records if r not in records]
        if not records:
            continue
        if len(records) > 1:
            return Check(
                "dmarc",
                from_domain,
                "fail",
                f"{len(records)} DMARC records at {name}: receivers ignore them all",
                (f"keep one TXT record at {name}",),
            )
        return _aligned(from_domain, name, records[0], facts)
    if unknown:
        return Check(
            "dmarc",
            from_domain,
            "warn",
            f"could not look up DMARC: {'; '.join(unknown)}",
            (f"expected, e.g.: {suggested}",),
        )
    what = "no DMARC record"
    if ignored:
        what = f"no valid DMARC record (it must start with v=DMARC1; found {', '.join(ignored)})"
    return Check(
        "dmarc",
        from_domain,
        "fail",
        f"{what} at _dmarc.{from_domain}: Gmail and Yahoo refuse bulk mail without one",
        (f"publish: {suggested}",),
    )


def _aligned(from_domain: str, name: str, record: str, facts: Facts) -> Check:
    tags, error = parse_dmarc(record)
    if error is not None:
        return Check(
            "dmarc",
            from_domain,
            "fail",
            f"the DMARC record at {name} is broken: {error} ({record!r})",
            (
                f'publish instead: {name} TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@'
                f'{from_domain}" (or your policy, written correctly)',
            ),
        )
    policy = tags["p"] if name == f"_dmarc.{from_domain}" else tags.get("sp", tags["p"])
    sender = Sender(from_domain, "")
    identity_name = domain_identity_of(sender, facts.identities)
    domain = facts.domains.get(identity_name) if identity_name is not None else None
    dkim = spf = False
    if domain is not None:
        strict_dkim = tags.get("adkim", "r") == "s"
        dkim = (
            domain.dkim_status == VERIFIED
            and domain.dkim_signing
            and (not strict_dkim or from_domain == domain.name)
        )
        mail_from = domain.mail_from_domain
        if mail_from and domain.mail_from_status == VERIFIED:
            strict_spf = tags.get("aspf", "r") == "s"
            spf = mail_from == from_domain if strict_spf else _under(mail_from, domain.name)
    how = " and ".join(n for n, ok in (("DKIM", dkim), ("SPF", spf)) if ok)
    where = f"p={policy} at {name}"
    if how:
        note = "" if spf else " (SPF does not align: no verified custom MAIL FROM)"
        return Check("dmarc", from_domain, "ok", f"DMARC {where}; aligned through {how}{note}")
    fix = [f"get DKIM verified for {identity_name or from_domain} (see its dkim check)"]
    if tags.get("adkim") == "s" and identity_name and identity_name != from_domain:
        fix.append(
            f"adkim=s needs mail signed by {from_domain} itself: verify {from_domain} as its "
            "own identity, or use adkim=r"
        )
    fix.append("and/or set up a custom MAIL FROM domain (see its mail_from check)")
    return Check(
        "dmarc",
        from_domain,
        "fail",
        f"DMARC {where}, but neither DKIM nor SPF aligns with {from_domain}: its mail fails DMARC",
        tuple(fix),
    )


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)
