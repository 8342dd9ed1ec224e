"""CSS inlined once per campaign template, where that gives what inlining each copy would.

Pure: no I/O. The HTML template's Jinja tags are hidden behind placeholders (an expression as a
word, a statement or comment as an HTML comment), css-inline runs once, and the tags go back.
Each expression is then wrapped in a filter that writes its value as css-inline's serializer
(html5ever's) would have written it after parsing Jinja's escaped form (``"`` stays ``"`` in
text, becomes ``&quot;`` in an attribute...), so one recipient costs one Jinja render and the
HTML is the same, byte for byte, as inlining the recipient's rendered copy.

That holds only where a variable cannot change which CSS rule matches which element, or where
the parser puts things. `inline_once` refuses (returns the reason) a template where it could:
a variable in a ``style``, ``class`` or ``id`` attribute, in a tag name, in <style>, <script>
or <pre>; a selector that looks at structure or text (``:first-child``, ``:empty``...), or at
siblings when statements can add them (``+``, ``~``); a statement block whose parts the parser
would put under different elements (unbalanced markup, implied <tbody>); a <style> inside a
statement block; whitespace control (``{%-``); a variable where an empty or blank value would
move elements (in <head>, between table rows); and it checks the result against inlining each
copy for a few probe recipients. A value the filters cannot write exactly (markup with tags
from ``|safe`` or a macro, a CR or NUL, a lone surrogate) raises `Unsure`: that recipient is
rendered the slow way, as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final

import css_inline
from jinja2 import Template
from jinja2.lexer import newline_re
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

__all__ = ["InlinedOnce", "Unsure", "inline_once"]

# Parents where a variable's text is not plain text: raw text (not escaped when serialized), a
# dropped leading newline (pre, textarea, listing), foreign content (svg, math).
_RAW_PARENTS: Final = frozenset(
    {"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
    | {"pre", "textarea", "listing", "svg", "math"}
)
# html5ever writes no end tag for these (so the parse of its output keeps no stack for them).
_VOID: Final = frozenset(
    {"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input"}
    | {"keygen", "link", "meta", "param", "source", "track", "wbr"}
)
_SELECTOR_ATTRIBUTES: Final = frozenset({"style", "class", "id"})
_OPENERS: Final = frozenset({"if", "for", "with", "block", "raw", "set"})
_REFUSED_STATEMENTS: Final = frozenset({"macro", "call", "filter", "autoescape"})
# Pseudo-classes css-inline cannot inline anyway (they depend on the reader, not the document).
_HARMLESS_PSEUDO: Final = frozenset(
    {"hover", "active", "focus", "focus-visible", "focus-within", "visited", "link", "any-link"}
    | {"target"}
)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_STYLE_OPEN = re.compile(r"<style\b", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_AT_PRELUDE = re.compile(r"@[^{};]*")
_CSS_BLOCK = re.compile(r"\{[^{}]*\}")
_PSEUDO = re.compile(r"(?<!:):([A-Za-z-]+)")
_OPEN_CHARREF = re.compile(r"&[A-Za-z0-9#]*$")  # "&am" + "p;" from a variable would be &amp;
_QUOTED_VALUE = re.compile(r"""=\s*(?:"[^"]*|'[^']*)$""")
_JINJA_ESCAPES = re.compile("&(?:amp|lt|gt|#34|#39);")
_PROBES: Final = ("Ann", "", " ", "<b>A&amp;B</b> \"q\" 'a'\xa0 z", "x\ny")


class Unsure(Exception):
    """A value the inlined-once template cannot write exactly: render this recipient the old way."""


def _plain(value: object, *, markup_ok: bool = True) -> str:
    """The text a value stands for; Unsure where the parser would not read it as that text."""
    if hasattr(value, "__html__"):
        # Markup: |replace and |join return escaped text as Markup, |safe may hold tags. Only
        # text in Jinja's own escapes (and no quote that could end an attribute) is read back.
        html = str(value.__html__())
        if not markup_ok or "<" in html or '"' in html or "'" in html:
            raise Unsure
        if "&" in html and "&" in _JINJA_ESCAPES.sub("", html):
            raise Unsure
        value = Markup(html).unescape()
    text = value if type(value) is str else str(value)
    if "\r" in text or "\x00" in text:  # the parser rewrites these
        raise Unsure
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate: the old path words the error
            raise Unsure from None
    return text


def _in_text(value: object) -> Markup:
    """A value in element text, as html5ever serializes the parse of its escaped form."""
    text = _plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Markup(text.replace("\xa0", "&nbsp;"))


def _in_attribute(value: object) -> Markup:
    """A value in a quoted attribute, as html5ever serializes it (always in double quotes)."""
    text = _plain(value).replace("&", "&amp;").replace('"', "&quot;")
    return Markup(text.replace("\xa0", "&nbsp;"))


def _in_comment(value: object) -> Markup:
    """A value in an HTML comment: kept as Jinja escaped it (comments have no references)."""
    text = _plain(value, markup_ok=False)  # markup would be kept as written
    # With the comment's own dashes these could end it early (--> or --!>) or make it <!-->.
    if "--" in text or text.startswith(("-", "!")) or text.endswith(("-", "!")):
        raise Unsure
    return escape(text)


_FILTERS: Final[dict[str, Callable[[object], Markup]]] = {
    "_dispatcher_in_text": _in_text,
    "_dispatcher_in_attribute": _in_attribute,
    "_dispatcher_in_comment": _in_comment,
}


@dataclass(frozen=True, slots=True)
class _Piece:
    kind: str  # "data", "expr" or "stmt"
    text: str  # as in the source
    inner: str = ""  # an expression's tokens between {{ and }}
    name: str = ""  # a statement's first word ("if", "endfor"); "#" for a comment


@dataclass(frozen=True, slots=True)
class InlinedOnce:
    """The HTML template with its CSS inlined, compiled: ``render`` is one recipient's HTML."""

    source: str
    template: Template

    def render(self, context: Mapping[str, object]) -> str:
        """One recipient's inlined HTML; raises (Unsure or the template's error) where unsure."""
        return self.template.render(context)


