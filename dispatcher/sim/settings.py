"""The simulated account's limits and behaviour as data: validated once, replaced at runtime."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNLIMITED = -1.0  # Max24HourSend value that SES uses for "no daily quota"

# SES's sandbox limits (SES-FACTS.md, "Quotas and rate"); `--sandbox` applies them unless the
# rate or quota is given explicitly.
SANDBOX_MAX_SEND_RATE = 1.0
SANDBOX_MAX_24_HOUR_SEND = 200.0

LATENCY_MODELS = ("fixed", "lognormal")

# Fields that are probabilities (0..1) of something happening to one request or one event.
_RATES = (
    "fault_500_rate",
    "fault_503_rate",
    "fault_reset_rate",
    "fault_timeout_rate",
    "fault_throttle_rate",
    "event_duplicate_rate",
)


@dataclass(frozen=True, slots=True)
class SimSettings:
    """One simulated SES account and how its endpoint behaves (see shared/SES-FACTS.md)."""

    # -- limits --------------------------------------------------------------------------
    max_send_rate: float = 14.0  # recipients per second
    max_24_hour_send: float = 50000.0  # recipients per rolling window; -1 = unlimited
    burst_seconds: float = 1.0  # the bucket holds max(rate * burst_seconds, 1) tokens
    quota_window_seconds: float = 86400.0  # SES: 24 h; tests shrink it to watch the quota free up
    region: str = "us-east-1"
    # -- account model -------------------------------------------------------------------
    sandbox: bool = False  # sender and every recipient must be verified identities
    require_verified_sender: bool = True  # production: the sender must be verified (as on AWS)
    require_configuration_sets: bool = True  # an unknown ConfigurationSetName is refused
    # AWS: "All actions (except for SendEmail, SendRawEmail, and SendTemplatedEmail) are
    # throttled at one request per second" (docs.aws.amazon.com/ses/latest/dg/quotas.html).
    # No burst is documented, so the bucket holds one request. 0 = no limit.
    api_requests_per_second: float = 1.0
    # Quick experiments: unverified senders and unknown configuration sets are accepted and
    # non-send actions are not limited, whatever the three settings above say.
    lenient: bool = False
    auto_verify: bool = False  # new identities are verified (and DKIM, MAIL FROM) at once
    # -- latency (added to every send) ---------------------------------------------------
    latency_ms: float = 0.0  # fixed delay, or the median of the lognormal model
    latency_model: str = "fixed"  # "fixed" or "lognormal" (a tail: see latency_p99_ms)
    latency_p99_ms: float = 0.0  # lognormal: the 99th percentile; 0 = 4 x the median
    # -- faults (probability per API request) --------------------------------------------
    fault_500_rate: float = 0.0  # HTTP 500 InternalFailure
    fault_503_rate: float = 0.0  # HTTP 503 ServiceUnavailable
    fault_reset_rate: float = 0.0  # the connection is reset, no response
    fault_timeout_rate: float = 0.0  # the response never comes (until fault_timeout_seconds)
    fault_timeout_seconds: float = 300.0  # how long a "never answering" request is held
    fault_throttle_rate: float = 0.0  # a send answered "Maximum sending rate exceeded." anyway
    storm_interval_seconds: float = 0.0  # a throttling storm starts this often; 0 = never
    storm_duration_seconds: float = 1.0  # and refuses every send for this long
    # -- events --------------------------------------------------------------------------
    sns_signature_version: int = 2  # 1 = RSA-SHA1, 2 = RSA-SHA256
    event_delay_ms: float = 0.0  # between acceptance and the SNS POST / file line
    event_reorder_ms: float = 0.0  # each event is delayed by a further random 0..this
    event_duplicate_rate: float = 0.0  # probability an SNS notification is POSTed twice
    events_file: str = ""  # JSONL file every event is appended to; "" = none

    def __post_init__(self) -> None:
        _positive("max_send_rate", self.max_send_rate)
        _number("max_24_hour_send", self.max_24_hour_send)
        if self.max_24_hour_send < 0 and self.max_24_hour_send != UNLIMITED:
            raise ValueError(
                f"max_24_hour_send must be >= 0 or -1 (unlimited), got {self.max_24_hour_send!r}"
            )
        _positive("burst_seconds", self.burst_seconds)
        _positive("quota_window_seconds", self.quota_window_seconds)
        if not isinstance(self.region, str) or not self.region:
            raise ValueError(f"region must be a non-empty string, got {self.region!r}")
        _non_negative("api_requests_per_second", self.api_requests_per_second)
        for flag in (
            "sandbox",
            "require_verified_sender",
            "require_configuration_sets",
            "lenient",
            "auto_verify",
        ):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        for name in ("latency_ms", "latency_p99_ms", "event_delay_ms", "event_reorder_ms"):
            _non_negative(name, getattr(self, name))
        if self.latency_model not in LATENCY_MODELS:
            raise ValueError(
                f"latency_model must be one of {', '.join(LATENCY_MODELS)}, "
                f"got {self.latency_model!r}"
            )
        if self.latency_model == "lognormal" and 0 < self.latency_p99_ms < self.latency_ms:
            raise ValueError(
                f"latency_p99_ms must be >= latency_ms (the median), got {self.latency_p99_ms!r}"
            )
        for name in _RATES:
            value = _number(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        faults = sum(getattr(self, n) for n in _RATES if n.startswith("fault_"))
        if faults > 1.0:
            raise ValueError(f"the fault_*_rate settings add up to {faults!r}, more than 1")
        _positive("fault_timeout_seconds", self.fault_timeout_seconds)
        _non_negative("storm_interval_seconds", self.storm_interval_seconds)
        _positive("storm_duration_seconds", self.storm_duration_seconds)
        if self.sns_signature_version not in (1, 2):
            raise ValueError(
                f"sns_signature_version must be 1 or 2, got {self.sns_signature_version!r}"
            )
        if not isinstance(self.events_file, str):
            raise ValueError(f"events_file must be a path string, got {self.events_file!r}")

    @property
    def unlimited(self) -> bool:
        return self.max_24_hour_send < 0

    @property
    def sender_must_be_verified(self) -> bool:
        """The sandbox always needs a verified sender; production unless lenient."""
        return self.sandbox or (self.require_verified_sender and not self.lenient)

    @property
    def configuration_sets_must_exist(self) -> bool:
        return self.require_configuration_sets and not self.lenient

    @property
    def api_rate(self) -> float:
        """Requests per second allowed on each non-send action; 0 = no limit."""
        return 0.0 if self.lenient else self.api_requests_per_second

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, changes: Mapping[str, Any]) -> SimSettings:
        """A copy with `changes` applied; unknown names and bad values raise ValueError."""
        fields = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            kind = fields[name]
            if kind in ("str", "bool"):
                coerced[name] = value  # __post_init__ checks the type
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            elif kind == "int":
                if value != int(value):
                    raise ValueError(f"{name} must be a whole number, got {value!r}")
                coerced[name] = int(value)
            else:
                coerced[name] = float(value)
        return dataclasses.replace(self, **coerced)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _positive(name: str, value: object) -> None:
    if _number(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: object) -> None:
    if _number(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
