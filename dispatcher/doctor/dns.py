"""DNS lookups for doctor through dnspython, against the configured servers or the system's.

Every question is answered as a `Lookup`: the records (empty when the name or the record type
does not exist), or the problem that kept it from being answered (a timeout, SERVFAIL), which
the checks report as "could not check" rather than as a missing record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from dispatcher.doctor.facts import Lookup

MAX_PARALLEL = 16  # questions in flight at once


def make_resolver(
    nameservers: tuple[tuple[str, int], ...], timeout: float
) -> dns.asyncresolver.Resolver:
    """A resolver asking `nameservers` ((address, port), ...), or the system's when empty."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.cache = None  # one run asks each name once; a cache only hides a fix just made
    return resolver


async def lookup_all(
    resolver: dns.asyncresolver.Resolver, questions: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Lookup]:
    """Every (name, type) question answered, at most MAX_PARALLEL at a time."""
    gate = asyncio.Semaphore(MAX_PARALLEL)

    async def one(name: str, rdtype: str) -> Lookup:
        async with gate:
            return await lookup(resolver, name, rdtype)

    asked = sorted(set(questions))
    answers = await asyncio.gather(*(one(n, t) for n, t in asked))
    return dict(zip(asked, answers, strict=True))


async def lookup(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> Lookup:
    """One question: CNAME and MX targets lower-cased without the final dot, TXT strings joined."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Lookup()
    except dns.resolver.NoNameservers as exc:
        return Lookup(problem=f"no server answered ({_first_line(exc)})")
    except dns.exception.Timeout:
        return Lookup(problem="timed out")
    except dns.exception.DNSException as exc:
        return Lookup(problem=_first_line(exc))
    records: list[str] = []
    for rdata in answer:
        if rdtype == "TXT":
            records.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        elif rdtype == "MX":
            records.append(_host(rdata.exchange.to_text()))
        elif rdtype == "CNAME":
            records.append(_host(rdata.target.to_text()))
        else:
            records.append(rdata.to_text())
    return Lookup(records=tuple(records))


def _host(text: str) -> str:
    return text.rstrip(".").lower()


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