def _pieces(env: ImmutableSandboxedEnvironment, source: str) -> list[_Piece] | str:
    """The template cut into data, expressions and statements, or why it cannot be."""
    pieces: list[_Piece] = []
    tag: list[tuple[str, str]] = []
    for _, kind, value in env.lexer.tokeniter(source, None):
        if kind == "data":
            pieces.append(_Piece("data", value))
        elif kind in ("raw_begin", "raw_end"):
            if "-" in value or "+" in value:
                return "it uses whitespace control ({%- or -%})"
            pieces.append(_Piece("stmt", value, name="raw" if kind == "raw_begin" else "endraw"))
        elif kind.endswith("_begin") or tag:
            tag.append((kind, value))
            if kind.endswith("_end"):
                begin, end = tag[0][1], tag[-1][1]
                if begin not in ("{{", "{%", "{#") or end not in ("}}", "%}", "#}"):
                    return "it uses whitespace control ({%- or -%})"
                text = "".join(v for _, v in tag)
                inner = [(k, v) for k, v in tag[1:-1]]
                if begin == "{{":
                    pieces.append(_Piece("expr", text, inner="".join(v for _, v in inner)))
                else:
                    names = [v for k, v in inner if k == "name"]
                    name = "#" if begin == "{#" else (names[0] if names else "")
                    if name == "set" and any(k == "assign" for k, _ in inner):
                        name = "set="  # `{% set x = 1 %}`: one tag, not a block
                    pieces.append(_Piece("stmt", text, name=name))
                tag = []
        else:
            return f"its {kind} tokens are not understood here"
    lines = newline_re.split(source)[::2]  # what Jinja's lexer reads: newlines made \n,
    if lines[-1] == "":  # and one trailing newline dropped
        del lines[-1]
    if tag or "".join(p.text for p in pieces) != "\n".join(lines):
        return "its tags could not be located exactly"
    return pieces


