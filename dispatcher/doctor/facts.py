"""What `dispatcher doctor` found out (from SES, DNS, the database and the config) and what it
concludes (`Check`): plain data, so the checks are pure functions from one to the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dispatcher.config.settings import FeedbackSettings, GuardSettings

Status = Literal["ok", "warn", "fail"]
RANK: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, slots=True)
class Check:
    """One conclusion: what was checked, its status, and for warn/fail the exact fix."""

    id: str  # stable name of the check, e.g. "dkim", "account.sandbox"
    subject: str  # what it is about: "account", a domain, an address, a configuration set
    status: Status
    summary: str
    fix: tuple[str, ...] = ()  # lines: DNS records to add, commands, console steps

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "summary": self.summary,
            "fix": list(self.fix),
        }


@dataclass(frozen=True, slots=True)
class AccountFacts:
    """GetAccount."""

    production_access: bool
    sending_enabled: bool
    enforcement_status: str
    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float


@dataclass(frozen=True, slots=True)
class IdentitySummary:
    """One entry of ListEmailIdentities."""

    name: str  # lower-cased
    kind: str  # DOMAIN or EMAIL_ADDRESS
    verification_status: str  # PENDING | SUCCESS | FAILED | TEMPORARY_FAILURE | NOT_STARTED
    sending_enabled: bool = True


@dataclass(frozen=True, slots=True)
class DomainIdentity:
    """GetEmailIdentity of a domain: DKIM and custom MAIL FROM."""

    name: str
    verification_status: str
    dkim_status: str  # PENDING | SUCCESS | FAILED | TEMPORARY_FAILURE | NOT_STARTED
    dkim_tokens: tuple[str, ...] = ()
    dkim_origin: str = "AWS_SES"  # EXTERNAL: bring your own DKIM (tokens are selectors)
    dkim_signing: bool = True
    mail_from_domain: str | None = None
    mail_from_status: str | None = None
    mail_from_behavior: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """One DNS question's answer: `records` (empty: no such record), or `problem` when the
    question could not be answered (timeout, SERVFAIL), which proves nothing either way."""

    records: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class EventDestination:
    name: str
    enabled: bool
    types: frozenset[str]  # BOUNCE, COMPLAINT, ...
    kind: str  # SnsDestination, EventBridgeDestination, ...
    target: str | None = None  # the topic ARN of an SNS destination


@dataclass(frozen=True, slots=True)
class ConfigurationSetFacts:
    name: str
    exists: bool
    sending_enabled: bool = True
    destinations: tuple[EventDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class Sender:
    """A From identity to check: a bare address or a domain, and where it comes from."""

    name: str  # lower-cased address or domain
    source: str  # "--domain", "queued mail", "campaign 3 (autumn)", ...

    @property
    def domain(self) -> str:
        return self.name.rpartition("@")[2]

    @property
    def is_address(self) -> bool:
        return "@" in self.name


@dataclass(frozen=True, slots=True)
class Usage:
    """What this installation sends, for the production-access draft (from the database)."""

    campaigns: int = 0  # campaigns ever created
    campaigns_with_unsubscribe: int = 0
    sent_last_24_hours: int = 0
    suppressed: int = 0
    transient_limit: int = 3  # soft bounces within transient_days that suppress an address
    transient_days: float = 7.0


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the checks look at. An `..._error` is why that part could not be read."""

    region: str
    account: AccountFacts | None = None
    account_error: str | None = None
    identities: tuple[IdentitySummary, ...] = ()
    identities_error: str | None = None
    domains: Mapping[str, DomainIdentity] = field(default_factory=dict)
    domain_errors: Mapping[str, str] = field(default_factory=dict)
    dns: Mapping[tuple[str, str], Lookup] = field(default_factory=dict)  # (name, type) -> answer
    configuration_set: ConfigurationSetFacts | None = None  # None: ses.configuration_set unset
    configuration_set_error: str | None = None
    senders: tuple[Sender, ...] = ()
    senders_note: str | None = None  # why the database's senders were not read
    usage: Usage | None = None
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    feedback_listening: bool | None = None  # the SNS endpoint's port answers here (None: not tried)
    guard: GuardSettings = field(default_factory=GuardSettings)


def worst(checks: list[Check]) -> Status:
    """The most serious status among `checks` (ok when there are none)."""
    return max((c.status for c in checks), key=RANK.__getitem__, default="ok")
