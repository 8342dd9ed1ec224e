"""`dispatcher doctor` as a user runs it, against the SES simulator and a DNS server on 127.0.0.1
holding a good zone or a broken one (issue 17 item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dispatcher.sim.account import Identity
from tests.support.accounts import write_accounts
from tests.support.cli import cli_env, run_cli
from tests.support.dns_server import Records, dns_server, txt
from tests.support.sim import SimFactory, SimHandle, clients

DOMAIN = "example.com"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CONFIG_SET = "dispatcher"


def tokens(domain: str) -> list[str]:
    """The Easy DKIM tokens the simulator gives `domain` (GetEmailIdentity answers the same)."""
    return Identity(domain, "DOMAIN").dkim_tokens


def good_zone(domain: str) -> Records:
    """Every record SES asks for, published as AWS's console shows them."""
    records: Records = {
        (f"{t}._domainkey.{domain}", "CNAME"): [f"{t}.dkim.amazonses.com."] for t in tokens(domain)
    }
    records[(f"mail.{domain}", "MX")] = ["10 feedback-smtp.us-east-1.amazonses.com."]
    records[(f"mail.{domain}", "TXT")] = [txt("v=spf1 include:amazonses.com ~all")]
    records[(f"_dmarc.{domain}", "TXT")] = [
        txt(f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{domain}")
    ]
    return records


async def set_up_ses(sim: SimHandle, domain: str = DOMAIN) -> None:
    """The SES side of a complete set-up, through the API as a user does it: a custom MAIL FROM
    domain (found by SES's DNS check: the simulator's verify step) and a configuration set that
    publishes bounces and complaints to SNS."""
    async with clients(sim, paced=True) as (_, ses):
        await ses.put_email_identity_mail_from_attributes(
            EmailIdentity=domain,
            MailFromDomain=f"mail.{domain}",
            BehaviorOnMxFailure="REJECT_MESSAGE",
        )
        await ses.create_configuration_set_event_destination(
            ConfigurationSetName=CONFIG_SET,
            EventDestinationName="feedback",
            EventDestination={
                "Enabled": True,
                "MatchingEventTypes": ["BOUNCE", "COMPLAINT", "DELIVERY"],
                "SnsDestination": {"TopicArn": TOPIC},
            },
        )
    await sim.admin("POST", f"/_sim/identities/{domain}/verify")


def doctor_env(tmp_path: Path, sim: SimHandle, nameserver: str, **extra: str) -> dict[str, str]:
    """This installation: a configuration set, the SNS -> SQS feedback path, the guard on."""
    return cli_env(
        tmp_path,
        endpoint_url=sim.endpoint_url,
        DISPATCHER_SES__CONFIGURATION_SET=CONFIG_SET,
        DISPATCHER_FEEDBACK__SQS_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/fb",
        DISPATCHER_FEEDBACK__ALLOWED_TOPICS=TOPIC,
        DISPATCHER_DOCTOR__NAMESERVERS=nameserver,
        **extra,
    )


def by_id(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["id"], c["subject"]): c for c in report["checks"]}


async def test_a_correct_setup_passes_every_check(
    sim_inprocess: SimFactory, tmp_path: Path
) -> None:
    async with (
        sim_inprocess(configuration_sets=(CONFIG_SET,)) as sim,
        dns_server(good_zone(DOMAIN)) as ns,
    ):
        await set_up_ses(sim)
        result = await run_cli(
            doctor_env(tmp_path, sim, ns.address), "doctor", "--domain", DOMAIN, "--json"
        )

    assert result.code == 0, result
    report = json.loads(result.out)
    assert report["status"] == "ok"
    not_ok = [c for c in report["checks"] if c["status"] != "ok"]
    assert not not_ok, json.dumps(not_ok, indent=2)
    checks = by_id(report)
    assert "aligned through DKIM and SPF" in checks[("dmarc", DOMAIN)]["summary"]
    assert "verified" in checks[("identity", DOMAIN)]["summary"]
    assert "production_access_draft" not in report
    # Asked our server, not the system's: the DKIM CNAMEs and DMARC came from it.
    assert (f"_dmarc.{DOMAIN}", "TXT") in ns.asked
    assert (f"{tokens(DOMAIN)[0]}._domainkey.{DOMAIN}", "CNAME") in ns.asked