class _Where(HTMLParser):
    """Where each placeholder landed in css-inline's output (well formed: html5ever wrote it)."""

    def __init__(self, placeholder: re.Pattern[str]) -> None:
        super().__init__(convert_charrefs=True)
        self._ph = placeholder
        self._stack: list[tuple[int, str]] = [(0, "#document")]
        self._ids = 0
        # (placeholder number, context, attribute or tag, parent element id, ancestors' tags)
        self.found: list[tuple[int, str, str, int, frozenset[str]]] = []

    def _note(self, text: str, context: str, detail: str = "") -> None:
        ancestors = frozenset(t for _, t in self._stack)
        for m in self._ph.finditer(text):
            self.found.append((int(m.group(2)), context, detail, self._stack[-1][0], ancestors))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._note(tag, "tag")
        for name, value in attrs:
            self._note(name, "tag")
            self._note(value or "", "attribute", name)
        if tag not in _VOID:
            self._ids += 1
            self._stack.append((self._ids, tag))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, 0, -1):
            if self._stack[i][1] == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self._note(data, "text", self._stack[-1][1])

    def handle_comment(self, data: str) -> None:
        m = self._ph.fullmatch(data)
        self._note(data, "statement" if m and m.group(1) == "s" else "comment")

    def unknown_decl(self, data: str) -> None:
        self._note(data, "other")

    def handle_decl(self, decl: str) -> None:
        self._note(decl, "other")

    def handle_pi(self, data: str) -> None:
        self._note(data, "other")


def _selectors(hidden: str) -> str:
    """The selectors of the template's <style> blocks (declarations and at-rule preludes out)."""
    css = _CSS_COMMENT.sub("", " ".join(m.group(1) for m in _STYLE_BLOCK.finditer(hidden)))
    css = _CSS_AT_PRELUDE.sub("", css)
    while (shorter := _CSS_BLOCK.sub(";", css)) != css:
        css = shorter
    return css


def _source_refusal(pieces: list[_Piece]) -> str | None:
    depth = 0
    for i, piece in enumerate(pieces):
        if piece.kind == "data":
            if depth and _STYLE_OPEN.search(piece.text):
                return "a <style> block sits inside a statement block"
            if i + 1 < len(pieces) and _OPEN_CHARREF.search(piece.text):
                return "a tag follows an '&' that its value could turn into a character reference"
        elif piece.kind == "stmt":
            if piece.name in _REFUSED_STATEMENTS:
                return f"it uses {{% {piece.name} %}}"
            if piece.name in _OPENERS:
                depth += 1
            elif piece.name.startswith("end"):
                depth -= 1
    return None


def _css_refusal(selectors: str, attributes: set[str], statements: bool) -> str | None:
    for m in _PSEUDO.finditer(selectors):
        if m.group(1).lower() not in _HARMLESS_PSEUDO:
            return f"its CSS uses :{m.group(1)}, which a variable or statement can change"
    if statements and ("+" in selectors or "~" in selectors):
        return "its CSS uses a sibling selector (+ or ~) and it has statements"
    if attributes and "[" in selectors:
        return "its CSS uses an attribute selector and a variable sits in an attribute"
    return None


def _placement_refusal(
    found: list[tuple[int, str, str, int, frozenset[str]]],
    pieces: list[_Piece],
    hidden: str,
    starts: dict[int, int],
) -> str | None:
    """Why a placeholder's place in the inlined output makes the result uncertain, if it does."""
    tagged = [p for p in pieces if p.kind != "data"]
    if [f[0] for f in found] != list(range(len(tagged))):
        return "the HTML parser moved, dropped or repeated a tag's place"
    blocks: list[int] = []  # the parent element of each open statement block
    for number, context, detail, parent, ancestors in found:
        piece = tagged[number]
        if piece.kind == "expr":
            if context == "text" and (detail in _RAW_PARENTS or ancestors & _RAW_PARENTS):
                return f"a variable sits in <{detail}> (or in svg/math)"
            if context == "attribute":
                if detail in _SELECTOR_ATTRIBUTES:
                    return f"a variable sits in a {detail} attribute"
                start = hidden.rfind("<", 0, starts[number])
                if not _QUOTED_VALUE.search(hidden[start : starts[number]]):
                    return "a variable sits in an attribute value without quotes"
            elif context not in ("text", "comment"):
                return "a variable sits inside a tag, not in an attribute value"
        else:
            if context != "statement":
                return "a statement or comment tag sits inside a tag, attribute or HTML comment"
            if piece.name in _OPENERS:
                blocks.append(parent)
            elif piece.name in ("elif", "else") or piece.name.startswith("end"):
                if not blocks or blocks[-1] != parent:
                    return "a statement block's markup is not balanced (or the parser adds to it)"
                if piece.name.startswith("end"):
                    blocks.pop()
    return None


