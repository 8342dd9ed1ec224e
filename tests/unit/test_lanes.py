"""Provider lanes, pure: the provider table, the lane gate (no head-of-line blocking, daily caps,
MX waits) and the back-off, with a moved clock."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from dispatcher.domain.jobs import ClaimedJob
from dispatcher.domain.message import OutgoingMessage
from dispatcher.pacing.lanes import Backoff, LaneGate, LaneSettings, backoff_step
from dispatcher.pacing.providers import OTHER, ProviderSettings, ProviderTable, domain_of
from dispatcher.worker.lane_gate import Lanes, until_utc_midnight

Job = tuple[int, tuple[str, ...]]


def addresses(job: Job) -> Iterable[str]:
    return job[1]


def gate(*limits: ProviderSettings, **settings: float) -> LaneGate[Job]:
    return LaneGate(ProviderTable(limits), limits, LaneSettings(**settings), addresses)  # type: ignore[arg-type]


# --- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmail.com", "google"),
        ("googlemail.com", "google"),
        ("hotmail.co.uk", "microsoft"),
        ("outlook.com", "microsoft"),
        ("live.fr", "microsoft"),
        ("msn.com", "microsoft"),
        ("aol.com", "yahoo"),
        ("ymail.com", "yahoo"),
        ("rocketmail.com", "yahoo"),
        ("icloud.com", "apple"),
        ("me.com", "apple"),
        ("naver.com", "naver"),
        ("hanmail.net", "kakao"),
        ("daum.net", "kakao"),
        ("kakao.com", "kakao"),
        ("qq.com", "qq"),
        ("163.com", "netease"),
        ("web.de", "gmx"),
        ("gmx.net", "gmx"),
        ("gmx.de", "gmx"),
        ("example.com", None),
        ("notgmail.com", None),
    ],
)
def test_shipped_domains(domain: str, provider: str | None) -> None:
    assert ProviderTable().by_domain(domain) == provider


@pytest.mark.parametrize(
    ("mx", "provider"),
    [
        (["aspmx.l.google.com", "alt1.aspmx.l.google.com"], "google"),
        (["smtp.google.com"], "google"),
        (["acme-com.mail.protection.outlook.com"], "microsoft"),
        (["mta5.am0.yahoodns.net"], "yahoo"),
        (["mx01.mail.icloud.com"], "apple"),
        (["mx1.naver.com"], "naver"),
        (["mx.acme.example", "ASPMX.L.GOOGLE.COM."], "google"),
        (["mx.acme.example"], OTHER),
        ([], OTHER),
        (["google.com.evil.example"], OTHER),
    ],
)
def test_mx_decides_for_other_domains(mx: list[str], provider: str) -> None:
    assert ProviderTable().by_mx(mx) == provider


def test_user_entries_add_and_extend_providers() -> None:
    table = ProviderTable(
        [
            ProviderSettings("acme", rate=1.0, domains=("acme.example", "*.acme.example")),
            ProviderSettings("google", rate=5.0, domains=("gmail.example",), mx=("mx.g.example",)),
        ]
    )
    assert table.by_domain("acme.example") == "acme"
    assert table.by_domain("eu.acme.example") == "acme"
    assert table.by_domain("gmail.example") == "google"
    assert table.by_domain("gmail.com") == "google"  # the shipped domains stay
    assert table.by_mx(["mx.g.example"]) == "google"


def test_domain_of_stored_forms() -> None:
    assert domain_of('"Jane Doe" <jane@Gmail.COM>') == "gmail.com"
    assert domain_of("jo@example.com") == "example.com"


# --- the gate ----------------------------------------------------------------------------------


def test_no_head_of_line_blocking_and_the_lane_rate_holds() -> None:
    g = gate(ProviderSettings("google", rate=5.0))
    now = 100.0
    first = g.enter((1, ("a@gmail.com",)), now)
    assert first.what == "go"
    second = g.enter((2, ("b@gmail.com",)), now)
    assert (second.what, second.lane) == ("parked", "google")
    # Mail for others goes on while google's waits.
    assert g.enter((3, ("c@yahoo.com",)), now).what == "go"
    assert g.enter((4, ("d@outlook.com",)), now).what == "go"
    assert g.pop_ready(now + 0.1) is None
    assert g.ready_in(now + 0.1) == pytest.approx(0.1)  # 0.2 s a recipient
    job = g.pop_ready(now + 0.2)
    assert job is not None and job[0] == 2
    assert g.enter(job, now + 0.2).what == "go"


def test_gate_sends_five_a_second_over_a_minute() -> None:
    g = gate(ProviderSettings("google", rate=5.0))
    sent: list[float] = []
    now = 0.0
    pending = [(i, ("x@gmail.com",)) for i in range(1000)]
    while now < 60.0:
        if pending and (what := g.enter(pending[0], now).what) != "give_back":
            pending.pop(0)
            if what == "go":
                sent.append(now)
        while (job := g.pop_ready(now)) is not None:
            if g.enter(job, now).what == "go":
                sent.append(now)
        now += 0.01
    assert 295 <= len([t for t in sent if t < 60.0]) <= 301


def test_a_late_send_is_made_up_for_but_idle_time_is_not_a_burst() -> None:
    g = gate(ProviderSettings("google", rate=5.0))
    assert g.enter((1, ("a@gmail.com",)), 0.0).what == "go"
    assert g.enter((2, ("a@gmail.com",)), 0.01).what == "parked"
    assert g.enter((3, ("a@gmail.com",)), 0.01).what == "parked"
    # The dispatch loop comes back 0.15 s late (it waited for the CPU): that send goes, and
    # the next one sooner than 0.2 s after it, so the lane keeps its 5/s on average.
    job = g.pop_ready(0.35)
    assert job is not None and g.enter(job, 0.35).what == "go"
    job = g.pop_ready(0.5)
    assert job is not None and g.enter(job, 0.5).what == "go"
    # After an idle spell nothing was late: one goes at once, the next waits its turn.
    assert g.enter((4, ("a@gmail.com",)), 10.0).what == "go"
    assert g.enter((5, ("a@gmail.com",)), 10.0).what == "parked"
    assert g.ready_in(10.0) == pytest.approx(0.2)


def test_a_message_to_two_providers_takes_from_both() -> None:
    g = gate(ProviderSettings("google", rate=1.0), ProviderSettings("yahoo", rate=1.0))
    assert g.enter((1, ("a@gmail.com", "b@yahoo.com")), 0.0).what == "go"
    assert g.lanes["google"].sent == 1 and g.lanes["yahoo"].sent == 1
    assert g.enter((2, ("c@yahoo.com",)), 0.1).what == "parked"


def test_share_splits_the_lane_rate() -> None:
    g = gate(ProviderSettings("google", rate=4.0))
    g.set_share(0.5, 0.0)
    assert g.enter((1, ("a@gmail.com",)), 0.0).what == "go"
    assert g.ready_in(0.0) is None
    assert g.enter((2, ("a@gmail.com",)), 0.0).what == "parked"
    assert g.ready_in(0.0) == pytest.approx(0.5)  # 2/s for this process


def test_full_lane_buffer_gives_back() -> None:
    g = gate(ProviderSettings("google", rate=1.0), buffer_seconds=1.0)
    g.enter((0, ("a@gmail.com",)), 0.0)
    for i in range(16):
        assert g.enter((i + 1, ("a@gmail.com",)), 0.0).what == "parked"
    back = g.enter((99, ("a@gmail.com",)), 0.0)
    # due when the lane reaches it (16 wait ahead at 1/s), a second early; the next one a
    # second after it: mail given back comes back at the lane's pace, not all at once
    assert back.what == "give_back" and back.delay == pytest.approx(15.0)
    assert g.enter((100, ("a@gmail.com",)), 0.0).delay == pytest.approx(16.0)
    assert g.enter((101, ("a@gmail.com",)), 0.5).delay == pytest.approx(16.5)
    assert len(g.take_parked()) == 16


def test_daily_cap() -> None:
    g = gate(ProviderSettings("google", daily_cap=3))
    job = (1, ("a@gmail.com",))
    assert g.enter(job, 0.0).what == "parked"  # no room read from Postgres yet
    assert g.room_wanted(0.0) == {"google": 100}
    g.room_granted("google", 3, 0, False, 0.0)
    assert g.pop_ready(0.0) == job
    for i in range(3):
        assert g.enter((i, ("a@gmail.com",)), 0.0).what == "go"
    spent = g.enter((9, ("z@gmail.com",)), 0.0)
    assert spent.what == "give_back" and "cap of 3 recipients is reached" in spent.reason
    assert g.enter((10, ("z@outlook.com",)), 0.0).what == "go"  # others unaffected
    assert g.room_wanted(1.0) == {}
    assert g.room_wanted(31.0) == {"google": 100}  # asks again: a new day, room given back
    assert g.flush() == {"google": 3, "microsoft": 1} and g.flush() == {}


def test_unknown_domain_waits_for_its_mx_then_goes_as_other() -> None:
    g = gate(ProviderSettings("google", rate=1.0), mx_wait=2.0)
    job = (1, ("a@acme.example",))
    assert g.enter(job, 0.0).what == "parked"
    assert g.pending == {"acme.example"}
    assert g.enter((2, ("b@example.org",)), 0.0).what == "parked"
    assert g.pop_ready(1.0) is None
    g.resolved({"acme.example": "google"})
    assert g.pop_ready(1.0) == job
    assert g.enter(job, 1.0).what == "go"
    assert g.lanes["google"].sent == 1
    later = g.pop_ready(2.5)  # example.org: never answered, goes as `other` after mx_wait
    assert later is not None and later[0] == 2
    assert g.enter(later, 2.5).what == "go"


def test_backoff_halves_the_lane_and_recovers() -> None:
    g = gate(ProviderSettings("google", rate=4.0))
    g.set_backoffs({"google": Backoff("burst", 0.0, 0.0)}, 0.0)
    g.enter((1, ("a@gmail.com",)), 0.0)
    g.enter((2, ("a@gmail.com",)), 0.0)
    assert g.ready_in(0.0) == pytest.approx(0.5)  # 2/s instead of 4/s
    assert g.view(0.0)[0]["backed_off"] == "burst"


def test_backoff_step_with_a_moved_clock() -> None:
    s = LaneSettings(backoff_events=20, backoff_quiet=900.0)
    assert backoff_step(None, 19, 0.0, s) is None
    b = backoff_step(None, 25, 10.0, s)
    assert b is not None and b.since == 10.0 and "25 delivery delays" in b.reason
    b = backoff_step(b, 30, 200.0, s)  # still bursting: the quiet period starts again
    assert b is not None and (b.since, b.last_burst) == (10.0, 200.0)
    assert backoff_step(b, 3, 1099.0, s) == b
    assert backoff_step(b, 3, 1100.0, s) is None


def test_a_late_dispatch_loop_never_takes_the_lane_past_its_rate_on_average() -> None:
    """Whatever the loop's lateness, n sends since the first take at least (n - 1) / rate s."""
    rng = random.Random(7)
    g = gate(ProviderSettings("google", rate=5.0))
    sent: list[float] = []
    now, i = 0.0, 0
    while now < 60.0:  # mail always waits in the lane; the loop looks at it now and then
        while not g.parked():
            i += 1
            if g.enter((i, ("x@gmail.com",)), now).what == "go":
                sent.append(now)
        while (job := g.pop_ready(now)) is not None:
            if g.enter(job, now).what == "go":
                sent.append(now)
        now += rng.choice((0.001, 0.01, 0.05, 0.15))  # late by up to 0.15 s: within the slack
    assert len(sent) >= 0.97 * 5.0 * 60.0  # lateness within the slack is made up for...
    for n, t in enumerate(sent[1:], start=1):
        assert n <= 5.0 * (t - sent[0]) + 1e-6, (n, t)  # ...never beyond the rate


async def test_a_job_put_back_after_its_lanes_let_it_go_is_not_charged_twice() -> None:
    lanes = Lanes([ProviderSettings("google", rate=1.0)], LaneSettings(), share=lambda: 1.0)
    msg = OutgoingMessage(id=7, from_addr="a@example.com", to=("jo@gmail.com",), subject="Hi")
    job = ClaimedJob(token=1, attempts=0, priority=0, message=msg)
    assert lanes.enter(job).what == "go"
    # Admission said "not now" (our share of the day's quota until the next sync): the job
    # goes back to the buffer and comes through the lanes again.
    assert lanes.enter(job).what == "go"
    assert lanes.gate.lanes["google"].sent == 1
    lanes.forget([job])  # sent: the next time it is claimed (a retry), it is charged again
    assert lanes.enter(job).what == "parked"
    lanes.close()


def test_caps_reset_at_utc_midnight() -> None:
    assert until_utc_midnight(1_796_515_200.0) == 86400.0  # 2026-12-06 00:00:00 UTC
    assert until_utc_midnight(1_796_515_200.0 + 86399.5) == pytest.approx(0.5)
