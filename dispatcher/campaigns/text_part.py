"""The text part of campaign mail from its HTML: html2text once per template where that is
faithful (Jinja tags carried across), else per recipient. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable

import html2text
from jinja2 import TemplateSyntaxError, nodes

__all__ = ["derive_text_source", "html_to_text", "tidy_text"]

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Filters and blocks whose output differs between an autoescaped and a plain template: with
# them the text is derived per recipient from the rendered HTML instead of at compile time.
_MARKUP_FILTERS = frozenset({"safe", "e", "escape", "forceescape"})


def _text_converter() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no wrapping: a wrapped URL breaks; clients wrap text themselves
    converter.ignore_emphasis = True
    converter.images_to_alt = True
    converter.ignore_tables = True  # mail layout tables are not data tables
    converter.unicode_snob = True
    return converter


def html_to_text(html: str) -> str:
    """A readable text part from HTML (links kept as ``[text](url)``)."""
    return tidy_text(_text_converter().handle(html))


def tidy_text(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, one final newline."""
    return _BLANK_RUN.sub("\n\n", _TRAILING_SPACE.sub("\n", text)).strip() + "\n"


def derive_text_source(
    html: str, tree: nodes.Template, parse: Callable[[str], object]
) -> str | None:
    """The HTML template turned into a text template, or None when that is not faithful.

    Jinja tags are swapped for placeholder words, html2text converts the rest once, and the
    tags are put back (`parse`: the text template's parser, which raises on bad syntax).
    Refused (None) when a statement tag is lost or duplicated (it sat in an
    attribute, <head> or <style>), the result does not parse, or the template uses filters
    whose output depends on autoescaping.
    """
    if any(f.name in _MARKUP_FILTERS for f in tree.find_all(nodes.Filter)):
        return None
    if any(True for _ in tree.find_all(nodes.ScopedEvalContextModifier)):
        return None
    prefix = "jinjatag"
    while prefix in html:
        prefix += "x"
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        if match.group().startswith("{#"):
            return ""  # a comment: nothing to carry over
        tags.append(match.group())
        return f"{prefix}{len(tags) - 1}z"

    try:
        converted = html_to_text(_JINJA_TAG.sub(hide, html))
    except Exception:  # html2text has its bugs: derive per recipient, where they fail alone
        return None
    placeholder = re.compile(re.escape(prefix) + r"(\d+)z")
    seen = [int(m.group(1)) for m in placeholder.finditer(converted)]
    statements = [i for i, tag in enumerate(tags) if tag.startswith("{%")]
    if any(seen.count(i) != 1 for i in statements):
        return None
    source = placeholder.sub(lambda m: tags[int(m.group(1))], converted)
    try:
        parse(source)
    except (TemplateSyntaxError, RecursionError):
        return None
    return source
