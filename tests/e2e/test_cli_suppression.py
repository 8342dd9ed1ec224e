"""`dispatcher suppression ...` as a user runs it: add, list, remove, import, export."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.cli import cli_env, run_cli


async def test_add_list_remove_import_export(pg_dsn: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, dsn=pg_dsn)
    added = await run_cli(env, "suppression", "add", "A@Example.com", "b@example.com")
    assert (added.code, added.out.strip()) == (0, "2 added"), added
    again = await run_cli(env, "suppression", "add", "a@example.com", "--reason", "x")
    assert again.out.strip() == "0 added, 1 already suppressed"

    listed = await run_cli(env, "suppression", "list")
    assert [line.split("\t")[:2] for line in listed.out.splitlines()] == [
        ["a@example.com", "added by operator"],
        ["b@example.com", "added by operator"],
    ]
    missing = await run_cli(env, "suppression", "list", "b@example.com", "c@example.com")
    assert missing.code == 1 and missing.out.startswith("b@example.com\t")

    source = tmp_path / "list.csv"
    source.write_text("email,reason\nc@example.com,old bounce\nd@example.com\n\n# note\n")
    imported = await run_cli(env, "suppression", "import", str(source))
    assert (imported.code, imported.out.strip()) == (0, "2 added"), imported
    bad = await run_cli(env, "suppression", "import", "-", stdin=b"e@example.com\nnot-an-address\n")
    assert bad.code == 2 and "'not-an-address' is not an email address" in bad.messages[0], bad

    removed = await run_cli(env, "suppression", "remove", "B@example.com", "z@example.com")
    assert removed.out.strip() == "1 removed, 1 were not suppressed"

    out = tmp_path / "export.csv"
    exported = await run_cli(env, "suppression", "export", str(out))
    assert exported.code == 0, exported
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("a@example.com", "added by operator"),
        ("c@example.com", "old bounce"),
        ("d@example.com", "imported"),
    ]
