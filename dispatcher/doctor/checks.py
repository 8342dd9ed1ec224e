"""The pre-flight checks: `Facts` in, `Check`s out, each with the exact fix. Pure: no I/O.

Which DNS questions to ask also follows from the facts (`dns_questions`), so the gathering code
asks SES first, then DNS, then hands everything here.
"""

from __future__ import annotations

from dispatcher.doctor.dns_checks import dkim_check, dmarc_check, mail_from_check
from dispatcher.doctor.facts import Check, Facts, IdentitySummary, Sender, Status
from dispatcher.doctor.identities import VERIFIED, covering
from dispatcher.doctor.records import dkim_record, dmarc_names
from dispatcher.doctor.setup_checks import configuration_set_checks, feedback_check, guard_check

# Error codes that mean the keys or their permissions, not the way to SES.
KEY_ERRORS = (
    "AccessDenied",
    "UnrecognizedClient",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
)
QUOTA_NEAR = 0.9  # share of Max24HourSend used that is worth a warning


def dns_questions(facts: Facts) -> set[tuple[str, str]]:
    """(name, type) of every DNS record the checks will look at."""
    out: set[tuple[str, str]] = set()
    for domain in facts.domains.values():
        if domain.dkim_origin != "EXTERNAL":
            out.update((dkim_record(t, domain.name)[0], "CNAME") for t in domain.dkim_tokens)
        if domain.mail_from_domain:
            out.add((domain.mail_from_domain, "MX"))
            out.add((domain.mail_from_domain, "TXT"))
    for sender in facts.senders:
        out.update((name, "TXT") for name in dmarc_names(sender.domain))
    return out


def evaluate(facts: Facts) -> list[Check]:
    """Every check, in the order a person fixes them: account, identities, DNS, events, guard."""
    checks = account_checks(facts)
    checks += identity_checks(facts)
    for name in sorted(facts.domains):
        checks.append(dkim_check(facts.domains[name], facts.dns))
        checks.append(mail_from_check(facts.domains[name], facts.dns, facts.region))
    for domain in sorted({s.domain for s in facts.senders}):
        checks.append(dmarc_check(domain, facts))
    checks += configuration_set_checks(facts)
    checks.append(feedback_check(facts))
    checks.append(guard_check(facts))
    return checks


# -- the account ---------------------------------------------------------------------------------


def account_checks(facts: Facts) -> list[Check]:
    """Sandbox, sending enabled, enforcement status, quota (GetAccount)."""
    region = facts.region
    account = facts.account
    if account is None:
        error = facts.account_error or "no answer"
        refused = any(code in error for code in KEY_ERRORS)
        fix = (
            "check the access keys, and that they may call ses:GetAccount, "
            "ses:ListEmailIdentities, ses:GetEmailIdentity, ses:GetConfigurationSet and "
            "ses:GetConfigurationSetEventDestinations"
            if refused
            else f"check ses.region ({region}), ses.endpoint_url and that this host reaches SES"
        )
        return [
            Check(
                "account",
                "account",
                "fail",
                f"could not read the account (GetAccount): {error}",
                (fix,),
            )
        ]
    out: list[Check] = []
    if account.production_access:
        out.append(Check("account.sandbox", "account", "ok", f"production access in {region}"))
    else:
        out.append(
            Check(
                "account.sandbox",
                "account",
                "fail",
                f"the account is in the SES sandbox in {region}: mail goes only to verified "
                f"addresses, at most {account.max_24_hour_send:g} a day at "
                f"{account.max_send_rate:g}/s",
                (
                    f"request production access: SES console (region {region}) > Account "
                    "dashboard > Request production access; the draft below answers AWS's "
                    "questions (fill in the [...] parts)",
                    "or from a shell: aws sesv2 put-account-details --production-access-enabled "
                    "--mail-type TRANSACTIONAL --website-url https://YOUR-SITE "
                    f"--contact-language EN --region {region}",
                ),
            )
        )
    if account.sending_enabled:
        out.append(Check("account.sending", "account", "ok", "sending is enabled"))
    else:
        by_aws = account.enforcement_status != "HEALTHY"
        out.append(
            Check(
                "account.sending",
                "account",
                "fail",
                "sending is disabled for the account" + (" by AWS" if by_aws else ""),
                (
                    "AWS paused it: read the case in the AWS Support Center and SES console > "
                    "Reputation metrics, fix the cause, then answer the case",
                )
                if by_aws
                else (
                    f"aws sesv2 put-account-sending-attributes --sending-enabled --region {region}",
                ),
            )
        )
    status = account.enforcement_status
    if status == "HEALTHY":
        out.append(Check("account.enforcement", "account", "ok", "enforcement status HEALTHY"))
    else:
        out.append(
            Check(
                "account.enforcement",
                "account",
                "fail" if status == "SHUTDOWN" else "warn",
                f"enforcement status {status}: "
                + (
                    "AWS stopped the account's sending"
                    if status == "SHUTDOWN"
                    else "AWS is reviewing the account and may pause its sending"
                ),
                (
                    "SES console > Reputation metrics shows the bounce or complaint rate behind "
                    "it; remove the addresses that cause it (dispatcher suppression), then answer "
                    "the case in the AWS Support Center",
                ),
            )
        )
    out.append(_quota_check(facts))
    return out


