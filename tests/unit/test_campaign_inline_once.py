"""CSS inlined once per template: the HTML inlining each recipient's copy gave, at less cost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from dispatcher.campaigns.render import CampaignContent, CompiledCampaign, Rendered
from dispatcher.campaigns.sending import CampaignSender
from dispatcher.campaigns.store import CampaignRow
from dispatcher.domain.jobs import ClaimedJob
from dispatcher.domain.message import OutgoingMessage
from dispatcher.errors import InputError
from tests.support.templates import TYPICAL, newsletter

URL = "https://news.example/u?e={{ email|urlencode }}&c={{ campaign_id }}"
VARIABLES = ("first_name", "last_name", "city", "tier", "code", "name")
# Values that test the escaping: what html5ever rewrites when it parses Jinja's escaped output.
TRICKY = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "a&b",
        "&amp;",
        "<b>x</b>",
        '"q"',
        "'s'",
        "\xa0",
        "a\r\nb",
        "x\ry",
        "n\x00l",
        "&#39;",
        "-->",
        "-",
        "--!",
        "!",
        "<!--",
        "]]>",
        "{{ x }}",
        "gold",
        "\ud800",
        "\u2028",
        "é€😀",
        "a" * 300,
    ]
)
VALUE = st.one_of(TRICKY, st.text(max_size=12), st.lists(TRICKY, max_size=4).map("".join))


class CountingInliner:
    """Stands in for css_inline.CSSInliner and counts the inlining calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def inline(self, html: str) -> str:
        self.calls += 1
        result: str = self.inner.inline(html)
        return result


def compiled(html: str, *, once: bool = True, text: str | None = "Hi") -> CompiledCampaign:
    content = CampaignContent(subject="Hi", html=html, text=text, unsubscribe_url=URL)
    return CompiledCampaign(content, inline_once_ok=once)


def outcome(campaign: CompiledCampaign, variables: dict[str, str], email: str) -> Rendered | str:
    try:
        return campaign.render(variables, email=email, campaign_id=7, message_id=42)
    except InputError as exc:
        return f"InputError: {exc}"


@pytest.mark.parametrize("name", sorted(TYPICAL))
def test_typical_templates_are_inlined_once(name: str) -> None:
    assert compiled(TYPICAL[name]).inlined_per_recipient is None


@pytest.mark.parametrize("name", sorted(TYPICAL))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.fixed_dictionaries({v: VALUE for v in VARIABLES}), email=VALUE)
def test_inlined_once_is_identical_to_inlining_each_copy(
    name: str, values: dict[str, str], email: str
) -> None:
    once, each = compiled(TYPICAL[name]), compiled(TYPICAL[name], once=False)
    assert once.inlined_per_recipient is None
    assert outcome(once, values, email) == outcome(each, values, email)


def test_a_recipient_costs_no_inlining() -> None:
    campaign = compiled(newsletter(3))
    counter = CountingInliner(campaign._inliner)
    campaign._inliner = counter  # type: ignore[assignment]
    for i in range(20):
        out = campaign.render(
            {"first_name": f"P{i}", "last_name": "Doe", "city": "Lyon", "tier": "gold"},
            email=f"p{i}@example.com",
            campaign_id=7,
            message_id=i,
        )
        assert f"Hello P{i}!</h1>" in out.html
        assert 'class="gold" style="margin: 0 0 12px 0;"' in out.html  # the rule was inlined
    assert counter.calls == 0


def test_a_value_it_cannot_write_exactly_goes_the_old_way() -> None:
    campaign = compiled(TYPICAL["small"])
    counter = CountingInliner(campaign._inliner)
    campaign._inliner = counter  # type: ignore[assignment]
    out = campaign.render({"first_name": "A\r\nB", "code": "1"}, email="a@x.example", **IDS)
    assert "<h1 style" not in out.html and "Hello A\nB</h1>" in out.html
    assert counter.calls == 1


IDS: dict[str, Any] = {"campaign_id": 7, "message_id": 42}


def test_a_value_that_would_end_a_comment_goes_the_old_way() -> None:
    html = "<style>p{color:red}</style><p>x</p><!-- {{ code }}> --><p>y</p>"
    once, each = compiled(html), compiled(html, once=False)
    assert once.inlined_per_recipient is None
    for code in ("--", "--!", "Jean-Luc"):
        assert outcome(once, {"code": code}, "a@x.example") == outcome(
            each, {"code": code}, "a@x.example"
        )


