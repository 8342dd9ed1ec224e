"""Mailbox providers: which one receives a recipient's mail, and each one's configured limits.

Pure: no I/O. A recipient's domain maps to a provider by the shipped table (gmail.com is
`google`) or, for any other domain, by its MX hosts (a company on Google Workspace has MX
`aspmx.l.google.com`, so it is `google` too); the MX lookup itself happens off the send path
(dispatcher.worker.lane_store). `[[providers]]` (ProviderSettings) sets a rate and/or daily cap
per provider, and may add a provider or extend a shipped one with `domains` and `mx` patterns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dispatcher.errors import ConfigError

__all__ = [
    "OTHER",
    "SHIPPED",
    "Provider",
    "ProviderSettings",
    "ProviderTable",
    "domain_of",
    "match_pattern",
]

OTHER = "other"  # the lane of every domain no provider claims (only the account rate applies)

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class Provider:
    """One mailbox provider: its recipient domains and the MX hosts that mark its customers."""

    name: str
    domains: tuple[str, ...]  # exact, `*.example.com` (subdomains) or `hotmail.*` (any suffix)
    mx: tuple[str, ...]  # MX host patterns: exact or `*.google.com`


# The big providers. Domain lists hold the consumer domains; the MX patterns catch both them and
# the companies that host their mail there (Google Workspace, Microsoft 365, ...).
SHIPPED: tuple[Provider, ...] = (
    Provider(
        "google",
        ("gmail.com", "googlemail.com"),
        ("*.google.com", "*.googlemail.com", "smtp.google.com"),
    ),
    Provider(
        "microsoft",
        (
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "passport.com",
            "hotmail.*",
            "windowslive.*",
            "outlook.*",
            "live.co.uk",
            "live.fr",
            "live.de",
            "live.nl",
            "live.it",
            "live.be",
            "live.ca",
            "live.com.au",
            "live.jp",
        ),
        ("*.protection.outlook.com", "*.hotmail.com", "*.outlook.com"),
    ),
    Provider(
        "yahoo",
        (
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.it",
            "yahoo.es",
            "yahoo.ca",
            "yahoo.com.au",
            "yahoo.com.br",
            "yahoo.co.in",
            "yahoo.com.mx",
            "ymail.com",
            "rocketmail.com",
            "aol.com",
            "aim.com",
        ),
        ("*.yahoodns.net",),
    ),
    Provider("apple", ("icloud.com", "me.com", "mac.com"), ("*.mail.icloud.com",)),
    Provider("naver", ("naver.com",), ("*.naver.com",)),
    Provider(
        "kakao",
        ("daum.net", "hanmail.net", "kakao.com"),
        ("*.hanmail.net", "*.daum.net", "*.kakao.com"),
    ),
    Provider("qq", ("qq.com", "foxmail.com", "vip.qq.com"), ("*.qq.com",)),
    Provider(
        "netease",
        ("163.com", "126.com", "yeah.net", "vip.163.com"),
        ("*.163.com", "*.126.com", "*.netease.com"),
    ),
    # United Internet: GMX, WEB.DE and mail.com share one mail platform.
    Provider("gmx", ("gmx.*", "web.de", "mail.com"), ("*.gmx.net", "*.web.de", "*.mail.com")),
    Provider("yandex", ("yandex.ru", "yandex.com", "ya.ru"), ("*.yandex.ru", "*.yandex.net")),
    Provider("mailru", ("mail.ru", "bk.ru", "inbox.ru", "list.ru"), ("*.mail.ru",)),
)


def domain_of(address: str) -> str:
    """The domain of a stored (normalised) address, lower-cased: `"Jo" <jo@Gmail.com>` ->
    gmail.com."""
    bare = address.rsplit("<", 1)[-1].rstrip(">").strip()
    return bare.rpartition("@")[2].lower().rstrip(".")


def match_pattern(pattern: str, host: str) -> bool:
    """`*.example.com` matches strict subdomains, `hotmail.*` any suffix, others exactly."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.endswith(".*"):
        return host.startswith(pattern[:-1])
    return host == pattern


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One `[[providers]]` entry: a provider's limits and (to add or extend one) its patterns."""

    name: str
    rate: float | None = None  # recipients per second, for all processes and hosts together
    daily_cap: int | None = None  # recipients per UTC day, for all processes and hosts together
    domains: tuple[str, ...] = ()  # added to the provider's domains (a new provider needs some)
    mx: tuple[str, ...] = ()  # added to its MX host patterns

    def check(self, at: str) -> None:
        """ConfigError naming `at.key` when a value is out of range."""
        if not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"{at}.name must be a lower-case name of letters, digits, - or _ "
                f'(e.g. "google"), got {self.name!r}'
            )
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(f"{at}.rate must be a number of recipients/s > 0, got {self.rate}")
        if self.daily_cap is not None and self.daily_cap < 1:
            raise ConfigError(f"{at}.daily_cap must be a whole number >= 1, got {self.daily_cap}")
        for key, patterns in (("domains", self.domains), ("mx", self.mx)):
            for pattern in patterns:
                _check_pattern(f"{at}.{key}", pattern, suffix_ok=key == "domains")
        if self.rate is None and self.daily_cap is None and not (self.domains or self.mx):
            raise ConfigError(f"{at} ({self.name}) sets nothing: give it a rate and/or a daily_cap")

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.daily_cap is not None


