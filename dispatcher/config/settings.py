"""The dispatcher's configuration as data: one frozen dataclass per TOML section, and `Config`.

Each section checks its own ranges in `__post_init__` and raises `ConfigError` naming the full
key (`queue.claim_batch`), so a value built in code is held to the same rules as one read from
`config/dispatcher.toml`. Types are not checked here: `build_config` coerces them strictly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dispatcher.accounts.settings import AccountSettings, RouteSettings, check_accounts
from dispatcher.doctor.settings import DoctorSettings
from dispatcher.domain.retry import InDoubtPolicy
from dispatcher.errors import ConfigError
from dispatcher.pacing.lanes import LaneSettings
from dispatcher.pacing.providers import ProviderSettings, check_providers
from dispatcher.pacing.settings import PacingSettings
from dispatcher.pacing.warmup import WarmupSettings
from dispatcher.ses.settings import SesSettings
from dispatcher.webhooks.settings import WebhookSettings, shown_url

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
GuardAccountAction = Literal["campaigns", "all"]

MAX_BATCH = 10_000  # claim_batch / settle_batch / max_in_flight: beyond this it is a typo
# delivery.max_in_flight = "auto": the ceiling of the adaptive limit. 1,000 calls/s at 0.25 s
# (p95) x 1.5 needs 375; the ceiling bounds connections and the sends left in doubt by a crash.
AUTO_MAX_IN_FLIGHT = 1000
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Where the queue lives (section `database`); url None starts an embedded Postgres."""

    url: str | None = None  # e.g. postgresql://user:password@host:5432/dispatcher
    # Embedded cluster and other local state. Unset: ~/.local/share/dispatcher (see build.py's
    # _place_data_dir; this one only without a home directory); relative: to the config file.
    data_dir: Path = Path("./.dispatcher")
    migrate_on_start: bool = True  # apply pending schema migrations when the daemon starts
    pool_size: int = 10  # connections that run statements (a daemon holds 3 more of its own)
    # Seconds a running daemon keeps retrying while Postgres is unreachable (a restart, a
    # failover) before it stops with an error; unsent mail stays queued either way.
    outage_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(POSTGRES_SCHEMES):
            raise ConfigError(
                "database.url must be a PostgreSQL URL starting with postgresql:// or "
                "postgres:// (leave it out to use the embedded Postgres), got "
                f"{mask_url(self.url)!r}"
            )
        if not str(self.data_dir):
            raise ConfigError("database.data_dir must not be empty")
        _int_range("database.pool_size", self.pool_size, 1, 1000)
        _positive("database.outage_timeout", self.outage_timeout)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Claiming, leases, retries and result writing (section `queue`)."""

    claim_batch: int = 100  # jobs claimed per statement
    lease_seconds: float = 30.0  # a worker silent this long is declared dead, its jobs recovered
    # Upkeep (LISTEN, campaigns); the lease is renewed every min(0.5, this) s (worker/upkeep.py).
    heartbeat_seconds: float = 5.0
    poll_interval: float = 0.5  # idle wait when nothing is due
    listen: bool = True  # LISTEN for new mail: an idle daemon wakes at once, not at its next poll
    max_attempts: int = 8  # transient failures before a message is failed
    backoff_base: float = 2.0  # seconds: first retry delay, doubled per attempt
    backoff_max: float = 900.0  # seconds: cap of the retry delay
    settle_batch: int = 200  # results written per statement
    settle_interval: float = 0.05  # max seconds a result waits to be written

    def __post_init__(self) -> None:
        _int_range("queue.claim_batch", self.claim_batch, 1, MAX_BATCH)
        _positive("queue.lease_seconds", self.lease_seconds)
        _positive("queue.heartbeat_seconds", self.heartbeat_seconds)
        # Two heartbeats per lease: one late heartbeat must not cost a live worker its jobs.
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ConfigError(
                "queue.heartbeat_seconds must be at most half of queue.lease_seconds="
                f"{self.lease_seconds} so one late heartbeat does not lose the lease, "
                f"got {self.heartbeat_seconds}"
            )
        _positive("queue.poll_interval", self.poll_interval)
        _int_range("queue.max_attempts", self.max_attempts, 1, 1000)
        _positive("queue.backoff_base", self.backoff_base)
        _positive("queue.backoff_max", self.backoff_max)
        if self.backoff_max < self.backoff_base:
            raise ConfigError(
                f"queue.backoff_max must be >= queue.backoff_base={self.backoff_base} seconds, "
                f"got {self.backoff_max}"
            )
        _int_range("queue.settle_batch", self.settle_batch, 1, MAX_BATCH)
        _non_negative("queue.settle_interval", self.settle_interval)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How sends are made and what happens to the ones SES refuses (section `delivery`)."""

    # A send that timed out after the request went out may have been accepted: "hold" marks it
    # unknown for a person to check; "resend" retries and risks a duplicate.
    in_doubt: InDoubtPolicy = "hold"
    # Ceiling of concurrent SES calls; below it the number follows rate x SES latency
    # (dispatcher/pacing/inflight.py). "auto": a ceiling of AUTO_MAX_IN_FLIGHT.
    max_in_flight: int | Literal["auto"] = "auto"
    shutdown_grace: float = 20.0  # seconds to finish in-flight sends on SIGTERM
    config_error_delay: float = 300.0  # seconds a misconfigured sender/config set is held
    account_paused_delay: float = 300.0  # seconds all sending waits when the account is paused
    # Share of the send rate campaign mail may use; the rest stays free for transactional mail
    # (which also always goes first). 1.0: campaigns use the whole rate when nothing else waits.
    campaign_rate_share: float = 1.0

    def __post_init__(self) -> None:
        _choice("delivery.in_doubt", self.in_doubt, ("hold", "resend"))
        if self.max_in_flight != "auto":
            _int_range("delivery.max_in_flight", self.max_in_flight, 1, MAX_BATCH)
        _non_negative("delivery.shutdown_grace", self.shutdown_grace)
        _positive("delivery.config_error_delay", self.config_error_delay)
        _positive("delivery.account_paused_delay", self.account_paused_delay)
        if not (0.0 < self.campaign_rate_share <= 1.0):
            raise ConfigError(
                f"delivery.campaign_rate_share must be in (0, 1], got {self.campaign_rate_share}"
            )

    @property
    def in_flight_ceiling(self) -> int:
        """The most concurrent SES calls: max_in_flight, or AUTO_MAX_IN_FLIGHT for "auto"."""
        return AUTO_MAX_IN_FLIGHT if self.max_in_flight == "auto" else self.max_in_flight


