"""Every row of the SES error table (shared/SES-FACTS.md) in its v1 and v2 wire forms."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dispatcher.ses.classify as classify_module
from dispatcher.domain.outcome import Outcome
from dispatcher.ses.adapter import identities_of
from dispatcher.ses.classify import (
    Identities,
    classify_bulk_status,
    classify_error,
    listed_identities,
)

T, Q, P = Outcome.THROTTLED, Outcome.DAILY_QUOTA, Outcome.ACCOUNT_PAUSED
C, R, X = Outcome.CONFIG_ERROR, Outcome.REJECTED, Outcome.TRANSIENT

RATE = "Maximum sending rate exceeded."
DAILY = "Daily message quota exceeded."

# (code, message, HTTP status) -> Outcome
ERROR_TABLE: list[tuple[str | None, str | None, int | None, Outcome]] = [
    # Over MaxSendRate.
    ("Throttling", RATE, 400, T),  # v1
    ("TooManyRequestsException", "Too Many Requests", 429, T),  # v2
    ("TooManyRequestsException", RATE, 429, T),
    ("TooManyRequestsException", None, 429, T),
    ("Throttling", "Rate exceeded", 400, T),  # v1 non-send actions (GetSendQuota)
    ("ThrottlingException", "Rate exceeded", 400, T),
    (None, None, 429, T),  # a bare 429 from a proxy or load balancer
    ("SomethingNew", "slow down", 429, T),
    # Daily quota: told from the rate only by the text, in any case, whatever the code.
    ("Throttling", DAILY, 400, Q),  # v1
    ("Throttling", "daily message quota exceeded.", 400, Q),
    ("Throttling", "DAILY MESSAGE QUOTA EXCEEDED", 400, Q),
    ("LimitExceededException", DAILY, 400, Q),  # v2 (likely form, not confirmed)
    ("LimitExceededException", "Limit exceeded", 400, Q),  # v2 on a send, text unknown
    ("TooManyRequestsException", DAILY, 429, Q),  # v2 if SES ever says it with a 429
    ("MessageRejected", DAILY, 400, Q),  # any code with that text
    # Account paused or suspended.
    ("AccountSendingPausedException", "Account sending paused.", 400, P),  # v1
    ("SendingPausedException", "Sending is paused for this account.", 400, P),  # v2
    ("AccountSuspendedException", "Account suspended.", 400, P),  # v2
    # A configuration set paused: no Outcome of its own, CONFIG_ERROR with the code kept.
    ("ConfigurationSetSendingPausedException", "Config set paused.", 400, C),  # v1
    ("SendingPausedException", "Sending is paused for this configuration set.", 400, C),  # v2
    # Configuration shared by every message that uses it.
    ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified", 400, C),
    ("ConfigurationSetDoesNotExist", "Configuration set <x> does not exist.", 400, C),  # v1
    ("TemplateDoesNotExist", "Template t does not exist", 400, C),  # v1
    ("NotFoundException", "Configuration set <x> does not exist.", 404, C),  # v2
    ("NotFoundException", None, 404, C),
    ("BadRequestException", "1 validation error detected", 400, C),  # v2
    ("InvalidParameterValue", "Invalid tag value", 400, C),  # v1
    ("AccessDenied", "User is not authorized to perform ses:SendEmail", 403, C),
    ("AccessDeniedException", "not authorized", 403, C),
    ("SignatureDoesNotMatch", "The request signature we calculated does not match", 403, C),
    ("InvalidClientTokenId", "The security token included in the request is invalid.", 403, C),
    ("UnrecognizedClientException", "The security token is invalid.", 403, C),
    # An address that does not parse: this message only.
    ("InvalidParameterValue", "Missing final '@domain'", 400, R),  # v1
    ("BadRequestException", "Missing final '@domain'", 400, R),  # v2
    ("InvalidParameterValue", "Missing domain", 400, R),  # moto's form
    ("BadRequestException", "Local address contains control or whitespace", 400, R),
    ("BadRequestException", "Domain contains illegal character", 400, R),
    ("InvalidParameterValue", "Illegal address", 400, R),
    # "Not verified" without the message's identities: sender or recipient cannot be told,
    # so the safe side (test_not_verified_* below decide with them).
    ("MessageRejected", "Email address is not verified. The following identities ...", 400, C),
    ("MessageRejected", "Email address not verified sender@example.com", 400, C),  # moto
    # This message refused.
    ("MessageRejected", "Message length is more than 10485760 bytes long", 400, R),
    # A parameter error of this message only (size, its own headers), not of its sender.
    ("InvalidParameterValue", "Message length is more than 41943040 bytes.", 400, R),  # v1
    ("BadRequestException", "Message length is more than 41943040 bytes.", 400, R),  # v2
    ("InvalidParameterValue", "Duplicate header 'Subject'.", 400, R),
    ("InvalidParameterValue", "Missing required header 'From'.", 400, R),
    ("BadRequestException", "No recipient addresses were specified.", 400, R),
    ("MessageRejected", None, None, R),
    # SES-side failure.
    ("InternalServiceErrorException", "Internal error", 500, X),  # v2
    ("InternalFailure", "An internal error occurred", 500, X),  # v1
    ("ServiceUnavailable", "Service Unavailable", 503, X),
    ("ServiceUnavailableException", None, 503, X),
    ("SomethingNew", "boom", 500, X),  # any 5xx
    (None, None, 502, X),  # a bare gateway error
    (None, "upstream timed out", 504, X),
    ("InternalServiceErrorException", None, None, X),
    # Unknown 4xx, or nothing known: CONFIG_ERROR, never REJECTED (a list is not burnt).
    ("SomethingNew", "what is this", 400, C),
    ("SomethingNew", None, 403, C),
    (None, None, 400, C),
    (None, None, 418, C),
    (None, None, None, C),
    ("", "", None, C),
    # Codes compare exactly (botocore keeps SES's spelling); surrounding blanks are ignored.
    (" MessageRejected ", "x", 400, R),
    ("messagerejected", "x", 400, C),
]


@pytest.mark.parametrize(("code", "message", "status", "expected"), ERROR_TABLE)
def test_classify_error(
    code: str | None, message: str | None, status: int | None, expected: Outcome
) -> None:
    assert classify_error(code, message, status) is expected


BULK_TABLE: list[tuple[str, str | None, Outcome]] = [
    ("SUCCESS", None, Outcome.SENT),
    ("SUCCESS", DAILY, Outcome.SENT),  # a success is a success, whatever text rides along
    ("MESSAGE_REJECTED", "Email address is not verified.", C),  # no list: cannot be told
    ("MESSAGE_REJECTED", "Bad content", R),
    ("MAIL_FROM_DOMAIN_NOT_VERIFIED", None, C),
    ("CONFIGURATION_SET_NOT_FOUND", None, C),
    ("TEMPLATE_NOT_FOUND", None, C),
    ("ACCOUNT_SUSPENDED", None, P),
    ("ACCOUNT_THROTTLED", RATE, T),
    ("ACCOUNT_THROTTLED", None, T),
    ("ACCOUNT_THROTTLED", DAILY, Q),  # the text decides
    ("ACCOUNT_DAILY_QUOTA_EXCEEDED", None, Q),
    ("ACCOUNT_DAILY_QUOTA_EXCEEDED", DAILY, Q),
    ("ACCOUNT_SENDING_PAUSED", None, P),
    ("CONFIGURATION_SET_SENDING_PAUSED", None, C),
    ("INVALID_SENDING_POOL_NAME", None, C),
    ("INVALID_PARAMETER", "Invalid template data", C),
    ("INVALID_PARAMETER", None, C),
    ("INVALID_PARAMETER", "Missing final '@domain'", R),
    ("INVALID_PARAMETER", "Message length is more than 41943040 bytes.", R),
    ("TRANSIENT_FAILURE", None, X),
    ("FAILED", "The email failed to send for an unknown reason", X),
    ("FAILED", DAILY, Q),
    ("failed", None, X),  # case-insensitive status
    ("SOMETHING_NEW", None, C),
    ("", None, C),
]


@pytest.mark.parametrize(("status", "error", "expected"), BULK_TABLE)
def test_classify_bulk_status(status: str, error: str | None, expected: Outcome) -> None:
    assert classify_bulk_status(status, error) is expected


def test_every_bulk_status_botocore_knows_is_in_the_table() -> None:
    # The enum in botocore's sesv2 model: a status added by a botocore upgrade fails here,
    # instead of silently falling to "unknown status -> CONFIG_ERROR".
    import botocore.session
    from botocore.model import StringShape

    shape = botocore.session.get_session().get_service_model("sesv2").shape_for("BulkEmailStatus")
    assert isinstance(shape, StringShape)
    enum = set(shape.enum)
    assert "SUCCESS" in enum
    assert enum <= {row[0] for row in BULK_TABLE}
    assert enum <= set(classify_module._BY_BULK_STATUS)


def test_classify_imports_no_io_library() -> None:
    tree = ast.parse(Path(classify_module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "dataclasses", "dispatcher.domain.outcome"}


def test_v1_message_rejected_for_a_paused_account_stops_the_account() -> None:
    # Seen in the wild (GoodDollar/GoodServer#419): v1 reports an AWS pause as MessageRejected.
    text = "Sending paused for this account. For more information, please check the inbox."
    assert classify_error("MessageRejected", text, 400) is Outcome.ACCOUNT_PAUSED


def not_verified(*identities: str) -> str:
    """SES's text (anonaddy/anonaddy#647), as the simulator also words it."""
    return (
        "Email address is not verified. The following identities failed the check in region "
        f"US-EAST-1: {', '.join(identities)}"
    )


