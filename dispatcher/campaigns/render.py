"""Campaign templates, compiled once and rendered per recipient: subject, HTML, text, headers.

Pure: no I/O. Templates come from users, so they run in Jinja's immutable sandbox with
``StrictUndefined``; only the HTML template is autoescaped. The rendered HTML has its CSS inlined
(css-inline, remote stylesheets never fetched) once per template where that gives the same
HTML as inlining each recipient's copy (inline_once.py), else per recipient. A text part that
is not given is derived from the HTML template once, at compile time, so a recipient usually
costs three small Jinja renders and no inlining.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import css_inline
from email_validator import EmailNotValidError, validate_email
from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dispatcher.campaigns.inline_once import InlinedOnce, inline_once
from dispatcher.campaigns.recipients import separator_hint
from dispatcher.campaigns.substitute import Piece, substitute, substitution
from dispatcher.campaigns.text_part import derive_text_source, html_to_text, tidy_text
from dispatcher.errors import InputError

__all__ = [
    "BUILTIN_VARIABLES",
    "UNSUBSCRIBE_VARIABLE",
    "CampaignContent",
    "CompiledCampaign",
    "Rendered",
    "UnsubscribeLinks",
    "make_inliner",
]

TemplateName = Literal["subject", "html", "text", "unsubscribe_url"]

# unsubscribe_token: the signed token of the daemon's own unsubscribe receiver (unsubscribe.py).
BUILTIN_VARIABLES: Final = frozenset({"email", "campaign_id", "message_id", "unsubscribe_token"})
# The rendered unsubscribe URL, offered to subject/html/text when the campaign has one, so the
# body can link it: <a href="{{ unsubscribe_url }}">Unsubscribe</a>.
UNSUBSCRIBE_VARIABLE: Final = "unsubscribe_url"
ONE_CLICK: Final = ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")

# Everything str.splitlines() breaks on, plus NUL: any of them in a header value could start a
# new header line somewhere between us and the recipient.
_LINE_BREAK = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# In a URL between <...> in List-Unsubscribe: whitespace or angle brackets would end it early.
_URL_FORBIDDEN = re.compile(r"[\s<>\"]")
# Tags that load another template: campaign templates have no loader, so these fail for every
# recipient at send time (TypeError); refused when the campaign is compiled instead.
_LOADING_TAGS: Final = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}",
}
# Column names a template cannot reach: Jinja gives `self` its own meaning and reads the
# literals as constants; it binds `loop` in for loops, `super` in blocks and the rest in macros.
_JINJA_NAMES: Final = frozenset({"self", "true", "false", "none", "True", "False", "None"})
_JINJA_SCOPED_NAMES: Final = frozenset({"loop", "super", "caller", "varargs", "kwargs"})


@dataclass(frozen=True, slots=True)
class CampaignContent:
    """A campaign's templates as the user wrote them."""

    subject: str  # a Jinja template too
    html: str  # Jinja template, HTML autoescaped
    text: str | None = None  # Jinja template (no autoescape); None = derived from the HTML
    unsubscribe_url: str | None = None  # Jinja template, e.g. "https://x/u?e={{ email|urlencode }}"
    unsubscribe_mailto: str | None = None  # optional plain address for the mailto: form


@dataclass(frozen=True, slots=True)
class Rendered:
    """One recipient's message parts, ready for the SES adapter."""

    subject: str
    html: str  # CSS inlined
    text: str
    headers: tuple[tuple[str, str], ...]  # List-Unsubscribe (+ List-Unsubscribe-Post)


def make_inliner() -> css_inline.CSSInliner:
    """The CSS inliner used for sending (and by lint for size estimates): never fetches."""
    return css_inline.CSSInliner(
        load_remote_stylesheets=False,  # pure: a <link> stylesheet is dropped, not downloaded
        keep_at_rules=True,  # @media rules cannot be inlined; keep them for clients that can
    )


def _plain_env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, auto_reload=False
    )