@dataclass(frozen=True, slots=True)
class FeedbackSettings:
    """Bounce and complaint intake (section `feedback`): an SNS HTTP endpoint in the daemon."""

    enabled: bool = False  # serve the endpoint from `dispatcher run`
    listen_host: str = "127.0.0.1"
    listen_port: int = 8025
    path: str = "/sns"
    max_body_bytes: int = 262144  # larger POSTs are refused (413)
    # Comma-separated TopicArns whose messages are accepted; required when enabled.
    allowed_topics: str = ""
    # URL of a `dispatcher sim` whose certificate and subscription URLs are trusted (rehearsals
    # and tests). Never needed for AWS, whose certificate host is checked as usual.
    trusted_simulator: str | None = None
    # SNS -> SQS setups: the queue the daemon long-polls (None: no SQS intake).
    sqs_queue_url: str | None = None
    sqs_endpoint_url: str | None = None  # None: AWS; e.g. a local moto for rehearsals
    sqs_wait_seconds: int = 20  # long-poll time per ReceiveMessage (0..20)
    # Verify the SNS signature of queued messages (SQS access is IAM-authenticated already;
    # turn off only for a queue that only SNS can write to, or for moto's unsigned events).
    sqs_verify: bool = True
    # The listener's address as the internet reaches it (https, through a TLS proxy): campaigns
    # created without --unsubscribe-url get signed one-click links to <public_url>/unsubscribe/.
    public_url: str | None = None

    def __post_init__(self) -> None:
        _int_range("feedback.listen_port", self.listen_port, 0, 65535)
        if self.public_url is not None:
            _check_public_url(self.public_url, enabled=self.enabled)
        _int_range("feedback.sqs_wait_seconds", self.sqs_wait_seconds, 0, 20)
        if self.sqs_queue_url is not None and not self.sqs_queue_url.startswith(
            ("https://", "http://")
        ):
            raise ConfigError(
                "feedback.sqs_queue_url must be the queue's URL, e.g. "
                f"https://sqs.us-east-1.amazonaws.com/123456789012/ses-feedback, got "
                f"{self.sqs_queue_url!r}"
            )
        _int_range("feedback.max_body_bytes", self.max_body_bytes, 1024, 16 * 1024 * 1024)
        if not self.path.startswith("/"):
            raise ConfigError(f"feedback.path must start with '/', got {self.path!r}")
        if (self.enabled or self.sqs_queue_url) and not self.topics:
            raise ConfigError(
                "feedback.allowed_topics must name at least one SNS TopicArn when "
                "feedback.enabled is true or feedback.sqs_queue_url is set (comma-separated)"
            )

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.allowed_topics.split(",") if t.strip())