SENDS = Identities(
    senders=frozenset({"news@mail.example.com"}),
    recipients=frozenset({"jo@example.net", "al@example.org"}),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The sender listed, alone or with recipients (sandbox): hold the sender, fail nothing.
        (not_verified("news@mail.example.com"), C),
        (not_verified("NEWS@Mail.Example.com"), C),  # SES may echo the case it was given
        (not_verified("jo@example.net", "news@mail.example.com"), C),
        (not_verified("mail.example.com"), C),  # the domain identity
        (not_verified("example.com"), C),  # a parent domain covers its subdomains
        ("Email address not verified news@mail.example.com", C),  # moto's wording
        # Only recipients of this message (sandbox): this message fails with SES's text.
        (not_verified("jo@example.net"), R),
        (not_verified("jo@example.net", "al@example.org"), R),
        (not_verified("example.org"), R),
        # Nothing listed, or an identity that is neither: the safe side, hold.
        ("Email address is not verified.", C),
        (not_verified("someone@else.example"), C),
        (not_verified("jo@example.net", "someone@else.example"), C),
        # Not a "not verified" refusal at all: the code decides as before.
        ("Bad content", R),
    ],
)
def test_not_verified_tells_the_sender_from_recipients(text: str, expected: Outcome) -> None:
    assert classify_error("MessageRejected", text, 400, SENDS) is expected
    assert classify_bulk_status("MESSAGE_REJECTED", text, SENDS) is expected


