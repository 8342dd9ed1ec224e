"""The response checker of the shape-conformance test finds each kind of departure it claims to."""

from __future__ import annotations

import json

import botocore.session
import pytest

from tests.support.shapes import Exchange, check

_SESSION = botocore.session.get_session()
SES = _SESSION.get_service_model("ses")
SESV2 = _SESSION.get_service_model("sesv2")
NS = "http://ses.amazonaws.com/doc/2010-12-01/"
XML = {"Content-Type": "text/xml; charset=utf-8"}
META = "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"


def v1(action: str, result: str | None, status: int = 200) -> Exchange:
    wrapped = "" if result is None else f"<{action}Result>{result}</{action}Result>"
    body = f'<{action}Response xmlns="{NS}">{wrapped}{META}</{action}Response>'
    return Exchange(SES.operation_model(action), status, XML, body.encode())


def v1_error(action: str, code: str, type_: str = "Sender") -> Exchange:
    body = (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>{type_}</Type><Code>{code}</Code>'
        "<Message>m</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
    return Exchange(SES.operation_model(action), 400, XML, body.encode())


def v2(operation: str, payload: object, status: int = 200, code: str = "") -> Exchange:
    headers = {"x-amzn-RequestId": "r-1", "Content-Type": "application/json"}
    if code:
        headers["x-amzn-ErrorType"] = code
    return Exchange(SESV2.operation_model(operation), status, headers, json.dumps(payload).encode())


def attrs(status: str, key: str = "key") -> str:
    """GetIdentityVerificationAttributes' map: <entry><key>..</key><value>..</value></entry>."""
    value = f"<value><VerificationStatus>{status}</VerificationStatus></value>"
    entry = f"<entry><{key}>a@b.c</{key}>{value}</entry>"
    return f"<VerificationAttributes>{entry}</VerificationAttributes>"


QUOTA = "<Max24HourSend>200.0</Max24HourSend><MaxSendRate>1.0</MaxSendRate>"
SUPPRESSED = {"EmailAddress": "a@b.c", "Reason": "BOUNCE", "LastUpdateTime": 1.5e9}
ACCOUNT = {"SendingEnabled": True, "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE"]}}


@pytest.mark.parametrize(
    "exchange",
    [
        v1("GetSendQuota", QUOTA + "<SentLast24Hours>0.0</SentLast24Hours>"),
        v1("SendEmail", "<MessageId>m-1</MessageId>"),
        v1("ListIdentities", "<Identities><member>a@b.c</member></Identities>"),
        v1("VerifyEmailAddress", None),
        v1("GetIdentityVerificationAttributes", attrs("Pending")),
        v1("DeleteIdentity", ""),
        v1_error("GetTemplate", "TemplateDoesNotExist"),
        v1_error("GetSendQuota", "Throttling"),
        v2("SendEmail", {"MessageId": "m-1"}),
        v2("GetAccount", ACCOUNT),
        v2("ListSuppressedDestinations", {"SuppressedDestinationSummaries": []}),
        v2("GetEmailTemplate", {"message": "no"}, 404, "NotFoundException"),
        v2("GetSuppressedDestination", {"SuppressedDestination": SUPPRESSED}),
    ],
)
def test_a_conforming_response_passes(exchange: Exchange) -> None:
    assert check(exchange) == []


@pytest.mark.parametrize(
    ("exchange", "problem"),
    [
        (v1("GetSendQuota", QUOTA + "<Sent>0</Sent>"), "unknown element <Sent>"),
        (v1("GetSendQuota", "<MaxSendRate>fast</MaxSendRate>"), "'fast' is not a double"),
        (v1("SendEmail", ""), "required member MessageId is missing"),
        (v1("ListIdentities", "<Identities><item>x</item></Identities>"), "<item> in a list"),
        (v1("GetAccountSendingEnabled", "<Enabled>yes</Enabled>"), "'yes' is not a boolean"),
        (v1("VerifyEmailAddress", ""), "unknown element <VerifyEmailAddressResult>"),
        (v1("DeleteIdentity", None), "no <DeleteIdentityResult>"),
        (v1("GetIdentityVerificationAttributes", attrs("Done")), "'Done' is not one of"),
        (v1("GetIdentityVerificationAttributes", attrs("Success", "name")), "not <entry><key>"),
        (v1_error("GetTemplate", "NoSuchTemplate"), "NoSuchTemplate is neither modeled"),
        (v1_error("GetTemplate", "TemplateDoesNotExist", "Client"), "not Sender or Receiver"),
        (v2("GetEmailTemplate", {"TemplateName": "t"}), "required member TemplateContent"),
        (v2("SendEmail", {"MessageId": "m", "Extra": 1}), "unknown member 'Extra'"),
        (v2("GetAccount", {"SendingEnabled": "true"}), '"true" is not a boolean'),
        (v2("GetAccount", {"SendQuota": {"MaxSendRate": "1"}}), '"1" is not a double'),
        (v2("GetAccount", {"ProductionAccessEnabled": None}), "null"),
        (
            v2("GetAccount", {"SuppressionAttributes": {"SuppressedReasons": ["SPAM"]}}),
            "'SPAM' is not one of SuppressionListReason",
        ),
        (
            v2("ListSuppressedDestinations", {"SuppressedDestinationSummaries": {}}),
            "is not a list",
        ),
        (v2("GetEmailTemplate", {}, 400, "NotFoundException"), "answered HTTP 400"),
        (
            v2(
                "GetSuppressedDestination",
                {"SuppressedDestination": {**SUPPRESSED, "LastUpdateTime": "yesterday"}},
            ),
            '"yesterday" is not a timestamp',
        ),
        (v2("GetEmailTemplate", {}, 400, "ValidationException"), "neither modeled"),
    ],
)
def test_each_departure_is_named(exchange: Exchange, problem: str) -> None:
    problems = check(exchange)
    assert any(problem in p for p in problems), problems


def test_a_v2_answer_needs_its_request_id_and_json() -> None:
    bare = Exchange(SESV2.operation_model("SendEmail"), 200, {}, b'{"MessageId": "m"}')
    assert check(bare) == [
        "SendEmail: Content-Type '', expected json",
        "SendEmail: no x-amzn-RequestId header",
    ]