def _check_public_url(url: str, *, enabled: bool) -> None:
    if not url.startswith("https://") or any(c in url for c in " \t\r\n<>\"'?#{}"):
        raise ConfigError(
            "feedback.public_url must be the https:// URL the feedback listener is reached at, "
            f"without query or spaces, e.g. https://mail.example.com, got {url!r}"
        )
    if not enabled:
        raise ConfigError(
            "feedback.public_url is served by the feedback listener: set feedback.enabled = "
            "true (with feedback.allowed_topics), or remove feedback.public_url"
        )


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """The reputation guard (section `guard`): pause campaigns before AWS reviews the account.

    AWS reviews an account at a 5 % hard-bounce rate or a 0.1 % complaint rate; the defaults trip
    earlier so a bad list is stopped while the account is still in good standing.
    """

    enabled: bool = True
    window_hours: float = 24.0  # rolling window of the account-wide rates
    min_volume: int = 200  # recipients sent before a rate is judged (per campaign / account)
    bounce_threshold: float = 0.04  # hard bounces / recipients sent (AWS reviews at 0.05)
    complaint_threshold: float = 0.0008  # complaints / recipients sent (AWS reviews at 0.001)
    campaign_bounce_threshold: float = 0.04  # the same rates judged per running campaign
    campaign_complaint_threshold: float = 0.0008
    # An account-wide trip pauses every running campaign ("campaigns": transactional mail goes
    # on) or holds all sending until `dispatcher resume --force` ("all").
    account_action: GuardAccountAction = "campaigns"
    check_interval: float = 2.0  # seconds between evaluations in the daemon

    def __post_init__(self) -> None:
        _positive("guard.window_hours", self.window_hours)
        _int_range("guard.min_volume", self.min_volume, 1, 10_000_000)
        _choice("guard.account_action", self.account_action, ("campaigns", "all"))
        for key, value in (
            ("guard.bounce_threshold", self.bounce_threshold),
            ("guard.complaint_threshold", self.complaint_threshold),
            ("guard.campaign_bounce_threshold", self.campaign_bounce_threshold),
            ("guard.campaign_complaint_threshold", self.campaign_complaint_threshold),
        ):
            if not (0.0 < value < 1.0):
                raise ConfigError(f"{key} must be a fraction in (0, 1), e.g. 0.04, got {value}")
        _positive("guard.check_interval", self.check_interval)


