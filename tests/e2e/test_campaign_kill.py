"""A campaign's daemon killed with SIGKILL half-way and restarted: nobody skipped, nobody sent
twice, and the few sends that were on the wire are in doubt, held, and listed by the report."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from tests.support.cli import cli_env, fetch, run_cli, start_cli
from tests.support.dispatch import eventually
from tests.support.sim import SimFactory

TOTAL = 3000
HTML = (
    "<html><body><p>Hello {{ name }}</p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


async def test_sigkill_half_way_then_restart_finishes_with_nobody_skipped_or_sent_twice(
    pg_dsn: str, tmp_path: Path, sim_process: SimFactory
) -> None:
    addresses = [f"success+{i}@simulator.amazonses.com" for i in range(TOTAL)]
    recipients = tmp_path / "list.csv"
    with recipients.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(
            [("email", "name"), *((a, f"P{i}") for i, a in enumerate(addresses))]
        )
    template = tmp_path / "template.html"
    template.write_text(HTML, encoding="utf-8")

    async with sim_process(max_send_rate=400, latency_ms=50) as sim:
        env = cli_env(
            tmp_path,
            dsn=pg_dsn,
            endpoint_url=sim.endpoint_url,
            # A dead worker's lease expires after 2 s, so the restart recovers its jobs quickly.
            DISPATCHER_QUEUE__LEASE_SECONDS="2",
            DISPATCHER_QUEUE__HEARTBEAT_SECONDS="0.5",
        )
        made = await run_cli(
            env,
            "campaign",
            "create",
            "--name",
            "big",
            "--from",
            "news@example.com",
            "--subject",
            "Hello {{ name }}",
            "--template",
            str(template),
            "--recipients",
            str(recipients),
            "--unsubscribe-url",
            "https://x.example/u?e={{ email|urlencode }}",
        )
        assert made.code == 0, made
        campaign_id = int(made.out.splitlines()[0])
        start = await run_cli(env, "campaign", "start", str(campaign_id))
        assert start.out == f"campaign {campaign_id} running: {TOTAL} recipients\n", start

        log = tmp_path / "daemon.log"
        daemon = await start_cli(env, "run", output=log)

        async def half_sent() -> bool:
            (row,) = await fetch(
                pg_dsn,
                "SELECT count(*) FILTER (WHERE state = 'sent') AS sent, "
                "count(*) FILTER (WHERE state = 'in_flight') AS in_flight "
                "FROM dispatcher.jobs WHERE campaign_id = $1",
                campaign_id,
            )
            assert daemon.returncode is None, log.read_text()
            return bool(row["sent"] >= TOTAL // 2 and row["in_flight"] > 0)

        try:
            await eventually(half_sent, limit=20, step=0.02)
        finally:
            daemon.kill()
            await daemon.wait()

        # What the dead daemon left on the wire: exactly what must end up in doubt.
        rows = await fetch(
            pg_dsn,
            "SELECT m.to_addrs[1] AS a, j.state::text AS state FROM dispatcher.jobs j "
            "JOIN dispatcher.messages m USING (id) WHERE j.campaign_id = $1",
            campaign_id,
        )
        at_kill = Counter(r["state"] for r in rows)
        on_wire = {r["a"] for r in rows if r["state"] == "in_flight"}
        assert on_wire, at_kill  # the kill hit sends in progress (latency 50 ms at 400/s)
        assert at_kill["sent"] < TOTAL - len(on_wire), at_kill  # stopped half-way

        drain = await run_cli(env, "run", "--drain", limit=45)
        assert drain.code == 0, drain
        assert "queue.recovered" in drain.event_names()
        received = await sim.messages()

    report_csv = tmp_path / "report.csv"
    status = await run_cli(env, "campaign", "status", str(campaign_id), "--json")
    report = await run_cli(env, "campaign", "report", str(campaign_id), "--csv", str(report_csv))

    # The restart recovered the dead daemon's jobs: what was on the wire is in doubt and held
    # (not sent again); everything else was sent. Nobody skipped.
    assert status.code == 0, status
    view = json.loads(status.out)
    counts = view["counts"]
    assert view["state"] == "finished"
    assert counts["unknown"] == len(on_wire)
    assert counts["sent"] + counts["unknown"] == TOTAL
    assert counts["failed"] == counts["queued"] == counts["held"] == 0
    assert counts["claimed"] == counts["in_flight"] == counts["cancelled"] == 0
    assert view["failures"] == {"in_doubt": len(on_wire)}

    # The simulator's record: every recipient exactly once, except the in-doubt ones (at most
    # once: the dead daemon's request may or may not have reached SES).
    seen = Counter(m["to"][0] for m in received)
    assert set(seen) <= set(addresses)
    twice = {a: n for a, n in seen.items() if n > 1}
    assert not twice, f"sent more than once: {twice}"
    missing = set(addresses) - set(seen) - on_wire
    assert not missing, f"{len(missing)} recipient(s) skipped, e.g. {sorted(missing)[:5]}"

    # The report lists the in-doubt recipients, on stdout and in the CSV.
    assert report.code == 0, report
    lines = report.out.splitlines()
    assert f"  in doubt (may or may not have been sent): {len(on_wire)}" in lines
    listed = {line.strip() for line in lines if line.startswith("    ") and "@" in line}
    assert listed <= on_wire and len(listed) == min(20, len(on_wire)), report
    if len(on_wire) > 20:
        assert f"    ... and {len(on_wire) - 20} more (state unknown in the CSV)" in lines
    with report_csv.open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == TOTAL
    assert {r["address"] for r in table if r["state"] == "unknown"} == on_wire
    assert all(r["outcome"] == "in_doubt" for r in table if r["state"] == "unknown")
    # A sent row carries the id SES gave that very message.
    ses_ids = {m["to"][0]: m["message_id"] for m in received}
    sent = [r for r in table if r["state"] == "sent"]
    assert len(sent) == TOTAL - len(on_wire)
    assert all(r["ses_message_id"] == ses_ids[r["address"]] for r in sent)
