"""The simulated account's resources: identities, templates, configuration sets, suppression list,
and whether the account may send at all. Pure data and lookups: no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

ENFORCEMENT_STATUSES = ("HEALTHY", "PROBATION", "SHUTDOWN")
MAIL_FROM_STATUSES = ("PENDING", "SUCCESS", "FAILED", "TEMPORARY_FAILURE")
DKIM_STATUSES = ("PENDING", "SUCCESS", "FAILED", "TEMPORARY_FAILURE", "NOT_STARTED")
SUPPRESSION_REASONS = ("BOUNCE", "COMPLAINT")

_PLACEHOLDER = re.compile(r"{{{?\s*([\w.\-]+)\s*}?}}")


@dataclass(slots=True)
class Identity:
    """A verified (or pending) email address or domain."""

    name: str  # lower-cased address or domain
    kind: str  # "EMAIL_ADDRESS" or "DOMAIN"
    # False: PENDING, as SES keeps a new identity until the link is clicked or its DNS records
    # are found (the admin route POST /_sim/identities/NAME/verify is that step).
    verified: bool = True
    # Custom MAIL FROM domain (domains only). One that is not SUCCESS with behavior
    # REJECT_MESSAGE makes SES refuse sends with MailFromDomainNotVerifiedException.
    mail_from_domain: str | None = None
    mail_from_status: str = "SUCCESS"
    mail_from_behavior: str = "USE_DEFAULT_VALUE"  # or "REJECT_MESSAGE"
    configuration_set: str | None = None
    # Set through the admin API to rehearse a DKIM state of its own (a verified domain whose
    # CNAMEs went missing: TEMPORARY_FAILURE); None follows the identity's verification.
    dkim_override: str | None = None

    @property
    def verification_status(self) -> str:
        return "SUCCESS" if self.verified else "PENDING"

    @property
    def dkim_status(self) -> str:
        """Easy DKIM: a domain's CNAMEs are found when it is verified; addresses have none."""
        if self.kind != "DOMAIN":
            return "NOT_STARTED"
        if self.dkim_override is not None:
            return self.dkim_override
        return "SUCCESS" if self.verified else "PENDING"

    @property
    def dkim_tokens(self) -> list[str]:
        """Easy DKIM's three tokens: `<token>._domainkey.<domain>` CNAME
        `<token>.dkim.amazonses.com`. Fixed per domain, 32 characters like SES's."""
        return [hashlib.sha256(f"{self.name}:{i}".encode()).hexdigest()[:32] for i in range(3)]

    def set_mail_from(self, domain: str | None, behavior: str, *, verified: bool) -> None:
        """A new custom MAIL FROM domain: PENDING until its MX record is found."""
        self.mail_from_domain = domain or None
        self.mail_from_behavior = behavior
        self.mail_from_status = mail_from_result(domain or "") if verified else "PENDING"

    def mark_verified(self) -> None:
        """The link was clicked or the DNS records were found: identity, DKIM and MAIL FROM."""
        self.verified = True
        if self.mail_from_domain is not None:
            self.mail_from_status = mail_from_result(self.mail_from_domain)

    @property
    def mail_from_rejects(self) -> bool:
        return (
            self.mail_from_domain is not None
            and self.mail_from_status != "SUCCESS"
            and self.mail_from_behavior == "REJECT_MESSAGE"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.name,
            "type": self.kind,
            "verified": self.verified,
            "verification_status": self.verification_status,
            "dkim_status": self.dkim_status,
            "mail_from_domain": self.mail_from_domain,
            "mail_from_status": self.mail_from_status,
            "mail_from_behavior": self.mail_from_behavior,
            "configuration_set": self.configuration_set,
        }


def mail_from_result(domain: str) -> str:
    """What the DNS check finds for a MAIL FROM domain. The simulator has no DNS: a name
    starting `fail.` or `unverified.` fails (to rehearse MailFromDomainNotVerified)."""
    return "FAILED" if domain.startswith(("fail.", "unverified.")) else "SUCCESS"


@dataclass(slots=True)
class Template:
    name: str
    subject: str = ""
    text: str | None = None
    html: str | None = None

    def render(self, data: str) -> tuple[str, str | None, str | None]:
        """(subject, text, html) with `{{name}}` replaced from the JSON object `data`.

        ValueError if `data` is not a JSON object. A missing value renders empty: SES does not
        send such a message (see `missing`), the callers record it as a rendering failure.
        """
        subject, text, html, _ = self.render_checked(data)
        return subject, text, html

    def missing(self, data: str) -> str | None:
        """SES's Rendering Failure text for the first variable `data` lacks, or None.

        SES accepts the call, then publishes "Attribute 'x' is not present in the rendering
        data." (event-publishing-retrieving-sns-examples.html) and does not deliver it.
        ValueError if `data` is not a JSON object.
        """
        return self.render_checked(data)[3]

    def render_checked(self, data: str) -> tuple[str, str | None, str | None, str | None]:
        """`render` and `missing` from one reading of `data` (once per templated send)."""
        values = json.loads(data) if data else {}
        if not isinstance(values, dict):
            raise ValueError("TemplateData must be a JSON object.")
        # One pass per part fills it and notes the first name `data` lacks (subject, text,
        # html, each in order): what SES reports.
        subject, missing = _fill_checked(self.subject, values, None)
        text, missing = _fill_checked(self.text, values, missing)
        html, missing = _fill_checked(self.html, values, missing)
        if missing is not None:
            missing = f"Attribute '{missing}' is not present in the rendering data."
        return subject or "", text, html, missing

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "text": self.text, "html": self.html}


