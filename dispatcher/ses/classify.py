"""Sort SES error codes, texts and HTTP statuses into Outcomes: pure, no botocore or aiohttp.

The table follows shared/SES-FACTS.md ("Errors and what each means for a sender") for both wire
forms: v1 (Query/XML, `ses`) and v2 (REST-JSON, `sesv2`). Rules, in the order they apply:

1. The text decides rate against daily quota: SES sends both as `Throttling` (v1), and v2 may use
   `LimitExceededException` or `TooManyRequestsException`, so "daily message quota exceeded" is
   DAILY_QUOTA and "maximum sending rate exceeded" is THROTTLED whatever the code.
2. A known code maps through `_BY_CODE` (a few codes then look at the text, see below).
3. Otherwise the HTTP status: 429 THROTTLED, 5xx TRANSIENT, any other status CONFIG_ERROR.

`MessageRejected` "Email address is not verified. The following identities failed the check in
region R: A, B" is SES's answer both for a sender that is not verified (any account) and, in the
sandbox, for a recipient that is not: the listed identities are compared with the message's
(`Identities`). The sender among them is CONFIG_ERROR (hold that sender, fail nothing); only
recipients of this message, REJECTED; anything else (no list, an identity we do not know) is
CONFIG_ERROR, for the reason below.

An unknown 4xx is CONFIG_ERROR, not REJECTED: we do not know that it concerns only this message,
and if it concerns them all, REJECTED would fail every message of the list one by one, while
CONFIG_ERROR stops the campaign with its mail still queued until a person looks.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.domain.outcome import Outcome

__all__ = [
    "Identities",
    "classify_bulk_status",
    "classify_error",
    "covers",
    "listed_identities",
]

_DAILY_QUOTA_TEXT = "daily message quota exceeded"
_RATE_TEXT = "maximum sending rate exceeded"
_ACCOUNT_PAUSED_TEXT = "sending paused for this account"

# How the text of an unparseable address starts (SES quotes javax.mail's AddressException, e.g.
# "Missing final '@domain'"). Such a BadRequestException / InvalidParameterValue concerns this
# message only: REJECTED, not CONFIG_ERROR, or one typo in a list would stop the whole campaign.
_BAD_ADDRESS_PREFIXES = (
    "missing final '@domain'",
    "missing final @domain",
    "missing domain",
    "missing local name",
    "local address contains",
    "local address starts with",
    "local address ends with",
    "domain contains",
    "domain starts with",
    "domain ends with",
    "illegal address",
    "illegal route-addr",
    "invalid email address",  # v2's BadRequestException text for an unparseable recipient
    "recipient count exceeds",  # more than 50 recipients: this message's own fault
)

# Parameter errors that concern this one message, whatever the code (v1 InvalidParameterValue,
# v2 BadRequestException, bulk INVALID_PARAMETER): its size or its own headers. REJECTED, not
# CONFIG_ERROR: a configuration error holds every later message of its sender, and this message
# would be retried forever without ever fitting (issue 13 item 4).
_THIS_MESSAGE_TEXTS = (
    "message length is more than",  # "Message length is more than 41943040 bytes."
    "message too long",
    "duplicate header",  # a raw message naming a header twice (not confirmed)
    "missing required header",  # a raw message without From (not confirmed)
    "no recipient addresses were specified",  # a message without recipients
)

# SES: "Email address is not verified. The following identities failed the check in region
# US-EAST-1: a@x.com, x.com" (anonaddy/anonaddy#647); moto: "Email address not verified a@x.com".
_NOT_VERIFIED_START = "email address"
_NOT_VERIFIED = "not verified"
_LIST_AFTER = "failed the check in region"


@dataclass(frozen=True, slots=True)
class Identities:
    """Whom one message (or bulk call) is from and to, as bare lower-case addresses: what
    SES's "not verified" refusal is compared with. Senders: From, Source, Return-Path, and a raw
    message's From/Sender headers."""

    senders: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()


_T = Outcome.THROTTLED
_Q = Outcome.DAILY_QUOTA
_P = Outcome.ACCOUNT_PAUSED
_C = Outcome.CONFIG_ERROR
_R = Outcome.REJECTED
_X = Outcome.TRANSIENT

