"""What v1 and v2 share between a send request and `SimState.send`: a raw message's decoding
and the fields its headers give, a stored template's lookup and a template's rendering."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TypedDict

from dispatcher.sim.account import Template
from dispatcher.sim.mime import (
    event_publishing,
    header_addresses,
    header_text,
    parse_raw_headers,
    sender_headers,
)
from dispatcher.sim.state import Refusal, SendError, SimState


def decode_raw(state: SimState, encoded: str, limit: int, field: str) -> bytes | Refusal:
    """A raw message's bytes from its base64 `field`, or SES's refusal (too large, not base64)."""
    if len(encoded) > limit * 4 // 3 + 4:  # cheap early answer on the base64 length
        return state.refuse(SendError.TOO_LARGE, str(limit))
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return state.refuse(SendError.INVALID_PARAMETER, f"{field} is not valid base64.")
    if len(data) > limit:
        return state.refuse(SendError.TOO_LARGE, str(limit))
    return data


@dataclass(frozen=True, slots=True)
class RawHeaders:
    """What a raw message's headers give where the request leaves a field out."""

    to: list[str]
    cc: list[str]
    bcc: list[str]
    from_addr: str
    subject: str
    reply_to: list[str]
    configuration_set: str | None  # X-SES-CONFIGURATION-SET
    tags: dict[str, str]  # X-SES-MESSAGE-TAGS
    senders: tuple[str, ...]  # the headers SES checks like the sender


def raw_headers(data: bytes) -> RawHeaders:
    headers = parse_raw_headers(data)
    configuration_set, tags = event_publishing(headers)
    return RawHeaders(
        to=header_addresses(headers, "To"),
        cc=header_addresses(headers, "Cc"),
        bcc=header_addresses(headers, "Bcc"),
        from_addr=headers.get("From") or "",
        subject=header_text(headers, "Subject"),
        reply_to=header_addresses(headers, "Reply-To"),
        configuration_set=configuration_set,
        tags=tags,
        senders=tuple(sender_headers(headers)),
    )


def stored_template(state: SimState, name: str | None, parameter: str) -> Template | Refusal:
    """The account's template `name`, or SES's refusal (`parameter` missing, no such template)."""
    if not name:
        return state.refuse(SendError.MISSING_PARAMETER, parameter)
    template = state.account.templates.get(name)
    if template is None:
        return state.refuse_account(SendError.TEMPLATE_MISSING, name)
    return template


class Content(TypedDict, total=False):
    """A message's content as `SimState.send` takes it (the rest is the request's envelope)."""

    subject: str
    text: str | None
    html: str | None
    raw: bytes
    template: str
    account_checked: bool
    rendering_failure: str | None


def rendered(template: Template, data: str) -> Content:
    """`template` rendered with `data`; ValueError if `data` is not a JSON object.

    The callers checked the account (`account_checked`) before they looked the template up.
    """
    subject, text, html, missing = template.render_checked(data)
    return Content(
        subject=subject,
        text=text,
        html=html,
        template=template.name,
        account_checked=True,
        rendering_failure=missing,
    )


def rendered_or_refusal(state: SimState, template: Template, data: str) -> Content | Refusal:
    """`rendered`, or SES's refusal when `data` is not a JSON object."""
    try:
        return rendered(template, data)
    except ValueError as exc:
        return state.refuse(SendError.INVALID_PARAMETER, str(exc))
