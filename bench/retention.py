"""Retention over a simulated month: the database size levels off and a day's prune is quick.

    python -m bench.retention [--per-day N] [--days D] [--content-days C] [--rows-days R] [--quick]

A throwaway Postgres (fsync off, like every benchmark here) gets D days of mail at a steady N
messages a day, written straight into the real tables with backdated timestamps (one
INSERT ... SELECT generate_series per table and day, not through the send path): 97 % sent,
2 % failed, 1 % cancelled; half of each day's mail belongs to that day's campaign (with
per-recipient variables); one message in ten has a feedback event with a recipient event.
Bodies are ~0.6 KB of text and ~2 KB of HTML before compression.

After each simulated day the real pruner (`dispatcher.retention.Pruner`, the settings given,
as of the end of that day) runs, then VACUUM stands in for the autovacuum that would have run
during the day (timed apart: it is background work, not the prune). Recorded per day: prune
seconds, what it removed, VACUUM seconds, and the size of every table with its indexes and
TOAST. The retention windows are shortened (default content 3 d, rows 7 d) so a few weeks show
the plateau; per row the work is the same as at 7 d / 90 d.

Writes bench/results/retention.json and, with matplotlib, bench/results/retention.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.harness import RESULTS
from bench.services import throwaway_postgres
from dispatcher.config.settings import RetentionSettings
from dispatcher.obs.logging import configure_logging
from dispatcher.retention import Pruner

TABLES = ("messages", "jobs", "events", "recipient_events", "campaigns", "campaign_pruned")

_DAY_SQL = """
WITH c AS (
    INSERT INTO dispatcher.campaigns (name, state, from_addr, subject, html, recipients,
                                      created_at, started_at, finished_at)
    VALUES ('day ' || $3::text, 'finished', 'news@example.com', 'Hi {{ name }}',
            '<p>{{ name }}</p>',
            $2::int / 2, $1::timestamptz, $1::timestamptz, $1::timestamptz + interval '1 day')
    RETURNING id
), m AS (
    INSERT INTO dispatcher.messages (from_addr, to_addrs, subject, text_body, html_body,
                                     campaign_id, variables, created_at)
    SELECT 'app@example.com', ARRAY['user' || g || '@example.com'], 'Your receipt ' || g,
           repeat(md5(g::text || $3::text), 20),
           '<html><body><p>' || repeat(md5(g::text), 60) || '</p></body></html>',
           CASE WHEN g % 2 = 0 THEN c.id END,
           CASE WHEN g % 2 = 0 THEN jsonb_build_object('name', 'Person ' || g) END,
           $1::timestamptz + (g * interval '86399 seconds' / $2::int)
    FROM generate_series(1, $2::int) g, c
    RETURNING id, campaign_id, created_at
)
INSERT INTO dispatcher.jobs (id, state, recipients, campaign_id, attempts, sent_at,
                             ses_message_id, last_outcome, updated_at)
SELECT id,
       (CASE WHEN id % 100 < 97 THEN 'sent' WHEN id % 100 < 99 THEN 'failed'
             ELSE 'cancelled' END)::dispatcher.job_state,
       1, campaign_id, 1,
       CASE WHEN id % 100 < 97 THEN created_at + interval '2 seconds' END,
       CASE WHEN id % 100 < 97 THEN 'ses-' || id END,
       CASE WHEN id % 100 < 97 THEN 'sent' WHEN id % 100 < 99 THEN 'rejected' END,
       created_at + interval '2 seconds'
FROM m
"""

_EVENTS_SQL = """
WITH e AS (
    INSERT INTO dispatcher.events (sns_message_id, topic_arn, received_at, kind, event_type,
                                   ses_message_id, message_id, occurred_at, raw, parsed,
                                   processed_at)
    SELECT 'sns-' || j.id, 'arn:aws:sns:us-east-1:123456789012:ses',
           j.updated_at + interval '1 minute',
           'delivery', 'Delivery', j.ses_message_id, j.id, j.updated_at + interval '30 seconds',
           jsonb_build_object('Type', 'Notification', 'Message',
                              repeat('{"delivery":"x"}', 40)),
           '{}'::jsonb, j.updated_at + interval '1 minute'
    FROM dispatcher.jobs j
    WHERE j.state = 'sent' AND j.id % 10 = 0 AND j.updated_at >= $1::timestamptz
      AND j.updated_at < $1::timestamptz + interval '1 day'
    RETURNING id, occurred_at
)
INSERT INTO dispatcher.recipient_events (event_id, address, kind, occurred_at)
SELECT id, 'user' || id || '@example.com', 'delivery', occurred_at FROM e
"""

_SIZES_SQL = """
SELECT c.relname, pg_total_relation_size(c.oid) AS bytes,
       (SELECT n_live_tup FROM pg_stat_user_tables s WHERE s.relid = c.oid) AS live
FROM pg_class c
WHERE c.relnamespace = 'dispatcher'::regnamespace AND c.relkind = 'r'
  AND c.relname = ANY($1::text[])