# Wire code -> Outcome when the text did not decide (rule 1).
_BY_CODE: dict[str, Outcome] = {
    # Over MaxSendRate (v1 Throttling, v2 429), and the throttling codes botocore knows for AWS.
    "Throttling": _T,
    "ThrottlingException": _T,
    "ThrottledException": _T,
    "TooManyRequestsException": _T,
    "RequestThrottled": _T,
    "RequestThrottledException": _T,
    "RequestLimitExceeded": _T,
    "SlowDown": _T,
    # v2 LimitExceededException on a send: SES-FACTS says daily quota is "likely" this code.
    # Requeue-and-pause is the reaction that loses nothing if the guess is wrong.
    "LimitExceededException": _Q,
    # Account paused or suspended: stop all sending.
    "AccountSendingPausedException": _P,  # v1
    "SendingPausedException": _P,  # v2 (see _config_set_paused_text)
    "AccountSuspendedException": _P,  # v2
    # One configuration set paused: no Outcome of its own in the shared enum; CONFIG_ERROR
    # ("stop the affected campaign or sender") is the closest, and SendResult.code keeps the
    # wire code so a caller can hold just that set's mail.
    "ConfigurationSetSendingPausedException": _C,
    # Configuration shared by every message that uses it.
    "MailFromDomainNotVerifiedException": _C,
    "ConfigurationSetDoesNotExist": _C,  # v1 code (shape ConfigurationSetDoesNotExistException)
    "ConfigurationSetDoesNotExistException": _C,
    "TemplateDoesNotExist": _C,
    "TemplateDoesNotExistException": _C,
    "NotFoundException": _C,  # v2: configuration set / template / identity not found
    "BadRequestException": _C,  # v2 (bad address text: REJECTED, see _BAD_ADDRESS_PREFIXES)
    "InvalidParameterValue": _C,  # v1 generic (bad address text: REJECTED)
    "InvalidParameterCombination": _C,
    "MissingParameter": _C,
    "ValidationError": _C,
    "ValidationException": _C,
    # Credentials and permissions: shared by everything this process sends.
    "AccessDenied": _C,
    "AccessDeniedException": _C,
    "InvalidClientTokenId": _C,
    "UnrecognizedClientException": _C,
    "SignatureDoesNotMatch": _C,
    "IncompleteSignature": _C,
    "InvalidSignatureException": _C,
    "MissingAuthenticationToken": _C,
    "ExpiredToken": _C,
    "ExpiredTokenException": _C,
    "OptInRequired": _C,
    # This message refused (content, size; "not verified" is decided by its list, see above).
    "MessageRejected": _R,
    # SES-side failure: retry with backoff.
    "InternalFailure": _X,
    "InternalError": _X,
    "InternalServiceError": _X,
    "InternalServiceErrorException": _X,
    "ServiceUnavailable": _X,
    "ServiceUnavailableException": _X,
    "RequestTimeout": _X,  # SES did not receive the whole request in time
    "RequestTimeoutException": _X,
}

# v2 SendBulkEmail per-entry Status -> Outcome.
_BY_BULK_STATUS: dict[str, Outcome] = {
    "SUCCESS": Outcome.SENT,
    "MESSAGE_REJECTED": _R,
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": _C,
    "CONFIGURATION_SET_NOT_FOUND": _C,
    "TEMPLATE_NOT_FOUND": _C,
    "ACCOUNT_SUSPENDED": _P,
    "ACCOUNT_THROTTLED": _T,
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": _Q,
    "ACCOUNT_SENDING_PAUSED": _P,
    "CONFIGURATION_SET_SENDING_PAUSED": _C,
    "INVALID_SENDING_POOL_NAME": _C,  # in botocore's enum, not in SES-FACTS: dedicated IP pool
    "INVALID_PARAMETER": _C,  # bad address text: REJECTED
    "TRANSIENT_FAILURE": _X,
    "FAILED": _X,  # "failed for an unknown reason": SES did not take it, so not IN_DOUBT
}


