"""Several SES accounts and the rules that route mail to them (`[[accounts]]`, `[[routes]]`).

Pure: no I/O. Without `[[accounts]]` the `[ses]` section is the one account, named `default`.
With them, each entry is an account; keys it leaves out come from `[ses]` (timeouts, the pool,
and region, endpoint and credentials when none of them is given), and the first entry is the
default account: it sends the mail no route matches.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from dispatcher.errors import ConfigError
from dispatcher.pacing.settings import PacingSettings
from dispatcher.ses.settings import SesSettings

__all__ = [
    "DEFAULT_ACCOUNT",
    "AccountSettings",
    "RouteSettings",
    "account_names",
    "check_accounts",
    "effective_accounts",
]

DEFAULT_ACCOUNT = "default"  # the one account of a config without [[accounts]]
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DOMAIN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One SES account (an entry of `[[accounts]]`); None: as in `[ses]`."""

    name: str
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in a repr or log
    profile: str | None = None  # a profile of ~/.aws/config (may itself assume a role)
    role_arn: str | None = None  # a role assumed with the other credentials (STS AssumeRole)
    configuration_set: str | None = None
    rate_headroom: float | None = None  # pacing.rate_headroom for this account only
    quota_headroom: float | None = None  # pacing.quota_headroom for this account only
    # This account's SNS -> SQS feedback queue, read with its credentials and region (its
    # topics go in feedback.allowed_topics too); None: feedback.sqs_queue_url serves all.
    sqs_queue_url: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(
                "accounts.name must be 1-63 lower-case letters, digits, - or _ "
                f"(e.g. 'brand-a'), got {self.name!r}"
            )
        if self.region == "":
            raise ConfigError("accounts.region must not be empty (e.g. 'eu-west-1')")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError(
                "accounts.access_key_id and accounts.secret_access_key must be given together"
            )
        if self.profile is not None and self.access_key_id is not None:
            raise ConfigError(
                "accounts.profile and accounts.access_key_id exclude each other: give one"
            )
        if self.role_arn is not None and not self.role_arn.startswith("arn:"):
            raise ConfigError(
                "accounts.role_arn must be a role ARN such as "
                f"arn:aws:iam::123456789012:role/ses-sender, got {self.role_arn!r}"
            )
        if self.sqs_queue_url is not None and not self.sqs_queue_url.startswith(
            ("https://", "http://")
        ):
            raise ConfigError(
                "accounts.sqs_queue_url must be the queue's URL, e.g. "
                "https://sqs.eu-west-1.amazonaws.com/123456789012/ses-feedback, got "
                f"{self.sqs_queue_url!r}"
            )
        for key, value in (
            ("rate_headroom", self.rate_headroom),
            ("quota_headroom", self.quota_headroom),
        ):
            if value is not None and not (math.isfinite(value) and 0 < value <= 1):
                raise ConfigError(f"accounts.{key} must be a number in (0, 1], got {value}")

    def ses(self, base: SesSettings) -> SesSettings:
        """This account's SES settings: its own keys over `base` (the [ses] section)."""
        own_endpoint = self.region is not None or self.endpoint_url is not None
        own_credentials = self.access_key_id is not None or self.profile is not None
        return replace(
            base,
            region=self.region if self.region is not None else base.region,
            endpoint_url=self.endpoint_url if own_endpoint else base.endpoint_url,
            access_key_id=self.access_key_id if own_credentials else base.access_key_id,
            secret_access_key=(
                self.secret_access_key if own_credentials else base.secret_access_key
            ),
            profile=self.profile if own_credentials else base.profile,
            role_arn=self.role_arn if self.role_arn is not None else base.role_arn,
            configuration_set=(
                self.configuration_set
                if self.configuration_set is not None
                else base.configuration_set
            ),
        )

    def pacing(self, base: PacingSettings) -> PacingSettings:
        """The [pacing] settings with this account's overrides."""
        changes: dict[str, float] = {}
        if self.rate_headroom is not None:
            changes["rate_headroom"] = self.rate_headroom
        if self.quota_headroom is not None:
            changes["quota_headroom"] = self.quota_headroom
        return replace(base, **changes) if changes else base


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """A routing rule (an entry of `[[routes]]`): every condition given must hold (each one
    lists accepted values, any of which matches); the first rule that matches picks the
    account. A rule without conditions matches all mail."""

    account: str
    from_domain: tuple[str, ...] = ()  # the From address's domain; "*.example.com": subdomains
    campaign: tuple[str, ...] = ()  # a campaign's name or id
    key: tuple[str, ...] = ()  # the name of the API key that queued the message
    tag: tuple[str, ...] = ()  # "name=value" of a message tag
    fallback: str | None = None  # used only while `account` is paused or suspended by SES

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_domain", tuple(d.lower() for d in self.from_domain))
        for domain in self.from_domain:
            if not _DOMAIN.fullmatch(domain):
                raise ConfigError(
                    "routes.from_domain must hold domains such as 'shop.example' or "
                    f"'*.shop.example', got {domain!r}"
                )
        for tag in self.tag:
            name, eq, value = tag.partition("=")
            if not eq or not name or not value:
                raise ConfigError(
                    f"routes.tag must hold 'name=value' pairs such as 'tenant=acme', got {tag!r}"
                )
        if self.fallback is not None and self.fallback == self.account:
            raise ConfigError(
                f"routes.fallback must name another account than routes.account ({self.account!r})"
            )


def account_names(accounts: tuple[AccountSettings, ...]) -> list[str]:
    """The configured accounts' names, the default first; ['default'] without [[accounts]]."""
    return [a.name for a in accounts] if accounts else [DEFAULT_ACCOUNT]


def effective_accounts(
    accounts: tuple[AccountSettings, ...], ses: SesSettings, pacing: PacingSettings
) -> list[tuple[str, SesSettings, PacingSettings]]:
    """Each account to send for, the default first: its name, SES and pacing settings."""
    if not accounts:
        return [(DEFAULT_ACCOUNT, ses, pacing)]
    return [(a.name, a.ses(ses), a.pacing(pacing)) for a in accounts]


def check_accounts(
    accounts: tuple[AccountSettings, ...], routes: tuple[RouteSettings, ...]
) -> None:
    """Names unique, every route naming a configured account; raises the first problem."""
    names = account_names(accounts)
    for i, account in enumerate(accounts):
        if account.name in names[:i]:
            raise ConfigError(
                f"accounts[{i}].name repeats accounts[{names.index(account.name)}].name "
                f"({account.name!r}); give each account a name of its own"
            )
    known = ", ".join(repr(n) for n in names)
    for i, route in enumerate(routes):
        for key, name in (("account", route.account), ("fallback", route.fallback)):
            if name is not None and name not in names:
                hint = "" if accounts else " (without [[accounts]] the one account is 'default')"
                raise ConfigError(
                    f"routes[{i}].{key} names the unknown account {name!r}; the accounts are: "
                    f"{known}{hint}"
                )
