"""What an exception from an SES call means for the message: classify_exception sorts botocore's
(and the lean client's, which raises the same) into Outcomes by whether the request can have
reached SES; identities_of gives the senders and recipients SES's "not verified" refusal is
compared with. Pure: no I/O."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    MetadataRetrievalError,
    TokenRetrievalError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError

from dispatcher.domain.message import OutgoingMessage
from dispatcher.domain.outcome import Outcome, SendResult
from dispatcher.domain.validate import suppression_key
from dispatcher.ses.classify import Identities, classify_error
from dispatcher.ses.http1 import ConnectFailed

__all__ = ["classify_exception", "identities_of"]

# Raised after the request may have reached SES but before a response was read.
_AFTER_SEND: tuple[type[BaseException], ...] = (
    HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError, other
    IncompleteReadError,
    ChecksumError,
    FlexibleChecksumError,
    ResponseParserError,  # an answer came but could not be read: it may say "sent"
    TimeoutError,  # asyncio.TimeoutError is TimeoutError on 3.11
)
# Raised before the request left: ConnectTimeoutError, SSLError (handshake), ProxyConnectionError
# (all botocore ConnectionError), or credentials could not be fetched this time (IMDS, SSO, STS).
_BEFORE_SEND: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    CredentialRetrievalError,
    MetadataRetrievalError,
    TokenRetrievalError,
)


def _describe(exc: BaseException) -> str:
    """Exception text for SendResult.reason: botocore's words plus the aiohttp error under them."""
    text = f"{type(exc).__name__}: {exc}"
    inner = getattr(exc, "kwargs", {}).get("error") if isinstance(exc, BotoCoreError) else None
    if isinstance(inner, BaseException):
        text += f" ({type(inner).__name__}: {inner})"
    return text


def _bare(addresses: Iterable[str]) -> frozenset[str]:
    return frozenset(k for k in (suppression_key(a) for a in addresses) if k)


def identities_of(msgs: Iterable[OutgoingMessage]) -> Identities:
    """Senders and recipients of these messages as SES checks them: FromEmailAddress, and a raw
    message's From, Sender and Return-Path headers; To/Cc/Bcc, and a raw message's To/Cc."""
    senders: list[str] = []
    recipients: list[str] = []
    for msg in msgs:
        senders.append(msg.from_addr)
        recipients += [*msg.to, *msg.cc, *msg.bcc]
        if msg.raw is not None:
            head = BytesHeaderParser(policy=compat32).parsebytes(msg.raw, headersonly=True)
            for names, into in (
                (("From", "Sender", "Return-Path"), senders),
                (("To", "Cc"), recipients),
            ):
                values = [str(v) for n in names for v in head.get_all(n, [])]
                into += [addr for _, addr in getaddresses(values) if addr]
    return Identities(_bare(senders), _bare(recipients))


def classify_exception(exc: Exception, identities: Identities | None = None) -> SendResult | None:
    """SendResult for an exception from an SES call, or None if it is neither SES nor network.
    `identities`: the message's, which SES's "not verified" refusal is compared with.

    Not connected (the request never left): TRANSIENT. Connected but no answer read (timeout after
    sending, connection reset or closed mid-request): IN_DOUBT, since SES may have accepted it.
    aiobotocore 2.25 wraps every aiohttp ClientConnectionError, including a reset of an open
    connection (ClientOSError), as EndpointConnectionError; the aiohttp error it wraps tells the
    two apart.
    """
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or None
        message = err.get("Message") or None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        outcome = classify_error(code, message, status, identities)
        return SendResult(outcome, code=code, reason=message)
    if isinstance(exc, EndpointConnectionError):
        # ConnectTimeoutError, SSLError and ProxyConnectionError are not subclasses of this one.
        inner = exc.kwargs.get("error")
        never_sent = aiohttp.ClientConnectorError | socket.gaierror | ConnectFailed  # lean's too
        if inner is None or isinstance(inner, never_sent):
            return SendResult(Outcome.TRANSIENT, reason=_describe(exc))
        return SendResult(Outcome.IN_DOUBT, reason=_describe(exc))
    if isinstance(exc, _BEFORE_SEND):
        return SendResult(Outcome.TRANSIENT, reason=_describe(exc))
    if isinstance(exc, _AFTER_SEND):
        return SendResult(Outcome.IN_DOUBT, reason=_describe(exc))
    if isinstance(exc, BotoCoreError):
        # Raised while building the request (NoCredentialsError, ParamValidationError, ...):
        # nothing was sent, and the cause is shared by every send until someone fixes it.
        return SendResult(Outcome.CONFIG_ERROR, reason=_describe(exc))
    # aiohttp or socket errors that escaped aiobotocore's wrapping (defensive).
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError | socket.gaierror):
        return SendResult(Outcome.TRANSIENT, reason=_describe(exc))
    if isinstance(exc, aiohttp.ClientError | OSError):
        return SendResult(Outcome.IN_DOUBT, reason=_describe(exc))
    return None
