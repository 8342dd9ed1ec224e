"""A suppressed address is not mailed whatever form it is written in (issue 13 item 2): a real
daemon (`dispatcher run --drain`) against the simulator, whose record is what counts."""

from __future__ import annotations

from pathlib import Path

from dispatcher.domain.validate import suppression_key
from tests.support.cli import cli_env, run_cli
from tests.support.sim import SimFactory

HTML = '<p>Hi</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
UNSUBSCRIBE = "https://x.example/u?e={{ email|urlencode }}"


async def test_a_suppressed_address_is_not_mailed_in_any_form(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    async with sim_process(max_send_rate=100) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        added = await run_cli(
            env, "suppression", "add", "jane@example.com", "Al <al@Bücher.example>"
        )
        assert (added.code, added.out.strip()) == (0, "2 added"), added
        forms = [
            "Jane Doe <jane@example.com>",
            " jane@example.com ",
            '"Jane" <JANE@example.com>',
            "al@bücher.EXAMPLE",
            "al@xn--bcher-kva.example",
        ]
        for form in [*forms, "Other <other@example.com>"]:
            sent = await run_cli(
                env, "send", "--from", "app@example.com", "--to", form, "--subject", "Hi",
                "--text", "t",
            )  # fmt: skip
            assert sent.code == 0, sent
        template = tmp_path / "t.html"
        template.write_text(HTML, encoding="utf-8")
        recipients = tmp_path / "list.csv"
        recipients.write_text(
            "email\nJANE@Example.com\nal@Bücher.example\nok@example.com\n", encoding="utf-8"
        )
        created = await run_cli(
            env, "campaign", "create", "--name", "c", "--from", "news@example.com",
            "--subject", "Hi", "--template", str(template), "--recipients", str(recipients),
            "--unsubscribe-url", UNSUBSCRIBE,
        )  # fmt: skip
        assert created.code == 0, created
        campaign_id = created.out.splitlines()[0]
        assert "2 suppressed" in "\n".join(created.messages), created
        assert (await run_cli(env, "campaign", "start", campaign_id)).code == 0
        drained = await run_cli(env, "run", "--drain")
        assert drained.code == 0, drained
        received = await sim.messages()

    reached = sorted(suppression_key(a) for m in received for a in (*m["to"], *m["cc"]))
    assert reached == ["ok@example.com", "other@example.com"]
