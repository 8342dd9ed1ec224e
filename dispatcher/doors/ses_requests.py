"""SES requests read into messages (pure): v2 SendEmail's JSON and v1's Query form become a
NewMessage, or an SesError in SES's terms (v1 code, v2 code, HTTP status, text)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from dispatcher.domain.jobs import NewMessage
from dispatcher.domain.validate import MAX_MESSAGE_BYTES
from dispatcher.domain.wire import unstorable
from dispatcher.doors.keys import ApiKey
from dispatcher.sim.mime import (
    event_publishing,
    header_addresses,
    header_text,
    parse_raw_headers,
    sender_headers,
)

__all__ = [
    "V1_SENDS",
    "SesError",
    "bad_request",
    "foreign_sender",
    "missing",
    "raw_message",
    "rejected",
    "unavailable",
    "v1_params",
    "v1_send_email",
    "v1_send_raw_email",
    "v2_message",
]

V1_MAX_BYTES = 10 * 1024 * 1024  # v1 SendRawEmail takes 10 MB (SES-FACTS)

# Parameters that ask SES for something the dispatcher cannot carry through its queue: refused
# with a clear error instead of silently dropped.
V2_UNSUPPORTED = (
    "FromEmailAddressIdentityArn",
    "FeedbackForwardingEmailAddress",
    "FeedbackForwardingEmailAddressIdentityArn",
    "ListManagementOptions",
    "EndpointId",
    "TenantName",
)
V1_UNSUPPORTED = ("ReturnPath", "ReturnPathArn", "SourceArn", "FromArn")


class SesError(Exception):
    """A refusal in both wire forms: v1's code, v2's code, the HTTP status, the text."""

    def __init__(self, v1_code: str, v2_code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.v1_code = v1_code
        self.v2_code = v2_code
        self.status = status
        self.message = message


def bad_request(message: str) -> SesError:
    return SesError("InvalidParameterValue", "BadRequestException", 400, message)


def missing(name: str) -> SesError:
    # v1: AWS's common error for the Query APIs; v2: the model's validation error.
    return SesError(
        "MissingParameter",
        "BadRequestException",
        400,
        f"The request must contain the parameter {name}.",
    )


def rejected(message: str) -> SesError:
    return SesError("MessageRejected", "MessageRejected", 400, message)


def unavailable(message: str) -> SesError:
    # 503: every SDK retries it with backoff, as it should (nothing was queued).
    return SesError("ServiceUnavailable", "ServiceUnavailable", 503, message)


def _get(obj: Mapping[str, Any], name: str, kind: type, path: str) -> Any:
    value = obj.get(name)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"{path}{name} must be a {'string' if kind is str else 'structure'}.")
    return value


def _strings(obj: Mapping[str, Any], name: str, path: str = "") -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{path}{name} must be a list of strings.")
    return tuple(value)


def _data(obj: Mapping[str, Any], name: str, path: str) -> str | None:
    """`obj[name]["Data"]` of a Content structure, or None when absent."""
    part = _get(obj, name, dict, path)
    if part is None:
        return None
    data = _get(part, "Data", str, f"{path}{name}.")
    if data is None:
        raise missing(f"{path}{name}.Data")
    return str(data)


def _v2_tags(obj: Mapping[str, Any]) -> dict[str, str]:
    value = obj.get("EmailTags")
    if value is None:
        return {}
    if not isinstance(value, list):
        raise bad_request("EmailTags must be a list of {Name, Value}.")
    tags: dict[str, str] = {}
    for tag in value:
        if not isinstance(tag, dict) or not isinstance(tag.get("Name"), str):
            raise bad_request("EmailTags must be a list of {Name, Value}.")
        tags[tag["Name"]] = str(tag.get("Value", ""))
    return tags


def _unsupported(what: str, why: str = "") -> SesError:
    return bad_request(f"{what} is not supported by the dispatcher's SES-compatible endpoint{why}.")


def v2_message(obj: Mapping[str, Any]) -> NewMessage:
    """The message a v2 SendEmail request asks for (SesError when it is not one we can queue)."""
    for name in V2_UNSUPPORTED:
        if obj.get(name) is not None:
            raise _unsupported(name)
    content = _get(obj, "Content", dict, "")
    if content is None:
        raise missing("Content")
    dest = _get(obj, "Destination", dict, "") or {}
    to = _strings(dest, "ToAddresses", "Destination.")
    cc = _strings(dest, "CcAddresses", "Destination.")
    bcc = _strings(dest, "BccAddresses", "Destination.")
    from_addr = _get(obj, "FromEmailAddress", str, "")
    common: dict[str, Any] = {
        "reply_to": _strings(obj, "ReplyToAddresses"),
        "configuration_set": _get(obj, "ConfigurationSetName", str, ""),
        "tags": _v2_tags(obj),
    }
    template = _get(content, "Template", dict, "Content.")
    if template is not None:
        return template_message(template, from_addr, to, cc, bcc, **common)
    simple = _get(content, "Simple", dict, "Content.")
    if simple is not None:
        for name in ("Headers", "Attachments"):
            if simple.get(name):
                raise _unsupported(f"Content.Simple.{name}")
        if not from_addr:
            raise missing("FromEmailAddress")
        subject = _data(simple, "Subject", "Content.Simple.")
        if subject is None:
            raise missing("Content.Simple.Subject")
        body = _get(simple, "Body", dict, "Content.Simple.") or {}
        return NewMessage(
            from_addr=from_addr,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            text=_data(body, "Text", "Content.Simple.Body."),
            html=_data(body, "Html", "Content.Simple.Body."),
            **common,
        )
    raw = _get(content, "Raw", dict, "Content.")
    if raw is None:
        raise missing("Content.Simple, Content.Raw or Content.Template")
    data = _get(raw, "Data", str, "Content.Raw.")
    if data is None:
        raise missing("Content.Raw.Data")
    return raw_message(_base64(data, "Content.Raw.Data"), from_addr, to, cc, bcc, **common)


def template_message(
    spec: Mapping[str, Any],
    from_addr: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    **common: Any,
) -> NewMessage:
    """Template content: the name of a template in the SES account and its data, kept on the
    message and sent to SES as a templated SendEmail, which renders it (as it would have)."""
    for name in ("TemplateArn", "TemplateContent", "Headers", "Attachments"):
        if spec.get(name):
            raise _unsupported(f"Content.Template.{name}", " (name a template in the account)")
    if not from_addr:
        raise missing("FromEmailAddress")
    name = _get(spec, "TemplateName", str, "Content.Template.")
    if not name:
        raise missing("Content.Template.TemplateName")
    data = _get(spec, "TemplateData", str, "Content.Template.")
    return NewMessage(
        from_addr=from_addr,
        to=to,
        cc=cc,
        bcc=bcc,
        template_name=name,
        template_data=data if data is not None else "{}",
        **common,
    )


def _base64(text: str, name: str, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    if len(text) > limit * 4 // 3 + 4:  # cheap early answer on the encoded length
        raise bad_request(f"Message length is more than {limit} bytes.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{name} is not valid base64.") from None


def raw_message(
    data: bytes,
    from_addr: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    *,
    reply_to: tuple[str, ...] = (),
    configuration_set: str | None = None,
    tags: dict[str, str] | None = None,
) -> NewMessage:
    """A raw MIME message, sent byte for byte; as SES does, the recipients come from its
    To/Cc/Bcc headers unless given, and its X-SES-* headers name a configuration set and tags
    unless the request does (the dispatcher always sends tags of its own, which would
    otherwise hide them)."""
    headers = parse_raw_headers(data)
    if not (to or cc or bcc):
        to = tuple(header_addresses(headers, "To"))
        cc = tuple(header_addresses(headers, "Cc"))
        bcc = tuple(header_addresses(headers, "Bcc"))
    header_set, header_tags = event_publishing(headers)
    sender = from_addr or str(headers.get("From") or "")
    if not sender:
        raise missing("FromEmailAddress (or a From header in the raw message)")
    return NewMessage(
        from_addr=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=header_text(headers, "Subject"),
        raw=data,
        reply_to=reply_to,
        configuration_set=configuration_set or header_set,
        tags=tags or header_tags,
    )


# -- v1 (Query/XML) ----------------------------------------------------------------------------

Params = Mapping[str, str]


def _members(params: Params, prefix: str) -> tuple[str, ...]:
    out: list[str] = []
    while (value := params.get(f"{prefix}.member.{len(out) + 1}")) is not None:
        out.append(value)
    return tuple(out)


def _v1_tags(params: Params) -> dict[str, str]:
    tags: dict[str, str] = {}
    i = 1
    while (name := params.get(f"Tags.member.{i}.Name")) is not None:
        tags[name] = params.get(f"Tags.member.{i}.Value", "")
        i += 1
    return tags


def v1_params(body: bytes) -> dict[str, str]:
    """A form-encoded Query request (the last of a repeated name wins)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SesError(
            "MalformedQueryString", "BadRequestException", 400, "The request is not UTF-8."
        ) from None
    params = dict(parse_qsl(text, keep_blank_values=True))
    if (problem := unstorable(params)) is not None:
        raise bad_request(f"The request {problem}.")
    return params