def test_the_listed_identities_are_read_from_both_wordings() -> None:
    assert listed_identities(not_verified("A@x.com", "y.org")) == ("a@x.com", "y.org")
    assert listed_identities("Email address not verified a@x.com") == ("a@x.com",)
    assert listed_identities("Email address is not verified.") == ()
    assert listed_identities("Bad content") is None
    assert listed_identities("Daily message quota exceeded.") is None


def test_a_raw_message_is_checked_by_its_from_sender_and_return_path_headers() -> None:
    from dispatcher.domain.message import OutgoingMessage

    raw = (
        b"From: Shop <Shop@Example.com>\r\nSender: bot@relay.example.com\r\n"
        b"Return-Path: <bounces@example.com>\r\nTo: a@x.net, B <b@y.net>\r\n"
        b"Subject: s\r\n\r\nbody\r\n"
    )
    ids = identities_of([OutgoingMessage(id=1, from_addr="Shop <shop@example.com>", raw=raw)])
    assert ids.senders == {"shop@example.com", "bot@relay.example.com", "bounces@example.com"}
    assert ids.recipients == {"a@x.net", "b@y.net"}
    assert classify_error("MessageRejected", not_verified("relay.example.com"), 400, ids) is C
    assert classify_error("MessageRejected", not_verified("b@y.net"), 400, ids) is R
