"""Attachments, and the MIME message a message with attachments becomes (pure, standard library).

SES's Simple content has no attachments: a message that carries some is built here into a
complete MIME message and queued as Raw content (SES rewrites its Date and Message-ID). Bcc
recipients are never written into it: they travel only in the envelope (SES's Destination).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import MIMEPart
from email.utils import format_datetime, make_msgid

from dispatcher.errors import InputError

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_FILENAME",
    "UNSUPPORTED_EXTENSIONS",
    "Attachment",
    "build_mime",
    "check_attachment",
]

MAX_FILENAME = 255  # SES v2 Attachment.FileName: "Maximum length of 255"
# Ours, not SES's (it counts only bytes): building costs ~0.3 ms a part, and a request of
# thousands of empty files should not hold a core for seconds. Real mail carries a few.
MAX_ATTACHMENTS = 100

# SES refuses a message with an attachment of these types, the whole message: "Amazon SES
# unsupported attachment types", https://docs.aws.amazon.com/ses/latest/dg/mime-types.html
# fmt: off
UNSUPPORTED_EXTENSIONS = frozenset((
    "ade", "adp", "app", "asp", "bas", "bat", "cer", "chm", "cmd", "com", "cpl", "crt", "csh",
    "der", "exe", "fxp", "gadget", "hlp", "hta", "inf", "ins", "isp", "its", "js", "jse", "ksh",
    "lib", "lnk", "mad", "maf", "mag", "mam", "maq", "mar", "mas", "mat", "mau", "mav", "maw",
    "mda", "mdb", "mde", "mdt", "mdw", "mdz", "msc", "msh", "msh1", "msh2", "mshxml", "msh1xml",
    "msh2xml", "msi", "msp", "mst", "ops", "pcd", "pif", "plg", "prf", "prg", "reg", "scf",
    "scr", "sct", "shb", "shs", "sys", "ps1", "ps1xml", "ps2", "ps2xml", "psc1", "psc2", "tmp",
    "url", "vb", "vbe", "vbs", "vps", "vsmacros", "vss", "vst", "vsw", "vxd", "ws", "wsc",
    "wsf", "wsh", "xnk",
))
# fmt: on

# SMTP's line ends; 7bit so that non-ASCII text is quoted-printable or base64 (SES asks for
# 7-bit parts), and every line, header or body, folded or wrapped to at most 78 characters.
POLICY = policy.SMTP.clone(cte_type="7bit")

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 2045's token: a media type's type or subtype
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})")
# Control characters (C0, DEL, C1) and the Unicode line separators: a header cannot hold one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One file sent with a message: its name as the recipient sees it, media type, bytes."""

    filename: str
    content_type: str  # type/subtype, e.g. application/pdf
    content: bytes


def _refuse(index: int, name: object, problem: str) -> InputError:
    return InputError(f"attachments[{index}] {name!r}: {problem}", field="attachments")


def check_attachment(index: int, attachment: object) -> Attachment:
    """``attachment`` as SES takes it (media type lower-cased); InputError names it and the fix."""
    if not isinstance(attachment, Attachment):
        raise InputError(
            f"attachments[{index}] must be an Attachment, not {type(attachment).__name__}",
            field="attachments",
        )
    name = attachment.filename
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"attachments[{index}] has no filename; give one", field="attachments")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(index, name, "the filename contains a lone surrogate: not text") from None
    if _CONTROL.search(name):
        raise _refuse(index, name, "the filename contains a line break or control character")
    if "/" in name or "\\" in name or name.strip() in (".", ".."):
        raise _refuse(index, name, "give the file's own name, without a directory")
    if len(name) > MAX_FILENAME:
        raise _refuse(
            index,
            name[:40] + "...",
            f"the filename has {len(name)} characters; SES takes at most {MAX_FILENAME}",
        )
    # Windows drops trailing dots and spaces: "x.exe." opens as an .exe.
    stem, dot, extension = name.rstrip(". ").rpartition(".")
    if dot and stem and extension.lower() in UNSUPPORTED_EXTENSIONS:
        raise _refuse(
            index,
            name,
            f"SES refuses messages with .{extension.lower()} attachments; link to the file instead",
        )
    ctype = attachment.content_type
    match = _MEDIA_TYPE.fullmatch(ctype) if isinstance(ctype, str) else None
    if match is None:
        raise _refuse(
            index, name, f"content type {ctype!r} is not type/subtype; give e.g. application/pdf"
        )
    if match.group(1).lower() in ("multipart", "message"):
        raise _refuse(
            index,
            name,
            f"content type {ctype!r} cannot be sent base64-encoded (RFC 2046); "
            "give application/octet-stream",
        )
    if not isinstance(attachment.content, bytes):
        raise _refuse(
            index, name, f"content must be bytes, not {type(attachment.content).__name__}"
        )
    return Attachment(name, ctype.lower(), attachment.content)


def build_mime(
    *,
    from_addr: str,
    to: Sequence[str],
    cc: Sequence[str],
    reply_to: Sequence[str],
    subject: str,
    text: str | None,
    html: str | None,
    attachments: Sequence[Attachment],
    date: datetime | None = None,
) -> bytes:
    """The complete message, CRLF line ends: text and html as multipart/alternative, then each
    attachment base64-encoded, in multipart/mixed. Addresses come normalised (validate)."""
    # MIMEPart, not EmailMessage: the parts add_attachment makes are of the root's class, and
    # an EmailMessage part would carry a MIME-Version header of its own.
    msg = MIMEPart(policy=POLICY)
    msg["From"] = from_addr
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if reply_to:
        msg["Reply-To"] = ", ".join(reply_to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    # With the sender's domain: make_msgid would otherwise ask the resolver for our own name.
    msg["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2].rstrip(">") or None)
    msg["MIME-Version"] = "1.0"
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    for a in attachments:
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(a.content, maintype, subtype, filename=a.filename)
    return msg.as_bytes()
