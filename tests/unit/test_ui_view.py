"""The dashboard's view model: the rate chart's window moves with the clock, the quota's
headroom, the queue's lanes, the campaigns' progress and buttons, a row per SES account when
there are several, and a page that still answers (with what the daemon knows) while Postgres
does not."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.accounts.store import AccountRow
from dispatcher.config.settings import GuardSettings
from dispatcher.domain.jobs import UnknownJob
from dispatcher.domain.quota import Quota
from dispatcher.feedback.guard import Counts
from dispatcher.feedback.store import HeldSender
from dispatcher.feedback.watch import campaign_thresholds, thresholds
from dispatcher.obs.metrics import CampaignFacts, SharedFacts
from dispatcher.obs.ui.view import (
    ErrorKind,
    ProcessNumbers,
    RateHistory,
    chart_span,
    dashboard,
    nice_ceiling,
    quota_view,
)
from dispatcher.worker.quota_store import SharedReading

GUARD = GuardSettings()
WALL = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def reading(max_24h: float = 10_000, sent: float = 7_000, others: float = 500) -> SharedReading:
    return SharedReading(
        epoch=1,
        polling_epoch=1,
        quota=Quota(max_24_hour_send=max_24h, max_send_rate=14, sent_last_24_hours=sent),
        age=2.0,
        leader=uuid.uuid4(),
        others_sent=others,
    )


def facts(**changes: object) -> SharedFacts:
    base = SharedFacts(
        states={"held": 300, "queued": 50, "claimed": 2, "in_flight": 4, "unknown": 1},
        quota=reading(),
        held=False,
        held_senders=1,
        account=Counts(sent=2000, bounced=20, complained=1),
        campaigns=[
            CampaignFacts(
                "spring",
                "running",
                400,
                {"sent": 90, "failed": 5, "cancelled": 5, "queued": 300},
                Counts(sent=90, bounced=2, complained=0),
                id=7,
            ),
            CampaignFacts(
                "autumn", "paused", 10, {"held": 10}, None, id=8, pause_reason="guard: x"
            ),
        ],
        feedback={},
        workers={},
        campaign_lane={"queued": 30, "claimed": 1, "in_flight": 3, "unknown": 0, "held": 300},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


NUMBERS = ProcessNumbers(
    rate_achieved=6.5,
    rate_allowed=13.3,
    in_flight=4,
    sends={"sent": 120.0, "failed": 5.0, "retried": 3.0, "in_doubt": 1.0},
    throttled=2.0,
)


def view(
    f: SharedFacts | None, history: RateHistory | None = None, now: float = 1000.0
) -> dict[str, Any]:
    held = [
        HeldSender(
            from_addr="shop@example.com",
            configuration_set=None,
            reason="MessageRejected: Email address is not verified",
            retry_at=WALL + timedelta(seconds=90),
        )
    ]
    doubt = [
        UnknownJob(
            id=41,
            updated_at=WALL,
            last_error="connection reset",
            from_addr="a@example.com",
            to=("b@example.com",),
            subject="<b>hi</b>",
        )
    ]
    errors = [ErrorKind("permanent", 5, WALL, "MessageRejected: bad address")]
    return dashboard(
        f,
        th=thresholds(GUARD),
        campaign_th=campaign_thresholds(GUARD),
        window_hours=24.0,
        quota_headroom=0.95,
        hold=None,
        held=held,
        in_doubt=doubt,
        errors=errors,
        numbers=NUMBERS,
        history=history or RateHistory(),
        now=now,
        wall=WALL,
    )


def test_the_rate_history_keeps_the_window_and_drops_older_samples_as_the_clock_moves() -> None:
    history = RateHistory(window=300.0)
    for t in range(0, 400, 10):  # a sample every 10 s for 390 s
        history.add(float(t), achieved=t / 100, allowed=14.0)
    points = history.points(now=390.0)
    assert points[0] == (-300.0, 0.9, 14.0)  # 90 s and older are gone
    assert points[-1] == (0.0, 3.9, 14.0)
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    later = history.points(now=690.0)  # nobody sampled for 300 s: only the last one is left
    assert later == [(-300.0, 3.9, 14.0)]


def test_the_chart_spans_whole_minutes_of_samples_up_to_its_window() -> None:
    assert chart_span([], 300.0) == 60.0
    assert chart_span([(-5.0, 1.0, 2.0)], 300.0) == 60.0  # a fresh daemon: one minute
    assert chart_span([(-61.0, 1.0, 2.0)], 300.0) == 120.0
    assert chart_span([(-300.0, 1.0, 2.0)], 300.0) == 300.0
    history = RateHistory()
    history.add(10.0, 1.0, 14.0)
    history.add(100.0, 2.0, 14.0)
    assert view(facts(), history, now=100.0)["rate"]["window_seconds"] == 120.0


def test_the_charts_top_is_a_round_number_above_every_point() -> None:
    assert [nice_ceiling(v) for v in (0.0, 0.3, 1.0, 1.2, 7.9, 13.3, 14.0, 60.0, 250.0)] == [
        1.0,
        0.5,
        1.0,
        2.0,
        10.0,
        20.0,
        20.0,
        100.0,
        500.0,
    ]
    history = RateHistory()
    history.add(999.0, 6.5, 13.3)
    assert view(facts(), history)["rate"]["y_max"] == 20.0


def test_the_quota_shows_what_is_used_by_every_worker_and_the_headroom_to_the_stop() -> None:
    q = quota_view(facts(), headroom=0.95)
    assert q is not None
    assert q["used_24h"] == 7_500  # SES's reading plus what workers sent since
    assert q["stop_at"] == 9_500
    assert q["left"] == 2_000
    assert q["pct"] == 75.0
    spent = quota_view(facts(quota=reading(sent=9_800, others=0)), headroom=0.95)
    assert spent is not None and spent["left"] == 0  # never negative
    unlimited = quota_view(facts(quota=reading(max_24h=-1)), headroom=0.95)
    assert unlimited is not None and unlimited["max_24h"] is None and unlimited["left"] is None
    assert quota_view(facts(quota=replace(reading(), quota=None)), headroom=0.95) is None


def test_the_queue_splits_every_active_state_into_its_two_lanes() -> None:
    rows = {r["state"]: r for r in view(facts())["queue"]}
    assert list(rows) == ["held", "queued", "claimed", "in_flight", "unknown"]
    assert rows["queued"] == {"state": "queued", "total": 50, "message": 20, "campaign": 30}
    assert rows["held"]["message"] == 0
    assert rows["unknown"] == {"state": "unknown", "total": 1, "message": 1, "campaign": 0}


def test_campaigns_show_progress_guard_rates_and_the_buttons_that_apply() -> None:
    running, paused = view(facts())["campaigns"]
    assert (running["id"], running["sent"], running["done"], running["pct"]) == (7, 90, 100, 25.0)
    assert running["actions"] == ["pause", "cancel"]
    assert running["guard"]["bounce_rate"] == 2 / 90
    assert running["guard"]["guard_bounce_threshold"] == GUARD.campaign_bounce_threshold
    assert paused["actions"] == ["resume", "cancel"]
    assert paused["pause_reason"] == "guard: x"
    assert paused["guard"] is None


def test_the_page_lists_in_doubt_mail_held_senders_and_errors_as_json() -> None:
    v = view(facts())
    json.dumps(v)  # what /ui/state.json answers
    assert v["in_doubt"] == [
        {
            "id": 41,
            "since": WALL.isoformat(),
            "from": "a@example.com",
            "to": ["b@example.com"],
            "subject": "<b>hi</b>",  # as given: the page sets it as text
            "error": "connection reset",
        }
    ]
    assert v["in_doubt_total"] == 1
    assert v["held_senders"][0]["retry_in_seconds"] == 90
    assert v["errors"]["failed"][0]["kind"] == "permanent"
    assert v["errors"]["since_start"] == {"throttled": 2, "retried": 3, "in_doubt": 1}
    assert v["guard"]["aws_bounce_review"] == 0.05
    assert (v["rate"]["achieved"], v["rate"]["allowed"], v["in_flight"]) == (6.5, 13.3, 4)


def test_without_postgres_the_page_still_shows_what_the_daemon_knows() -> None:
    v = view(None)
    assert v["database_up"] is False
    assert v["rate"]["achieved"] == 6.5 and v["sends"]["sent"] == 120
    assert "queue" not in v and "campaigns" not in v


def account(name: str, **changes: object) -> AccountRow:
    base = AccountRow(
        name=name,
        default=False,
        paused_reason=None,
        held_reason=None,
        max_send_rate=14.0,
        max_24_hour_send=50_000.0,
        sent_last_24_hours=1_200.0,
        reading_age=3.0,
        queued=40,
        workers=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_several_ses_accounts_get_a_row_each_with_region_quota_and_what_holds_them() -> None:
    rows = [
        account("brand-a", default=True),
        account("brand-b", paused_reason="SES paused sending", max_24_hour_send=-1.0),
        account("brand-c", held_reason="guard: bounce rate 6 %", max_send_rate=None),
    ]
    regions = {"brand-a": "eu-west-1", "brand-b": "us-east-1", "brand-c": "ap-northeast-2"}
    v = dashboard_with_accounts(rows, regions)
    json.dumps(v)
    a, b, c = v["accounts"]
    assert (a["name"], a["default"], a["region"]) == ("brand-a", True, "eu-west-1")
    assert (a["max_send_rate"], a["max_24_hour_send"], a["sent_last_24_hours"]) == (
        14.0,
        50_000.0,
        1_200.0,
    )
    assert (a["paused"], a["held"], a["queued"]) == (None, None, 40)
    assert b["paused"] == "SES paused sending"
    assert (b["unlimited"], b["max_24_hour_send"]) == (True, None)
    assert (c["held"], c["max_send_rate"], c["region"]) == (
        "guard: bounce rate 6 %",
        None,
        "ap-northeast-2",
    )
    # One account (or none read): no panel, the rest of the page is that account.
    assert dashboard_with_accounts(rows[:1], regions)["accounts"] is None
    assert view(facts())["accounts"] is None


def dashboard_with_accounts(rows: list[AccountRow], regions: dict[str, str]) -> dict[str, Any]:
    return dashboard(
        facts(),
        th=thresholds(GUARD),
        campaign_th=campaign_thresholds(GUARD),
        window_hours=24.0,
        quota_headroom=0.95,
        hold=None,
        held=[],
        in_doubt=[],
        errors=[],
        numbers=NUMBERS,
        history=RateHistory(),
        now=1000.0,
        wall=WALL,
        accounts=rows,
        regions=regions,
    )
