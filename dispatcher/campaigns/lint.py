"""Pre-flight checks on a campaign's HTML template: what mail clients or SES will not take.

Pure: no I/O. Tags are read with the stdlib HTML parser; regular expressions only look inside
CSS text (<style> blocks and style attributes). Each kind of problem is reported once, with the
line of its first occurrence and the lines of the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final, Literal
from urllib.parse import urlsplit

import css_inline

from dispatcher.campaigns.render import make_inliner

__all__ = [
    "GMAIL_CLIP_BYTES",
    "GMAIL_WARN_BYTES",
    "SES_MAX_MESSAGE_BYTES",
    "Finding",
    "format_findings",
    "has_errors",
    "lint_html",
]

Level = Literal["error", "warning"]

# SES: 10 MB per message for v1 SendEmail/SendRawEmail after base64 (v2 and SMTP: 40 MB);
# the smaller one is the safe limit whichever API sends.
SES_MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
GMAIL_CLIP_BYTES: Final = 102 * 1024  # Gmail hides the HTML past this ("[Message clipped]")
GMAIL_WARN_BYTES: Final = 100 * 1024  # warn a little before, as variables add bytes
_HEADER_ALLOWANCE: Final = 4 * 1024  # headers and MIME boundaries, generously
_MAX_LINES_LISTED: Final = 5

_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_OVERFLOW = re.compile(r"(?<![\w-])overflow(?:-[xy])?\s*:", re.IGNORECASE)
_CSS_HEIGHT = re.compile(r"(?<![\w-])(?:line-)?height\s*:", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_UNSUBSCRIBE_HREF = ("unsubscribe_url", "unsub", "optout", "opt-out", "opt_out")
_UNSUBSCRIBE_TEXT = ("unsubscribe", "opt out", "opt-out")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``error`` stops a campaign from being created, ``warning`` is printed."""

    level: Level
    code: str
    message: str
    line: int | None


_MESSAGES: Final[dict[str, tuple[Level, str]]] = {
    "data-image": (
        "error",
        "image embedded as a data: URI; Gmail and Outlook do not show these and they bloat "
        "every message: host the image (PNG or JPEG) on a CDN and link it with https://",
    ),
    "svg-image": (
        "warning",
        "SVG image; Gmail and Outlook do not show SVG: use PNG or JPEG",
    ),
    "css-overflow": (
        "warning",
        "CSS overflow; it may not render on mobile clients: remove it",
    ),
    "css-height": (
        "warning",
        "CSS height or line-height; some webmail (Naver) strips them: do not rely on them for "
        "layout (use padding, or the height attribute of images and cells)",
    ),
    "style-block": (
        "warning",
        "<style> block; it will be inlined into style attributes when sent, but rules that "
        "cannot be inlined (@media, :hover) stay in a <style> block many clients drop",
    ),
    "external-stylesheet": (
        "warning",
        "<link> stylesheet; it is neither fetched nor inlined, and most clients ignore it: "
        "put the CSS in a <style> block",
    ),
    "script": (
        "warning",
        "<script>; mail clients never run scripts and spam filters count them against you: "
        "remove it",
    ),
}


