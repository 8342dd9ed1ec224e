"""The CSV files the tool writes, opened in a spreadsheet: no cell runs as a formula, and the
suppression export reads back as it was written."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.cli import cli_env, run_cli

# Each starts with a character a spreadsheet takes for a formula (=, +, -, @ in OWASP's list).
FORMULAS = ("=2+5@example.com", "+1-1@example.com", "-3+3@example.com")
QUOTED = "'quote@example.com"  # starts with the escape character itself


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


async def test_the_campaign_report_escapes_cells_a_spreadsheet_would_run(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    recipients = tmp_path / "list.csv"
    recipients.write_text("email\n" + "\n".join(FORMULAS) + "\n", encoding="utf-8")
    template = tmp_path / "t.html"
    template.write_text('<p>Hi</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    created = await run_cli(
        env, "campaign", "create", "--name", "f", "--from", "news@example.com",
        "--subject", "Hi", "--template", str(template), "--recipients", str(recipients),
        "--unsubscribe-url", "https://x.example/u?e={{ email|urlencode }}",
    )  # fmt: skip
    assert created.code == 0, created
    campaign_id = created.out.splitlines()[0]
    report_csv = tmp_path / "report.csv"

    report = await run_cli(env, "campaign", "report", campaign_id, "--csv", str(report_csv))

    assert report.code == 0, report
    first_cells = sorted(row[0] for row in read_csv(report_csv)[1:])
    assert first_cells == sorted("'" + a for a in FORMULAS)


async def test_the_suppression_export_is_escaped_and_imports_back_unchanged(
    pg_dsn: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    added = await run_cli(env, "suppression", "add", "--", *FORMULAS, QUOTED, "plain@example.com")
    assert added.code == 0, added
    exported = tmp_path / "export.csv"

    export = await run_cli(env, "suppression", "export", str(exported))

    assert export.code == 0, export
    cells = sorted(row[0] for row in read_csv(exported)[1:])
    assert cells == sorted(
        ["'" + a for a in FORMULAS] + ["''quote@example.com", "plain@example.com"]
    )

    # The export, imported into an empty list, gives back the very same addresses.
    removed = await run_cli(
        env, "suppression", "remove", "--", *FORMULAS, QUOTED, "plain@example.com"
    )
    assert removed.out.strip() == "5 removed", removed
    imported = await run_cli(env, "suppression", "import", str(exported))
    assert (imported.code, imported.out.strip()) == (0, "5 added"), imported
    listed = await run_cli(env, "suppression", "list")
    assert sorted(line.split("\t")[0] for line in listed.out.splitlines()) == sorted(
        [*FORMULAS, QUOTED, "plain@example.com"]
    )
