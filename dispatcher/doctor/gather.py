"""What doctor reads, in order: SES (the account, the identities, each sending domain, the
configuration set), then the DNS records those answers name, and the senders and usage the
database knows. A part that cannot be read becomes an `..._error` in the facts, not an
exception: the other checks still run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
import asyncpg  # type: ignore[import-untyped]
from aiolimiter import AsyncLimiter
from botocore.exceptions import ClientError, NoCredentialsError

from dispatcher.accounts.routing import route
from dispatcher.accounts.settings import account_names
from dispatcher.config import Config
from dispatcher.db.embedded import EmbeddedPostgres
from dispatcher.doctor import dns
from dispatcher.doctor.checks import dns_questions
from dispatcher.doctor.facts import (
    AccountFacts,
    ConfigurationSetFacts,
    DomainIdentity,
    EventDestination,
    Facts,
    IdentitySummary,
    Sender,
    Usage,
)
from dispatcher.doctor.identities import domain_identity_of
from dispatcher.doctor.settings import parse_nameservers
from dispatcher.domain.quota import API_CALL_INTERVAL
from dispatcher.domain.validate import suppression_key
from dispatcher.errors import DispatcherError
from dispatcher.feedback.store import TRANSIENT_LIMIT, TRANSIENT_WINDOW_DAYS
from dispatcher.ses.adapter import adapter_config

if TYPE_CHECKING:
    from types_aiobotocore_sesv2.client import SESV2Client

T = TypeVar("T")
CONNECT_TIMEOUT = 2.0  # seconds to reach the SNS endpoint's port on this host
DB_TIMEOUT = 5.0  # seconds to connect to Postgres and read the senders
QUEUE_SAMPLE = 1000  # queued / recently sent messages whose senders are read

# Senders of waiting mail (a bounded sample, by the claim's index), of mail sent in the last day
# (by jobs_sent_at), and of campaigns not finished; plus what the production-access draft tells.
_SENDERS = """
SELECT DISTINCT from_addr, source, account, fallback, campaign_id, campaign_name FROM (
    (SELECT m.from_addr, 'queued mail' AS source, j.account, j.fallback,
            NULL::bigint AS campaign_id, NULL::text AS campaign_name
     FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id)
     WHERE j.state = 'queued' AND j.campaign_id IS NULL
     ORDER BY j.priority DESC, j.run_at, j.id LIMIT $1)
    UNION ALL
    (SELECT m.from_addr, 'mail sent in the last 24 h', j.account, j.fallback, NULL, NULL
     FROM dispatcher.jobs j JOIN dispatcher.messages m USING (id)
     WHERE j.state = 'sent' AND j.sent_at > now() - interval '1 day'
     ORDER BY j.sent_at DESC LIMIT $1)
    UNION ALL
    (SELECT from_addr, 'campaign ' || id || ' (' || name || ')', NULL, NULL, id, name
     FROM dispatcher.campaigns WHERE state IN ('draft', 'running', 'paused'))
) s
"""
_USAGE = """
SELECT (SELECT count(*) FROM dispatcher.campaigns) AS campaigns,
       (SELECT count(*) FROM dispatcher.campaigns WHERE unsubscribe_url IS NOT NULL) AS unsub,
       (SELECT count(*) FROM dispatcher.jobs
        WHERE state = 'sent' AND sent_at > now() - interval '1 day') AS sent,
       (SELECT count(*) FROM dispatcher.suppressions) AS suppressed
