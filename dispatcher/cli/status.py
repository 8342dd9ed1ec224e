"""`dispatcher status` and `quota`: what the database knows, then what SES says (bounded)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import NoCredentialsError

from dispatcher import app
from dispatcher.accounts.settings import effective_accounts
from dispatcher.accounts.store import AccountRow, AccountStore
from dispatcher.cli.message import show_message
from dispatcher.config import Config
from dispatcher.domain.jobs import STATES
from dispatcher.errors import DispatcherError
from dispatcher.feedback.guard import reputation_lines, reputation_view
from dispatcher.feedback.store import HeldSender
from dispatcher.feedback.watch import thresholds
from dispatcher.obs.health import (
    DB_TIMEOUT,
    Readiness,
    gather_readiness,
    readiness,
)
from dispatcher.pacing import QuotaGovernor
from dispatcher.ses import SesAdapter
from dispatcher.worker.lane_store import lanes_view, print_lanes
from dispatcher.worker.warmup_store import print_warmup, warmup_view


def account_json(row: AccountRow) -> dict[str, Any]:
    """One SES account as `status --json` shows it."""
    return {
        "name": row.name,
        "default": row.default,
        "max_send_rate": row.max_send_rate,
        "max_24_hour_send": row.max_24_hour_send,
        "sent_last_24_hours": row.sent_last_24_hours,
        "reading_age_seconds": None if row.reading_age is None else round(row.reading_age, 1),
        "queued": row.queued,
        "workers": row.workers,
        "paused": row.paused_reason,
        "held": row.held_reason,
    }


def print_accounts(rows: list[AccountRow]) -> None:
    """One line per SES account: its reading (as its processes last published it) and mail."""
    print("accounts:")
    for row in rows:
        if row.max_send_rate is None:
            reading = "quota not read yet"
        else:
            quota = (
                "unlimited" if (row.max_24_hour_send or 0) < 0 else f"{row.max_24_hour_send:,.0f}"
            )
            reading = (
                f"rate {row.max_send_rate:g}/s, {row.sent_last_24_hours or 0:,.0f} of {quota} "
                "sent in 24 h"
            )
        mark = " (default)" if row.default else ""
        paused = f", PAUSED: {row.paused_reason}" if row.paused_reason else ""
        if row.held_reason:
            paused += f", HELD: {row.held_reason}"
        print(
            f"  {row.name}{mark}: {reading}, {row.queued:,} queued, {row.workers} worker(s){paused}"
        )


def no_credentials(cfg: Config) -> str:
    """What to set when SES was called without any access keys."""
    keys = (
        "set ses.access_key_id and ses.secret_access_key (or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws)"
    )
    if cfg.ses.endpoint_url:
        return (
            f"no AWS access keys for SES at {cfg.ses.endpoint_url}: {keys}; the simulator "
            "accepts any, e.g. AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x"
        )
    return (
        f"no AWS access keys for SES: {keys}; to use the simulator (`dispatcher sim`), also "
        "set ses.endpoint_url, e.g. DISPATCHER_SES_ENDPOINT_URL=http://127.0.0.1:4579"
    )


async def _pacing_view(cfg: Config, *, swallow: bool = True) -> dict[str, Any]:
    """The account's quota through the governor's eyes (one GetSendQuota call).

    A failure is returned as {"error": ...} (status), or raised when not `swallow` (quota).
    """
    try:
        _, ses_settings, pacing = effective_accounts(cfg.accounts, cfg.ses, cfg.pacing)[0]
        async with SesAdapter.open(ses_settings) as ses:  # the default account's
            quota = await ses.get_send_quota()
    except Exception as exc:
        if not swallow:
            if isinstance(exc, DispatcherError):
                raise
            raise DispatcherError(f"could not read the sending quota: {exc}") from exc
        if isinstance(exc.__cause__, NoCredentialsError):
            return {"error": no_credentials(cfg)}
        return {"error": f"could not read the sending quota: {exc}"}
    governor = QuotaGovernor(pacing)
    now = asyncio.get_running_loop().time()
    governor.observe(quota, now)
    view = governor.view(now)
    limit = quota.max_24_hour_send
    return {
        "max_send_rate": quota.max_send_rate,
        "rate_limit": quota.max_send_rate * pacing.rate_headroom,
        "max_24_hour_send": limit,
        "sent_last_24_hours": quota.sent_last_24_hours,
        "quota_headroom": pacing.quota_headroom,
        "stop_at": None if limit < 0 else limit * pacing.quota_headroom,
        "remaining": view.remaining,
        "paused": view.paused,
        "reason": view.reason,
    }


EXIT_NOT_READY = 1  # `status --check`: mail is not going out (one line per reason on stdout)


async def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    as_json: bool = args.json
    if args.check:
        problems = await _readiness_problems(cfg)
        print("\n".join(problems) if problems else "ready")
        return EXIT_NOT_READY if problems else 0
    if args.id is not None:  # one message and its events
        async with app.open_stores(cfg, migrate=False) as stores:
            return await show_message(stores, args.id, as_json=as_json)
    # Reads only: an unmigrated database is reported (run `dispatcher migrate`), not migrated.
    async with app.open_stores(cfg, migrate=False) as stores:
        counts = await stores.queue.counts()
        workers = await stores.queue.workers()
        window = cfg.guard.window_hours
        sent = await stores.feedback.account_counts(window * 3600.0)
        hold = await stores.feedback.sending_hold()
        held_senders = await stores.feedback.held_senders()
        shared = await stores.quota.sync(uuid.UUID(int=0), {})  # records nothing: no sends
        warmup = await warmup_view(stores.queue.pool, cfg.warmup, stores.quota.account)
        lanes = await lanes_view(stores.queue.pool, cfg.providers, account=stores.quota.account)
        accounts = await AccountStore(stores.queue.pool).overview()
        # Each other account's lanes (their caps and back-offs are its own); waiting recipients
        # are counted for all mail together, under the default account's lanes.
        others = [a.name for a in accounts if len(accounts) > 1 and a.name != stores.quota.account]
        lanes_of = {
            name: await lanes_view(stores.queue.pool, cfg.providers, waiting=False, account=name)
            for name in others
        }
        # Each account ramps up on its own (a new account starts at day 1).
        warmup_of = {
            name: await warmup_view(stores.queue.pool, cfg.warmup, name) for name in others
        }
    states = {state: counts.get(state, 0) for state in STATES}
    leader = next((w for w in workers if w.id == shared.leader), None)
    shared_view = {
        # The reading every worker admits mail against, and who takes it (None: nobody yet).
        "read_by": None if leader is None else f"{leader.hostname}/{leader.pid} ({leader.id})",
        "reading_age_seconds": round(shared.age, 1) if shared.quota is not None else None,
        "sent_since_reading": shared.others_sent,  # by every worker, on the wire included
    }
    reputation = reputation_view(sent, thresholds(cfg.guard), window_hours=window)
    reputation["sending_held"] = None if hold is None else {"reason": hold[0], "since": hold[1]}
    if not as_json:
        # What the database knows first: SES may be slow or down, and that is when it matters.
        _print_local_status(states, len(workers), shared_view, reputation, hold, window)
        _print_held_senders(held_senders)
        print_warmup(warmup)
        print_lanes(lanes)
        if len(accounts) > 1:
            print_accounts(accounts)
            for name in others:
                print_warmup(warmup_of[name], account=name)
                print_lanes(lanes_of[name], account=name)
        sys.stdout.flush()
    pacing = await _bounded_pacing_view(cfg)
    pacing["workers"] = len(workers)
    pacing["shared"] = shared_view
    if as_json:
        view = {
            "states": states,
            "held_senders": [_held_json(h) for h in held_senders],
            "pacing": pacing,
            "reputation": reputation,
            "warmup": warmup,
            "lanes": lanes,  # None: no [[providers]] limit configured
            "accounts": [
                {
                    **account_json(a),
                    "lanes": lanes_of.get(a.name, lanes),
                    "warmup": warmup_of.get(a.name, warmup),
                }
                for a in accounts
            ],
        }
        print(json.dumps(view, indent=2, default=str))
        return 0
    _print_pacing(pacing)
    return 0


async def _readiness_problems(cfg: Config) -> list[str]:
    """What /readyz would say, judged from Postgres (a connection failure is one of them)."""
    # The embedded cluster is started (or reused) as `status` does, unbounded: cutting a start
    # short could leave it half up. The connection itself is bounded.
    await app.database_url(cfg)
    async with AsyncExitStack() as stack:
        try:
            stores = await asyncio.wait_for(
                stack.enter_async_context(app.open_stores(cfg, migrate=False)), CHECK_CONNECT
            )
        except TimeoutError:
            facts = Readiness(f"unreachable: no connection within {CHECK_CONNECT:g} s", None, None)
        except DispatcherError as exc:
            # "cannot connect ..." or "database schema is not migrated ...", as it says.
            facts = Readiness(f"is not usable: {exc}", None, None)
        else:
            facts = await gather_readiness(stores.queue.pool, stores.quota, stores.feedback)
    return readiness(facts, poll_interval=cfg.pacing.poll_interval)


CHECK_CONNECT = 2 * DB_TIMEOUT  # seconds `status --check` waits to connect to Postgres
STATUS_SES_WAIT = 5.0  # seconds `status` waits for GetSendQuota before it stops asking


async def _bounded_pacing_view(cfg: Config) -> dict[str, Any]:
    """`_pacing_view`, or an error saying SES did not answer within STATUS_SES_WAIT."""
    try:
        return await asyncio.wait_for(_pacing_view(cfg), STATUS_SES_WAIT)
    except TimeoutError:
        return {"error": f"SES did not answer GetSendQuota within {STATUS_SES_WAIT:g} s"}


def _print_local_status(
    states: dict[str, int],
    workers: int,
    shared: dict[str, Any],
    reputation: dict[str, Any],
    hold: tuple[str, Any] | None,
    window: float,
) -> None:
    print("messages:")
    for state in STATES:
        print(f"  {state:<10} {states[state]:>10}")
    if states["unknown"]:
        print(
            f"  {states['unknown']} message(s) in doubt: see `dispatcher in-doubt list`, then "
            "`dispatcher in-doubt resolve`"
        )
    print(f"workers: {workers} running")
    if shared["reading_age_seconds"] is not None:
        print(
            f"  shared reading    taken {shared['reading_age_seconds']:g} s ago by "
            f"{shared['read_by'] or 'a worker that has stopped'}; "
            f"{shared['sent_since_reading']:g} recipients sent since by all workers"
        )
    print(f"reputation (last {window:g} h, account-wide):")
    print("\n".join(reputation_lines(reputation)))
    if hold is not None:
        print(f"ALL SENDING HELD since {hold[1]:%Y-%m-%d %H:%M:%S %Z}: {hold[0]}")
        print("  check the lists, then `dispatcher resume --force`")


def _held_json(held: HeldSender) -> dict[str, Any]:
    return {
        "from": held.from_addr,
        "configuration_set": held.configuration_set,
        "reason": held.reason,
        "retry_at": held.retry_at.isoformat(),
    }


def _print_held_senders(held: list[HeldSender]) -> None:
    """Senders whose mail waits out an SES configuration error (nothing of theirs failed)."""
    if not held:
        return
    now = datetime.now(UTC)
    print("held senders (SES refused them; their mail waits, none failed):")
    for h in held:
        who = h.from_addr
        if h.configuration_set:
            who += f" (configuration set {h.configuration_set})"
        wait = max(0.0, (h.retry_at - now).total_seconds())
        print(f"  {who}")
        print(
            f"    retried at {h.retry_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (in {wait:.0f} s)"
        )
        print(f"    reason: {h.reason or 'not recorded'}")


def _print_pacing(pacing: dict[str, Any]) -> None:
    if "error" in pacing:
        print(f"pacing: {pacing['error']}")
        return
    limit = pacing["max_24_hour_send"]
    print("account (GetSendQuota):")
    print(f"  MaxSendRate       {pacing['max_send_rate']:>12g} recipients/s")
    print(f"  Max24HourSend     {'unlimited' if limit < 0 else f'{limit:g}':>12}")
    print(f"  SentLast24Hours   {pacing['sent_last_24_hours']:>12g}")
    print("governor:")
    print(f"  send rate         {pacing['rate_limit']:>12g} recipients/s")
    if limit >= 0:
        print(
            f"  stops at          {pacing['stop_at']:>12g} "
            f"({pacing['quota_headroom']:.0%} of Max24HourSend)"
        )
        print(f"  remaining         {pacing['remaining']:>12g}")
    print(f"  state             {'PAUSED' if pacing['paused'] else 'sending':>12}")
    if pacing["reason"]:
        print(f"  reason            {pacing['reason']}")


async def cmd_quota(args: argparse.Namespace, cfg: Config) -> int:
    _print_pacing(await _pacing_view(cfg, swallow=False))
    return 0