async def test_a_broken_dmarc_a_missing_dkim_cname_and_the_sandbox_are_each_reported_with_the_fix(
    sim_inprocess: SimFactory, tmp_path: Path
) -> None:
    zone = good_zone(DOMAIN)
    missing = tokens(DOMAIN)[1]
    del zone[(f"{missing}._domainkey.{DOMAIN}", "CNAME")]
    zone[(f"_dmarc.{DOMAIN}", "TXT")] = [txt("v=DMARC1; p=rejected; rua=mailto:d@example.com")]
    async with (
        sim_inprocess(configuration_sets=(CONFIG_SET,), sandbox=True) as sim,
        dns_server(zone) as ns,
    ):
        await set_up_ses(sim)
        result = await run_cli(doctor_env(tmp_path, sim, ns.address), "doctor", "--domain", DOMAIN)

    assert result.code == 1, result
    out = result.out
    lines = out.splitlines()
    # The sandbox: named, with the console step, and a draft of the request AWS asks for.
    sandbox = next(i for i, line in enumerate(lines) if "account.sandbox" in line)
    assert lines[sandbox].startswith("FAIL") and "SES sandbox in us-east-1" in lines[sandbox]
    assert "Request production access" in lines[sandbox + 1]
    assert "Draft of the production-access request" in out
    for answer in (
        "Mail type: TRANSACTIONAL",
        "Website URL:",
        "How recipients opted in",
        "Bounces and complaints: SES publishes them to SNS",
        "Unsubscribe:",
    ):
        assert answer in out, answer
    assert "suppression list" in out and "pauses campaigns at 4.0% bounces" in out
    # The missing CNAME: exactly the record to add, marked, next to the two that are there.
    dkim = next(i for i, line in enumerate(lines) if line.startswith("FAIL  dkim"))
    assert "1 of 3 CNAME records are missing" in lines[dkim]
    fix = "\n".join(lines[dkim + 1 : dkim + 5])
    assert f"{missing}._domainkey.{DOMAIN} CNAME {missing}.dkim.amazonses.com (missing)" in fix, fix
    # The broken DMARC: what is wrong, and the record to publish instead.
    dmarc = next(line for line in lines if line.startswith("FAIL  dmarc"))
    assert "is broken: p=rejected is not one of none/quarantine/reject" in dmarc
    dmarc_fix = lines[lines.index(dmarc) + 1]
    assert f'_dmarc.{DOMAIN} TXT "v=DMARC1; p=none;' in dmarc_fix
    assert "3 failed" in lines[-1]


async def test_pending_and_verified_identities_are_told_apart(
    sim_inprocess: SimFactory, tmp_path: Path
) -> None:
    pending = "pending.example"
    zone = good_zone(DOMAIN)
    zone[(f"_dmarc.{pending}", "TXT")] = [txt("v=DMARC1; p=none")]
    async with (
        sim_inprocess(configuration_sets=(CONFIG_SET,)) as sim,
        dns_server(zone) as ns,
    ):
        await set_up_ses(sim)
        await sim.create_identity(pending)  # CreateEmailIdentity; its CNAMEs not published yet
        result = await run_cli(
            doctor_env(tmp_path, sim, ns.address),
            "doctor",
            "--domain",
            DOMAIN,
            "--domain",
            pending,
            "--json",
        )

    assert result.code == 1, result
    checks = by_id(json.loads(result.out))
    assert checks[("identity", DOMAIN)]["status"] == "ok"
    identity = checks[("identity", pending)]
    assert identity["status"] == "fail"
    assert "is PENDING: SES refuses mail from it until it is verified" in identity["summary"]
    dkim = checks[("dkim", pending)]
    assert dkim["status"] == "fail" and dkim["summary"].startswith("DKIM is PENDING and 3 of 3")
    assert dkim["fix"][1:] == [
        f"{t}._domainkey.{pending} CNAME {t}.dkim.amazonses.com (missing)" for t in tokens(pending)
    ]
    assert checks[("dkim", DOMAIN)]["status"] == "ok"