"""


async def gather(
    cfg: Config, domains: list[str], nameservers: str | None = None, account: str | None = None
) -> Facts:
    """Every fact the checks need: SES first, then the DNS records its answers name.

    `account`: with several accounts, the one `cfg.ses` is; only the senders whose mail goes to
    it (routed there, or its fallback) are checked there.
    """
    wanted = [(Sender(d, "--domain"), _route_of(cfg, f"postmaster@{d}")) for d in domains]
    db_senders, usage, note = await read_database(cfg)
    wanted += db_senders
    facts = Facts(
        region=cfg.ses.region,
        senders=tuple(s for s, goes_to in wanted if account is None or account in goes_to),
        senders_note=note,
        usage=usage,
        feedback=cfg.feedback,
        guard=cfg.guard,
    )
    if cfg.feedback.enabled:
        facts = replace(facts, feedback_listening=await endpoint_listening(cfg))
    facts = await read_ses(cfg, facts)
    servers = parse_nameservers(
        cfg.doctor.nameservers if nameservers is None else nameservers,
        key="doctor.nameservers" if nameservers is None else "--nameserver",
    )
    resolver = dns.make_resolver(servers, cfg.doctor.dns_timeout)
    answers = await dns.lookup_all(resolver, dns_questions(facts))
    return replace(facts, dns=answers)


# -- SES -----------------------------------------------------------------------------------------


class _Ses:
    """The sesv2 client with SES's one request a second on these actions, one call at a time."""

    def __init__(self, client: SESV2Client) -> None:
        self.client = client
        self._turn = AsyncLimiter(1, API_CALL_INTERVAL)

    async def call(self, action: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        async with self._turn:
            return await action(**kwargs)


@asynccontextmanager
async def _ses(cfg: Config) -> AsyncIterator[_Ses]:
    session = aioboto3.Session(
        aws_access_key_id=cfg.ses.access_key_id,
        aws_secret_access_key=cfg.ses.secret_access_key,
        region_name=cfg.ses.region,
    )
    async with session.client(
        "sesv2", endpoint_url=cfg.ses.endpoint_url, config=adapter_config(cfg.ses)
    ) as client:
        yield _Ses(client)


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "NotFoundException",
    )


async def read_ses(cfg: Config, facts: Facts) -> Facts:
    """The account, the identities, each sending domain's details and the configuration set."""
    async with _ses(cfg) as ses:
        try:
            raw = await ses.call(ses.client.get_account)
        except NoCredentialsError as exc:
            raise DispatcherError("no AWS credentials") from exc
        except ClientError as exc:  # refused (a policy without ses:GetAccount): ask the rest
            facts = replace(facts, account_error=_why(exc))
        except Exception as exc:
            why = _why(exc)
            # No answer: nothing else would answer either; say it once instead of per call.
            return replace(facts, account_error=why, identities_error=why)
        else:
            facts = replace(facts, account=_account(raw))
        try:
            identities = await _list_identities(ses)
        except Exception as exc:
            facts = replace(facts, identities_error=_why(exc))
            return await _read_configuration_set(ses, cfg.ses.configuration_set, facts)
        facts = replace(facts, identities=identities)
        names = {domain_identity_of(s, identities) for s in facts.senders}
        found: dict[str, DomainIdentity] = {}
        errors: dict[str, str] = {}
        for name in sorted(n for n in names if n is not None):
            try:
                found[name] = _domain(
                    name, await ses.call(ses.client.get_email_identity, EmailIdentity=name)
                )
            except Exception as exc:
                errors[name] = _why(exc)
        facts = replace(facts, domains=found, domain_errors=errors)
        return await _read_configuration_set(ses, cfg.ses.configuration_set, facts)


def _account(raw: Any) -> AccountFacts:
    quota = raw.get("SendQuota", {})
    return AccountFacts(
        production_access=bool(raw.get("ProductionAccessEnabled", False)),
        sending_enabled=bool(raw.get("SendingEnabled", False)),
        enforcement_status=str(raw.get("EnforcementStatus", "HEALTHY")),
        max_24_hour_send=float(quota.get("Max24HourSend", 0.0)),
        max_send_rate=float(quota.get("MaxSendRate", 0.0)),
        sent_last_24_hours=float(quota.get("SentLast24Hours", 0.0)),
    )


async def _list_identities(ses: _Ses) -> tuple[IdentitySummary, ...]:
    out: list[IdentitySummary] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"PageSize": 1000}
        if token:
            kwargs["NextToken"] = token
        page = await ses.call(ses.client.list_email_identities, **kwargs)
        for item in page.get("EmailIdentities", []):
            out.append(
                IdentitySummary(
                    name=str(item.get("IdentityName", "")).lower(),
                    kind=str(item.get("IdentityType", "")),
                    verification_status=str(item.get("VerificationStatus", "PENDING")),
                    sending_enabled=bool(item.get("SendingEnabled", True)),
                )
            )
        token = page.get("NextToken")
        if not token:
            return tuple(out)


def _domain(name: str, raw: Any) -> DomainIdentity:
    dkim = raw.get("DkimAttributes", {})
    mail_from = raw.get("MailFromAttributes") or {}
    return DomainIdentity(
        name=name,
        verification_status=str(raw.get("VerificationStatus", "PENDING")),
        dkim_status=str(dkim.get("Status", "NOT_STARTED")),
        dkim_tokens=tuple(str(t).lower() for t in dkim.get("Tokens", [])),
        dkim_origin=str(dkim.get("SigningAttributesOrigin", "AWS_SES")),
        dkim_signing=bool(dkim.get("SigningEnabled", True)),
        mail_from_domain=str(mail_from["MailFromDomain"]).lower()
        if mail_from.get("MailFromDomain")
        else None,
        mail_from_status=mail_from.get("MailFromDomainStatus"),
        mail_from_behavior=mail_from.get("BehaviorOnMxFailure"),
    )