def _html_env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=True, undefined=StrictUndefined, auto_reload=False
    )


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised on (Jinja rewrites tracebacks to show it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _compile(
    env: ImmutableSandboxedEnvironment, which: TemplateName, source: str
) -> tuple[Template, nodes.Template]:
    try:
        tree = env.parse(source)
        for kind, tag in _LOADING_TAGS.items():
            found = next(iter(tree.find_all(kind)), None)
            if found is not None:
                raise InputError(
                    f"{which} template, line {found.lineno}: {tag} cannot work in a campaign "
                    "template (there are no other templates to load); put the content in the "
                    "template itself"
                )
        return env.from_string(tree), tree
    except TemplateSyntaxError as exc:
        raise InputError(
            f"{which} template, line {exc.lineno}: {exc.message}; fix the Jinja syntax"
        ) from None
    except RecursionError:  # Jinja's parser and compiler recurse once per level of nesting
        raise InputError(
            f"{which} template is nested too deeply to compile; simplify its expressions"
        ) from None


def _undeclared(tree: nodes.Template) -> frozenset[str]:
    return frozenset(meta.find_undeclared_variables(tree))


def _check_no_line_break(what: str, value: str, email: str) -> None:
    if _LINE_BREAK.search(value):
        raise InputError(
            f"{what} for {email} contains a line break ({value!r}); a header cannot hold one: "
            "remove line breaks from the template and from the variables it uses"
        )


class UnsubscribeLinks:
    """The List-Unsubscribe headers of a campaign, rendered per recipient.

    Used on its own for SES-template campaigns, where SES renders the body but the headers are
    ours (SendBulkEmail's ReplacementHeaders), and by `CompiledCampaign` for rendered ones.
    """

    __slots__ = ("_mailto", "_pieces", "_url", "tree")

    def __init__(self, url_template: str | None, mailto: str | None) -> None:
        self._url: Template | None = None
        self.tree: nodes.Template | None = None  # the URL template's syntax tree, if any
        # The URL as plain substitution (None: Jinja renders it): run once per recipient of
        # an SES-template campaign, where it is all the rendering the dispatcher does.
        self._pieces: list[Piece] | None = None
        if url_template is not None:
            url = url_template.strip()
            if not url.lower().startswith(("https://", "{")):
                raise InputError(
                    f"unsubscribe_url {url!r} must be an https:// URL "
                    "(one-click unsubscribe, RFC 8058, accepts nothing else)"
                )
            env = _plain_env()
            self._url, self.tree = _compile(env, "unsubscribe_url", url)
            if UNSUBSCRIBE_VARIABLE in _undeclared(self.tree):
                raise InputError("unsubscribe_url template cannot use {{ unsubscribe_url }}")
            self._pieces = substitution(env, self.tree, _JINJA_NAMES | _JINJA_SCOPED_NAMES)
        self._mailto = _check_mailto(mailto)

    @property
    def substituted(self) -> bool:
        """Is the URL made by plain substitution (else by Jinja, or there is none)?"""
        return self._pieces is not None

    def url(self, context: Mapping[str, object], email: str) -> str | None:
        """The recipient's unsubscribe URL, unchecked; None without a URL template."""
        if self._url is None:
            return None
        if self._pieces is not None:
            try:
                url = substitute(self._pieces, context)
            except Exception:  # whatever a value's str() raises: Jinja reports it
                url = None
            if url is not None:
                _check_encodable("unsubscribe_url", url, email)
                return url
        return _run("unsubscribe_url", self._url, context, email)

    def render(
        self, context: Mapping[str, object], email: str
    ) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """(the recipient's unsubscribe URL or None, the headers); InputError if it is unsafe."""
        targets: list[str] = []
        url = self.url(context, email)
        if url is not None:
            _check_url(url, email)
            targets.append(f"<{url}>")
        if self._mailto is not None:
            targets.append(f"<mailto:{self._mailto}>")
        if not targets:
            return url, ()
        headers: tuple[tuple[str, str], ...] = (("List-Unsubscribe", ", ".join(targets)),)
        if url is not None:
            headers += (ONE_CLICK,)
        return url, headers


class CompiledCampaign:
    """A campaign's templates compiled once; ``render`` makes one recipient's message."""

    __slots__ = (
        "_html",
        "_inliner",
        "_once",
        "_subject",
        "_text",
        "_unsubscribe",
        "_uses",
        "content",
        "derived_text",
        "inlined_per_recipient",
        "variables",
    )

    def __init__(self, content: CampaignContent, *, inline_once_ok: bool = True) -> None:
        """``inline_once_ok=False``: inline every recipient's copy (the benchmark's "before")."""
        self.content = content
        plain, html_env = _plain_env(), _html_env()
        self._subject, subject_tree = _compile(plain, "subject", content.subject)
        self._html, html_tree = _compile(html_env, "html", content.html)
        trees: dict[TemplateName, nodes.Template] = {"subject": subject_tree, "html": html_tree}
        # The derived text template's source, when the text part is derived at compile time.
        self.derived_text: str | None = None
        # None with no text given: derived per recipient with html2text (slower).
        self._text: Template | None = None
        if content.text is not None:
            self._text, trees["text"] = _compile(plain, "text", content.text)
        else:
            self.derived_text = derive_text_source(content.html, html_tree, _plain_env().parse)
            if self.derived_text is not None:
                self._text, _ = _compile(plain, "text", self.derived_text)
        self._unsubscribe = UnsubscribeLinks(content.unsubscribe_url, content.unsubscribe_mailto)
        provided = BUILTIN_VARIABLES
        if self._unsubscribe.tree is not None:
            provided = provided | {UNSUBSCRIBE_VARIABLE}
            trees["unsubscribe_url"] = self._unsubscribe.tree
        # Which templates use each variable, so a missing column is reported with its user.
        uses: dict[str, list[str]] = {}
        for which, tree in trees.items():
            for name in sorted(_undeclared(tree) - provided):
                uses.setdefault(name, []).append(which)
        self._uses = {name: tuple(whiches) for name, whiches in uses.items()}
        self.variables: frozenset[str] = frozenset(uses)
        self._inliner = make_inliner()
        # The HTML with its CSS inlined once (None: per recipient, for the reason kept here).
        self._once: InlinedOnce | None = None
        self.inlined_per_recipient: str | None = "its text part is derived from each copy"
        if not inline_once_ok:
            self.inlined_per_recipient = "asked to"
        elif self._text is not None:
            once = inline_once(
                content.html,
                _html_env(),
                self._inliner,
                self._same_as_per_recipient,
                self.variables,
            )
            if isinstance(once, str):
                self.inlined_per_recipient = once
            else:
                self._once, self.inlined_per_recipient = once, None

    def _same_as_per_recipient(self, context: Mapping[str, object], html: str) -> bool:
        """Is ``html`` what rendering and then inlining makes for ``context``? (the probes)"""
        try:
            rendered = _run("html", self._html, context, "probe")
            return self._inliner.inline(rendered) == html
        except Exception:
            return False

    def check_variables(self, columns: Iterable[str]) -> None:
        """Raise InputError naming every variable the templates use that no column provides."""
        have = {c.strip() for c in columns}
        missing = sorted(self.variables - have)
        if not missing:
            return
        problems = []
        for name in missing:
            where = " and ".join(self._uses[name])
            problem = f"{where} template uses {{{{ {name} }}}} but the list has no {name} column"
            if name == UNSUBSCRIBE_VARIABLE:
                problem += " and the campaign has no unsubscribe URL"
            problems.append(problem)
        columns_text = ", ".join(sorted(have)) or "none"
        fix = separator_hint(list(have)) or "add the column(s) or change the template"
        raise InputError("; ".join(problems) + f" (columns: {columns_text}); {fix}")

    def shadowed_columns(self, columns: Iterable[str]) -> list[str]:
        """One warning per column a template cannot read under its name (``self``, ``none``,
        ``campaign_id``...): the name means something else there, so rename the column."""
        ours = BUILTIN_VARIABLES - {"email"}
        if self._unsubscribe.tree is not None:
            ours = ours | {UNSUBSCRIBE_VARIABLE}
        warnings = []
        for name in (c.strip() for c in columns):
            if name in _JINJA_NAMES:
                means = "is a Jinja name, so {{ %s }} in a template never shows"
            elif name in _JINJA_SCOPED_NAMES:
                means = "is a Jinja name, so {{ %s }} in a loop, block or macro does not show"
            elif name in ours:
                means = "is filled in by the dispatcher, so {{ %s }} in a template never shows"
            else:
                continue
            warnings.append(
                f"column {name!r} {means % name} the list's value: rename the column "
                f"(e.g. to list_{name}) and use {{{{ list_{name} }}}}"
            )
        return warnings

    def render(
        self, variables: Mapping[str, str], *, email: str, campaign_id: int, message_id: int
    ) -> Rendered:
        """One recipient's message; InputError if a variable is missing or breaks a header."""
        context: dict[str, object] = dict(variables)
        context.update(email=email, campaign_id=campaign_id, message_id=message_id)
        url, headers = self._unsubscribe.render(context, email)
        if url is not None:
            context[UNSUBSCRIBE_VARIABLE] = url
        subject = _run("subject", self._subject, context, email)
        _check_no_line_break("subject", subject, email)
        inlined: str | None = None
        if self._once is not None:
            try:
                inlined = self._once.render(context)
            except Exception:  # a value it cannot write exactly, or an error: as before
                inlined = None
        html = "" if inlined is not None else _run("html", self._html, context, email)
        if self._text is None:  # derivation at compile time was refused: the slow path
            text = _converted("text (derived from the html)", html_to_text, html, email)
        else:
            text = _run("text", self._text, context, email)
            if self.derived_text is not None:
                text = tidy_text(text)
        if inlined is None:
            inlined = _converted("html (CSS inlining)", self._inliner.inline, html, email)
        return Rendered(subject=subject, html=inlined, text=text, headers=headers)


def _converted(what: str, convert: Callable[[str], str], html: str, email: str) -> str:
    """A library's conversion of one recipient's HTML; whatever it raises fails that one alone."""
    try:
        return convert(html)
    except Exception as exc:
        raise InputError(
            f"{what} for {email} failed: {type(exc).__name__}: {exc}; change the template"
        ) from None


def _run(which: TemplateName, template: Template, context: Mapping[str, object], email: str) -> str:
    """One template rendered; any exception (not only Jinja's: ``1 // 0`` raises
    ZeroDivisionError) becomes this recipient's InputError, so it fails alone."""
    try:
        out = template.render(context)
    except Exception as exc:
        line = _template_line(exc)
        where = f", line {line}" if line is not None else ""
        if isinstance(exc, TemplateError):
            reason = str(exc.message or exc).rstrip(".")
        else:
            reason = f"{type(exc).__name__}: {exc}".rstrip(".")
        if isinstance(exc, SecurityError):
            fix = "templates run sandboxed; remove that expression"
        elif isinstance(exc, UndefinedError):
            fix = "give the variable in the recipient list or change the template"
        else:
            fix = "change the template or this recipient's variables"
        raise InputError(
            f"{which} template{where}, rendering for {email}: {reason}; {fix}"
        ) from None
    _check_encodable(which, out, email)
    return out


def _check_encodable(which: str, value: str, email: str) -> None:
    """A lone surrogate (``"%c"|format(55296)``) cannot be sent as UTF-8: refuse it here."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{which} template, rendering for {email}: the result holds {value[exc.start]!r}, "
            "which is not a character (a lone surrogate); change the template or this "
            "recipient's variables"
        ) from None


def _check_url(url: str, email: str) -> None:
    _check_no_line_break("unsubscribe_url", url, email)
    if not url.lower().startswith("https://"):
        raise InputError(
            f"unsubscribe_url for {email} renders to {url!r}; it must start with https:// "
            "(one-click unsubscribe, RFC 8058)"
        )
    if _URL_FORBIDDEN.search(url):
        raise InputError(
            f"unsubscribe_url for {email} renders to {url!r}, which has a space, quote or angle "
            "bracket; encode variables in it with |urlencode"
        )


def _check_mailto(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        valid = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InputError(
            f"unsubscribe_mailto {address!r} is not a usable address: {exc}; "
            "give a plain address like unsubscribe@example.com"
        ) from None
    return valid.ascii_email or valid.normalized
