"""The daemon's feedback upkeep: finish events recorded but not processed, and run the
reputation guard over the latest counts (decision in `guard.py`, pausing in the campaign store).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from dispatcher.campaigns.store import CampaignStore
from dispatcher.clock import wait_event
from dispatcher.config.settings import GuardSettings
from dispatcher.db.outage import connection_lost
from dispatcher.feedback.guard import Counts, Thresholds, decide, hold_reason, verdict
from dispatcher.feedback.store import CampaignFeedback, FeedbackStore

if TYPE_CHECKING:
    from dispatcher.accounts.store import AccountStore

__all__ = ["campaign_thresholds", "check_once", "run_guard", "tally_keep_seconds", "thresholds"]

log = structlog.get_logger()

FOLD_INTERVAL = 60.0  # seconds between folds of the guard's per-minute counters (per process)
# The per-minute counters are kept this long at least, past the window: a daemon whose config
# asks for a longer window than this one's still finds its minutes.
TALLY_KEEP_FLOOR = 7 * 86400.0


def tally_keep_seconds(settings: GuardSettings) -> float:
    """How long the guard's per-minute counters are kept (an hour past the longest window)."""
    return max(settings.window_hours * 3600.0, TALLY_KEEP_FLOOR) + 3600.0


def thresholds(settings: GuardSettings) -> Thresholds:
    return Thresholds(
        bounce=settings.bounce_threshold,
        complaint=settings.complaint_threshold,
        min_volume=settings.min_volume,
    )


def campaign_thresholds(settings: GuardSettings) -> Thresholds:
    return Thresholds(
        bounce=settings.campaign_bounce_threshold,
        complaint=settings.campaign_complaint_threshold,
        min_volume=settings.min_volume,
    )


async def check_once(
    feedback: FeedbackStore,
    campaigns: CampaignStore,
    settings: GuardSettings,
    accounts: AccountStore | None = None,
) -> dict[int, str]:
    """Evaluate the guard once; pause what it says; the campaigns paused now, with reasons.
    With `accounts` (several SES accounts), each account is judged on its own numbers."""
    if accounts is not None:
        return await check_accounts(feedback, campaigns, settings, accounts)
    account = await feedback.account_counts(settings.window_hours * 3600.0)
    running = await feedback.campaign_counts()
    hold_all = settings.account_action == "all"
    if hold_all:
        reason = hold_reason(account, thresholds(settings))
        if reason is not None and await feedback.hold_sending(reason):
            log.error(
                "guard.held",  # no job is claimed by any daemon until `resume --force`
                reason=reason,
                account_sent=account.sent,
                account_bounced=account.bounced,
                account_complained=account.complained,
            )
    verdicts = decide(
        account,
        {k: v.counts for k, v in running.items()},
        thresholds(settings),
        campaign_thresholds(settings),
        account_pauses_campaigns=not hold_all,
    )
    return await _pause(campaigns, verdicts, running, account)


async def check_accounts(
    feedback: FeedbackStore,
    campaigns: CampaignStore,
    settings: GuardSettings,
    accounts: AccountStore,
) -> dict[int, str]:
    """The guard per SES account: an account over a threshold holds its own sending ("all")
    or pauses the running campaigns with mail on it; campaigns are judged on their own."""
    per_account = await accounts.guard_counts(settings.window_hours * 3600.0)
    running = await feedback.campaign_counts()
    counts = {k: v.counts for k, v in running.items()}
    nothing = Counts(sent=0, bounced=0, complained=0)
    verdicts = decide(nothing, counts, thresholds(settings), campaign_thresholds(settings))
    for name, numbers in per_account.items():
        reason = verdict(numbers, thresholds(settings), f"account {name}")
        if reason is None:
            continue
        if settings.account_action == "all":
            if await accounts.hold(name, reason):
                log.error("guard.held", account=name, reason=reason)
        elif running:
            for campaign_id in await accounts.campaigns_on(name, list(running)):
                verdicts.setdefault(campaign_id, reason)
    return await _pause(campaigns, verdicts, running, None)  # the reason names the account


async def _pause(
    campaigns: CampaignStore,
    verdicts: dict[int, str],
    running: dict[int, CampaignFeedback],
    account: Counts | None,
) -> dict[int, str]:
    paused: dict[int, str] = {}
    for campaign_id, reason in verdicts.items():
        if await campaigns.pause(campaign_id, reason):
            paused[campaign_id] = reason
            counts = running[campaign_id].counts
            numbers = {}
            if account is not None:
                numbers = {
                    "account_sent": account.sent,
                    "account_bounced": account.bounced,
                    "account_complained": account.complained,
                }
            log.error(
                "guard.paused",
                campaign_id=campaign_id,
                reason=reason,
                campaign_sent=counts.sent,
                campaign_bounced=counts.bounced,
                campaign_complained=counts.complained,
                **numbers,
            )
    return paused


async def run_guard(
    feedback: FeedbackStore,
    campaigns: CampaignStore,
    settings: GuardSettings,
    stop: asyncio.Event,
    accounts: AccountStore | None = None,
) -> None:
    """Until `stop`: every check_interval, process pending events, then run the guard; once a
    minute, fold and age its counters."""
    loop = asyncio.get_running_loop()
    folded_at: float | None = None
    while not stop.is_set():
        try:
            await feedback.process_pending()
            await feedback.link_late()  # before the rates: tagless events of fresh sends
            if folded_at is None or loop.time() - folded_at >= FOLD_INTERVAL:
                await feedback.fold_tallies(tally_keep_seconds(settings))
                folded_at = loop.time()
            if settings.enabled:
                await check_once(feedback, campaigns, settings, accounts)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            log.warning("guard.db_unavailable", error=repr(exc))  # next round tries again
        await wait_event(stop, settings.check_interval)
