"""An email address as SES takes it: parsed (display name apart), normalised (domain lower-cased,
IDNA, the name quoted or RFC 2047-encoded) and keyed for suppressions. Pure: no I/O."""

from __future__ import annotations

import base64
import contextlib
import functools
import re
from dataclasses import dataclass

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from dispatcher.errors import InputError

__all__ = [
    "MAX_HEADER_LINE",
    "Mailbox",
    "check_encodable",
    "is_normal_plain",
    "parse_mailbox",
    "suppression_key",
    "suppression_key_is_lowercase",
]

MAX_HEADER_LINE = 998  # RFC 5322 (SES: no line over 1,000 characters with its CRLF)

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: each either
# ends a header line somewhere between us and the recipient, or has no business in one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ANGLE = re.compile(r"^(?P<name>.*?)\s*<(?P<addr>[^<>]*)>$", re.DOTALL)
_ENCODED_WORDS = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(?: =\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*")
_PLAIN = re.compile(
    r"(?P<local>[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?)"  # email-validator: a TLD ends with a letter
)
_NAME_SPECIALS = re.compile(r'[<>@,;:"\[\]\\]')


@dataclass(frozen=True, slots=True)
class Mailbox:
    """An address as SES takes it (ASCII, domain lower-cased) and its display name, if any."""

    address: str
    display_name: str | None = None

    @property
    def formatted(self) -> str:
        """The header form: ``"Jane Doe" <jane@example.com>``, or the bare address."""
        if not self.display_name:
            return self.address
        return f"{_encode_name(self.display_name)} <{self.address}>"


def _encode_name(name: str) -> str:
    """A quoted string when ASCII, else RFC 2047 encoded-words (SES needs 7-bit headers)."""
    if _ENCODED_WORDS.fullmatch(name):  # already encoded (by us, on an earlier pass)
        return name
    if name.isascii():
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    words: list[str] = []
    chunk = ""
    for char in name:  # at most 45 bytes a word keeps each under RFC 2047's 75 characters
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


class _BadAddress(Exception):
    """What is wrong with an address, said after its field's name."""


def _unquote_name(raw: str, text: str) -> str:
    name = raw.strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        inner = name[1:-1]
        if re.search(r'(?<!\\)(?:\\\\)*"', inner):
            raise _BadAddress(f"{text!r} has a stray '\"' in its display name")
        return re.sub(r"\\(.)", r"\1", inner).strip()
    if _NAME_SPECIALS.search(name):
        raise _BadAddress(
            f"{text!r} is not one address: a display name with , ; : @ < > or quotes "
            'must be in double quotes, e.g. "Doe, Jane" <jane@example.com>; give several '
            "addresses as separate entries"
        )
    return " ".join(name.split())


@functools.lru_cache(maxsize=4096)  # senders and recipients repeat: email-validator is the cost
def _parse(text: str, allow_smtputf8: bool) -> Mailbox:
    stripped = text.strip()
    name: str | None = None
    spec = stripped
    match = _ANGLE.match(stripped)
    if match is not None:
        spec = match.group("addr").strip()
        name = _unquote_name(match.group("name"), text) or None
    elif "<" in stripped or ">" in stripped:
        raise _BadAddress(f"{text!r} has an unmatched '<' or '>'")
    if "@" not in spec:
        raise _BadAddress(
            f"{text!r} is not an email address (no '@'); give an address like name@example.com"
        )
    plain = _plain_address(spec)
    if plain is not None:
        return _fit(Mailbox(plain, name), text)
    try:
        valid = validate_email(spec, check_deliverability=False, allow_smtputf8=allow_smtputf8)
    except EmailNotValidError as exc:
        raise _BadAddress(
            f"{text!r} is not a valid email address: {exc} "
            "Give one address like name@example.com (several go in separate entries)."
        ) from None
    address = valid.ascii_email or f"{valid.local_part}@{valid.ascii_domain}"
    return _fit(Mailbox(address, name), text)


def _plain_address(spec: str) -> str | None:
    """The common plain ASCII address without email-validator (a bulk enqueue of distinct
    addresses spent most of its time there), or None to ask it; the same answer as it gives
    (tests/unit/test_validate.py compares the two)."""
    match = _PLAIN.fullmatch(spec)
    if match is None:
        return None
    domain = match.group("domain").lower()
    if (
        "--" in domain
        or domain.rpartition(".")[2] in SPECIAL_USE_DOMAIN_NAMES
        or len(match.group("local")) > 64
        or len(spec) > 254
    ):
        return None
    return f"{match.group('local')}@{domain}"


def is_normal_plain(text: str) -> bool:
    """True if ``text`` is a plain ASCII address that ``parse_mailbox`` gives back unchanged."""
    return _plain_address(text) == text


def _fit(mailbox: Mailbox, text: str) -> Mailbox:
    line = len(mailbox.formatted) + len("Reply-To: ")
    if line > MAX_HEADER_LINE:
        raise _BadAddress(
            f"{text!r} makes a header line of {line} characters; SES takes at most "
            f"{MAX_HEADER_LINE}: shorten the display name"
        )
    return mailbox


def parse_mailbox(field: str, text: object, *, allow_smtputf8: bool = False) -> Mailbox:
    """One address, with or without a display name; InputError names the field and the fix."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{field} is empty; give an email address like name@example.com")
    check_encodable(field, text)
    if _CONTROL.search(text):
        raise InputError(
            f"{field} {text!r} contains a line break or control character; remove it "
            "(it would start a new mail header)"
        )
    try:
        return _parse(text, allow_smtputf8)
    except _BadAddress as exc:
        raise InputError(f"{field} {exc}") from None


def suppression_key(address: str) -> str:
    """The form suppressions are keyed and compared on: the bare address, ASCII, lower-cased.

    Lenient (it never raises): ``Jane <JANE@Example.com>``, `` jane@example.com `` and
    ``jane@EXAMPLE.com`` all give ``jane@example.com``; what cannot be parsed is stripped and
    lower-cased as it is.
    """
    text = address.strip()
    match = _ANGLE.match(text)
    if match is not None:
        text = match.group("addr").strip()
    if not text.isascii():
        local, at, domain = text.rpartition("@")
        if at:
            with contextlib.suppress(UnicodeError):
                text = f"{local}@{domain.encode('idna').decode('ascii')}"
    return text.lower()


def suppression_key_is_lowercase(address: str) -> bool:
    """Printable ASCII with no space or angle bracket: its `suppression_key` is the address
    with A-Z lower-cased, which is how the claim statement looks it up (queries.sql, claim)."""
    return address.isascii() and address.isprintable() and " " not in address and "<" not in address


def check_encodable(field: str, text: str) -> None:
    """Refuse what Postgres cannot store (NUL) and what is not UTF-8 (a lone surrogate)."""
    if "\x00" in text:
        raise InputError(f"{field} contains a NUL character (\\x00); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{field} contains a lone surrogate (U+{ord(text[exc.start]):04X}) at character "
            f"{exc.start}, which is not text; fix the encoding of the input"
        ) from None
