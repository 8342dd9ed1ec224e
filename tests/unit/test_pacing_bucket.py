"""RecipientLimiter: per-recipient pacing, live re-rating, throttle and recovery.

Time is virtual (see test_pacing_support): minutes of pacing run in milliseconds on the loop's
own timers.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from dispatcher.pacing.bucket import RecipientLimiter
from dispatcher.pacing.leaky import LeakyBucket
from dispatcher.pacing.settings import PacingSettings
from tests.unit.test_pacing_support import run_virtual

# Most tests here check the bucket against SES's own arithmetic (a one-second bucket);
# the default burst (0.5 s) is checked on its own below.
ONE_SECOND = PacingSettings(burst_seconds=1.0)

Admissions = list[tuple[float, int]]  # (loop time, recipients) per message let through


def now() -> float:
    return asyncio.get_running_loop().time()


async def sender(limiter: RecipientLimiter, recipients: int, out: Admissions, until: float) -> None:
    """Send messages of `recipients` back to back until `until`, as a worker's sender task does."""
    while True:
        await limiter.acquire(recipients)
        t = now()
        if t > until:
            return
        out.append((t, recipients))


def max_in_window(admissions: Admissions, width: float) -> int:
    """Most recipients let through in any closed window of `width` seconds."""
    best = 0
    for i, (start, _) in enumerate(admissions):
        total = sum(n for t, n in admissions[i:] if t <= start + width + 1e-9)
        best = max(best, total)
    return best


class SesBucket:
    """SES's rate rule (SES-FACTS "Quotas and rate"): a message goes if one token is left,
    then costs one token per recipient; the bucket holds one second of rate (at least 1)."""

    def __init__(self, rate: float, t: float) -> None:
        self.rate, self.cap, self.t = rate, max(rate, 1.0), t
        self.tokens = self.cap

    def _refill(self, t: float) -> None:
        self.tokens = min(self.cap, self.tokens + (t - self.t) * self.rate)
        self.t = t

    def accepts(self, t: float, n: int) -> bool:
        self._refill(t)
        ok = self.tokens >= 1.0 - 1e-6
        self.tokens -= n
        return ok

    def set_rate(self, t: float, rate: float) -> None:
        self._refill(t)
        self.rate, self.cap = rate, max(rate, 1.0)
        self.tokens = min(self.tokens, self.cap)


# -- the bucket's arithmetic, on an injected clock (no event loop) ---------------------------


def test_leaky_bucket_arithmetic_on_given_times() -> None:
    b = LeakyBucket(rate=2.0, capacity=4.0)
    assert b.wait(100.0) == 0.0  # empty: room at once
    b.charge(4.0, 100.0)
    assert b.wait(100.0) == pytest.approx(0.5)  # one recipient drains in 1/2 s
    b.charge(6.0, 100.5)  # past capacity: a debt of 5.5 - (4 - 1) ...
    assert b.level == pytest.approx(9.0)
    assert b.wait(100.5) == pytest.approx(3.0)  # 9 + 1 - 4 = 6 recipients at 2/s
    assert b.wait(103.5) == 0.0
    assert b.wait(200.0) == 0.0 and b.level == 0.0  # never below empty


def test_rerating_keeps_tokens_and_debts() -> None:
    b = LeakyBucket(rate=10.0, capacity=10.0)
    b.charge(4.0, 0.0)  # 6 tokens left
    b.rerate(100.0, 50.0, 0.0)
    assert b.capacity - b.level == pytest.approx(6.0)  # a raise adds no instant burst
    b.charge(60.0, 0.0)  # debt: 54 over the 6 tokens
    b.rerate(1.0, 1.0, 0.0)
    assert b.level == pytest.approx(55.0)  # the debt stays: 1 + 54
    b.spend_burst(100.0)
    assert b.level == pytest.approx(1.0)  # drained at 1/s for 100 s, then the burst spent


def test_rerating_reaches_a_task_already_waiting() -> None:
    """A task already waiting sees a raise at once (it does not sleep out the old wait)."""

    async def main() -> list[float]:
        limiter = RecipientLimiter(1.0, ONE_SECOND)
        t0 = now()
        await limiter.acquire(1)  # bucket (1 recipient) now full: the next waits 1 s at 1/s
        done: list[float] = []

        async def one() -> None:
            await limiter.acquire(1)
            done.append(now() - t0)

        tasks = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.1)
        assert done == []
        limiter.set_max_send_rate(10.0)
        await asyncio.gather(*tasks)
        return done

    done = run_virtual(main())
    # At 1/s the five would finish at 1..5 s; at 10/s from t=0.1 they finish by ~0.6 s.
    assert len(done) == 5
    assert max(done) < 0.7
    assert done == sorted(done)


