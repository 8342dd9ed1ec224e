"""CompiledCampaign: what each recipient's message looks like, and the errors a user sees."""

from __future__ import annotations

import pytest

from dispatcher.campaigns.render import CampaignContent, CompiledCampaign, Rendered
from dispatcher.errors import InputError

URL = "https://news.example/u?e={{ email|urlencode }}&c={{ campaign_id }}"
HTML = """<html><head><style>p { color: red }</style></head><body>
<h1>Hello {{ first_name }}</h1>
<p>Your code is {{ code }}.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"""


def compile_(**changes: str | None) -> CompiledCampaign:
    fields: dict[str, str | None] = {
        "subject": "Hi {{ first_name }}",
        "html": HTML,
        "unsubscribe_url": URL,
    }
    fields.update(changes)
    return CompiledCampaign(CampaignContent(**fields))  # type: ignore[arg-type]


def render(campaign: CompiledCampaign, email: str = "jo@example.com", **variables: str) -> Rendered:
    return campaign.render(variables, email=email, campaign_id=7, message_id=42)


def error(call: object, *args: object, **kwargs: object) -> str:
    """The InputError text of ``call(*args, **kwargs)``; fails the test if it succeeds."""
    assert callable(call)
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return str(info.value)


def test_each_recipient_gets_their_own_variables() -> None:
    campaign = compile_()
    jo = render(campaign, "jo@example.com", first_name="Jo", code="A1")
    al = render(campaign, "al@example.com", first_name="Al", code="B2")
    assert (jo.subject, al.subject) == ("Hi Jo", "Hi Al")
    assert "<h1>Hello Jo</h1>" in jo.html and "Your code is A1." in jo.html
    assert "<h1>Hello Al</h1>" in al.html and "Your code is B2." in al.html
    assert 'href="https://news.example/u?e=al%40example.com&amp;c=7"' in al.html


def test_builtins_are_available_to_templates() -> None:
    campaign = compile_(html="<p>{{ email }} {{ campaign_id }} {{ message_id }}</p>")
    assert "<p>jo@example.com 7 42</p>" in render(campaign, first_name="Jo").html
    assert campaign.variables == {"first_name"}


def test_html_is_autoescaped_text_and_subject_are_not() -> None:
    campaign = compile_(text="Hello {{ first_name }}", subject="Hi {{ first_name }}")
    out = render(campaign, first_name="<script>alert(1)</script>", code="&")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "<script>" not in out.html
    assert "Your code is &amp;." in out.html
    assert out.text == "Hello <script>alert(1)</script>"
    assert out.subject == "Hi <script>alert(1)</script>"


def test_derived_text_shows_variables_unescaped() -> None:
    out = render(compile_(), first_name="<b>Tom & Jerry</b>", code="1")
    assert "Hello <b>Tom & Jerry</b>" in out.text


def test_style_rules_become_style_attributes() -> None:
    html = (
        "<html><head><style>p.note { color: red } @media (max-width: 600px) "
        '{ p { color: blue } }</style></head><body><p class="note">x</p></body></html>'
    )
    out = render(compile_(html=html, subject="News"))
    assert '<p class="note" style="color: red;">x</p>' in out.html
    assert "p.note" not in out.html  # the rule is gone from the <style> block
    assert "@media (max-width: 600px)" in out.html  # cannot be inlined: kept for clients


def test_linked_stylesheets_are_dropped_not_fetched() -> None:
    html = '<html><head><link rel="stylesheet" href="https://cdn.invalid/x.css"></head><p>x</p>'
    out = render(compile_(html=html, subject="News"))
    assert "cdn.invalid" not in out.html


def test_text_is_derived_from_the_html_when_not_given() -> None:
    campaign = compile_()
    assert campaign.derived_text is not None  # derived once, at compile time
    out = render(campaign, first_name="Jo", code="A1")
    assert out.text == (
        "# Hello Jo\n\nYour code is A1.\n\n"
        "[Unsubscribe](https://news.example/u?e=jo%40example.com&c=7)\n"
    )
    assert "color" not in out.text  # the <style> block is not text


def test_derived_text_follows_loops_and_conditions_per_recipient() -> None:
    html = (
        "<table>{% for item in items.split(',') %}<tr><td>{{ item }}</td></tr>{% endfor %}"
        "</table>{% if vip %}<p>Welcome back, VIP.</p>{% else %}<p>Hello.</p>{% endif %}"
    )
    campaign = compile_(html=html, subject="News")
    vip = render(campaign, items="tea,cake", vip="yes")
    plain = render(campaign, items="jam", vip="")
    assert vip.text == "tea\ncake\n\nWelcome back, VIP.\n"
    assert plain.text == "jam\n\nHello.\n"


