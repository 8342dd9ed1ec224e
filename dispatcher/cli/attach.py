"""`dispatcher send --attach FILE`: a file on disk as an Attachment (name, guessed type, bytes)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from dispatcher.domain.mime import Attachment
from dispatcher.domain.validate import MAX_MESSAGE_BYTES
from dispatcher.errors import InputError

__all__ = ["content_type_of", "read_attachment"]

DEFAULT_TYPE = "application/octet-stream"
# What the bytes are when mimetypes reads the last suffix as a compression (x.tar.gz).
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# A part of these types cannot be base64-encoded (RFC 2046): a .eml goes as plain bytes.
_NOT_BASE64 = ("multipart/", "message/")


def content_type_of(filename: str) -> str:
    """The media type a file's name suggests, application/octet-stream when it says nothing."""
    guessed, encoding = mimetypes.guess_type(filename, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, DEFAULT_TYPE)
    if guessed is None or guessed.startswith(_NOT_BASE64):
        return DEFAULT_TYPE
    return guessed


def read_attachment(path: str) -> Attachment:
    """The file at `path`, named by its base name; InputError (one line) if it cannot be read."""
    try:
        # A CLI reading its own input file: blocking here stalls nothing else. Read at most one
        # byte past SES's limit, so a huge file or a device (/dev/zero) is never held whole.
        with Path(path).open("rb") as f:
            content = f.read(MAX_MESSAGE_BYTES + 1)
    except OSError as exc:
        raise InputError(
            f"--attach {path}: cannot read it: {exc.strerror or exc}", field="attachments"
        ) from None
    if len(content) > MAX_MESSAGE_BYTES:
        raise InputError(
            f"--attach {path}: the file is larger than SES's {MAX_MESSAGE_BYTES // 2**20} MiB "
            "message limit; link to it instead",
            field="attachments",
        )
    name = Path(path).name
    return Attachment(name, content_type_of(name), content)
