"""`dispatcher doctor`'s pure part: facts in, checks (and the production-access draft) out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dispatcher.config.settings import FeedbackSettings, GuardSettings
from dispatcher.doctor.checks import dns_questions, evaluate
from dispatcher.doctor.draft import production_access_draft
from dispatcher.doctor.facts import (
    AccountFacts,
    Check,
    ConfigurationSetFacts,
    DomainIdentity,
    EventDestination,
    Facts,
    IdentitySummary,
    Lookup,
    Sender,
    Usage,
    worst,
)
from dispatcher.doctor.identities import covering, domain_identity_of
from dispatcher.doctor.records import dmarc_names, parse_dmarc, spf_records
from dispatcher.doctor.settings import DoctorSettings, parse_nameservers
from dispatcher.errors import ConfigError

D = "example.com"
TOKENS = ("tok1", "tok2", "tok3")
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


def good_dns(domain: str = D) -> dict[tuple[str, str], Lookup]:
    dns = {
        (f"{t}._domainkey.{domain}", "CNAME"): Lookup((f"{t}.dkim.amazonses.com",)) for t in TOKENS
    }
    dns[(f"mail.{domain}", "MX")] = Lookup(("feedback-smtp.us-east-1.amazonses.com",))
    dns[(f"mail.{domain}", "TXT")] = Lookup(("v=spf1 include:amazonses.com ~all",))
    dns[(f"_dmarc.{domain}", "TXT")] = Lookup(("v=DMARC1; p=reject",))
    return dns


def good_facts() -> Facts:
    """A set-up with nothing to fix."""
    return Facts(
        region="us-east-1",
        account=AccountFacts(True, True, "HEALTHY", 50_000, 14, 10),
        identities=(IdentitySummary(D, "DOMAIN", "SUCCESS"),),
        domains={
            D: DomainIdentity(
                D,
                "SUCCESS",
                "SUCCESS",
                TOKENS,
                mail_from_domain=f"mail.{D}",
                mail_from_status="SUCCESS",
                mail_from_behavior="USE_DEFAULT_VALUE",
            )
        },
        dns=good_dns(),
        configuration_set=ConfigurationSetFacts(
            "dispatcher",
            True,
            True,
            (
                EventDestination(
                    "fb", True, frozenset({"BOUNCE", "COMPLAINT"}), "SnsDestination", TOPIC
                ),
            ),
        ),
        senders=(Sender(D, "--domain"),),
        feedback=FeedbackSettings(sqs_queue_url="https://sqs.example/q", allowed_topics=TOPIC),
        guard=GuardSettings(),
    )


def only(checks: list[Check], check_id: str, subject: str | None = None) -> Check:
    found = [c for c in checks if c.id == check_id and (subject is None or c.subject == subject)]
    assert len(found) == 1, found
    return found[0]


def with_domain(facts: Facts, **changes: object) -> Facts:
    return replace(facts, domains={D: replace(facts.domains[D], **changes)})  # type: ignore[arg-type]


def with_dns(facts: Facts, **answers: Lookup) -> Facts:
    """Answers by key: `dmarc`, `mx`, `txt`, `cname1`..."""
    keys = {
        "dmarc": (f"_dmarc.{D}", "TXT"),
        "mx": (f"mail.{D}", "MX"),
        "txt": (f"mail.{D}", "TXT"),
        "cname2": (f"tok2._domainkey.{D}", "CNAME"),
    }
    dns = dict(facts.dns)
    dns.update({keys[k]: v for k, v in answers.items()})
    return replace(facts, dns=dns)


def test_a_good_setup_is_all_ok() -> None:
    checks = evaluate(good_facts())
    assert [c for c in checks if c.status != "ok"] == []
    assert worst(checks) == "ok"
    assert "aligned through DKIM and SPF" in only(checks, "dmarc").summary


def test_dns_questions_name_every_record_the_checks_read() -> None:
    asked = dns_questions(good_facts())
    assert asked == set(good_dns())  # example.com: no parent to ask for DMARC


# -- the account ---------------------------------------------------------------------------------


def test_the_sandbox_fails_with_the_console_step_and_a_filled_in_draft() -> None:
    facts = replace(good_facts(), account=AccountFacts(False, True, "HEALTHY", 200, 1, 0))
    check = only(evaluate(facts), "account.sandbox")
    assert check.status == "fail" and "sandbox in us-east-1" in check.summary
    assert "Account dashboard > Request production access" in check.fix[0]
    draft = "\n".join(production_access_draft(facts))
    assert "Mail type: TRANSACTIONAL" in draft
    assert "SQS queue https://sqs.example/q" in draft and "suppression list" in draft
    assert "pauses campaigns at 4.0% bounces or 0.08% complaints" in draft
    assert "[FILL IN:" in draft  # what the installation cannot know is asked for, not skipped


def test_the_draft_says_marketing_for_campaigns_and_owns_up_to_missing_pieces() -> None:
    facts = replace(
        good_facts(),
        usage=Usage(campaigns=3, campaigns_with_unsubscribe=2, sent_last_24_hours=120),
        feedback=FeedbackSettings(),
        guard=GuardSettings(enabled=False),
    )
    draft = "\n".join(production_access_draft(facts))
    assert "Mail type: MARKETING" in draft
    assert "List-Unsubscribe" in draft and "1 of 3 campaigns here were created without" in draft
    assert "this installation has no feedback path yet" in draft
    assert "the reputation guard of this installation is off" in draft
    assert "we sent 120 messages in the last 24 hours" in draft


@pytest.mark.parametrize(
    ("account", "check_id", "status", "words"),
    [
        (
            AccountFacts(True, False, "HEALTHY", 1, 1, 0),
            "account.sending",
            "fail",
            "put-account-sending-attributes --sending-enabled",
        ),
        (
            AccountFacts(True, False, "SHUTDOWN", 1, 1, 0),
            "account.sending",
            "fail",
            "AWS paused it",
        ),
        (
            AccountFacts(True, True, "PROBATION", 1, 1, 0),
            "account.enforcement",
            "warn",
            "Reputation metrics",
        ),
        (
            AccountFacts(True, True, "SHUTDOWN", 1, 1, 0),
            "account.enforcement",
            "fail",
            "Reputation metrics",
        ),
        (
            AccountFacts(True, True, "HEALTHY", 1000, 14, 950),
            "account.quota",
            "warn",
            "Service Quotas",
        ),
    ],
)
def test_account_problems(account: AccountFacts, check_id: str, status: str, words: str) -> None:
    check = only(evaluate(replace(good_facts(), account=account)), check_id)
    assert check.status == status
    assert words in " ".join(check.fix)


def test_an_unreadable_account_is_one_failure_naming_the_permissions() -> None:
    checks = evaluate(replace(good_facts(), account=None, account_error="AccessDenied: no"))
    check = only(checks, "account")
    assert check.status == "fail" and "AccessDenied" in check.summary
    assert "ses:GetAccount" in check.fix[0]
    down = "EndpointConnectionError: Could not connect"
    checks = evaluate(
        replace(good_facts(), account=None, account_error=down, identities_error=down)
    )
    assert "ses.endpoint_url" in only(checks, "account").fix[0]
    assert "see the account check" in only(checks, "identity").summary


# -- identities ----------------------------------------------------------------------------------


def test_covering_finds_the_address_then_its_domain_then_parents() -> None:
    ids = (
        IdentitySummary("a@mail.example.com", "EMAIL_ADDRESS", "PENDING"),
        IdentitySummary("example.com", "DOMAIN", "SUCCESS"),
        IdentitySummary("mail.example.com", "DOMAIN", "PENDING"),
    )
    assert [i.name for i in covering("a@mail.example.com", ids)] == [
        "a@mail.example.com",
        "mail.example.com",
        "example.com",
    ]
    # DKIM signs with the nearest verified domain.
    assert domain_identity_of(Sender("a@mail.example.com", ""), ids) == "example.com"
    assert domain_identity_of(Sender("x@other.example", ""), ids) is None


@pytest.mark.parametrize(
    ("status", "severity", "words"),
    [
        ("PENDING", "fail", "is PENDING"),
        ("FAILED", "fail", "FAILED verification"),
        ("TEMPORARY_FAILURE", "warn", "TEMPORARY_FAILURE"),
    ],
)
def test_an_unverified_identity(status: str, severity: str, words: str) -> None:
    facts = replace(good_facts(), identities=(IdentitySummary(D, "DOMAIN", status),))
    check = only(evaluate(facts), "identity")
    assert check.status == severity and words in check.summary
    assert "DKIM CNAME records" in check.fix[0]


def test_a_sender_no_identity_covers_fails_with_the_command_to_create_it() -> None:
    facts = replace(good_facts(), senders=(Sender("news@other.example", "queued mail"),))
    check = only(evaluate(facts), "identity")
    assert check.status == "fail" and "[queued mail] no identity covers it" in check.summary
    assert check.fix[0] == (
        "aws sesv2 create-email-identity --email-identity other.example --region us-east-1"
    )
    assert "--email-identity news@other.example" in check.fix[2]


def test_no_sender_at_all_asks_for_a_domain() -> None:
    check = only(evaluate(replace(good_facts(), senders=())), "identity")
    assert check.status == "warn" and "--domain" in check.fix[0]


# -- DKIM ----------------------------------------------------------------------------------------


def test_a_missing_and_a_wrong_cname_are_listed_among_the_records_to_publish() -> None:
    facts = with_dns(good_facts(), cname2=Lookup())
    facts = replace(
        facts, dns={**facts.dns, (f"tok3._domainkey.{D}", "CNAME"): Lookup(("old.example",))}
    )
    check = only(evaluate(facts), "dkim")
    assert check.status == "fail" and "2 of 3 CNAME records" in check.summary
    assert check.fix == (
        f"publish in the DNS zone of {D}:",
        f"tok1._domainkey.{D} CNAME tok1.dkim.amazonses.com",
        f"tok2._domainkey.{D} CNAME tok2.dkim.amazonses.com (missing)",
        f"tok3._domainkey.{D} CNAME tok3.dkim.amazonses.com (now: old.example)",
    )


@pytest.mark.parametrize(
    ("changes", "answers", "severity", "words"),
    [
        ({"dkim_status": "PENDING"}, {}, "warn", "SES has not confirmed them yet"),
        ({"dkim_status": "FAILED"}, {}, "fail", "Retry DKIM verification"),
        ({"dkim_signing": False}, {}, "warn", "signing is turned off"),
        ({}, {"cname2": Lookup(problem="timed out")}, "warn", "could not look up"),
        ({"dkim_tokens": (), "dkim_status": "NOT_STARTED"}, {}, "fail", "no Easy DKIM tokens"),
        ({"dkim_origin": "EXTERNAL", "dkim_status": "PENDING"}, {}, "fail", "BYODKIM"),
    ],
)
def test_dkim_states(
    changes: dict[str, object], answers: dict[str, Lookup], severity: str, words: str
) -> None:
    check = only(evaluate(with_dns(with_domain(good_facts(), **changes), **answers)), "dkim")
    assert check.status == severity
    assert words in check.summary + " ".join(check.fix)


# -- custom MAIL FROM ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behavior", "severity"), [("REJECT_MESSAGE", "fail"), ("USE_DEFAULT_VALUE", "warn")]
)
def test_a_missing_mx_fails_only_when_ses_would_refuse_the_mail(
    behavior: str, severity: str
) -> None:
    facts = with_dns(with_domain(good_facts(), mail_from_behavior=behavior), mx=Lookup())
    check = only(evaluate(facts), "mail_from")
    assert check.status == severity and "its MX record is missing" in check.summary
    assert behavior in check.summary
    assert check.fix == (f"publish: mail.{D} MX 10 feedback-smtp.us-east-1.amazonses.com",)


def test_two_spf_records_and_no_custom_mail_from() -> None:
    two = Lookup(("v=spf1 include:amazonses.com ~all", "v=spf1 mx -all"))
    check = only(evaluate(with_dns(good_facts(), txt=two)), "mail_from")
    assert check.status == "warn" and "2 SPF records" in check.summary
    assert check.fix == (f'keep one: mail.{D} TXT "v=spf1 include:amazonses.com ~all"',)
    none = only(evaluate(with_domain(good_facts(), mail_from_domain=None)), "mail_from")
    assert none.status == "warn" and "--mail-from-domain mail.example.com" in none.fix[0]
    # Without a custom MAIL FROM, DMARC passes through DKIM alone: still ok, and says so.
    dmarc = only(evaluate(with_domain(good_facts(), mail_from_domain=None)), "dmarc")
    assert dmarc.status == "ok" and "SPF does not align" in dmarc.summary


# -- DMARC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ("v=DMARC1; p=none; rua=mailto:a@b.c", None),
        ("v=DMARC1;p=quarantine;adkim=s", None),
        ("p=none; v=DMARC1", "it must start with v=DMARC1"),
        ("v=DMARC1; rua=mailto:a@b.c", "the policy tag p= is missing"),
        ("v=DMARC1; p=block", "p=block is not one of none/quarantine/reject"),
        ("v=DMARC1; p=none; aspf=x", "aspf=x is not r or s"),
        ("v=DMARC1; p=none; p=reject", "the tag p appears twice"),
        ("v=DMARC1; p=none; pct=200", "pct=200 is not 0..100"),
    ],
)
def test_parse_dmarc(record: str, error: str | None) -> None:
    assert parse_dmarc(record)[1] == error


def test_records_helpers() -> None:
    assert dmarc_names("a.b.example.com") == [
        "_dmarc.a.b.example.com",
        "_dmarc.b.example.com",
        "_dmarc.example.com",
    ]
    assert spf_records(("v=spf1 -all", "v=spf10", "google-site-verification=x")) == ["v=spf1 -all"]


def test_a_broken_missing_or_doubled_dmarc_record_fails_with_the_record_to_publish() -> None:
    broken = only(evaluate(with_dns(good_facts(), dmarc=Lookup(("v=DMARC1; p=rejectt",)))), "dmarc")
    assert broken.status == "fail" and "is broken: p=rejectt" in broken.summary
    assert '_dmarc.example.com TXT "v=DMARC1; p=none;' in broken.fix[0]
    missing = only(evaluate(with_dns(good_facts(), dmarc=Lookup())), "dmarc")
    assert missing.status == "fail" and "no DMARC record at _dmarc.example.com" in missing.summary
    typo = only(evaluate(with_dns(good_facts(), dmarc=Lookup(("v=dmarc1; p=none",)))), "dmarc")
    assert typo.status == "fail" and "it must start with v=DMARC1" in typo.summary
    two = Lookup(("v=DMARC1; p=none", "v=DMARC1; p=reject"))
    assert only(evaluate(with_dns(good_facts(), dmarc=two)), "dmarc").status == "fail"
    unknown = only(evaluate(with_dns(good_facts(), dmarc=Lookup(problem="SERVFAIL"))), "dmarc")
    assert unknown.status == "warn"


def test_a_subdomain_sender_uses_the_parent_record_and_strict_alignment_can_fail_it() -> None:
    sub = "news.example.com"
    facts = replace(good_facts(), senders=(Sender(f"a@{sub}", "queued mail"),))
    facts = replace(facts, dns={**facts.dns, (f"_dmarc.{sub}", "TXT"): Lookup()})
    relaxed = only(evaluate(facts), "dmarc")
    assert relaxed.status == "ok" and "at _dmarc.example.com" in relaxed.summary
    strict = with_dns(facts, dmarc=Lookup(("v=DMARC1; p=reject; adkim=s; aspf=s",)))
    check = only(evaluate(strict), "dmarc")
    assert check.status == "fail" and "neither DKIM nor SPF aligns" in check.summary
    assert any("adkim=s needs mail signed by news.example.com" in f for f in check.fix)


# -- configuration set, feedback, guard ----------------------------------------------------------


def test_configuration_set_problems() -> None:
    missing = replace(good_facts(), configuration_set=ConfigurationSetFacts("cs", exists=False))
    check = only(evaluate(missing), "configuration_set")
    assert (
        check.status == "fail"
        and "create-configuration-set --configuration-set-name cs" in (check.fix[0])
    )
    assert TOPIC in check.fix[1]  # the event destination to our allowed topic
    paused = replace(good_facts(), configuration_set=ConfigurationSetFacts("cs", True, False))
    statuses = {c.id: c.status for c in evaluate(paused)}
    assert statuses["configuration_set"] == "fail" and statuses["event_destination"] == "warn"
    unset = only(evaluate(replace(good_facts(), configuration_set=None)), "configuration_set")
    assert unset.status == "warn"
    foreign = replace(
        good_facts(),
        feedback=FeedbackSettings(sqs_queue_url="https://sqs.example/q", allowed_topics="arn:x"),
    )
    check = only(evaluate(foreign), "event_destination")
    assert check.status == "warn" and "does not list" in check.summary


def test_feedback_and_guard() -> None:
    none = only(evaluate(replace(good_facts(), feedback=FeedbackSettings())), "feedback")
    assert none.status == "fail" and "[feedback] enabled = true" in none.fix[0]
    endpoint = FeedbackSettings(enabled=True, allowed_topics=TOPIC)
    down = replace(good_facts(), feedback=endpoint, feedback_listening=False)
    check = only(evaluate(down), "feedback")
    assert check.status == "warn" and "nothing listens there" in check.summary
    assert "dispatcher run" in check.fix[0]
    up = replace(down, feedback_listening=True)
    assert only(evaluate(up), "feedback").status == "ok"
    off = only(evaluate(replace(good_facts(), guard=GuardSettings(enabled=False))), "guard")
    assert off.status == "warn" and "[guard] enabled = true" in off.fix[0]
    late = only(
        evaluate(replace(good_facts(), guard=GuardSettings(bounce_threshold=0.06))), "guard"
    )
    assert late.status == "warn" and "guard.bounce_threshold" in late.summary


def test_nameservers_setting() -> None:
    assert parse_nameservers("127.0.0.1:5353, 1.1.1.1,[::1]:53") == (
        ("127.0.0.1", 5353),
        ("1.1.1.1", 53),
        ("::1", 53),
    )
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ConfigError):
            DoctorSettings(nameservers=bad)