def _quota_check(facts: Facts) -> Check:
    account = facts.account
    assert account is not None
    limit = account.max_24_hour_send
    used = account.sent_last_24_hours
    shown = "unlimited" if limit < 0 else f"{used:g} of {limit:g} used in the last 24 h"
    summary = f"quota: {shown}, {account.max_send_rate:g} recipients/s"
    if limit > 0 and used >= QUOTA_NEAR * limit:
        return Check(
            "account.quota",
            "account",
            "warn",
            summary + f" ({used / limit:.0%}: the dispatcher stops near the limit)",
            (
                "wait for the 24-hour window to free room, or ask for more: Service Quotas "
                f"console (region {facts.region}) > Amazon Simple Email Service > Sending quota",
            ),
        )
    return Check("account.quota", "account", "ok", summary)


# -- identities ----------------------------------------------------------------------------------


def identity_checks(facts: Facts) -> list[Check]:
    """One check per sender: the identity that covers it, and its verification status."""
    region = facts.region
    if facts.identities_error is not None:
        same = facts.identities_error == facts.account_error
        return [
            Check(
                "identity",
                "identities",
                "fail",
                "not checked: SES could not be read (see the account check)"
                if same
                else f"could not list the identities (ListEmailIdentities): "
                f"{facts.identities_error}",
            )
        ]
    if not facts.senders:
        return [
            Check(
                "identity",
                "identities",
                "warn",
                "no sending identity to check"
                + (f" ({facts.senders_note})" if facts.senders_note else ""),
                ("give the domain you send from: dispatcher doctor --domain example.com",),
            )
        ]
    sources: dict[str, list[str]] = {}
    for sender in facts.senders:
        if sender.source not in sources.setdefault(sender.name, []):
            sources[sender.name].append(sender.source)
    out = [
        _identity_check(Sender(name, ", ".join(where)), facts.identities, region)
        for name, where in sorted(sources.items())
    ]
    out += [
        Check("identity", name, "fail", f"could not read identity {name} (GetEmailIdentity): {why}")
        for name, why in sorted(facts.domain_errors.items())
    ]
    return out


def _identity_check(sender: Sender, identities: tuple[IdentitySummary, ...], region: str) -> Check:
    found = covering(sender.name, identities)
    label = f"[{sender.source}]"  # the subject names the sender; this, where it comes from
    verified = [i for i in found if i.verification_status == VERIFIED]
    create = f"aws sesv2 create-email-identity --email-identity {sender.domain} --region {region}"
    if verified:
        ident = verified[0]
        if not ident.sending_enabled:
            return Check(
                "identity",
                sender.name,
                "fail",
                f"{label} sending is paused for identity {ident.name}",
                (
                    f"SES paused sending from {ident.name}: see SES console > Verified "
                    f"identities > {ident.name}, and the AWS Support Center for the reason",
                ),
            )
        how = "itself" if ident.name == sender.name else f"the {ident.kind.lower()} {ident.name}"
        return Check("identity", sender.name, "ok", f"{label} verified ({how})")
    if not found:
        fix = [
            create,
            "then publish the three DKIM CNAME records it answers (the next run of "
            "dispatcher doctor lists them); SES verifies the domain once it finds them",
        ]
        if sender.is_address:
            fix.append(
                f"or verify only this address: aws sesv2 create-email-identity --email-identity "
                f"{sender.name} --region {region}, then click the link AWS mails to it"
            )
        return Check(
            "identity",
            sender.name,
            "fail",
            f"{label} no identity covers it in {region}; SES refuses mail from it",
            tuple(fix),
        )
    ident = found[0]
    status = ident.verification_status
    if ident.kind == "DOMAIN":
        wait = (
            f"publish the DKIM CNAME records of {ident.name} (see its dkim check); SES looks "
            "for them for 72 hours"
        )
    else:
        wait = f"click the link in the verification mail AWS sent to {ident.name}"
    restart = (
        f"restart verification: aws sesv2 delete-email-identity --email-identity {ident.name} "
        f"--region {region}, then aws sesv2 create-email-identity --email-identity {ident.name} "
        f"--region {region} (a domain gets new DKIM tokens: publish those)"
    )
    fixes: dict[str, tuple[Status, str, tuple[str, ...]]] = {
        "PENDING": ("fail", "is PENDING: SES refuses mail from it until it is verified", (wait,)),
        "TEMPORARY_FAILURE": (
            "warn",
            "had a TEMPORARY_FAILURE: SES could not confirm its records lately and retries",
            (wait,),
        ),
        "FAILED": ("fail", "FAILED verification (nothing found within 72 hours)", (wait, restart)),
    }
    severity, what, steps = fixes.get(
        status, ("fail", f"is {status}: SES refuses mail from it", (create,))
    )
    return Check("identity", sender.name, severity, f"{label} identity {ident.name} {what}", steps)
