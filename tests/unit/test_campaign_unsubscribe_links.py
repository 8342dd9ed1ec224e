"""UnsubscribeLinks: a URL template that is plain substitution is rendered without Jinja, to
the same string Jinja renders, and everything else still goes through Jinja."""

from __future__ import annotations

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dispatcher.campaigns.render import UnsubscribeLinks
from dispatcher.errors import InputError

PLAIN = [
    "https://news.example/u?e={{ email|urlencode }}&c={{ campaign_id }}",
    "https://news.example/u/{{ message_id }}/{{email | urlencode}}",
    "https://news.example/u?e={{ email }}",
    "{{ base }}/u?e={{ email|urlencode }}&code={{ code|urlencode }}",
    "https://news.example/u/{{- code -}} /x",
    "https://news.example/unsubscribe",
]
NOT_PLAIN = [
    "https://news.example/u?e={{ email|urlencode|lower }}",
    "https://news.example/u?e={{ email|lower }}",
    "https://news.example/u?e={{ email ~ 'x' }}",
    "https://news.example/u?e={{ data.email }}",
    "https://news.example/u?{{ {'e': email}|urlencode }}",
    "https://news.example/u?e={% if code %}{{ code }}{% endif %}",
    "https://news.example/u?e={{ self }}",
    "https://news.example/u?e={{ 'x' }}",
]
# Addresses and values where quoting rules show: spaces, plus, slash, percent, ampersand, hash,
# quotes, unicode local parts and domains, a surrogate pair's character, an empty value.
VALUES = [
    "jo@example.com",
    "jo+news@example.com",
    "o'brien@example.com",
    '"quoted local"@example.com',
    "ä.ö@exämple.de",
    "用户@例子.广告",
    "a/b%20c&d=e#f?g@example.com",
    "tab\tand~tilde@example.com",
    "emoji😀@example.com",
    "",
]


def jinja(template: str, context: dict[str, object]) -> str:
    env = ImmutableSandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, auto_reload=False
    )
    return env.from_string(template.strip()).render(context)


@pytest.mark.parametrize("template", PLAIN)
@pytest.mark.parametrize("value", VALUES)
def test_plain_substitution_gives_what_jinja_gives(template: str, value: str) -> None:
    links = UnsubscribeLinks(template, None)
    assert links.substituted
    context: dict[str, object] = {
        "email": value,
        "code": value,
        "base": "https://news.example",
        "campaign_id": 7,
        "message_id": 12345678901,
    }
    assert links.url(context, value) == jinja(template, context)


@pytest.mark.parametrize("template", NOT_PLAIN)
def test_anything_more_is_rendered_by_jinja(template: str) -> None:
    links = UnsubscribeLinks(template, None)
    assert not links.substituted
    context: dict[str, object] = {"email": "Jo@Example.com", "code": "1", "data": {"email": "x"}}
    assert links.url(context, "Jo@Example.com") == jinja(template, context)


def test_a_missing_variable_is_the_same_error_as_before() -> None:
    links = UnsubscribeLinks("https://news.example/u?c={{ code|urlencode }}", None)
    with pytest.raises(InputError) as info:
        links.render({"email": "jo@example.com"}, "jo@example.com")
    assert str(info.value) == (
        "unsubscribe_url template, line 1, rendering for jo@example.com: 'code' is undefined; "
        "give the variable in the recipient list or change the template"
    )


def test_a_lone_surrogate_and_a_line_break_are_refused_as_before() -> None:
    links = UnsubscribeLinks("https://news.example/u?c={{ code }}", None)
    with pytest.raises(InputError, match="lone surrogate"):
        links.render({"code": "\ud800"}, "jo@example.com")
    with pytest.raises(InputError, match="contains a line break"):
        links.render({"code": "a\nb"}, "jo@example.com")
    with pytest.raises(InputError, match="space, quote or angle bracket"):
        links.render({"code": "a b"}, "jo@example.com")


def test_headers_carry_the_substituted_url() -> None:
    links = UnsubscribeLinks("https://news.example/u?e={{ email|urlencode }}", "u@news.example")
    url, headers = links.render({"email": "jo+x@example.com"}, "jo+x@example.com")
    assert url == "https://news.example/u?e=jo%2Bx%40example.com"
    assert headers == (
        ("List-Unsubscribe", f"<{url}>, <mailto:u@news.example>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )
