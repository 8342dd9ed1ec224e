"""Send windows as a user runs them: recipients whose window is closed now (in the campaign's
zone or their own) wait, scheduled for its start, while the others go out; bad input is one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.test_cli_campaign import (
    campaign_states,
    create,
    created_id,
    error_line,
    sim_address,
    write_csv,
)
from tests.support.cli import cli_env, fetch, run_cli
from tests.support.sim import SimFactory


def closed_now_open_elsewhere(now: datetime) -> tuple[str, str, int]:
    """A two-hour window closed now in UTC, open now in a zone `offset` hours east of it."""
    for offset in range(3, 13):
        start = (now.hour + offset) % 24
        if start <= 22:  # ends by 24:00; at least an hour of it left in that zone
            return f"Mon-Sun {start:02d}:00-{start + 2:02d}:00", f"Etc/GMT-{offset}", start
    raise AssertionError("unreachable: some offset in 3..12 gives a start <= 22")


async def test_closed_windows_wait_while_open_zones_and_other_campaigns_send(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    now = datetime.now(UTC)
    window, open_zone, start = closed_now_open_elsewhere(now)
    rows = [
        (sim_address("east1"), "East 1", open_zone),
        (sim_address("east2"), "East 2", open_zone),
        (sim_address("utc1"), "Utc 1", ""),  # the campaign's zone (UTC): closed
        (sim_address("utc2"), "Utc 2", "UTC"),
        (sim_address("mars"), "Mars", "Mars/Olympus"),
    ]
    listed = write_csv(tmp_path / "zones.csv", rows, header=("email", "name", "tz"))
    plain = write_csv(tmp_path / "plain.csv", [(sim_address("any"), "Any")])
    async with sim_process(max_send_rate=100) as sim:
        env = cli_env(tmp_path, dsn=pg_dsn, endpoint_url=sim.endpoint_url)

        refused = await create(tmp_path, env, listed, "--window", "Mon-Fry 09:00-18:00")
        assert refused.code == 2 and "'fry' is not a weekday" in error_line(refused)
        refused = await create(
            tmp_path, env, listed, "--window", window, "--timezone-column", "zone"
        )
        assert refused.code == 2 and "'zone' is not a column" in error_line(refused)

        made = await create(
            tmp_path,
            env,
            listed,
            "--window",
            window,
            "--timezone",
            "UTC",
            "--timezone-column",
            "tz",
        )
        windowed = created_id(made)
        assert any(
            "line 6: " in m and "column 'tz': 'Mars/Olympus' is not a time zone" in m
            for m in made.messages
        ), made
        other = created_id(await create(tmp_path, env, plain))
        for cid in (windowed, other):
            assert (await run_cli(env, "campaign", "start", str(cid))).code == 0

        run = await run_cli(env, "run", "--drain")
        assert run.code == 0, run
        assert run.out.startswith("drained: nothing left to send"), run
        assert "2 scheduled for later" in run.out, run

        got = sorted(m["to"][0] for m in await sim.messages())
        status = await run_cli(env, "campaign", "status", str(windowed))
        status_json = json.loads(
            (await run_cli(env, "campaign", "status", str(windowed), "--json")).out
        )

    east = [sim_address("east1"), sim_address("east2")]
    assert got == sorted([*east, sim_address("any")])
    assert await campaign_states(pg_dsn, windowed) == {"sent": 2, "queued": 2}
    # Each waits for the window's next start in UTC, not failed and not blocking the others.
    opens = now.replace(hour=start, minute=0, second=0, microsecond=0)
    if opens <= now:
        opens += timedelta(days=1)
    waits = await fetch(
        pg_dsn,
        "SELECT j.run_at FROM dispatcher.jobs j WHERE j.campaign_id = $1 AND j.state = 'queued'",
        windowed,
    )
    assert len(waits) == 2
    assert all(abs((r["run_at"] - opens).total_seconds()) < 2 for r in waits), waits
    assert status.code == 0, status
    assert f"waiting for their send window ({window}): 2" in status.out
    assert status_json["waiting_for_window"] == 2 and status_json["send_window"] == window
