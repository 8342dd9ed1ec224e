"""A recipient address as SES takes it, cheaply for the common case.

email-validator costs about 150 µs an address (most of it checking the domain's characters
against Unicode tables), which made it the limit of a list import. Most addresses are a plain
ASCII dot-atom at an ASCII domain; for those the verdict is the local part's syntax (a regex
equal to email-validator's) plus the domain's, which is asked of email-validator once per
distinct domain and remembered. Everything else (quotes, Unicode, IDNA, role names it
lower-cases, lengths near a limit) goes to email-validator itself, so the verdicts and the
normalized form are exactly its own (tests/unit/test_campaign_addresses.py checks that
property).
"""

from __future__ import annotations

import contextlib
import re
from typing import Final

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

__all__ = ["normalize"]

# email-validator's ATEXT (rfc_constants.py): the characters of an unquoted ASCII local part.
_ATEXT: Final = r"a-zA-Z0-9_!#\$%&'\*\+\-/=\?\^`\{\|\}~"
# A dot-atom local part of 1-64 characters, then an LDH domain with at least one dot.
_PLAIN: Final = re.compile(
    rf"(?P<local>[{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\Z"
)
_LOCAL_MAX: Final = 64
# Under email-validator's 254 by a margin: near the limit the full check decides.
_SHORT: Final = 240
_ROLE_NAMES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # it lower-cases these
_ROLE_MAX: Final = max(map(len, _ROLE_NAMES))
_DOMAINS_KEPT: Final = 10_000  # distinct domains remembered (a bound, so memory stays flat)

_domains: dict[str, str | None] = {}


def _full(email: str) -> str:
    """email-validator's verdict: the normalized address, or EmailNotValidError."""
    valid = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    return valid.ascii_email or valid.normalized


def _domain(domain: str) -> str | None:
    """The normalized form of a plain ASCII domain email-validator accepts; None if it refuses
    it, or if it is IDNA (xn--: email-validator's normalized form is then its Unicode form)."""
    known = _domains.get(domain, "")
    if known != "":
        return known
    normalized: str | None = None
    if "xn--" not in domain.lower():
        with contextlib.suppress(EmailNotValidError):
            normalized = _full(f"x@{domain}").partition("@")[2]
    if len(_domains) >= _DOMAINS_KEPT:
        _domains.clear()
    _domains[domain] = normalized
    return normalized


def normalize(email: str) -> str:
    """The address as SES takes it; EmailNotValidError (email-validator's) says what is wrong.

    SES needs 7-bit addresses: a non-ASCII local part is refused and an internationalized
    domain is sent in its punycode form. The local part keeps its case, the domain is lowercased.
    """
    match = _PLAIN.match(email)
    if match is None or len(email) > _SHORT:
        return _full(email)
    local, domain = match.groups()
    if len(local) > _LOCAL_MAX or (len(local) <= _ROLE_MAX and local.lower() in _ROLE_NAMES):
        return _full(email)
    normalized = _domains.get(domain) or _domain(domain)
    if normalized is None:
        return _full(email)  # its own words for what is wrong (or its IDNA normalization)
    return f"{local}@{normalized}"