@dataclass(frozen=True, slots=True)
class KeysSettings:
    """The keys applications use at the doors (section `keys`, `dispatcher keys ...`)."""

    # The secret every key's secret is derived from (HMAC): Postgres only stores a hash, and
    # the SES-compatible endpoint, which must recompute AWS signatures, re-derives the secret
    # from this file. Unset: keys.master under database.data_dir, created 0600 on first use.
    # Several hosts serving the SES-compatible endpoint need the same file.
    master_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The HTTP listener for applications (section `api`): the HTTP API and the SES-compatible
    endpoint, served by `dispatcher run` when enabled."""

    enabled: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = 8026
    # Largest request body taken (413 beyond): a batch, or a message with attachments (SES takes
    # 40 MiB, base64 makes it a third larger).
    max_body_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        _int_range("api.listen_port", self.listen_port, 0, 65535)
        _int_range("api.max_body_bytes", self.max_body_bytes, 1024, 1024 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """SMTP submission for applications (section `smtp`), served by `dispatcher run` when
    enabled: STARTTLS, AUTH with a key, the envelope decides who gets the message."""

    enabled: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    # PEM files; unset: a self-signed certificate is made under database.data_dir and its
    # SHA-256 fingerprint logged.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = 40 * 1024 * 1024  # SES's limit for a raw message (552 beyond)
    max_sessions: int = 200  # concurrent sessions per process; more wait in the listen backlog
    # AUTH is refused before STARTTLS; true allows it in the clear from 127.0.0.1/::1 only.
    auth_on_loopback_without_tls: bool = False
    # A second port speaking TLS from the first byte (SMTPS, RFC 8314; 465 by convention), on
    # listen_host with the same certificate; unset: STARTTLS on listen_port only.
    implicit_tls_port: int | None = None

    def __post_init__(self) -> None:
        _int_range("smtp.listen_port", self.listen_port, 0, 65535)
        if self.implicit_tls_port is not None:
            _int_range("smtp.implicit_tls_port", self.implicit_tls_port, 0, 65535)
        _int_range("smtp.max_message_bytes", self.max_message_bytes, 1024, 40 * 1024 * 1024)
        _int_range("smtp.max_sessions", self.max_sessions, 1, 100_000)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                "smtp.tls_cert and smtp.tls_key go together: give both PEM files, or neither "
                "for a self-signed certificate"
            )


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long finished mail is kept (section `retention`, dispatcher.retention).

    Finished is sent, failed or cancelled; in-doubt mail (`unknown`) is kept whole until a
    person resolves it, and its clock starts then. Ages count from when the mail reached its
    state (jobs.updated_at). 0 days keeps that kind forever.
    """

    enabled: bool = True  # the daemon prunes (one process at a time); `dispatcher prune` always can
    content_days: float = 7.0  # bodies, raw MIME and campaign variables of sent and cancelled mail
    rows_days: float = 90.0  # the rows of sent and cancelled mail, with their feedback events
    # Failed mail keeps its content longer (to look into, and for `campaign retry-failed`).
    failed_content_days: float = 30.0
    failed_rows_days: float = 90.0
    interval: float = 300.0  # seconds between the daemon's prune runs
    batch_size: int = 1000  # rows per statement, each its own short transaction

    def __post_init__(self) -> None:
        for key, value in (
            ("retention.content_days", self.content_days),
            ("retention.rows_days", self.rows_days),
            ("retention.failed_content_days", self.failed_content_days),
            ("retention.failed_rows_days", self.failed_rows_days),
        ):
            _non_negative(key, value)
        _positive("retention.interval", self.interval)
        _int_range("retention.batch_size", self.batch_size, 1, 100_000)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Log output (section `log`); format auto is console on a terminal, JSON lines otherwise."""

    level: LogLevel = "info"
    format: LogFormat = "auto"

    def __post_init__(self) -> None:
        _choice("log.level", self.level, ("debug", "info", "warning", "error"))
        _choice("log.format", self.format, ("auto", "json", "console"))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; `Config()` is every default (no file, no environment)."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    ses: SesSettings = field(default_factory=SesSettings)
    pacing: PacingSettings = field(default_factory=PacingSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)
    doctor: DoctorSettings = field(default_factory=DoctorSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    lanes: LaneSettings = field(default_factory=LaneSettings)
    log: LogSettings = field(default_factory=LogSettings)
    webhooks: tuple[WebhookSettings, ...] = ()  # `[[webhooks]]`, an array of tables
    providers: tuple[ProviderSettings, ...] = ()  # `[[providers]]`: provider lanes' limits
    accounts: tuple[AccountSettings, ...] = ()  # `[[accounts]]`; none: [ses] is 'default'
    routes: tuple[RouteSettings, ...] = ()  # `[[routes]]`: which account sends which mail

    def __post_init__(self) -> None:
        check_providers(self.providers)
        check_accounts(self.accounts, self.routes)
        queued = [a.name for a in self.accounts if a.sqs_queue_url is not None]
        if queued and not self.feedback.topics:
            raise ConfigError(
                "feedback.allowed_topics must name at least one SNS TopicArn when an account "
                f"has sqs_queue_url ({', '.join(queued)}); comma-separated"
            )
        urls = [w.url for w in self.webhooks]
        for i, url in enumerate(urls):
            if url in urls[:i]:
                raise ConfigError(
                    f"webhooks[{i}].url repeats webhooks[{urls.index(url)}].url "
                    f"({shown_url(url)!r}); "
                    "give each endpoint once, with all the events it wants"
                )


def _int_range(key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, got {value}")


def _positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a number > 0, got {value}")


def _non_negative(key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{key} must be a number >= 0, got {value}")


def _choice(key: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ConfigError(f"{key} must be one of {'|'.join(accepted)}, got {value!r}")


def mask_url(url: str) -> str:
    """The URL with any password (user info or `password=` parameter) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    tail = re.sub(r"(?i)(\bpassword=)[^&]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"