async def test_the_senders_of_queued_mail_are_checked_without_being_named(
    sim_inprocess: SimFactory, pg_dsn: str, tmp_path: Path
) -> None:
    async with (
        sim_inprocess(configuration_sets=(CONFIG_SET,)) as sim,
        dns_server(good_zone(DOMAIN)) as ns,
    ):
        env = doctor_env(tmp_path, sim, ns.address, DISPATCHER_DATABASE_URL=pg_dsn)
        sent = await run_cli(
            env,
            "send",
            "--from",
            "News <news@unknown.example>",
            "--to",
            "a@example.net",
            "--subject",
            "Hi",
            "--text",
            "x",
        )
        assert sent.code == 0, sent
        result = await run_cli(env, "doctor", "--json")

    assert result.code == 1, result
    check = by_id(json.loads(result.out))[("identity", "news@unknown.example")]
    assert check["status"] == "fail"
    assert "[queued mail] no identity covers it in us-east-1" in check["summary"]
    assert check["fix"][0] == (
        "aws sesv2 create-email-identity --email-identity unknown.example --region us-east-1"
    )


async def test_each_account_is_checked_for_the_senders_routed_to_it(
    sim_inprocess: SimFactory, tmp_path: Path
) -> None:
    # brand-b's b.example is not verified there yet; brand-a is complete. b.example's mail goes
    # to brand-b, so it is checked there (and fails), not in brand-a, where it would fail too.
    zone = {**good_zone("a.example"), **good_zone("b.example")}
    async with (
        sim_inprocess(identities=("a.example",), configuration_sets=(CONFIG_SET,)) as sim_a,
        sim_inprocess(identities=(), configuration_sets=(CONFIG_SET,)) as sim_b,
        dns_server(zone) as ns,
    ):
        await sim_b.create_identity("b.example")
        config = write_accounts(
            tmp_path / "dispatcher.toml",
            {"brand-a": sim_a.endpoint_url, "brand-b": sim_b.endpoint_url},
            routes='[[routes]]\nfrom_domain = "b.example"\naccount = "brand-b"\n',
        )
        env = doctor_env(tmp_path, sim_a, ns.address, DISPATCHER_CONFIG=str(config))
        result = await run_cli(
            env, "doctor", "--domain", "a.example", "--domain", "b.example", "--json"
        )
        text = await run_cli(env, "doctor", "--domain", "a.example", "--domain", "b.example")

    assert result.code == 1, result
    report = json.loads(result.out)
    assert report["status"] == "fail"
    assert [a["account"] for a in report["accounts"]] == ["brand-a", "brand-b"]
    brand_a, brand_b = (by_id(a) for a in report["accounts"])
    assert brand_a[("identity", "a.example")]["status"] == "ok"
    assert ("identity", "b.example") not in brand_a
    assert ("identity", "a.example") not in brand_b
    assert brand_b[("identity", "b.example")]["status"] == "fail"
    assert "brand-b: identity (b.example)" in result.err
    assert "brand-a: identity" not in result.err
    assert text.code == 1
    assert "(account brand-a)" in text.out and "(account brand-b)" in text.out


async def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for args, what in (
        (("--domain", "news@example.com"), "is an address; give its domain (example.com)"),
        (("--domain", "not a domain"), "is not a domain name"),
        (("--nameserver", "dns.example:53"), "must be IP addresses"),
    ):
        result = await run_cli(env, "doctor", *args)
        assert result.code == 2, result
        assert len(result.messages) == 1 and what in result.messages[0], result
