"""doctor's reads of the network: DNS lookups (dnspython) against an authoritative server on
127.0.0.1, where what exists, what does not and what could not be asked are different answers;
and whether the SNS endpoint's port answers."""

from __future__ import annotations

import socket

from dispatcher.config.settings import Config, FeedbackSettings
from dispatcher.doctor.dns import lookup_all, make_resolver
from dispatcher.doctor.facts import Lookup
from dispatcher.doctor.gather import endpoint_listening
from tests.support.dns_server import dns_server, txt


def _address(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.partition(":")
    return host, int(port)


async def test_answers_missing_records_and_failures_are_told_apart() -> None:
    long_spf = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(40)) + " -all"
    records = {
        ("tok._domainkey.example.com", "CNAME"): ["TOK.dkim.AmazonSES.com."],
        ("mail.example.com", "MX"): ["10 feedback-smtp.us-east-1.amazonses.com."],
        ("mail.example.com", "TXT"): [txt(long_spf)],  # over 255 bytes: two strings, one record
    }
    async with dns_server(records) as ns:
        ns.servfail.add("broken.example.com")
        resolver = make_resolver((_address(ns.address),), timeout=2.0)
        answers = await lookup_all(
            resolver,
            [
                ("tok._domainkey.example.com", "CNAME"),
                ("mail.example.com", "MX"),
                ("mail.example.com", "TXT"),
                ("mail.example.com", "CNAME"),  # the name exists, not this type
                ("_dmarc.nowhere.example", "TXT"),  # no such name
                ("broken.example.com", "TXT"),
            ],
        )

    assert answers[("tok._domainkey.example.com", "CNAME")] == Lookup(("tok.dkim.amazonses.com",))
    assert answers[("mail.example.com", "MX")] == Lookup(("feedback-smtp.us-east-1.amazonses.com",))
    assert answers[("mail.example.com", "TXT")] == Lookup((long_spf,))
    assert answers[("mail.example.com", "CNAME")] == Lookup()
    assert answers[("_dmarc.nowhere.example", "TXT")] == Lookup()
    broken = answers[("broken.example.com", "TXT")]
    assert broken.records == () and broken.problem is not None


async def test_a_server_that_never_answers_is_a_timeout_not_a_missing_record() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read
        silent.bind(("127.0.0.1", 0))
        resolver = make_resolver((silent.getsockname(),), timeout=0.5)
        answers = await lookup_all(resolver, [("_dmarc.example.com", "TXT")])
    assert answers[("_dmarc.example.com", "TXT")] == Lookup(problem="timed out")


async def test_the_sns_endpoint_answers_only_while_something_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        cfg = Config(
            feedback=FeedbackSettings(enabled=True, allowed_topics="arn:x", listen_port=port)
        )
        assert not await endpoint_listening(cfg)  # bound, not listening: refused
        server.listen()
        assert await endpoint_listening(cfg)
        wildcard = Config(
            feedback=FeedbackSettings(
                enabled=True, allowed_topics="arn:x", listen_host="0.0.0.0", listen_port=port
            )
        )
        assert await endpoint_listening(wildcard)  # 0.0.0.0: asked on loopback