# -- per-recipient pacing --------------------------------------------------------------------


def test_holds_the_rate_for_single_recipient_messages() -> None:
    async def main() -> tuple[float, Admissions]:
        limiter = RecipientLimiter(14.0, ONE_SECOND)
        t0 = now()
        out: Admissions = []
        await asyncio.gather(*(sender(limiter, 1, out, t0 + 60) for _ in range(8)))
        return t0, out

    t0, out = run_virtual(main())
    total = sum(n for _, n in out)
    # A full bucket (14) at once, then 14 per second.
    assert 14 * 60 <= total <= 14 * 60 + 14 + 1
    assert max_in_window(out, 1.0) <= 14 + 14 + 1
    later = [(t, n) for t, n in out if t >= t0 + 10]
    assert max_in_window(later, 1.0) <= 15
    assert max_in_window(later, 10.0) <= 141


def test_a_big_message_goes_when_one_recipient_fits_and_the_next_waits_out_its_debt() -> None:
    async def main() -> list[float]:
        limiter = RecipientLimiter(14.0, ONE_SECOND)
        t0 = now()
        times = []
        for _ in range(3):
            await limiter.acquire(50)  # more than the bucket holds: never ValueError
            times.append(now() - t0)
        return times

    times = run_virtual(main())
    # As SES: 14 tokens, 50 charged -> -36; the next needs 1 token: 37/14 s later.
    assert times[0] == pytest.approx(0.0, abs=1e-6)
    assert times[1] == pytest.approx(37 / 14, abs=1e-6)
    assert times[2] - times[1] == pytest.approx(50 / 14, abs=1e-6)


def test_the_ses_example_five_recipients_at_one_per_second() -> None:
    async def main() -> list[float]:
        limiter = RecipientLimiter(1.0, ONE_SECOND)
        t0 = now()
        times = []
        for n in (5, 1, 1):
            await limiter.acquire(n)
            times.append(now() - t0)
        return times

    times = run_virtual(main())
    assert times == pytest.approx([0.0, 5.0, 6.0], abs=1e-6)


def test_rates_below_one_per_second() -> None:
    async def main() -> list[float]:
        limiter = RecipientLimiter(0.5, ONE_SECOND)
        assert limiter.capacity == 1.0
        t0 = now()
        times = []
        for n in (1, 1, 1, 50, 1):
            await limiter.acquire(n)
            times.append(now() - t0)
        return times

    times = run_virtual(main())
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0, 106.0], abs=1e-6)


def test_a_big_message_is_not_starved_by_small_ones() -> None:
    async def main() -> float:
        limiter = RecipientLimiter(14.0, ONE_SECOND)
        t0 = now()
        out: Admissions = []
        senders = [asyncio.create_task(sender(limiter, 1, out, t0 + 30)) for _ in range(30)]
        await asyncio.sleep(2.0)
        start = now()
        await limiter.acquire(50)
        waited = now() - start
        await asyncio.gather(*senders)
        return waited

    waited = run_virtual(main())
    # First come, first served: behind at most 30 waiters of one recipient each.
    assert waited < 30 / 14 + 0.5