class _Scanner(HTMLParser):
    """Collects, per problem code, the lines it occurs on; and what the size estimate needs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, list[int]] = {}
        self.has_unsubscribe_link = False
        self.visible_chars = 0  # text outside <style>/<script>/<head>: near the derived text
        self._in_raw: str | None = None  # "style" or "script" while inside one
        self._in_head = False
        self._link_text: list[str] | None = None  # text of the <a> being read

    def _add(self, code: str, line: int) -> None:
        self.found.setdefault(code, []).append(line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        values = {name: value or "" for name, value in attrs}
        if tag == "head":
            self._in_head = True
        elif tag == "body":
            self._in_head = False
        elif tag == "style":
            self._in_raw = "style"
            self._add("style-block", line)
        elif tag == "script":
            self._in_raw = "script"
            self._add("script", line)
        elif tag == "svg":
            self._add("svg-image", line)
        elif tag == "link" and "stylesheet" in values.get("rel", "").lower():
            self._add("external-stylesheet", line)
        elif tag == "a":
            href = values.get("href", "").lower()
            if any(word in href for word in _UNSUBSCRIBE_HREF):
                self.has_unsubscribe_link = True
            self._link_text = []
            self.visible_chars += len(href)
        for name in ("src", "background", "poster"):
            if name in values:
                self._check_image_url(values[name], line)
        if "style" in values:
            self._check_css(values["style"], line)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("style", "script"):
            self._in_raw = None

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in_raw:
            self._in_raw = None
        elif tag == "head":
            self._in_head = False
        elif tag == "a" and self._link_text is not None:
            text = " ".join(self._link_text).lower()
            if any(word in text for word in _UNSUBSCRIBE_TEXT):
                self.has_unsubscribe_link = True
            self._link_text = None

    def handle_data(self, data: str) -> None:
        if self._in_raw == "style":
            self._check_css(data, self.getpos()[0])
        elif self._in_raw is None and not self._in_head:
            self.visible_chars += len(data.strip())
            if self._link_text is not None:
                self._link_text.append(data)

    def _check_image_url(self, url: str, line: int) -> None:
        url = url.strip().lower()
        if url.startswith("data:"):
            self._add("data-image", line)
            if url.startswith("data:image/svg"):
                self._add("svg-image", line)
        elif urlsplit(url).path.endswith(".svg"):
            self._add("svg-image", line)

    def _check_css(self, css: str, first_line: int) -> None:
        # Comments blanked to spaces and newlines, so offsets (and line numbers) stay put.
        css = _CSS_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), css)

        def line_of(offset: int) -> int:
            return first_line + css.count("\n", 0, offset)

        for match in _CSS_OVERFLOW.finditer(css):
            self._add("css-overflow", line_of(match.start()))
        for match in _CSS_HEIGHT.finditer(css):
            self._add("css-height", line_of(match.start()))
        for match in _CSS_URL.finditer(css):
            self._check_image_url(match.group(2), line_of(match.start()))


def _also_on(lines: list[int]) -> str:
    """`` (also lines 8, 14)`` for the occurrences after the first; empty if there are none."""
    others = sorted(set(lines))[1:]
    if not others:
        return ""
    shown = ", ".join(str(n) for n in others[:_MAX_LINES_LISTED])
    more = len(others) - _MAX_LINES_LISTED
    label = "line" if len(others) == 1 else "lines"
    return f" (also {label} {shown}" + (f" and {more} more)" if more > 0 else ")")


def _encoded_size(n: int) -> int:
    """Bytes of ``n`` bytes once base64-encoded in 76-character lines."""
    return (n + 2) // 3 * 4 * 78 // 76


def _inlined_size(html: str) -> int:
    raw = len(html.encode())
    if _encoded_size(raw) > SES_MAX_MESSAGE_BYTES:
        return raw  # over already; inlining only adds
    try:
        return len(make_inliner().inline(html).encode())
    except css_inline.InlineError:
        return raw


def _size_findings(html: str, text: str | None, visible_chars: int) -> list[Finding]:
    findings = []
    html_bytes = _inlined_size(html)
    text_bytes = len(text.encode()) if text is not None else visible_chars
    total = _HEADER_ALLOWANCE + _encoded_size(html_bytes) + _encoded_size(text_bytes)
    if total > SES_MAX_MESSAGE_BYTES:
        findings.append(
            Finding(
                "error",
                "message-too-large",
                f"the message would be about {total / 1024 / 1024:.1f} MB once encoded; SES "
                f"accepts at most {SES_MAX_MESSAGE_BYTES // 1024 // 1024} MB (v1; 40 MB v2): "
                "move images and large content to a CDN and link them",
                None,
            )
        )
    if html_bytes > GMAIL_WARN_BYTES:
        findings.append(
            Finding(
                "warning",
                "gmail-clip",
                f"the HTML is {html_bytes / 1024:.0f} KB after CSS inlining; Gmail clips "
                f"messages over {GMAIL_CLIP_BYTES // 1024} KB and hides the rest, unsubscribe "
                "link included: shorten it",
                None,
            )
        )
    return findings


def _unsubscribe_findings(has_link: bool, has_unsubscribe: bool) -> list[Finding]:
    link = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    if not has_link and not has_unsubscribe:
        return [
            Finding(
                "error",
                "no-unsubscribe",
                "no unsubscribe link in the HTML and no List-Unsubscribe URL; bulk mail needs "
                f"both (Gmail, Yahoo): set an unsubscribe URL and add {link}",
                None,
            )
        ]
    if not has_link:
        return [
            Finding(
                "warning",
                "no-unsubscribe-link",
                "no visible unsubscribe link in the HTML; Gmail and Yahoo expect one besides "
                f"the List-Unsubscribe header: add {link}",
                None,
            )
        ]
    if not has_unsubscribe:
        return [
            Finding(
                "warning",
                "no-list-unsubscribe",
                "no List-Unsubscribe URL; large mailbox providers require one-click unsubscribe "
                "headers of bulk senders: set an unsubscribe URL",
                None,
            )
        ]
    return []


def lint_html(html: str, *, text: str | None, has_unsubscribe: bool) -> list[Finding]:
    """Problems in a campaign's HTML (and text) template, errors first, then by line.

    ``has_unsubscribe``: the campaign has an unsubscribe URL (List-Unsubscribe headers).
    """
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    findings = []
    for code, lines in scanner.found.items():
        level, message = _MESSAGES[code]
        findings.append(Finding(level, code, message + _also_on(lines), min(lines)))
    if text is None:
        findings.append(
            Finding(
                "warning",
                "no-text-part",
                "no text part; it will be derived automatically from the HTML: give a text "
                "template to control it",
                None,
            )
        )
    elif not text.strip():
        findings.append(
            Finding(
                "warning",
                "empty-text-part",
                "the text part is empty; clients that show text see nothing: write one, or "
                "leave it out to have it derived from the HTML",
                None,
            )
        )
    findings += _unsubscribe_findings(scanner.has_unsubscribe_link, has_unsubscribe)
    findings += _size_findings(html, text, scanner.visible_chars)
    findings.sort(key=lambda f: (f.level != "error", f.line is None, f.line or 0, f.code))
    return findings


def has_errors(findings: Iterable[Finding]) -> bool:
    """True if any finding should stop the campaign."""
    return any(f.level == "error" for f in findings)


def format_findings(findings: Iterable[Finding]) -> str:
    """One line per finding, then a count: what ``campaign lint`` prints."""
    items = list(findings)
    lines = []
    for f in items:
        where = f"line {f.line}: " if f.line is not None else ""
        lines.append(f"{f.level}: {where}{f.message} [{f.code}]")
    errors = sum(1 for f in items if f.level == "error")
    warnings = len(items) - errors
    if not items:
        lines.append("no problems found")
    else:
        lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