def _check_pattern(key: str, pattern: str, *, suffix_ok: bool) -> None:
    body = pattern.lower()
    if body.startswith("*."):
        body = body[2:]
    elif suffix_ok and body.endswith(".*"):
        body = body[:-2]
    if pattern != pattern.lower() or not _HOST.fullmatch(body):
        forms = "`example.com`, `*.example.com` or `example.*`" if suffix_ok else "`mx.example.com`"
        forms = forms if suffix_ok else forms + " or `*.example.com`"
        raise ConfigError(f"{key}: {pattern!r} is not a lower-case host name pattern ({forms})")


def check_providers(entries: Sequence[ProviderSettings]) -> None:
    """Validate `[[providers]]` as a whole; ConfigError naming `providers[i].key`."""
    shipped = {p.name for p in SHIPPED}
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        at = f"providers[{i}]"
        entry.check(at)
        if entry.name in seen:
            raise ConfigError(
                f"{at}.name repeats providers[{seen[entry.name]}].name ({entry.name!r}); "
                "give each provider once, with all its settings"
            )
        seen[entry.name] = i
        if entry.name == OTHER and (entry.domains or entry.mx):
            raise ConfigError(
                f"{at}: {OTHER!r} is every domain no provider claims; drop its domains/mx"
            )
        if entry.name not in shipped and entry.name != OTHER and not (entry.domains or entry.mx):
            raise ConfigError(
                f"{at}.name {entry.name!r} is not a shipped provider "
                f"({', '.join(sorted(shipped))}); to add one, give it domains and/or mx patterns"
            )


class ProviderTable:
    """Domain -> provider by the table, and MX hosts -> provider; user entries come first."""

    def __init__(self, extra: Iterable[ProviderSettings] = ()) -> None:
        extra = tuple(extra)
        user = [Provider(e.name, e.domains, e.mx) for e in extra if e.domains or e.mx]
        self.providers: tuple[Provider, ...] = (*user, *SHIPPED)
        self._exact: dict[str, str] = {}
        self._domain_patterns: list[tuple[str, str]] = []
        self._mx: list[tuple[str, str]] = []
        for p in self.providers:
            for d in p.domains:
                if "*" in d:
                    self._domain_patterns.append((d, p.name))
                else:
                    self._exact.setdefault(d, p.name)
            self._mx.extend((m, p.name) for m in p.mx)
        self.names: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in self.providers))

    def by_domain(self, domain: str) -> str | None:
        """The provider a domain belongs to by the table; None: ask its MX."""
        found = self._exact.get(domain)
        if found is not None:
            return found
        for pattern, name in self._domain_patterns:
            if match_pattern(pattern, domain):
                return name
        return None

    def by_mx(self, hosts: Sequence[str]) -> str:
        """The provider of a domain whose MX hosts (best first) are `hosts`; OTHER if none."""
        for host in hosts:
            host = host.lower().rstrip(".")
            for pattern, name in self._mx:
                if match_pattern(pattern, host):
                    return name
        return OTHER

    def lanes_of(
        self, addresses: Iterable[str], mx_known: Mapping[str, str]
    ) -> tuple[dict[str, int], list[str]]:
        """Recipients per provider, and the domains whose MX is not known yet (not counted)."""
        counts: dict[str, int] = {}
        unknown: list[str] = []
        for address in addresses:
            domain = domain_of(address)
            name = self.by_domain(domain) or mx_known.get(domain)
            if name is None:
                unknown.append(domain)
                continue
            counts[name] = counts.get(name, 0) + 1
        return counts, unknown
