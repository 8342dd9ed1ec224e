"""Campaign input that used to stop the daemon or mislead the user: a recipient whose render
raises, templates that can never render, lists whose columns or rows are not what they seem."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli_campaign import (
    HTML,
    assert_nothing_imported,
    create,
    created_id,
    error_line,
    sim_address,
    write_csv,
)
from tests.support.cli import cli_env, fetch, run_cli
from tests.support.sim import SimFactory

PER_ORDER = HTML.replace("{{ name }}", "{{ name }}: {{ (total|int) // (orders|int) }} per order")


async def test_a_recipient_whose_render_raises_fails_alone_and_the_daemon_goes_on(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    # The zero comes first: before, the daemon died on it and every restart died again.
    rows: list[tuple[str, ...]] = [
        (sim_address("zero"), "Zed", "10", "0"),
        *[(sim_address(f"p{i}"), f"Person {i}", "10", "2") for i in range(4)],
    ]
    recipients = write_csv(tmp_path / "list.csv", rows, header=("email", "name", "total", "orders"))
    async with sim_process(max_send_rate=200) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        campaign_id = created_id(await create(tmp_path, env, recipients, html=PER_ORDER))
        assert (await run_cli(env, "campaign", "start", str(campaign_id))).code == 0
        receipt = sim_address("receipt")
        send = await run_cli(
            env,
            *("send", "--from", "shop@example.com", "--to", receipt),
            *("--subject", "Your receipt", "--text", "Thanks"),
        )
        assert send.code == 0, send

        drain = await run_cli(env, "run", "--drain")
        received = await sim.messages(body=True)

    assert drain.code == 0, drain
    assert "sent 5, failed 1" in drain.out, drain
    assert sorted(m["to"][0] for m in received) == sorted(
        [receipt, *(email for email, *_ in rows[1:])]
    )
    assert all("5 per order" in m["html"] for m in received if m["to"][0] != receipt)
    (failed,) = await fetch(
        pg_dsn,
        "SELECT m.to_addrs[1] AS address, j.state::text AS state, j.last_outcome, j.last_error "
        "FROM dispatcher.jobs j JOIN dispatcher.messages m ON m.id = j.id "
        "WHERE j.state <> 'sent'",
    )
    assert (failed["address"], failed["state"], failed["last_outcome"]) == (
        sim_address("zero"),
        "failed",
        "render_error",
    )
    assert f"rendering for {sim_address('zero')}: ZeroDivisionError" in failed["last_error"]


async def test_lint_and_create_refuse_a_template_that_includes_another(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(tmp_path / "list.csv", [(sim_address("a"), "A")])
    env = cli_env(tmp_path, dsn=pg_dsn)
    html = HTML.replace("</body>", '{% include "footer.html" %}</body>')
    (tmp_path / "t.html").write_text(html, encoding="utf-8")

    lint = await run_cli(env, "campaign", "lint", str(tmp_path / "t.html"))
    made = await create(tmp_path, env, recipients, html=html)

    for result in (lint, made):
        assert result.code == 2, result
        assert "html template, line 1: {% include %} cannot work in a campaign template" in (
            error_line(result)
        )
    await assert_nothing_imported(pg_dsn)


async def test_a_header_only_list_is_refused_and_nothing_created(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(tmp_path / "list.csv", [])
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    assert result.code == 2, result
    assert "list.csv has a header but no recipients" in error_line(result)
    await assert_nothing_imported(pg_dsn)


async def test_a_list_that_leaves_nobody_after_rejects_duplicates_and_suppressions_is_refused(
    pg_dsn: str, tmp_path: Path
) -> None:
    gone = sim_address("gone")
    recipients = write_csv(
        tmp_path / "list.csv", [("not-an-address", "X"), (gone, "G"), (gone, "H")]
    )
    env = cli_env(tmp_path, dsn=pg_dsn)
    suppressed = await run_cli(env, "suppression", "add", gone)
    assert suppressed.code == 0, suppressed

    result = await create(tmp_path, env, recipients)

    assert result.code == 2, result
    line = error_line(result)
    assert "no recipient left in the list: 1 row(s) rejected, 1 duplicate(s), 1 suppressed" in (
        line
    ), result
    assert "nothing was created" in line, result
    await assert_nothing_imported(pg_dsn)


async def test_a_semicolon_list_is_called_not_comma_separated(pg_dsn: str, tmp_path: Path) -> None:
    recipients = tmp_path / "list.csv"
    recipients.write_text(f"email;name\n{sim_address('a')};A\n", encoding="utf-8")
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    assert result.code == 2, result
    assert "does not look comma-separated" in error_line(result)
    await assert_nothing_imported(pg_dsn)


async def test_a_column_a_template_cannot_read_is_warned_about_at_create(
    pg_dsn: str, tmp_path: Path
) -> None:
    recipients = write_csv(
        tmp_path / "list.csv", [(sim_address("a"), "A", "x")], header=("email", "name", "self")
    )
    env = cli_env(tmp_path, dsn=pg_dsn)

    result = await create(tmp_path, env, recipients)

    created_id(result)
    warnings = [m for m in result.messages if m.startswith(f"warning: {recipients}")]
    assert warnings == [
        f"warning: {recipients}: column 'self' is a Jinja name, so {{{{ self }}}} in a template "
        "never shows the list's value: rename the column (e.g. to list_self) and use "
        "{{ list_self }}"
    ]


async def test_lint_says_when_the_css_must_be_inlined_in_each_copy(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    head = "<html><head><style>.vip { color: red }</style></head><body>"
    tail = '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
    once = tmp_path / "once.html"
    once.write_text(f'{head}<p class="vip">Hello {{{{ name }}}}</p>{tail}')
    each = tmp_path / "each.html"
    each.write_text(f'{head}<p class="{{{{ tier }}}}">Hello {{{{ name }}}}</p>{tail}')
    text = tmp_path / "text.txt"
    text.write_text("Hello {{ name }}\nUnsubscribe: {{ unsubscribe_url }}\n")
    options = ("--text-template", str(text), "--unsubscribe-url", "https://example.com/u")

    fine = await run_cli(env, "campaign", "lint", str(once), *options)
    slow = await run_cli(env, "campaign", "lint", str(each), *options)

    assert fine.code == 0 and "note:" not in fine.err, fine
    assert slow.code == 0, slow  # a note, not an error: the mail is the same, only slower
    assert (
        "note: the CSS will be inlined in each recipient's copy, not once for the campaign, "
        "because a variable sits in a class attribute"
    ) in slow.err
