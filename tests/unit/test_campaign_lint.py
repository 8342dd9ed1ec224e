"""lint_html: each problem found at the right level and line; a clean template passes."""

from __future__ import annotations

import pytest

from dispatcher.campaigns.lint import Finding, format_findings, has_errors, lint_html

CLEAN = """<html><head><title>News</title></head><body>
<table width="600"><tr><td style="padding: 8px; color: #333">
<h1 style="font-size: 20px">Hello {{ first_name }}</h1>
<img src="https://cdn.example/logo.png" width="120" height="40" alt="Logo">
<p>News of the week.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</td></tr></table>
</body></html>"""


def lint(html: str, *, text: str | None = "Hello", unsubscribe: bool = True) -> list[Finding]:
    return lint_html(html, text=text, has_unsubscribe=unsubscribe)


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, findings
    return matching[0]


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def body(html: str) -> str:
    """``html`` with a visible unsubscribe link, so only the problem under test is found."""
    return f'{html}\n<p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>'


def test_clean_template_has_no_findings() -> None:
    findings = lint(CLEAN)
    assert findings == []
    assert not has_errors(findings)
    assert format_findings(findings) == "no problems found"


@pytest.mark.parametrize(
    "html",
    [
        '<p>x</p>\n<img src="data:image/png;base64,iVBORw0KGgo=">',
        '<p>x</p>\n<td background=" DATA:image/gif;base64,R0lG">',
        "<p>x</p>\n<div style=\"background-image: url('data:image/png;base64,AAA')\">",
    ],
)
def test_data_uri_images_are_errors(html: str) -> None:
    finding = only(lint(body(html)), "data-image")
    assert finding.level == "error"
    assert finding.line == 2
    assert "CDN" in finding.message


@pytest.mark.parametrize(
    "html",
    [
        '<img src="https://cdn.example/logo.svg?v=2">',
        "<svg width='10'><circle r='4'/></svg>",
        '<div style="background: url(https://cdn.example/bg.SVG)">',
    ],
)
def test_svg_images_are_warnings(html: str) -> None:
    finding = only(lint(body(html)), "svg-image")
    assert finding.level == "warning"
    assert "PNG or JPEG" in finding.message


def test_svg_data_uri_is_both() -> None:
    findings = lint(body('<img src="data:image/svg+xml;base64,PHN2Zz4=">'))
    assert only(findings, "data-image").level == "error"
    assert only(findings, "svg-image").level == "warning"


def test_css_problems_in_style_blocks_have_their_lines() -> None:
    html = body(
        "<html><head><style>\n"
        ".box { overflow: hidden; }\n"  # line 2
        "/* height: 10px is only a comment */\n"
        "p { max-height: 3px; min-height: 1px; text-overflow: clip }\n"
        "p.big {\n  line-height: 2;\n}\n"  # line-height on line 6
        "</style></head><body><p>x</p>"
    )
    findings = lint(html)
    assert only(findings, "style-block").line == 1
    assert "will be inlined" in only(findings, "style-block").message
    assert (only(findings, "css-overflow").level, only(findings, "css-overflow").line) == (
        "warning",
        2,
    )
    height = only(findings, "css-height")
    assert (height.level, height.line) == ("warning", 6)
    assert "Naver" in height.message


def test_css_problems_in_style_attributes() -> None:
    html = body('<p>a</p>\n<div style="height: 40px">b</div>\n<div style="overflow-x:auto">c</div>')
    findings = lint(html)
    assert only(findings, "css-height").line == 2
    assert only(findings, "css-overflow").line == 3


def test_repeated_problem_is_reported_once_with_its_other_lines() -> None:
    html = body("\n".join('<p style="height:1px">x</p>' for _ in range(9)))
    finding = only(lint(html), "css-height")
    assert finding.line == 1
    assert finding.message.endswith("(also lines 2, 3, 4, 5, 6 and 3 more)")


def test_external_stylesheet_and_script_are_warnings() -> None:
    html = body('<link rel="stylesheet" href="https://cdn.example/a.css">\n<script>x()</script>')
    findings = lint(html)
    assert (only(findings, "external-stylesheet").level, only(findings, "script").line) == (
        "warning",
        2,
    )


def test_missing_text_part_is_a_warning_saying_it_is_derived() -> None:
    finding = only(lint(CLEAN, text=None), "no-text-part")
    assert finding.level == "warning"
    assert "derived automatically" in finding.message
    assert only(lint(CLEAN, text=" \n"), "empty-text-part").level == "warning"


def test_no_unsubscribe_at_all_is_an_error() -> None:
    findings = lint("<p>Hello</p>", unsubscribe=False)
    finding = only(findings, "no-unsubscribe")
    assert finding.level == "error"
    assert has_errors(findings)


def test_unsubscribe_in_only_one_place_is_a_warning() -> None:
    no_link = lint("<p>Hello <a href='https://x.example/'>home</a></p>", unsubscribe=True)
    assert only(no_link, "no-unsubscribe-link").level == "warning"
    assert not has_errors(no_link)
    no_header = lint(CLEAN, unsubscribe=False)
    assert only(no_header, "no-list-unsubscribe").level == "warning"
    assert not has_errors(no_header)


@pytest.mark.parametrize(
    "link",
    [
        '<a href="https://x.example/unsubscribe?e={{ email }}">here</a>',
        '<a href="https://x.example/prefs">Unsubscribe</a>',
        '<a href="mailto:leave@x.example">opt out</a>',
        '<a href="https://x.example/opt-out">stop</a>',
    ],
)
def test_unsubscribe_links_are_recognised(link: str) -> None:
    assert not has_errors(lint(f"<p>{link}</p>", unsubscribe=False))


def test_html_over_the_ses_size_limit_is_an_error() -> None:
    html = body("<p>" + "x" * (8 * 1024 * 1024) + "</p>")
    finding = only(lint(html), "message-too-large")
    assert finding.level == "error"
    assert "10 MB" in finding.message
    assert has_errors(lint(html))


def test_html_over_gmails_clip_size_is_a_warning() -> None:
    findings = lint(body("<p>" + "x" * 110_000 + "</p>"))
    finding = only(findings, "gmail-clip")
    assert finding.level == "warning"
    assert "102 KB" in finding.message
    assert "message-too-large" not in codes(findings)


def test_inlined_css_counts_toward_gmails_clip_size() -> None:
    # 60 KB of markup, but every cell gets the long rule inlined: well over 102 KB.
    rule = "td { font-family: Helvetica, Arial, sans-serif; color: #333333; padding: 4px }"
    html = body(f"<html><head><style>{rule}</style></head><body><table><tr>")
    html += "<td>x</td>" * 6000 + "</tr></table></body></html>"
    assert len(html) < 70_000
    assert "gmail-clip" in codes(lint(html))


def test_findings_are_ordered_errors_first_and_formatted() -> None:
    html = '<p style="height:1px">x</p>\n<img src="data:image/png;base64,AA">'
    findings = lint(html, text=None, unsubscribe=False)
    assert [f.level for f in findings] == ["error", "error", "warning", "warning"]
    assert [f.code for f in findings] == [
        "data-image",
        "no-unsubscribe",
        "css-height",
        "no-text-part",
    ]
    text = format_findings(findings)
    lines = text.splitlines()
    assert lines[0].startswith("error: line 2: image embedded as a data: URI")
    assert lines[0].endswith("[data-image]")
    assert lines[2].startswith("warning: line 1: CSS height")
    assert lines[-1] == "2 error(s), 2 warning(s)"
