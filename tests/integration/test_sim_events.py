"""SES events from the simulator: signed SNS POSTs (with the subscription handshake), both event
formats, the JSONL sink, and injected delay, duplicates and reordering."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.sim import REPO_ROOT, SimFactory, SimHandle, sns_receiver
from tests.support.sns import SIGNED_KEYS, string_to_sign

SIMPLE = {"Simple": {"Subject": {"Data": "Hello"}, "Body": {"Text": {"Data": "Hi there"}}}}
SIM = "@simulator.amazonses.com"

# -- a standard SNS message verifier (SES-FACTS.md, "Verifying SNS") ---------------------------

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


class Untrusted(Exception):
    """The certificate URL is neither pinned nor a real SNS certificate URL."""


def verify_sns(message: Mapping[str, Any], *, pinned: Mapping[str, bytes]) -> bool:
    """True if `message`'s signature verifies. `pinned` maps certificate URLs to PEM bytes the
    receiver was explicitly told to trust; any other URL must pass the real SNS host check
    (https, sns.<region>.amazonaws.com, *.pem), and this test never fetches one."""
    algorithm: hashes.HashAlgorithm
    version = message.get("SignatureVersion")
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    if str(message.get("Type")) not in SIGNED_KEYS:
        return False
    url = str(message.get("SigningCertURL", ""))
    pem = pinned.get(url)
    if pem is None:
        parts = urlsplit(url)
        real = (
            parts.scheme == "https"
            and _SNS_HOST.match(parts.hostname or "") is not None
            and parts.path.endswith(".pem")
        )
        raise Untrusted(f"{url} is not pinned" + ("" if real else " and is not an SNS host"))
    public_key = x509.load_pem_x509_certificate(pem).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    to_sign = string_to_sign(message)
    try:
        public_key.verify(
            base64.b64decode(message["Signature"]), to_sign, padding.PKCS1v15(), algorithm
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def tamper(message: dict[str, Any]) -> dict[str, Any]:
    """The same message with one byte of its Message changed."""
    text: str = message["Message"]
    i = text.index("Permanent") if "Permanent" in text else len(text) // 2
    return {**message, "Message": text[:i] + chr(ord(text[i]) ^ 1) + text[i + 1 :]}


@asynccontextmanager
async def sesv2(sim: SimHandle) -> AsyncIterator[Any]:
    async with aioboto3.Session().client("sesv2", **sim.client_kwargs()) as client:
        yield client


async def send(v2: Any, *to: str, **extra: Any) -> str:
    result = await v2.send_email(
        FromEmailAddress="sender@example.com",
        Destination={"ToAddresses": list(to)},
        Content=SIMPLE,
        **extra,
    )
    return str(result["MessageId"])


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
async def test_bounce_arrives_as_a_signed_sns_post_and_a_tampered_copy_does_not_verify(
    sim_inprocess: SimFactory, version: int
) -> None:
    async with (
        sim_inprocess(sns_signature_version=version) as sim,
        sns_receiver() as rx,
        sesv2(sim) as v2,
    ):
        pinned = {sim.endpoint_url + "/_sim/sns/certificate.pem": await sim.certificate_pem()}
        sub = await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url})
        (confirmation,) = await rx.wait_for("SubscriptionConfirmation")
        assert verify_sns(confirmation, pinned=pinned)
        assert not (await sim.admin("GET", "/_sim/subscriptions"))[0]["confirmed"]
        await send(v2, "bounce@simulator.amazonses.com")  # before confirming: not delivered
        async with aiohttp.ClientSession() as http, http.get(confirmation["SubscribeURL"]) as r:
            assert r.status == 200
            assert sub["subscription_arn"] in await r.text()
        message_id = await v2.send_email(
            FromEmailAddress="sender@example.com",
            Destination={"ToAddresses": [f"bounce{SIM}"]},
            Content=SIMPLE,
            EmailTags=[{"Name": "dispatcher_id", "Value": "42"}],
        )
        (notification,) = await rx.wait_for("Notification")
        headers = next(h for h, b in rx.posts if b is notification)
    assert notification["SignatureVersion"] == str(version)
    assert verify_sns(notification, pinned=pinned)
    assert not verify_sns(tamper(notification), pinned=pinned)
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-message-id"] == notification["MessageId"]
    assert headers["x-amz-sns-topic-arn"] == notification["TopicArn"] == sub["topic_arn"]
    assert headers["x-amz-sns-subscription-arn"] == sub["subscription_arn"]
    ses = json.loads(notification["Message"])  # a string holding the SES JSON, as SNS sends it
    assert ses["notificationType"] == "Bounce"
    assert ses["mail"]["messageId"] == message_id["MessageId"]
    assert ses["mail"]["destination"] == [f"bounce{SIM}"]
    assert "tags" not in ses["mail"]  # identity notifications: SES does not publish tags
    assert ses["mail"]["sourceIp"] and ses["mail"]["callerIdentity"]
    bounce = ses["bounce"]
    assert (bounce["bounceType"], bounce["bounceSubType"]) == ("Permanent", "General")
    assert bounce["bouncedRecipients"][0]["emailAddress"] == f"bounce{SIM}"
    assert bounce["bouncedRecipients"][0]["status"] == "5.1.1"


async def test_the_simulators_certificate_is_trusted_only_when_pinned(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess() as sim, sns_receiver() as rx:
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url})
        (confirmation,) = await rx.wait_for("SubscriptionConfirmation")
    # Not pinned: the real host check refuses an http://127.0.0.1 certificate URL.
    with pytest.raises(Untrusted, match="not an SNS host"):
        verify_sns(confirmation, pinned={})
    # Pinned to another key: the signature does not verify.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(other, hashes.SHA256())
    )
    wrong = {confirmation["SigningCertURL"]: cert.public_bytes(serialization.Encoding.PEM)}
    assert not verify_sns(confirmation, pinned=wrong)


async def test_configuration_set_events_carry_event_type_and_tags(
    sim_inprocess: SimFactory,
) -> None:
    async with (
        sim_inprocess(max_send_rate=100, configuration_sets=("marketing",)) as sim,
        sns_receiver() as rx,
        sesv2(sim) as v2,
    ):
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": rx.url, "kind": "configuration_set", "auto_confirm": True},
        )
        await sim.admin("POST", "/_sim/suppressed", {"address": "gone@example.com"})
        await send(v2, f"success{SIM}")  # no configuration set: no event-format events
        message_id = await send(
            v2,
            f"success+a{SIM}",
            f"complaint{SIM}",
            f"ooto{SIM}",
            f"suppressionlist{SIM}",
            "gone@example.com",
            ConfigurationSetName="marketing",
            EmailTags=[{"Name": "dispatcher_id", "Value": "7"}],
        )
        posts = await rx.wait_for("Notification", 5)
    events = [json.loads(p["Message"]) for p in posts]
    assert all(e["mail"]["messageId"] == message_id for e in events)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["eventType"], []).append(e)
    assert sorted(by_type) == ["Bounce", "Complaint", "Delivery", "Send"]
    delivered = by_type["Delivery"][0]["delivery"]["recipients"]
    assert sorted(delivered) == sorted([f"success+a{SIM}", f"complaint{SIM}", f"ooto{SIM}"])
    sub_types = sorted(b["bounce"]["bounceSubType"] for b in by_type["Bounce"])
    assert sub_types == ["OnAccountSuppressionList", "Suppressed"]
    complaint = by_type["Complaint"][0]["complaint"]
    assert complaint["complainedRecipients"] == [{"emailAddress": f"complaint{SIM}"}]
    tags = events[0]["mail"]["tags"]
    assert tags["dispatcher_id"] == ["7"] and tags["ses:configuration-set"] == ["marketing"]


async def test_events_go_to_a_jsonl_file(sim_inprocess: SimFactory, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with (
        sim_inprocess(events_file=str(path), configuration_sets=("cs",)) as sim,
        sesv2(sim) as v2,
    ):
        first = await send(v2, f"bounce{SIM}")
        second = await send(v2, f"complaint{SIM}", ConfigurationSetName="cs")
        stats = await sim.stats()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [(e.get("notificationType") or e["eventType"], e["mail"]["messageId"]) for e in lines]
    assert kinds == [
        ("Bounce", first),
        ("Send", second),
        ("Delivery", second),
        ("Delivery", second),
        ("Complaint", second),
        ("Complaint", second),
    ]
    assert stats["events"] == 4  # Bounce; Send, Delivery, Complaint (one line per format)


async def test_delivery_delay_is_injected(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(event_delay_ms=300) as sim,
        sns_receiver() as rx,
        sesv2(sim) as v2,
    ):
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url, "auto_confirm": True})
        loop = asyncio.get_running_loop()
        started = loop.time()
        await send(v2, f"success{SIM}")
        await asyncio.sleep(0.15)
        early = len(rx.posts)
        await rx.wait_for("Notification")
        elapsed = loop.time() - started
    assert early == 0
    assert 0.29 <= elapsed < 2.0


async def test_a_subscription_can_take_only_some_event_types(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, sns_receiver() as rx, sesv2(sim) as v2:
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": rx.url, "auto_confirm": True, "types": ["Bounce", "Complaint"]},
        )
        await send(v2, f"success{SIM}", f"complaint{SIM}", f"bounce{SIM}")
        posts = await rx.wait_for("Notification", 2)
        await asyncio.sleep(0.1)  # nothing else follows
    kinds = sorted(json.loads(p["Message"])["notificationType"] for p in rx.of_type("Notification"))
    assert len(posts) == 2 and kinds == ["Bounce", "Complaint"]


async def test_duplicates_share_the_sns_message_id(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(event_duplicate_rate=1.0) as sim,
        sns_receiver() as rx,
        sesv2(sim) as v2,
    ):
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url, "auto_confirm": True})
        await send(v2, f"bounce{SIM}")
        posts = await rx.wait_for("Notification", 2)
    assert len(posts) == 2 and posts[0] == posts[1]


async def test_reordering_delivers_out_of_send_order(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess(event_reorder_ms=400, max_send_rate=100) as sim,
        sns_receiver() as rx,
        sesv2(sim) as v2,
    ):
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url, "auto_confirm": True})
        sent = [await send(v2, f"bounce+{i}{SIM}") for i in range(12)]
        posts = await rx.wait_for("Notification", 12)
    arrived = [json.loads(p["Message"])["mail"]["messageId"] for p in posts]
    assert sorted(arrived) == sorted(sent)
    assert arrived != sent  # 12 uniform delays in order by chance: 1 in 479 million


async def test_failed_deliveries_are_retried_and_recorded(sim_inprocess: SimFactory) -> None:
    async with (
        sim_inprocess() as sim,
        sns_receiver(status=500) as rx,
        sesv2(sim) as v2,
    ):
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url, "auto_confirm": True})
        await send(v2, f"success{SIM}")
        await rx.wait_for("Notification", 3)
        assert sim.state is not None
        deliveries = await sim.admin("GET", "/_sim/deliveries")
    assert [d["attempt"] for d in deliveries] == [1, 2, 3]
    assert all(d["status"] == 500 for d in deliveries)


async def test_events_can_be_recorded_without_a_subscriber(sim: SimHandle) -> None:
    async with sesv2(sim) as v2:
        await send(v2, f"success{SIM}")  # not recorded: nothing wants events yet
        await sim.record_events()
        message_id = await send(v2, f"complaint{SIM}", "someone@example.com")
        events = await sim.events()
    assert [(e["type"], sorted(e["recipients"])) for e in events] == [
        ("Delivery", sorted([f"complaint{SIM}", "someone@example.com"])),
        ("Complaint", [f"complaint{SIM}"]),
    ]
    assert all(e["message_id"] == message_id for e in events)
    assert events[0]["event"] is None  # no configuration set: identity notifications only


async def test_cli_flags_subscribe_and_write_the_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "sns.pem"
    async with sns_receiver() as rx:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher.sim",
            "--port",
            "0",
            "--sns-endpoint",
            rx.url,
            "--sns-cert-file",
            str(cert),
            "--verify",
            "example.com",
            "--account-state",
            "paused",
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO_ROOT),
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            url = line.strip().rpartition(" ")[2]
            (confirmation,) = await rx.wait_for("SubscriptionConfirmation")
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/_sim/account") as r:
                    account = await r.json()
                async with http.get(url + "/_sim/identities") as r:
                    identities = await r.json()
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    assert verify_sns(confirmation, pinned={confirmation["SigningCertURL"]: cert.read_bytes()})
    assert account["sending_enabled"] is False
    assert [i["identity"] for i in identities] == ["example.com"]


# -- issue 15: every event type, auto-tags, rendering failures, events on demand -------------


async def _account(sim: SimHandle) -> None:
    """What a strict simulator needs: a verified sender, the configuration set, a template."""
    await sim.verify("example.com")
    await sim.admin("POST", "/_sim/configuration-sets", {"name": "cs"})
    await sim.admin(
        "POST", "/_sim/templates", {"name": "Welcome", "subject": "Hi {{name}}", "text": "{{name}}"}
    )


async def test_every_event_type_reaches_a_configuration_set_subscriber(
    sim_inprocess: SimFactory,
) -> None:
    locals_ = ["success", "bounce", "complaint", "transient", "delay", "open", "click"]
    async with sim_inprocess() as sim, sns_receiver() as rx, sesv2(sim) as v2:
        await _account(sim)
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": rx.url, "kind": "configuration_set", "auto_confirm": True},
        )
        await send(v2, *(f"{x}{SIM}" for x in locals_), ConfigurationSetName="cs")
        await send(v2, f"unsubscribe{SIM}", ConfigurationSetName="cs")
        await send(v2, f"reject{SIM}", ConfigurationSetName="cs")
        posts = await rx.wait_for("Notification", 13)
    events = [json.loads(p["Message"]) for p in posts]
    kinds = sorted({e["eventType"] for e in events})
    assert kinds == sorted(
        [
            "Send",
            "Delivery",
            "Bounce",
            "Complaint",
            "DeliveryDelay",
            "Open",
            "Click",
            "Subscription",
            "Reject",
        ]
    )
    bounces = {
        (e["bounce"]["bounceType"], e["bounce"]["bounceSubType"]) for e in events if "bounce" in e
    }
    assert bounces == {("Permanent", "General"), ("Transient", "General")}
    delay = next(e for e in events if e["eventType"] == "DeliveryDelay")["deliveryDelay"]
    assert delay["delayType"] == "TransientCommunicationFailure"
    assert all(e["mail"]["tags"]["ses:operation"] == ["SendEmail"] for e in events)


async def test_ses_operation_names_the_call_that_sent_the_message(sim: SimHandle) -> None:
    await _account(sim)
    await sim.record_events()
    raw = base64.b64encode(b"From: a@example.com\r\nTo: success@simulator.amazonses.com\r\n\r\nx")
    async with (
        aioboto3.Session().client("ses", **sim.client_kwargs()) as v1,
        sesv2(sim) as v2,
    ):
        await v1.send_email(
            Source="a@example.com",
            Destination={"ToAddresses": [f"success{SIM}"]},
            Message={"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}},
            ConfigurationSetName="cs",
        )
        await v1.send_raw_email(
            RawMessage={"Data": base64.b64decode(raw)}, ConfigurationSetName="cs"
        )
        await v1.send_templated_email(
            Source="a@example.com",
            Destination={"ToAddresses": [f"success{SIM}"]},
            Template="Welcome",
            TemplateData='{"name": "x"}',
            ConfigurationSetName="cs",
        )
        await v1.send_bulk_templated_email(
            Source="a@example.com",
            Template="Welcome",
            DefaultTemplateData='{"name": "x"}',
            Destinations=[{"Destination": {"ToAddresses": [f"success{SIM}"]}}],
            ConfigurationSetName="cs",
        )
        await send(v2, f"success{SIM}", ConfigurationSetName="cs")
        await v2.send_bulk_email(
            FromEmailAddress="a@example.com",
            DefaultContent={
                "Template": {"TemplateName": "Welcome", "TemplateData": '{"name": "x"}'}
            },
            BulkEmailEntries=[{"Destination": {"ToAddresses": [f"success{SIM}"]}}],
            ConfigurationSetName="cs",
        )
    sends = [e["event"] for e in await sim.events() if e["type"] == "Send"]
    assert [s["mail"]["tags"]["ses:operation"] for s in sends] == [
        ["SendEmail"],
        ["SendRawEmail"],
        ["SendTemplatedEmail"],
        ["SendBulkTemplatedEmail"],
        ["SendEmail"],
        ["SendBulkEmail"],
    ]


async def test_a_missing_template_variable_is_accepted_but_never_delivered(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess() as sim, sns_receiver() as rx, sesv2(sim) as v2:
        await _account(sim)
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": rx.url, "kind": "configuration_set", "auto_confirm": True},
        )
        result = await v2.send_bulk_email(
            FromEmailAddress="a@example.com",
            DefaultContent={"Template": {"TemplateName": "Welcome", "TemplateData": "{}"}},
            BulkEmailEntries=[
                {"Destination": {"ToAddresses": [f"success+1{SIM}"]}},
                {
                    "Destination": {"ToAddresses": [f"success+2{SIM}"]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": '{"name": "Bo"}'}
                    },
                },
            ],
            ConfigurationSetName="cs",
        )
        failed, sent = (r["MessageId"] for r in result["BulkEmailEntryResults"])
        posts = await rx.wait_for("Notification", 4)  # Send+Rendering Failure, Send+Delivery
        listed = await sim.messages()
        everything = await sim.admin("GET", "/_sim/messages?all=1")
        stats = await sim.stats()
    assert [r["Status"] for r in result["BulkEmailEntryResults"]] == ["SUCCESS", "SUCCESS"]
    assert [m["message_id"] for m in listed] == [sent]  # the failed one was never delivered
    assert (stats["accepted"], stats["rendering_failures"]) == (2, 1)
    assert [m["rendering_failure"] for m in everything] == [
        "Attribute 'name' is not present in the rendering data.",
        None,
    ]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for p in posts:
        e = json.loads(p["Message"])
        by_message.setdefault(e["mail"]["messageId"], []).append(e)
    assert sorted(e["eventType"] for e in by_message[failed]) == ["Rendering Failure", "Send"]
    assert sorted(e["eventType"] for e in by_message[sent]) == ["Delivery", "Send"]
    failure = next(e for e in by_message[failed] if e["eventType"] == "Rendering Failure")
    assert failure["failure"] == {
        "errorMessage": "Attribute 'name' is not present in the rendering data.",
        "templateName": "Welcome",
    }


async def test_any_event_can_be_emitted_for_an_accepted_message(sim_inprocess: SimFactory) -> None:
    async with sim_inprocess() as sim, sns_receiver() as rx, sesv2(sim) as v2:
        await _account(sim)
        await sim.admin("POST", "/_sim/subscriptions", {"endpoint": rx.url, "auto_confirm": True})
        plain = await send(v2, "someone@example.com")
        (delivered,) = await rx.wait_for("Notification")
        emitted = await sim.admin(
            "POST",
            "/_sim/events/emit",
            {
                "recipient": "someone@example.com",
                "type": "Bounce",
                "bounce_type": "Transient",
                "bounce_sub_type": "MailboxFull",
            },
        )
        posts = await rx.wait_for("Notification", 2)
        async with aiohttp.ClientSession() as http:
            url = sim.endpoint_url + "/_sim/events/emit"
            async with http.post(url, json={"message_id": plain, "type": "Open"}) as r:
                no_set = (r.status, (await r.json())["error"])
            async with http.post(url, json={"message_id": "nope", "type": "Bounce"}) as r:
                unknown = r.status
    assert json.loads(delivered["Message"])["notificationType"] == "Delivery"
    bounce = json.loads(posts[1]["Message"])
    assert bounce == emitted["notification"]
    assert bounce["mail"]["messageId"] == plain and "tags" not in bounce["mail"]
    assert (bounce["bounce"]["bounceType"], bounce["bounce"]["bounceSubType"]) == (
        "Transient",
        "MailboxFull",
    )
    assert no_set[0] == 400 and "only through a configuration set" in no_set[1]
    assert unknown == 404


async def test_a_raw_message_names_its_configuration_set_and_tags_in_ses_headers(
    sim: SimHandle,
) -> None:
    await _account(sim)
    await sim.record_events()
    raw = (
        b"X-SES-MESSAGE-TAGS: dispatcher_id=12, campaign=spring\r\n"
        b"X-SES-CONFIGURATION-SET: cs\r\n"
        b"From: a@example.com\r\nTo: success@simulator.amazonses.com\r\nSubject: s\r\n\r\nbody"
    )
    async with (
        aioboto3.Session().client("ses", **sim.client_kwargs()) as v1,
        sesv2(sim) as v2,
    ):
        await v1.send_raw_email(RawMessage={"Data": raw})
        # The API's tags win over the headers' (SES does not merge them).
        await v2.send_email(
            Content={"Raw": {"Data": raw}}, EmailTags=[{"Name": "dispatcher_id", "Value": "13"}]
        )
    sends = [e["event"] for e in await sim.events() if e["type"] == "Send"]
    assert [s["mail"]["tags"]["ses:configuration-set"] for s in sends] == [["cs"], ["cs"]]
    assert sends[0]["mail"]["tags"]["dispatcher_id"] == ["12"]
    assert sends[0]["mail"]["tags"]["campaign"] == ["spring"]
    assert sends[1]["mail"]["tags"]["dispatcher_id"] == ["13"]
    assert "campaign" not in sends[1]["mail"]["tags"]
    assert sends[0]["mail"]["tags"]["ses:operation"] == ["SendRawEmail"]


async def test_identity_notifications_can_leave_the_original_headers_out(
    sim_inprocess: SimFactory,
) -> None:
    async with sim_inprocess() as sim, sns_receiver() as rx, sesv2(sim) as v2:
        await _account(sim)
        await sim.admin(
            "POST",
            "/_sim/subscriptions",
            {"endpoint": rx.url, "auto_confirm": True, "headers": False},
        )
        message_id = await send(v2, f"complaint{SIM}", ConfigurationSetName="cs")
        posts = await rx.wait_for("Notification", 2)
    notifications = [json.loads(p["Message"]) for p in posts]
    assert sorted(n["notificationType"] for n in notifications) == ["Complaint", "Delivery"]
    for n in notifications:
        # notification-contents.html: without headers, no headersTruncated/headers/commonHeaders;
        # and never tags, even for mail sent with a configuration set.
        assert set(n["mail"]) == {
            "timestamp",
            "messageId",
            "source",
            "sourceArn",
            "sourceIp",
            "sendingAccountId",
            "callerIdentity",
            "destination",
        }
        assert n["mail"]["messageId"] == message_id