"""


async def simulate(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = RetentionSettings(
        content_days=args.content_days,
        rows_days=args.rows_days,
        failed_content_days=args.content_days,
        failed_rows_days=args.rows_days,
        batch_size=args.batch,
    )
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=args.days
    )
    days: list[dict[str, Any]] = []
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        pruner = Pruner(pool, settings)
        for d in range(args.days):
            day_start = start + timedelta(days=d)
            t0 = time.monotonic()
            async with pool.acquire() as conn:
                await conn.execute(_DAY_SQL, day_start, args.per_day, str(d))
                await conn.execute(_EVENTS_SQL, day_start)
            insert_s = time.monotonic() - t0
            t0 = time.monotonic()
            report = await pruner.run(at=day_start + timedelta(days=1))
            prune_s = time.monotonic() - t0
            assert report is not None
            t0 = time.monotonic()
            async with pool.acquire() as conn:
                for table in TABLES:
                    await conn.execute(f"VACUUM (ANALYZE) dispatcher.{table}")
                vacuum_s = time.monotonic() - t0
                sizes = {
                    r["relname"]: {"bytes": r["bytes"], "rows": r["live"]}
                    for r in await conn.fetch(_SIZES_SQL, list(TABLES))
                }
            total = sum(s["bytes"] for s in sizes.values())
            day = {
                "day": d + 1,
                "inserted": args.per_day,
                "insert_seconds": round(insert_s, 3),
                "prune_seconds": round(prune_s, 3),
                "pruned_rows": sum(report.rows.values()),
                "pruned_content": sum(report.content.values()),
                "pruned_events": report.events,
                "vacuum_seconds": round(vacuum_s, 3),
                "total_mb": round(total / 1e6, 1),
                "tables": sizes,
            }
            days.append(day)
            print(
                f"day {d + 1:>3}: +{args.per_day:,} msgs in {insert_s:5.1f} s | prune "
                f"{prune_s:6.2f} s (rows {day['pruned_rows']:,}, content "
                f"{day['pruned_content']:,}, events {report.events:,}) | vacuum "
                f"{vacuum_s:5.1f} s | size {day['total_mb']:8.1f} MB",
                flush=True,
            )
    finally:
        await pool.close()
    steady = [d for d in days if d["day"] > args.rows_days + 1]
    return {
        "per_day": args.per_day,
        "days": args.days,
        "content_days": args.content_days,
        "rows_days": args.rows_days,
        "batch_size": args.batch,
        "per_day_results": days,
        "steady_state": {
            "days": len(steady),
            "max_prune_seconds": max((d["prune_seconds"] for d in steady), default=None),
            "mean_prune_seconds": (
                round(sum(d["prune_seconds"] for d in steady) / len(steady), 3) if steady else None
            ),
            "min_total_mb": min((d["total_mb"] for d in steady), default=None),
            "max_total_mb": max((d["total_mb"] for d in steady), default=None),
            "prune_us_per_row": (
                round(
                    1e6
                    * sum(d["prune_seconds"] for d in steady)
                    / max(1, sum(d["pruned_rows"] + d["pruned_content"] for d in steady)),
                    1,
                )
                if steady
                else None
            ),
        },
    }


def plot(result: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    days = result["per_day_results"]
    xs = [d["day"] for d in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(xs, [d["total_mb"] for d in days], marker="o", label="all tables")
    for table in ("messages", "jobs", "events"):
        top.plot(xs, [d["tables"][table]["bytes"] / 1e6 for d in days], label=table)
    top.axvline(result["rows_days"] + 1, color="grey", linestyle=":", label="first rows pruned")
    top.set_ylabel("size with indexes and TOAST (MB)")
    top.set_title(
        f"{result['per_day']:,} messages a day; content kept {result['content_days']:g} d, "
        f"rows {result['rows_days']:g} d"
    )
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.bar(xs, [d["prune_seconds"] for d in days], label="prune (the day's run)")
    bottom.plot(xs, [d["vacuum_seconds"] for d in days], color="C1", marker=".",
                label="VACUUM (autovacuum's work)")  # fmt: skip
    bottom.set_xlabel("simulated day")
    bottom.set_ylabel("seconds")
    bottom.legend(fontsize=8)
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    path = RESULTS / "retention.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


async def main_async(args: argparse.Namespace) -> int:
    with throwaway_postgres() as dbs:
        await dbs.make_template()
        dsn = await dbs.create()
        began = time.monotonic()
        result = await simulate(dsn, args)
        result["wall_seconds"] = round(time.monotonic() - began, 1)
        result["postgres"] = await dbs.server_version()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "retention.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    png = plot(result)
    s = result["steady_state"]
    print(
        f"steady state over {s['days']} day(s): size {s['min_total_mb']}..{s['max_total_mb']} MB,"
        f" prune {s['mean_prune_seconds']} s a day on average (max {s['max_prune_seconds']} s,"
        f" {s['prune_us_per_row']} us per row); {path}" + (f", {png}" if png else "")
    )
    if s["days"] == 0:
        print("too few days to reach the steady state: give --days > --rows-days + 1")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--per-day", type=int, default=100_000, help="messages a day")
    parser.add_argument("--days", type=int, default=20, help="simulated days")
    parser.add_argument("--content-days", type=float, default=3.0)
    parser.add_argument("--rows-days", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=RetentionSettings().batch_size)
    parser.add_argument("--quick", action="store_true", help="10,000 a day for 16 days (~1 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_day, args.days, args.content_days, args.rows_days = 10_000, 16, 2.0, 5.0
    configure_logging("warning", "console")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