def _blanked(html: str, placeholder: re.Pattern[str], in_text: set[int], blank: str) -> str:
    """``html`` with the expressions that sit in element text replaced by ``blank``."""

    def swap(m: re.Match[str]) -> str:
        return blank if m.group(1) == "e" and int(m.group(2)) in in_text else m[0]

    return placeholder.sub(swap, html)


def inline_once(
    source: str,
    env: ImmutableSandboxedEnvironment,
    inliner: css_inline.CSSInliner,
    check: Callable[[Mapping[str, object], str], bool],
    variables: frozenset[str],
) -> InlinedOnce | str:
    """The template inlined once, or the reason it must be inlined per recipient.

    ``env``: an autoescaping environment of its own (the filters are added to it);
    ``check(context, html)``: is ``html`` what the per-recipient path makes for ``context``
    (the probes); ``variables``: the names a probe context fills.
    """
    pieces = _pieces(env, source)
    if isinstance(pieces, str):
        return pieces
    if (why := _source_refusal(pieces)) is not None:
        return why
    prefix = "dspph"
    while prefix in source:
        prefix += "x"
    placeholder = re.compile(re.escape(prefix) + r"([es])(\d+)z")
    parts: list[str] = []
    starts: dict[int, int] = {}  # placeholder number -> its offset in the hidden source
    tagged: list[_Piece] = []
    offset = 0
    for piece in pieces:
        if piece.kind == "data":
            text = piece.text
        else:
            n = len(tagged)
            tagged.append(piece)
            word = f"{prefix}{'e' if piece.kind == 'expr' else 's'}{n}z"
            text = word if piece.kind == "expr" else f"<!--{word}-->"
            starts[n] = offset + (0 if piece.kind == "expr" else 4)
        parts.append(text)
        offset += len(text)
    hidden = "".join(parts)
    try:
        inlined = inliner.inline(hidden)
    except Exception as exc:  # css-inline's own limits: the per-recipient path words them
        return f"css-inline failed on it ({type(exc).__name__})"
    where = _Where(placeholder)
    where.feed(inlined)
    where.close()
    if (why := _placement_refusal(where.found, pieces, hidden, starts)) is not None:
        return why
    attributes = {f[2] for f in where.found if f[1] == "attribute"}
    statements = any(p.kind == "stmt" and p.name != "#" for p in pieces)
    if (why := _css_refusal(_selectors(hidden), attributes, statements)) is not None:
        return why
    in_text = {f[0] for f in where.found if f[1] == "text"}
    for blank in ("", " "):  # an empty or blank value must leave every element where it was
        expected = _blanked(inlined, placeholder, in_text, blank)
        try:
            if inliner.inline(_blanked(hidden, placeholder, in_text, blank)) != expected:
                return "an empty or blank value would move elements (text in <head> or a table?)"
        except Exception:
            return "css-inline failed on it with an empty value"
    contexts = {f[0]: f[1] for f in where.found}
    filters = {"text": "in_text", "attribute": "in_attribute", "comment": "in_comment"}
    tags = re.compile(rf"<!--{re.escape(prefix)}s(\d+)z-->|{re.escape(prefix)}e(\d+)z")

    def restore(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return tagged[int(m.group(1))].text
        n = int(m.group(2))
        return f"{{{{ ({tagged[n].inner})|_dispatcher_{filters[contexts[n]]} }}}}"

    once_source = tags.sub(restore, inlined)
    env.filters.update(_FILTERS)
    try:
        template = env.from_string(once_source)
    except Exception:
        return "the inlined template does not compile"
    once = InlinedOnce(once_source, template)
    compared = 0
    for value in _PROBES:
        context: dict[str, object] = {name: value for name in variables}
        context.update(email="probe@example.com", campaign_id=1, message_id=2)
        context.update(unsubscribe_token="t0k", unsubscribe_url="https://x.example/u?a=1&b=2")
        try:
            html = once.render(context)
        except Exception:  # this probe goes the slow way at send time too: nothing to compare
            continue
        if not check(context, html):
            return "a probe recipient's HTML differed from inlining their copy"
        compared += 1
    if not compared:  # e.g. |safe: every recipient would go the old way after a wasted render
        return "no probe recipient could be rendered this way (markup from |safe or a macro?)"
    return once