def _text_outcome(text: str) -> Outcome | None:
    """Rule 1: texts that say what happened whatever the code around them.

    The two throttling texts; and an account paused by AWS, which v1 has been seen answering as
    `MessageRejected` "Sending paused for this account..." (GoodDollar/GoodServer#419): failing
    every message one by one for it would burn through the queue.
    """
    if _DAILY_QUOTA_TEXT in text:
        return Outcome.DAILY_QUOTA
    if _RATE_TEXT in text:
        return Outcome.THROTTLED
    if _ACCOUNT_PAUSED_TEXT in text:
        return Outcome.ACCOUNT_PAUSED
    return None


def _bad_address(text: str) -> bool:
    """The error is about this message only: an address of it, its size or its headers."""
    return text.lstrip().startswith(_BAD_ADDRESS_PREFIXES) or any(
        t in text for t in _THIS_MESSAGE_TEXTS
    )


def listed_identities(text: str) -> tuple[str, ...] | None:
    """The identities a "not verified" refusal lists (lower-case; may be empty), or None when
    the text is another refusal."""
    text = text.strip().lower()
    if not text.startswith(_NOT_VERIFIED_START) or _NOT_VERIFIED not in text:
        return None
    where = text.find(_LIST_AFTER)
    if where >= 0:
        colon = text.find(":", where)
        rest = text[colon + 1 :] if colon >= 0 else ""
    else:
        rest = text[text.find(_NOT_VERIFIED) + len(_NOT_VERIFIED) :]
    tokens = (t.strip(" <>.;\"'") for t in rest.replace(",", " ").split())
    return tuple(t for t in tokens if "@" in t or "." in t)


def covers(identity: str, address: str) -> bool:
    """An identity (an address, or a domain and its subdomains) covers a bare address."""
    if "@" in identity:
        return identity == address
    domain = address.rpartition("@")[2]
    return domain == identity or domain.endswith("." + identity)


def _not_verified(listed: tuple[str, ...], identities: Identities | None) -> Outcome:
    """The sender among the listed identities: hold it; only this message's recipients: this
    message fails; unknown: hold (module docstring)."""
    if identities is None or not listed:
        return Outcome.CONFIG_ERROR
    if any(covers(i, s) for i in listed for s in identities.senders):
        return Outcome.CONFIG_ERROR
    if all(any(covers(i, r) for r in identities.recipients) for i in listed):
        return Outcome.REJECTED
    return Outcome.CONFIG_ERROR


def _config_set_paused_text(text: str) -> bool:
    # v2 has one SendingPausedException for account and configuration set alike (not
    # confirmed); a text naming the configuration set must not stop the whole account.
    return "configuration set" in text


def classify_error(
    code: str | None,
    message: str | None,
    http_status: int | None,
    identities: Identities | None = None,
) -> Outcome:
    """Outcome of an SES error response from its wire code, message text and HTTP status;
    `identities`: the message's, to tell an unverified sender from an unverified recipient."""
    text = message.lower() if message else ""
    by_text = _text_outcome(text)
    if by_text is not None:
        return by_text
    listed = listed_identities(text)
    if listed is not None:
        return _not_verified(listed, identities)
    if code:
        outcome = _BY_CODE.get(code.strip())
        if outcome is not None:
            if outcome is _C and _bad_address(text):
                return Outcome.REJECTED
            if outcome is _P and _config_set_paused_text(text):
                return Outcome.CONFIG_ERROR
            return outcome
    if http_status == 429:
        return Outcome.THROTTLED
    if http_status is not None and 500 <= http_status <= 599:
        return Outcome.TRANSIENT
    # Unknown 4xx, or no status at all: not known to concern only this message (module docstring).
    return Outcome.CONFIG_ERROR


def classify_bulk_status(
    status: str, error: str | None, identities: Identities | None = None
) -> Outcome:
    """Outcome of one v2 SendBulkEmail entry from its `Status` and `Error` text (`identities`:
    the call's sender and this entry's recipients)."""
    status = status.strip().upper()
    if status == "SUCCESS":
        return Outcome.SENT
    text = error.lower() if error else ""
    by_text = _text_outcome(text)
    if by_text is not None:
        return by_text
    listed = listed_identities(text)
    if listed is not None:
        return _not_verified(listed, identities)
    outcome = _BY_BULK_STATUS.get(status)
    if outcome is None:
        return Outcome.CONFIG_ERROR  # a status added after this table: stop and look
    if outcome is _C and _bad_address(text):
        return Outcome.REJECTED
    return outcome
