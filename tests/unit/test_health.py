"""The probes' pure decisions: what is alive, what is ready, each reason in one line."""

from __future__ import annotations

from dispatcher.obs.health import (
    READING_POLLS,
    TICK_LATE,
    WORKER_LOOPS,
    Readiness,
    liveness,
    readiness,
)

POLL = 60.0


def test_a_running_worker_with_every_loop_is_alive() -> None:
    verdict = liveness(started=True, stopping=False, running=WORKER_LOOPS, tick_age=1.0)
    assert (verdict.alive, verdict.phase, verdict.problems) == (True, "sending", ())


def test_a_dead_worker_loop_is_named() -> None:
    running = [name for name in WORKER_LOOPS if name != "quota-leader"]
    verdict = liveness(started=True, stopping=False, running=running, tick_age=1.0)
    assert not verdict.alive
    assert verdict.problems == ("worker loop(s) not running: quota-leader",)


def test_a_stuck_ticker_is_not_alive_even_while_starting() -> None:
    verdict = liveness(started=False, stopping=False, running=(), tick_age=TICK_LATE + 1)
    assert not verdict.alive
    assert "ticker" in verdict.problems[0]


def test_starting_and_stopping_are_alive() -> None:
    # The first quota reading may take a while; a drain must not be cut short by a restart.
    assert liveness(started=False, stopping=False, running=(), tick_age=None).alive
    assert liveness(started=True, stopping=True, running=(), tick_age=99.0).phase == "stopping"


def test_ready_with_a_fresh_reading_and_nothing_held() -> None:
    assert readiness(Readiness(None, 5.0, None), poll_interval=POLL) == []


def test_postgres_unreachable_is_the_only_line() -> None:
    facts = Readiness("unreachable: connection refused", None, None, account_paused_for=30.0)
    assert readiness(facts, poll_interval=POLL) == ["Postgres unreachable: connection refused"]


def test_a_stale_or_missing_reading_is_not_ready() -> None:
    limit = READING_POLLS * POLL
    assert readiness(Readiness(None, limit, None), poll_interval=POLL) == []
    [stale] = readiness(Readiness(None, limit + 1, None), poll_interval=POLL)
    assert f"over {limit:g} s" in stale
    [missing] = readiness(Readiness(None, None, None), poll_interval=POLL)
    assert "no GetSendQuota reading yet" in missing


def test_every_hold_is_one_line() -> None:
    facts = Readiness(None, 1.0, "bounce rate 6%", account_paused_for=12.0, stopping=True)
    problems = readiness(facts, poll_interval=POLL)
    assert problems == [
        "the daemon is stopping",
        "all sending held: bounce rate 6% (check, then `dispatcher resume --force`)",
        "SES paused the account's sending: held for 12 s more",
    ]
