"""Which account sends a message: the first `[[routes]]` rule that matches, else the default.

Pure, and the same rules as Postgres's `dispatcher.route_of` (migration 0021), which decides
for every message whichever way it enters; this one serves the unit tests and `status`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dispatcher.accounts.settings import RouteSettings

__all__ = ["Routed", "from_domain", "route"]

_DOMAIN_AT_END = re.compile(r"@([^@<>\s\"]+)>?\s*$")


@dataclass(frozen=True, slots=True)
class Routed:
    """The account a message goes to, and the one it may fall back to (None: it may not)."""

    account: str
    fallback: str | None = None
    rule: int | None = None  # the index of the rule that matched; None: the default


def from_domain(from_addr: str) -> str:
    """The domain of a From address, plain or with a display name ('A <a@b.example>')."""
    found = _DOMAIN_AT_END.search(from_addr)
    return found.group(1).lower() if found else ""


def _domain_matches(domain: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if domain.endswith(pattern[1:]):
                return True
        elif domain == pattern:
            return True
    return False


def route(
    routes: Sequence[RouteSettings],
    default: str,
    *,
    from_addr: str,
    campaign: tuple[int, str] | None = None,
    key_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Routed:
    """The account for a message with these attributes (`campaign`: its id and name)."""
    domain = from_domain(from_addr)
    tags = tags or {}
    for i, r in enumerate(routes):
        if r.from_domain and not _domain_matches(domain, r.from_domain):
            continue
        if r.campaign and (campaign is None or not {str(campaign[0]), campaign[1]} & {*r.campaign}):
            continue
        if r.key and key_name not in r.key:
            continue
        if r.tag and not any(tags.get(n) == v for n, _, v in (t.partition("=") for t in r.tag)):
            continue
        return Routed(r.account, r.fallback, i)
    return Routed(default)