async def _read_configuration_set(ses: _Ses, name: str | None, facts: Facts) -> Facts:
    if name is None:
        return facts
    try:
        raw = await ses.call(ses.client.get_configuration_set, ConfigurationSetName=name)
    except Exception as exc:
        if _not_found(exc):
            return replace(facts, configuration_set=ConfigurationSetFacts(name, exists=False))
        return replace(
            facts,
            configuration_set=ConfigurationSetFacts(name, exists=True),
            configuration_set_error=_why(exc),
        )
    enabled = bool(raw.get("SendingOptions", {}).get("SendingEnabled", True))
    try:
        listed = await ses.call(
            ses.client.get_configuration_set_event_destinations, ConfigurationSetName=name
        )
    except Exception as exc:
        return replace(
            facts,
            configuration_set=ConfigurationSetFacts(name, True, enabled),
            configuration_set_error=_why(exc),
        )
    destinations = []
    for item in listed.get("EventDestinations", []):
        kind = next((k for k in item if k.endswith("Destination")), "unknown")
        sns: dict[str, Any] = dict(item.get("SnsDestination") or {})
        target = sns.get("TopicArn")
        destinations.append(
            EventDestination(
                name=str(item.get("Name", "")),
                enabled=bool(item.get("Enabled", False)),
                types=frozenset(item.get("MatchingEventTypes", [])),
                kind=kind,
                target=target,
            )
        )
    return replace(
        facts, configuration_set=ConfigurationSetFacts(name, True, enabled, tuple(destinations))
    )


async def endpoint_listening(cfg: Config) -> bool:
    """Whether something accepts connections on the SNS endpoint's port (the daemon serves it)."""
    host = cfg.feedback.listen_host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, cfg.feedback.listen_port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# -- the database --------------------------------------------------------------------------------


def _route_of(
    cfg: Config, from_addr: str, campaign: tuple[int, str] | None = None
) -> frozenset[str]:
    """The accounts mail from `from_addr` may go to (by the from domain and campaign only)."""
    default = account_names(cfg.accounts)[0]
    routed = route(cfg.routes, default, from_addr=from_addr, campaign=campaign)
    return frozenset(a for a in (routed.account, routed.fallback) if a is not None)


def _accounts_of(cfg: Config, row: Any) -> frozenset[str]:
    if row["account"] is not None:  # a job: routed when it was queued
        return frozenset(a for a in (row["account"], row["fallback"]) if a is not None)
    return _route_of(cfg, row["from_addr"], (row["campaign_id"], row["campaign_name"]))


async def read_database(
    cfg: Config,
) -> tuple[list[tuple[Sender, frozenset[str]]], Usage | None, str | None]:
    """(senders and the accounts each goes to, usage, why not read): never starts the embedded
    Postgres, never fails."""
    if cfg.database.url:
        url = cfg.database.url
    else:
        embedded = EmbeddedPostgres(cfg.database.data_dir)
        if not (await asyncio.to_thread(embedded.status)).running:
            return [], None, "the embedded Postgres is not running: queued senders not read"
        url = await embedded.open()
    try:
        conn = await asyncpg.connect(url, timeout=DB_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return [], None, f"the database could not be read: {exc}"
    try:
        rows = await asyncio.wait_for(conn.fetch(_SENDERS, QUEUE_SAMPLE), DB_TIMEOUT)
        row = await asyncio.wait_for(conn.fetchrow(_USAGE), DB_TIMEOUT)
    except asyncpg.UndefinedTableError:
        return [], None, "the database is not migrated yet"
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return [], None, f"the database could not be read: {exc}"
    finally:
        await conn.close()
    senders = [
        (Sender(suppression_key(r["from_addr"]), r["source"]), _accounts_of(cfg, r)) for r in rows
    ]
    usage = Usage(
        campaigns=int(row["campaigns"]),
        campaigns_with_unsubscribe=int(row["unsub"]),
        sent_last_24_hours=int(row["sent"]),
        suppressed=int(row["suppressed"]),
        transient_limit=TRANSIENT_LIMIT,
        transient_days=TRANSIENT_WINDOW_DAYS,
    )
    return senders, usage, None
