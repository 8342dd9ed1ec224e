"""`dispatcher suppression ...` as a user runs it: add, list, remove, import, export."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import aioboto3

from tests.support.cli import cli_env, run_cli
from tests.support.moto import MotoServer
from tests.support.sim import SimFactory

if TYPE_CHECKING:
    from types_aiobotocore_sesv2.literals import SuppressionListReasonType


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


async def test_sync_adds_the_ses_account_level_list_and_says_so_where_ses_cannot(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory, moto: MotoServer
) -> None:
    async with sim_process() as sim:
        session = aioboto3.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        async with session.client("sesv2", endpoint_url=sim.endpoint_url) as ses:
            account_list: list[tuple[str, SuppressionListReasonType]] = [
                ("Gone@Example.com", "BOUNCE"),
                ("angry@example.com", "COMPLAINT"),
                ("known@example.com", "BOUNCE"),
            ]
            for address, reason in account_list:
                await ses.put_suppressed_destination(EmailAddress=address, Reason=reason)
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)
        assert (await run_cli(env, "suppression", "add", "known@example.com")).code == 0
        synced = await run_cli(env, "suppression", "sync")
        await asyncio.sleep(1.0)  # SES answers ListSuppressedDestinations once a second
        again = await run_cli(env, "suppression", "sync")
    listed = await run_cli(env, "suppression", "list", "--json")
    unsupported = await run_cli(
        cli_env(tmp_path, dsn=pg_dsn, endpoint_url=moto.endpoint_url), "suppression", "sync"
    )

    assert synced.code == 0, synced
    assert synced.out == (
        "2 added from the SES account-level suppression list, 1 already suppressed\n"
    )
    assert again.out.startswith("0 added"), again
    reasons = {r["address"]: r["reason"] for r in map(json.loads, listed.out.splitlines())}
    assert reasons == {
        "gone@example.com": "on the SES account suppression list: bounce",
        "angry@example.com": "on the SES account suppression list: complaint",
        "known@example.com": "added by operator",  # ours is kept
    }
    # moto has no ListSuppressedDestinations: one line that says what is needed, exit 1.
    assert unsupported.code == 1, unsupported
    assert len(unsupported.messages) == 1, unsupported.messages
    (message,) = unsupported.messages
    assert "could not read the SES account-level suppression list" in message
    assert "ses:ListSuppressedDestinations" in message