def test_text_with_markup_filters_is_derived_per_recipient() -> None:
    # |safe means the variable holds markup: the text must come from the rendered HTML.
    campaign = compile_(html="<p>Hi {{ greeting|safe }}</p>", subject="News")
    assert campaign.derived_text is None
    assert render(campaign, greeting="<b>there</b>").text == "Hi there\n"


def test_given_text_template_is_used_as_is() -> None:
    out = render(compile_(text="Hi {{ first_name }},\ncode {{ code }}"), first_name="Jo", code="9")
    assert out.text == "Hi Jo,\ncode 9"


def test_list_unsubscribe_headers_with_url_and_mailto() -> None:
    campaign = compile_(unsubscribe_mailto="Unsubscribe@News.Example")
    out = render(campaign, "a+b@example.com", first_name="A", code="1")
    assert out.headers == (
        (
            "List-Unsubscribe",
            "<https://news.example/u?e=a%2Bb%40example.com&c=7>, <mailto:Unsubscribe@news.example>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def test_list_unsubscribe_headers_with_url_only() -> None:
    out = render(compile_(), first_name="A", code="1")
    assert out.headers == (
        ("List-Unsubscribe", "<https://news.example/u?e=jo%40example.com&c=7>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def test_mailto_alone_gives_no_one_click_header() -> None:
    html = "<p>{{ first_name }}</p>"
    campaign = compile_(html=html, unsubscribe_url=None, unsubscribe_mailto="u@news.example")
    out = render(campaign, first_name="A")
    assert out.headers == (("List-Unsubscribe", "<mailto:u@news.example>"),)
    assert render(compile_(html=html, unsubscribe_url=None), first_name="A").headers == ()


def test_missing_variable_names_the_variable_template_and_line() -> None:
    campaign = compile_()
    message = error(render, campaign, first_name="Jo")
    assert "'code' is undefined" in message
    assert "html template, line 3" in message
    assert "jo@example.com" in message


def test_check_variables_names_what_the_list_lacks() -> None:
    campaign = compile_(text="Bye {{ last_name }}", unsubscribe_url=None)
    assert campaign.variables == {"first_name", "code", "last_name", "unsubscribe_url"}
    campaign.check_variables(["email", "first_name", "code", "last_name", "unsubscribe_url"])
    message = error(campaign.check_variables, ["email", " first_name "])
    assert "html template uses {{ code }} but the list has no code column" in message
    assert "text template uses {{ last_name }} but the list has no last_name column" in message
    assert "{{ unsubscribe_url }} but the list has no unsubscribe_url column and the campaign " in (
        message
    )
    assert "{{ first_name }}" not in message
    assert "(columns: email, first_name)" in message


def test_check_variables_counts_the_unsubscribe_url_as_provided() -> None:
    campaign = compile_()
    assert campaign.variables == {"first_name", "code"}
    campaign.check_variables(["email", "first_name", "code"])


def test_variable_used_in_subject_and_html_is_reported_for_both() -> None:
    campaign = compile_(html="<p>{{ first_name }}</p>")
    assert "subject and html template uses {{ first_name }}" in error(
        campaign.check_variables, ["email"]
    )


@pytest.mark.parametrize(
    ("which", "changes", "line"),
    [
        ("subject", {"subject": "Hi {{ first_name "}, 1),
        ("html", {"html": "<p>\n\n{% if x %}\n</p>"}, 3),
        ("html", {"html": "<p>\n{{ x|no_such_filter }}</p>"}, 2),
        ("text", {"text": "line one\n{% for %}"}, 2),
        ("unsubscribe_url", {"unsubscribe_url": "https://x.example/{{ email }"}, 1),
    ],
)
def test_syntax_error_names_the_template_and_line(
    which: str, changes: dict[str, str], line: int
) -> None:
    message = error(compile_, **changes)
    assert message.startswith(f"{which} template, line {line}: ")
    assert "fix the Jinja syntax" in message


def test_line_break_in_a_subject_variable_is_refused() -> None:
    campaign = compile_()
    message = error(render, campaign, first_name="Jo\r\nBcc: victim@example.com", code="1")
    assert message.startswith("subject for jo@example.com contains a line break")
    assert "Jo\\r\\nBcc" in message


@pytest.mark.parametrize("brk", ["\n", "\r", "\u2028", "\x85"])
def test_every_kind_of_line_break_in_the_subject_is_refused(brk: str) -> None:
    assert "line break" in error(render, compile_(), first_name=f"a{brk}b", code="1")


def test_line_break_in_the_unsubscribe_url_is_refused() -> None:
    campaign = compile_(unsubscribe_url="https://x.example/u/{{ code }}")
    assert "unsubscribe_url for jo@example.com contains a line break" in error(
        render, campaign, first_name="Jo", code="1\r\nX-Evil: 1"
    )


def test_unencoded_space_in_the_unsubscribe_url_is_refused() -> None:
    campaign = compile_(unsubscribe_url="https://x.example/u/{{ first_name }}")
    assert "|urlencode" in error(render, campaign, first_name="Jo Smith", code="1")


def test_unsubscribe_url_must_be_https() -> None:
    assert "must be an https:// URL" in error(compile_, unsubscribe_url="http://x.example/u")
    campaign = compile_(unsubscribe_url="{{ base }}/u")
    assert "must start with https://" in error(
        render, campaign, first_name="Jo", code="1", base="http://x.example"
    )


def test_bad_unsubscribe_mailto_is_refused() -> None:
    message = error(compile_, unsubscribe_mailto="not an address")
    assert message.startswith("unsubscribe_mailto 'not an address' is not a usable address")


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__ }}",
        "{{ first_name.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_internal_attributes(expression: str) -> None:
    campaign = compile_(html=f"<p>\n{expression}</p>")
    message = error(render, campaign, first_name="Jo")
    assert "html template, line 2" in message
    assert "unsafe" in message
    assert "sandboxed" in message


def test_any_exception_while_rendering_is_that_recipients_error() -> None:
    # Not a Jinja TemplateError: before, it escaped and stopped the daemon on this recipient.
    campaign = compile_(html=HTML + "<p>{{ (total|int) // (orders|int) }} per order</p>")
    text = error(
        render, campaign, "zero@example.com", first_name="Jo", code="1", total="9", orders="0"
    )
    assert "html template, line 5, rendering for zero@example.com" in text
    assert "ZeroDivisionError" in text
    assert (
        "4 per order</p>" in render(campaign, first_name="Jo", code="1", total="9", orders="2").html
    )


def test_a_rendered_lone_surrogate_fails_that_recipient() -> None:
    campaign = compile_(subject='Hi {{ "%c"|format(first_name|int) }}')
    text = error(render, campaign, first_name="55296", code="1")
    assert "subject template, rendering for jo@example.com" in text
    assert "lone surrogate" in text


@pytest.mark.parametrize(
    ("source", "tag"),
    [
        ('{% include "footer.html" %}', "{% include %}"),
        ('{% import "macros.html" as m %}', "{% import %}"),
        ('{% from "macros.html" import button %}', "{% from ... import %}"),
        ('{% extends "base.html" %}', "{% extends %}"),
    ],
)
def test_tags_that_load_another_template_are_refused_when_compiled(source: str, tag: str) -> None:
    text = error(compile_, html=HTML + "\n" + source)
    assert text.startswith(f"html template, line 6: {tag} cannot work in a campaign template")
    assert tag in error(compile_, subject=source)


def test_columns_a_template_cannot_read_are_named_with_a_new_name() -> None:
    warnings = compile_().shadowed_columns(
        ["email", "self", "first_name", "none", "loop", "campaign_id", "unsubscribe_url", "code"]
    )
    assert warnings == [
        "column 'self' is a Jinja name, so {{ self }} in a template never shows the list's "
        "value: rename the column (e.g. to list_self) and use {{ list_self }}",
        "column 'none' is a Jinja name, so {{ none }} in a template never shows the list's "
        "value: rename the column (e.g. to list_none) and use {{ list_none }}",
        "column 'loop' is a Jinja name, so {{ loop }} in a loop, block or macro does not show "
        "the list's value: rename the column (e.g. to list_loop) and use {{ list_loop }}",
        "column 'campaign_id' is filled in by the dispatcher, so {{ campaign_id }} in a "
        "template never shows the list's value: rename the column (e.g. to list_campaign_id) "
        "and use {{ list_campaign_id }}",
        "column 'unsubscribe_url' is filled in by the dispatcher, so {{ unsubscribe_url }} in "
        "a template never shows the list's value: rename the column (e.g. to "
        "list_unsubscribe_url) and use {{ list_unsubscribe_url }}",
    ]
    # Without an unsubscribe URL the campaign leaves that name to the list.
    html = HTML.replace("{{ unsubscribe_url }}", "https://x.example/u")
    assert compile_(html=html, unsubscribe_url=None).shadowed_columns(["unsubscribe_url"]) == []


def test_a_semicolon_header_gets_the_separator_hint_not_add_the_column() -> None:
    text = error(compile_().check_variables, ["email;first_name;code"])
    assert "the list has no first_name column" in text
    assert text.endswith("save it as CSV with commas (in Excel: CSV UTF-8, comma delimited)")


def test_a_template_nested_past_the_parser_is_refused_not_a_traceback() -> None:
    deep = "{{ " + "(" * 300 + "1" + ")" * 300 + " }}"
    assert error(compile_, subject=deep) == (
        "subject template is nested too deeply to compile; simplify its expressions"
    )