def _v1_common(params: Params) -> dict[str, Any]:
    for name in V1_UNSUPPORTED:
        if params.get(name):
            raise _unsupported(name, " (bounces come back to the dispatcher)")
    return {
        "configuration_set": params.get("ConfigurationSetName") or None,
        "tags": _v1_tags(params),
    }


def v1_send_email(params: Params) -> NewMessage:
    """The message of a v1 SendEmail request."""
    common = _v1_common(params)
    source = params.get("Source")
    if not source:
        raise missing("Source")
    subject = params.get("Message.Subject.Data")
    if subject is None:
        raise missing("Message.Subject")
    return NewMessage(
        from_addr=source,
        to=_members(params, "Destination.ToAddresses"),
        cc=_members(params, "Destination.CcAddresses"),
        bcc=_members(params, "Destination.BccAddresses"),
        subject=subject,
        text=params.get("Message.Body.Text.Data"),
        html=params.get("Message.Body.Html.Data"),
        reply_to=_members(params, "ReplyToAddresses"),
        **common,
    )


def v1_send_raw_email(params: Params) -> NewMessage:
    """The message of a v1 SendRawEmail request."""
    common = _v1_common(params)
    encoded = params.get("RawMessage.Data")
    if encoded is None:
        raise missing("RawMessage.Data")
    data = _base64(encoded, "RawMessage.Data", V1_MAX_BYTES)
    if len(data) > V1_MAX_BYTES:
        raise bad_request(f"Message length is more than {V1_MAX_BYTES} bytes.")
    destinations = _members(params, "Destinations")
    return raw_message(data, params.get("Source") or None, destinations, (), (), **common)


V1_SENDS: dict[str, Callable[[Params], NewMessage]] = {
    "SendEmail": v1_send_email,
    "SendRawEmail": v1_send_raw_email,
}


def foreign_sender(key: ApiKey, msg: NewMessage) -> str | None:
    """A From or Sender header of a raw message that `key` may not send as, or None.

    The envelope sender is checked by intake; SES also checks these headers against the
    account's identities, so a key limited to some senders must not put others there.
    """
    if msg.raw is None or not key.senders:
        return None
    for address in sender_headers(parse_raw_headers(msg.raw)):
        if not key.allows_sender(address):
            return address
    return None
