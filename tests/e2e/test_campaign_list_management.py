"""SES v2 list management (issue 18 item 6): a campaign naming an SES contact list and topic
sends every message with ListManagementOptions; a list SES does not have pauses the campaign."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_campaign import (
    campaign_states,
    created_id,
    error_line,
    people,
    write_csv,
)
from tests.support.cli import CliResult, cli_env, run_cli
from tests.support.sim import SimFactory, clients

# SES writes the List-Unsubscribe headers with list management; the body links its page.
HTML = (
    '<html><body><p>Hello {{ name }}</p><p><a href="{% raw %}{{amazonSESUnsubscribeUrl}}'
    '{% endraw %}">Unsubscribe</a></p></body></html>'
)
SES_HTML = (
    "<html><body><p>Hello {{name}}</p>"
    '<p><a href="https://x.example/prefs">Unsubscribe</a></p></body></html>'
)


async def create(
    tmp_path: Path,
    env: dict[str, str],
    recipients: Path,
    *extra: str,
    html: str = HTML,
    subject: str = "Hello {{ name }}",
) -> CliResult:
    """`campaign create` without an unsubscribe URL of ours."""
    template = tmp_path / "template.html"
    template.write_text(html, encoding="utf-8")
    return await run_cli(
        env,
        "campaign",
        "create",
        "--name",
        "news",
        "--from",
        "news@example.com",
        "--subject",
        subject,
        "--template",
        str(template),
        "--recipients",
        str(recipients),
        *extra,
    )


async def test_every_send_names_the_contact_list_and_a_missing_list_pauses_the_campaign(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    # 10/s: the bulk campaign's 20 outlast a second, so a SendBulkEmail call would come due.
    async with sim_process(max_send_rate=10) as sim:
        async with clients(sim) as (_, sesv2):  # the list, made as a user makes it
            await sesv2.create_contact_list(
                ContactListName="news",
                Topics=[
                    {
                        "TopicName": "weekly",
                        "DisplayName": "Weekly news",
                        "DefaultSubscriptionStatus": "OPT_IN",
                    }
                ],
            )
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        listed = ("--contact-list", "news", "--topic", "weekly")
        rendered = created_id(
            await create(
                tmp_path, env, write_csv(tmp_path / "a.csv", people(3)), *listed, html=HTML
            )
        )
        # SendBulkEmail takes no ListManagementOptions: a bulk campaign sends SendEmail each.
        bulk = created_id(
            await create(
                tmp_path,
                env,
                write_csv(tmp_path / "b.csv", people(20)),
                *listed,
                "--ses-template",
                html=SES_HTML,
                subject="Hello {{name}}",
            )
        )
        for cid in (rendered, bulk):
            assert (await run_cli(env, "campaign", "start", str(cid))).code == 0
        drain = await run_cli(env, "run", "--drain")
        assert drain.code == 0, drain
        received = await sim.messages()

        # A list the account lacks: SES's NotFoundException pauses the campaign, nothing fails.
        missing = created_id(
            await create(
                tmp_path,
                env,
                write_csv(tmp_path / "c.csv", people(4)),
                "--contact-list",
                "gone",
                html=HTML,
            )
        )
        assert (await run_cli(env, "campaign", "start", str(missing))).code == 0
        second = await run_cli(env, "run", "--drain")
        assert second.code == 0, second
        status = await run_cli(env, "campaign", "status", str(missing), "--json")
        after = await sim.messages()

    assert len(received) == 23
    options = {"ContactListName": "news", "TopicName": "weekly"}
    assert all(m["list_management"] == options for m in received), received
    assert {m["operation"] for m in received} == {"SendEmail"}
    # Ours would make two List-Unsubscribe headers beside SES's.
    assert not any(n.lower() == "list-unsubscribe" for m in received for n, _ in m["headers"])

    assert len(after) == 23, "mail of the campaign with the missing list went out"
    view = json.loads(status.out)
    assert view["state"] == "paused", view
    assert view["contact_list"] == "gone" and view["topic"] is None
    assert "NotFoundException" in view["pause_reason"] and "gone" in view["pause_reason"]
    states = await campaign_states(pg_dsn, missing)
    assert sum(states.values()) == 4 and states["failed"] == 0 and states["sent"] == 0, states


async def test_list_management_options_are_refused_at_create_with_one_line(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    recipients = write_csv(tmp_path / "list.csv", people(1))
    cases = [
        (("--topic", "weekly"), "a topic needs its contact list"),
        (("--contact-list", "my list"), "contact list 'my list' is not a valid name"),
        (("--contact-list", "news", "--topic", "a\nb"), "topic 'a\\nb' is not a valid name"),
        (
            ("--contact-list", "news", "--unsubscribe-url", "https://x.example/u"),
            "--contact-list and --unsubscribe-url both write List-Unsubscribe headers",
        ),
    ]
    for extra, said in cases:
        result = await create(tmp_path, env, recipients, *extra)
        assert result.code == 2, result
        assert said in error_line(result), result
        assert "Traceback" not in result.err
    rows = await run_cli(env, "campaign", "list", "--json")
    assert json.loads(rows.out) == []  # nothing was created
