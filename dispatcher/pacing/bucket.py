"""Per-recipient send pacing: re-ratable live, slowed by throttling, shared between processes.

How a message is charged (the same rule SES applies, see SES-FACTS "Quotas and rate"): it may
go as soon as the bucket has room for ONE recipient; then all its recipients are charged, so a
message bigger than the bucket leaves a debt that the next senders wait out. At 1/s a
5-recipient message goes at once and the next one waits about 5 s, exactly when SES would
accept it again. Charging first and sending later instead (in capacity-sized chunks) would bank
credit that SES does not keep (its bucket holds about one second) and get the next send
throttled; and as waiters are served first come first served, a 50-recipient message is never
starved by a stream of small ones. The bucket itself is `pacing/leaky.py`.
"""

from __future__ import annotations

import asyncio
import math

import structlog

from dispatcher.clock import Clock, loop_time
from dispatcher.pacing.control import RateController
from dispatcher.pacing.leaky import RecipientBucket
from dispatcher.pacing.settings import PacingSettings

log = structlog.get_logger()


def _capacity(rate: float, burst_seconds: float) -> float:
    """Bucket size in recipients: `burst_seconds` of rate, but at least one whole recipient.

    Kept below SES's own tolerance (about one second): what we do not burst stays in SES's
    bucket as slack, so sends that reach SES bunched up or out of order are not throttled.
    """
    return max(rate * burst_seconds, 1.0)


class RecipientLimiter:
    """Paces sends at the account's MaxSendRate counted in recipients; slows down on throttling.

    Call `acquire(recipients)` before each send, `on_throttled()` when SES answers Throttling,
    `set_max_send_rate()` when GetSendQuota reports a new MaxSendRate. All from the event loop.
    """

    __slots__ = (
        "_bucket",
        "_clock",
        "_controller",
        "_max_send_rate",
        "_rate",
        "_refresh_handle",
        "_settings",
        "_share",
    )

    def __init__(
        self,
        max_send_rate: float,
        settings: PacingSettings | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        """`clock` drives throttle cuts and recovery; None = the running loop's time.

        The bucket waits with event-loop timers, so a clock passed in must be on the loop's scale.
        """
        _check_max_send_rate(max_send_rate)
        self._settings = settings if settings is not None else PacingSettings()
        self._clock = clock
        self._max_send_rate = float(max_send_rate)
        self._share = 1.0  # this process's part of the account's rate (several processes)
        self._controller = RateController(
            self._max_send_rate * self._settings.rate_headroom, self._settings
        )
        self._rate = self._controller.allowed  # the rate the bucket runs at now
        self._bucket = RecipientBucket(
            self._rate, _capacity(self._rate, self._settings.burst_seconds), clock=clock
        )
        # Timer re-applying the ramped rate while recovering from a throttle (no task needed).
        self._refresh_handle: asyncio.TimerHandle | None = None

    @property
    def rate(self) -> float:
        """Effective rate now, recipients per second (below allowed_rate after throttling)."""
        return self._rate

    @property
    def allowed_rate(self) -> float:
        """MaxSendRate x rate_headroom: the rate we run at when not throttled."""
        return self._controller.allowed

    @property
    def max_send_rate(self) -> float:
        """MaxSendRate as last reported by SES (or given at construction)."""
        return self._max_send_rate

    @property
    def capacity(self) -> float:
        """Bucket size in recipients: the burst allowed after an idle second."""
        return self._bucket.capacity

    async def acquire(self, recipients: int) -> None:
        """Wait until a message to `recipients` (To+Cc+Bcc) may be sent, and charge it."""
        if recipients > 0:
            # Room for one recipient lets the message go; the rest is a debt the next wait out.
            await self._bucket.acquire(recipients)
        elif recipients < 0:
            raise ValueError(f"recipients must be >= 0, got {recipients}")

    def on_throttled(self) -> bool:
        """SES throttled a send: cut the rate now. False if folded into a cut of the same burst."""
        now = self._now()
        before = self._rate
        if not self._controller.on_throttled(now):
            return False
        self._apply(now)
        log.warning(
            "pacing.throttled",
            rate_before=round(before, 3),
            rate_after=round(self._rate, 3),
            allowed_rate=round(self.allowed_rate, 3),
        )
        return True

    def set_max_send_rate(self, max_send_rate: float) -> None:
        """GetSendQuota reported a (new) MaxSendRate: move the ceiling; waiters keep their place."""
        _check_max_send_rate(max_send_rate)
        now = self._now()
        self._max_send_rate = float(max_send_rate)
        self._controller.set_allowed(self._allowed(), now)
        self._apply(now)

    @property
    def share(self) -> float:
        """This process's part of the account's rate (1.0 when it sends alone)."""
        return self._share

    def set_share(self, share: float) -> None:
        """Several processes send for one account: run at `share` of MaxSendRate x headroom."""
        if not (0.0 < share <= 1.0):
            raise ValueError(f"share must be in (0, 1], got {share}")
        if abs(share - self._share) < 1e-9:
            return
        now = self._now()
        self._share = share
        self._controller.set_allowed(self._allowed(), now)
        self._apply(now)
        log.info("pacing.share", share=round(share, 4), rate=round(self._rate, 3))

    def spend_burst(self) -> None:
        """Start without the saved-up burst: for a process joining others that already send
        (their bursts and ours together could exceed SES's own tolerance)."""
        self._bucket.spend_burst()

    def _allowed(self) -> float:
        return self._max_send_rate * self._settings.rate_headroom * self._share

    def refresh(self) -> None:
        """Apply the controller's rate for now (done by a timer while recovering)."""
        before = self._rate
        now = self._now()
        self._apply(now)
        if before < self._rate and not self._controller.recovering(now):
            log.info("pacing.recovered", rate=round(self._rate, 3))

    def close(self) -> None:
        """Cancel the recovery timer (on shutdown); the limiter stays usable."""
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None

    def _apply(self, now: float) -> None:
        controller = self._controller
        rate = controller.current(now)
        if rate != self._rate:
            self._rate = rate
            self._bucket.rerate(rate, _capacity(rate, self._settings.burst_seconds))
        if controller.recovering(now):
            if self._refresh_handle is None:
                self._schedule_refresh()
        else:
            self.close()

    def _schedule_refresh(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside a loop (pure tests): refresh() by hand
        self._refresh_handle = loop.call_later(
            self._settings.recovery_refresh_interval, self._on_refresh_timer
        )

    def _on_refresh_timer(self) -> None:
        self._refresh_handle = None
        self.refresh()

    def _now(self) -> float:
        return loop_time(self._clock)


def _check_max_send_rate(max_send_rate: float) -> None:
    if not (max_send_rate > 0 and math.isfinite(max_send_rate)):
        raise ValueError(f"MaxSendRate must be a finite number > 0 per second, got {max_send_rate}")