def test_zero_recipients_cost_nothing_and_negative_is_an_error() -> None:
    async def main() -> float:
        limiter = RecipientLimiter(1.0, ONE_SECOND)
        t0 = now()
        for _ in range(100):
            await limiter.acquire(0)
        await limiter.acquire(1)
        with pytest.raises(ValueError, match="recipients"):
            await limiter.acquire(-1)
        return now() - t0

    assert run_virtual(main()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("bad", [0.0, -3.0, float("nan"), float("inf")])
def test_rejects_a_nonsense_max_send_rate(bad: float) -> None:
    with pytest.raises(ValueError, match="MaxSendRate"):
        RecipientLimiter(bad, ONE_SECOND)
    with pytest.raises(ValueError, match="MaxSendRate"):
        RecipientLimiter(1.0, ONE_SECOND).set_max_send_rate(bad)


def test_rate_headroom_applies() -> None:
    limiter = RecipientLimiter(20.0, PacingSettings(rate_headroom=0.5, burst_seconds=1.0))
    assert limiter.max_send_rate == 20.0
    assert limiter.allowed_rate == 10.0
    assert limiter.rate == 10.0
    assert limiter.capacity == 10.0


# -- re-rating while tasks wait --------------------------------------------------------------


def test_rerate_down_while_tasks_wait_loses_nobody() -> None:
    async def main() -> tuple[float, list[float]]:
        limiter = RecipientLimiter(10.0, ONE_SECOND)
        done: list[float] = []

        async def one() -> None:
            await limiter.acquire(1)
            done.append(now())

        tasks = [asyncio.create_task(one()) for _ in range(30)]
        await asyncio.sleep(0.45)
        switched = now()
        limiter.set_max_send_rate(2.0)
        assert limiter.rate == 2.0
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        return switched, done

    switched, done = run_virtual(main())
    assert len(done) == 30
    after = [t for t in done if t > switched]
    assert len(after) == 30 - 10 - 4  # 10 at once, then 4 at 10/s
    # Half a token was left at the switch: the first waits 0.25 s at 2/s, the rest 0.5 s each.
    gaps = [b - a for a, b in zip([switched, *after], after, strict=False)]
    assert gaps[0] == pytest.approx(0.25, abs=1e-6)
    assert gaps[1:] == pytest.approx([0.5] * 15, abs=1e-6)


def test_rerate_up_keeps_tokens_no_instant_burst() -> None:
    async def main() -> int:
        limiter = RecipientLimiter(2.0, ONE_SECOND)
        t0 = now()
        out: Admissions = []
        task = asyncio.create_task(sender(limiter, 1, out, t0 + 10))
        await asyncio.sleep(5.0)
        limiter.set_max_send_rate(20.0)
        mark = len(out)
        await asyncio.sleep(0.0501)
        burst = len(out) - mark
        await task
        return burst

    # The bucket was empty when the rate went up: the capacity grows, the tokens do not.
    assert run_virtual(main()) <= 2


# -- throttling ------------------------------------------------------------------------------


def test_throttle_slows_then_recovers() -> None:
    settings = PacingSettings(
        throttle_decrease_factor=0.7, throttle_recovery_seconds=10.0, burst_seconds=1.0
    )

    async def main() -> tuple[float, Admissions, list[float], RecipientLimiter]:
        limiter = RecipientLimiter(10.0, settings)
        t0 = now()
        out: Admissions = []
        senders = [asyncio.create_task(sender(limiter, 1, out, t0 + 40)) for _ in range(5)]
        await asyncio.sleep(5.0)
        throttled_at = now()
        assert limiter.on_throttled()
        for _ in range(10):  # the rest of the same burst of throttled answers
            assert not limiter.on_throttled()
        assert limiter.rate == pytest.approx(7.0)
        rates = []
        for _ in range(15):
            await asyncio.sleep(1.0)
            rates.append(limiter.rate)
        await asyncio.gather(*senders)
        return throttled_at, out, rates, limiter

    throttled_at, out, rates, limiter = run_virtual(main())

    def count(a: float, b: float) -> int:
        return sum(n for t, n in out if throttled_at + a < t <= throttled_at + b)

    assert count(-2, -1) in (10, 11)  # steady before
    assert 6 <= count(0, 1) <= 8  # cut to 7/s, ramping toward 10
    assert 8 <= count(5, 6) <= 9  # half way back
    assert count(12, 13) in (10, 11)  # recovered
    assert rates == sorted(rates)
    assert rates[-1] == 10.0
    assert limiter.rate == limiter.allowed_rate == 10.0


def test_throttle_recovery_with_an_injected_clock_and_no_loop() -> None:
    fake = [500.0]
    limiter = RecipientLimiter(10.0, ONE_SECOND, clock=lambda: fake[0])
    assert limiter.on_throttled()
    assert limiter.rate == pytest.approx(7.0)
    fake[0] += 5.0
    limiter.refresh()
    assert limiter.rate == pytest.approx(8.5)
    fake[0] += 5.0
    limiter.refresh()
    assert limiter.rate == 10.0


def test_repeated_throttling_stops_at_the_floor() -> None:
    fake = [0.0]
    settings = PacingSettings(throttle_cut_interval=0.0, burst_seconds=1.0)  # every call cuts
    limiter = RecipientLimiter(14.0, settings, clock=lambda: fake[0])
    for _ in range(40):
        limiter.on_throttled()
    assert limiter.rate == pytest.approx(1.4)  # max(10 % of 14, 0.5)
    fake[0] += 1.0
    limiter.refresh()
    assert limiter.rate == pytest.approx(1.4 + (14 - 1.4) * 0.1)  # 1 s into the 10 s ramp


def test_raised_quota_during_recovery() -> None:
    fake = [0.0]
    limiter = RecipientLimiter(10.0, ONE_SECOND, clock=lambda: fake[0])
    limiter.on_throttled()
    limiter.set_max_send_rate(20.0)
    assert limiter.rate == pytest.approx(7.0)
    assert limiter.allowed_rate == 20.0
    fake[0] = 10.0
    limiter.refresh()
    assert limiter.rate == 20.0


# -- property: against SES's own rule, with random traffic and re-rating ------------------


@pytest.mark.parametrize("seed", range(40))
def test_never_sends_what_ses_would_throttle(seed: int) -> None:
    """Random rates, message sizes, concurrency and re-rates: SES's bucket never refuses."""
    rng = random.Random(seed)
    rate0 = rng.choice([0.5, 1.0, 2.5, 14.0, rng.uniform(0.5, 60.0)])
    duration = 30.0
    rerate = rng.random() < 0.5

    async def main() -> tuple[float, list[tuple[str, float, float]]]:
        limiter = RecipientLimiter(rate0, ONE_SECOND)
        t0 = now()
        events: list[tuple[str, float, float]] = []  # ("send", t, n) / ("rate", t, rate)

        async def send_loop(task_rng: random.Random) -> None:
            while now() < t0 + duration:
                n = task_rng.choice([1, 1, 1, 2, 5, task_rng.randint(1, 50)])
                await limiter.acquire(n)
                events.append(("send", now(), n))
                await asyncio.sleep(task_rng.choice([0.0, 0.0, 0.01, 0.3]))

        async def rerate_loop() -> None:
            while now() < t0 + duration:
                await asyncio.sleep(rng.uniform(0.1, 8.0))
                limiter.set_max_send_rate(rng.uniform(0.5, 60.0))
                events.append(("rate", now(), limiter.rate))

        tasks = [send_loop(random.Random(rng.random())) for _ in range(rng.randint(1, 20))]
        if rerate:
            tasks.append(rerate_loop())
        await asyncio.gather(*tasks)
        return t0, events

    t0, events = run_virtual(main())
    ses = SesBucket(rate0, t0)
    sends: Admissions = []
    for kind, t, value in events:
        if kind == "rate":
            ses.set_rate(t, value)
        else:
            assert ses.accepts(t, int(value)), f"SES would throttle the send at t={t - t0:.3f}"
            sends.append((t, int(value)))
    if not rerate:
        cap = max(rate0, 1.0)
        for width in (0.0, 0.5, 1.0, 3.0, 10.0):
            assert max_in_window(sends, width) <= rate0 * width + cap + 49 + 1e-6


def test_uses_the_rate_it_is_given() -> None:
    """The limiter is not just safe but fast: saturated, it lets rate x T through."""

    async def main() -> int:
        limiter = RecipientLimiter(25.0, ONE_SECOND)
        t0 = now()
        out: Admissions = []
        await asyncio.gather(*(sender(limiter, n, out, t0 + 20) for n in (1, 3, 7, 50)))
        return sum(n for _, n in out)

    total = run_virtual(main())
    assert total >= 25 * 20 - 1


# -- and on a real event loop, briefly -------------------------------------------------------


async def test_real_time_pacing_on_the_default_loop() -> None:
    limiter = RecipientLimiter(20.0, ONE_SECOND)
    start = time.monotonic()
    for _ in range(30):
        await limiter.acquire(1)
    elapsed = time.monotonic() - start
    # 20 from the full bucket, then 10 more at 20/s.
    assert 0.45 <= elapsed < 0.9


def test_default_burst_is_half_a_second_so_ses_keeps_slack() -> None:
    async def main() -> list[float]:
        limiter = RecipientLimiter(20.0)  # default settings: burst_seconds = 0.5
        loop = asyncio.get_running_loop()
        start = loop.time()
        times = []
        for _ in range(20):
            await limiter.acquire(1)
            times.append(loop.time() - start)
        return times

    times = run_virtual(main())
    # 10 go at once (half a second of rate), the other 10 at 20/s after that.
    assert sum(1 for t in times if t < 1e-6) == 10
    assert times[-1] == pytest.approx(10 / 20, abs=1e-3)


def test_a_share_splits_the_rate_and_follows_max_send_rate_changes() -> None:
    limiter = RecipientLimiter(100.0, PacingSettings())
    limiter.set_share(0.25)
    assert limiter.share == 0.25 and limiter.rate == pytest.approx(25.0)
    limiter.set_max_send_rate(200.0)  # GetSendQuota reports more: the share still applies
    assert limiter.rate == pytest.approx(50.0)
    limiter.set_share(1.0)
    assert limiter.rate == pytest.approx(200.0)
    with pytest.raises(ValueError, match="share"):
        limiter.set_share(0.0)


async def test_spending_the_burst_makes_the_first_send_wait_for_the_steady_rate() -> None:
    loop = asyncio.get_running_loop()
    fresh = RecipientLimiter(20.0, PacingSettings())
    began = loop.time()
    for _ in range(5):  # a fresh bucket has 0.5 s of burst: ten at once
        await fresh.acquire(1)
    assert loop.time() - began < 0.05
    joined = RecipientLimiter(20.0, PacingSettings())
    joined.spend_burst()
    began = loop.time()
    for _ in range(3):
        await joined.acquire(1)
    assert loop.time() - began >= 0.09  # 3 at 20/s, nothing saved up