_ABSENT = object()


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """`text` split at its placeholders (literal, name, literal, ..., literal) and each name's
    path (`a.b` -> ("a", "b")). Cached: a campaign sends one template thousands of times a
    second."""
    pieces = tuple(_PLACEHOLDER.split(text))
    return pieces, tuple(tuple(name.split(".")) for name in pieces[1::2])


def _fill_checked(
    text: str | None, values: dict[str, Any], missing: str | None
) -> tuple[str | None, str | None]:
    """`text` with each placeholder replaced by its value ("" when missing or null), and
    `missing` or else the first name `values` lacks."""
    if text is None:
        return None, missing
    pieces, paths = _compiled(text)
    if not paths:
        return text, missing
    out = list(pieces)
    for i, path in enumerate(paths):
        value = values.get(path[0], _ABSENT) if len(path) == 1 else _value(values, path)
        if value is _ABSENT:
            if missing is None:
                missing = pieces[2 * i + 1]
            out[2 * i + 1] = ""
        elif value is not None:
            out[2 * i + 1] = str(value)
        else:
            out[2 * i + 1] = ""
    return "".join(out), missing


def _value(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or _ABSENT where the path leaves the objects."""
    current: Any = values
    for part in path:
        if not isinstance(current, dict):
            return _ABSENT
        current = current.get(part, _ABSENT)
        if current is _ABSENT:
            return _ABSENT
    return current


@dataclass(slots=True)
class ConfigurationSet:
    name: str
    sending_enabled: bool = True
    # Event destinations as CreateConfigurationSetEventDestination gave them (name -> the
    # EventDestination object): recorded and reported, not used to deliver events (the
    # /_sim/subscriptions do that).
    event_destinations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sending_enabled": self.sending_enabled,
            "event_destinations": sorted(self.event_destinations),
        }


@dataclass(slots=True)
class Suppressed:
    address: str
    reason: str  # BOUNCE or COMPLAINT
    updated_at: float  # unix seconds


@dataclass(slots=True)
class Account:
    """Everything about the account that is not a limit."""

    sending_enabled: bool = True  # False: paused (UpdateAccountSendingEnabled, or by AWS)
    enforcement_status: str = "HEALTHY"  # SHUTDOWN: suspended
    identities: dict[str, Identity] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    configuration_sets: dict[str, ConfigurationSet] = field(default_factory=dict)
    suppressed: dict[str, Suppressed] = field(default_factory=dict)
    contact_lists: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> topics

    def create(self, name: str, *, domain: bool | None = None, verified: bool = False) -> Identity:
        """Add (or return) an identity, PENDING unless `verified`; `domain`: "has no @"."""
        key = name.strip().lower()
        if not key:
            raise ValueError("an identity must not be empty")
        existing = self.identities.get(key)
        if existing is not None:
            return existing
        is_domain = ("@" not in key) if domain is None else domain
        identity = Identity(key, "DOMAIN" if is_domain else "EMAIL_ADDRESS", verified=verified)
        self.identities[key] = identity
        return identity

    def verify(self, name: str, *, domain: bool | None = None) -> Identity:
        """Add an identity already verified (or verify an existing one): the back door."""
        identity = self.create(name, domain=domain, verified=True)
        identity.verified = True
        return identity

    def identity_for(self, address: str) -> Identity | None:
        """The verified identity that covers a bare `address`: itself, its domain, or a parent."""
        low = address.lower()
        found = self.identities.get(low)
        if found is not None and found.verified:
            return found
        at = low.rfind("@")
        domain = low[at + 1 :] if at >= 0 else low
        while domain:
            found = self.identities.get(domain)
            if found is not None and found.verified and found.kind == "DOMAIN":
                return found
            dot = domain.find(".")
            if dot < 0:
                return None
            domain = domain[dot + 1 :]
        return None

    def is_verified(self, address: str) -> bool:
        return self.identity_for(address) is not None

    def state_json(self) -> dict[str, Any]:
        return {
            "sending_enabled": self.sending_enabled,
            "enforcement_status": self.enforcement_status,
        }