# Templates where a variable or statement could change which rule matches which element, or
# where the parser puts an element: inlined per recipient, as before, and why.
REFUSED = {
    "class": ('<style>.a{color:red}</style><p class="{{ code }}">x</p>', "class attribute"),
    "style": ('<p style="color: {{ code }}">x</p>', "style attribute"),
    "first-child": (
        "<style>p:first-child{color:red}</style>"
        "<div>{% if code %}<p>a</p>{% endif %}<p>b</p></div>",
        ":first-child",
    ),
    "empty": ("<style>p:empty{display:none}</style><p>{{ code }}</p>", ":empty"),
    "sibling": (
        "<style>h1 + p{color:red}</style><h1>x</h1>{% if code %}<p>a</p>{% endif %}<p>b</p>",
        "sibling",
    ),
    "unbalanced": (
        '<style>.a p{color:red}</style>{% if code %}<div class="a">{% else %}<div class="b">'
        "{% endif %}<p>{{ code }}</p></div>",
        "not balanced",
    ),
    "implied tbody": (
        "<style>td{color:red}</style><table>{% if code %}<tr><td>x</td></tr>{% endif %}</table>",
        "not balanced",
    ),
    "text in head": (
        "<html><head>{{ code }}<title>t</title><style>p{color:red}</style></head><body><p>x</p>",
        "empty or blank value",
    ),
    "style in a block": (
        "{% if code %}<style>p{color:red}</style>{% endif %}<p>x</p>",
        "<style> block",
    ),
    "pre": ("<style>pre{color:red}</style><pre>{{ code }}</pre>", "<pre>"),
    "unquoted": ("<a href={{ code }}>x</a>", "without quotes"),
    "markup": ('<style>p{color:red}</style><p>{{ ("<b>" ~ code ~ "</b>")|safe }}</p>', "no probe"),
    "whitespace control": ("<p>{{- code }}</p>", "whitespace control"),
    "attribute name": ("<p {{ code }}>x</p>", "inside a tag"),
    "macro": ("{% macro m() %}<p>x</p>{% endmacro %}{{ m() }}", "macro"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_templates_a_variable_could_restyle_are_inlined_per_recipient(name: str) -> None:
    html, reason = REFUSED[name]
    campaign = compiled(html)
    assert campaign.inlined_per_recipient is not None
    assert reason in campaign.inlined_per_recipient
    for code in ("", " ", "1", "<b>x</b>", "a b"):
        values = {"code": code}
        assert outcome(campaign, values, "a@x.example") == outcome(
            compiled(html, once=False), values, "a@x.example"
        )


def test_errors_read_as_before() -> None:
    html = "<style>p{color:red}</style>\n\n<p>{{ 10 // code|length }}</p>"
    once = compiled(html)
    assert once.inlined_per_recipient is None
    error = outcome(once, {"code": ""}, "a@x.example")
    assert error == outcome(compiled(html, once=False), {"code": ""}, "a@x.example")
    assert isinstance(error, str) and "html template, line 3" in error
    missing = outcome(once, {}, "a@x.example")
    assert isinstance(missing, str) and "code" in missing


def test_a_derived_text_part_still_reads_each_recipients_html() -> None:
    campaign = compiled("<p>{{ code|e }}</p>", text=None)
    assert campaign.inlined_per_recipient is not None
    assert campaign.render({"code": "<b>"}, email="a@x.example", **IDS).text == "<b>\n"


RULES = st.sampled_from(
    [
        "p{color:red}",
        ".a{color:blue}",
        "td{padding:1px}",
        "p:first-child{margin:0}",
        "h1 + p{color:red}",
        "[title]{color:red}",
        "a[href^=https]{color:red}",
        "#x{color:red}",
        "li:empty{display:none}",
        "@media (max-width:600px){p{color:blue}}",
        "a:hover{color:red}",
        "div p{font-size:9px}",
        "div > p{font-weight:bold}",
        "li ~ li{color:green}",
    ]
)
PIECES = st.sampled_from(
    [
        "<p>{{ v1 }}</p>",
        '<p class="a">x{{ v2 }}y</p>',
        "{% if v1 %}<p>b</p>{% endif %}",
        '{% if v2 == "x" %}<div class="a">{% else %}<div>{% endif %}',
        "</div>",
        "<div>",
        "<table><tr><td>{{ v1 }}</td></tr></table>",
        "<p>a{% if v1 %}<p>b{% endif %}c</p>",
        "<table><tbody>{% for c in v2 %}<tr><td>{{ c }}</td></tr>{% endfor %}</tbody></table>",
        '<a href="https://x/?q={{ v1 }}" title="{{ v2 }}">l</a>',
        "<!-- {{ v1 }} -->",
        "&",
        '<h1 id="x">{{ v2 }}</h1>',
        "<ul><li>{{ v1 }}</li><li></li></ul>",
        "{{ v1 }}",
        "<br>",
        "<title>{{ v1 }}</title>",
        "<pre>{{ v2 }}</pre>",
        " ",
        "\n",
        "<p>",
        "<td>{{ v1 }}",
        "<select><option>{{ v2 }}</option></select>",
        "<svg><text>{{ v1 }}</text></svg>",
        '<p class="{{ v2 }}">c</p>',
        "{% for c in v1 %}<li>{{ c }}</li>{% endfor %}",
        "</p>",
        "<table>{% if v1 %}<tr><td>r</td></tr>{% endif %}</table>",
        "{# note #}",
        "&amp;{{ v1 }}",
        "<!--{{ v1 }}-->",
        "<!-- {{ v1 }}> -->",
        "<!--[if mso]><p>{{ v2 }}</p><![endif]-->",
        "{% set w = v1 ~ v2 %}<i>{{ w }}</i>",
        "<head>",
        "<body>",
        "</body></html>{{ v2 }}",
    ]
)
PREFIXES = st.sampled_from(
    [
        "<html><head><style>{}</style></head><body><div>",
        "<style>{}</style>",
        "<html><head><title>{{{{ v1 }}}}</title><style>{}</style></head><body>",
        "<html><head><style>{}</style>",
    ]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=PREFIXES,
    rules=st.lists(RULES, max_size=4),
    pieces=st.lists(PIECES, min_size=1, max_size=8),
    values=st.lists(st.tuples(VALUE, VALUE), min_size=1, max_size=3),
)
def test_any_template_renders_as_inlining_each_copy(
    prefix: str, rules: list[str], pieces: list[str], values: list[tuple[str, str]]
) -> None:
    """Whatever the compiler decides for a template, each recipient's HTML is as before."""
    html = prefix.format(" ".join(rules)) + "".join(pieces)
    once, each = compiled(html), compiled(html, once=False)
    for v1, v2 in values:
        variables = {"v1": v1, "v2": v2}
        assert outcome(once, variables, "a@x.example") == outcome(each, variables, "a@x.example")


BODY = st.sampled_from(
    [
        "{% if v1 %}<p>a</p>{% endif %}",
        "<p>{{ v2 }}</p>",
        "<li>{{ v1 }}</li>",
        "{% for c in v2 %}<li>{{ c }}</li>{% endfor %}",
        "<h1>t</h1>",
        '<a href="https://x/?q={{ v1 }}" title="{{ v2 }}">l</a>',
        "<pre>{{ v2 }}</pre>",
        "&{{ v1 }}",
        "&amp{% if v2 %};{% endif %}",
        "<table><tbody>{% if v1 %}<tr><td>{{ v2 }}</td></tr>{% endif %}</tbody></table>",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(RULES, min_size=1, max_size=3),
    pieces=st.lists(BODY, min_size=1, max_size=4),
    values=st.lists(st.tuples(TRICKY, TRICKY), max_size=2),
)
def test_any_body_renders_as_inlining_each_copy(
    rules: list[str], pieces: list[str], values: list[tuple[str, str]]
) -> None:
    """The same in a well-formed page, where more templates are inlined once."""
    html = f"<html><head><style>{' '.join(rules)}</style></head><body><div>{''.join(pieces)}"
    once, each = compiled(html), compiled(html, once=False)
    for v1, v2 in [("", ""), (" ", "\nx"), ("x", "amp;"), ("\n<b>", "a\xa0b"), *values]:
        variables = {"v1": v1, "v2": v2}
        assert outcome(once, variables, "a@x.example") == outcome(each, variables, "a@x.example")


class OneCampaign:
    """The store a CampaignSender reads its campaign's definition from."""

    def __init__(self, html: str) -> None:
        now = datetime.now(UTC)
        self.row = CampaignRow(
            id=7, name="n", state="running", from_addr="news@example.com", reply_to=(),
            configuration_set=None, tags={}, subject="Hi", html=html, text="Hi",
            unsubscribe_url=URL, send_at=None, priority=-10, recipients=2, pause_reason=None,
            created_at=now, started_at=now, finished_at=None,
        )  # fmt: skip

    async def get(self, campaign_id: int) -> CampaignRow:
        return self.row


@pytest.mark.parametrize(
    ("html", "logged"),
    [(TYPICAL["small"], False), (REFUSED["class"][0], True)],
)
async def test_the_daemon_says_once_why_a_campaign_is_inlined_per_recipient(
    html: str, logged: bool
) -> None:
    sender = CampaignSender(OneCampaign(html))  # type: ignore[arg-type]
    with capture_logs() as logs:
        for i in range(2):
            message = OutgoingMessage(id=i, from_addr="news@example.com", to=(f"p{i}@x.example",))
            variables = {"code": "c", "first_name": "F"}
            job = ClaimedJob(1, 0, -10, message, campaign_id=7, variables=variables)
            assert "<p" in ((await sender.prepare(job)).message.html or "")
    said = [e for e in logs if e["event"] == "campaign.css_inlined_per_recipient"]
    assert len(said) == (1 if logged else 0)
    if logged:
        assert said[0]["campaign_id"] == 7 and "class attribute" in said[0]["reason"]
