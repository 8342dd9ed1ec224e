"""Which SES identity covers a sender: the address itself, its domain, or a parent domain. Pure."""

from __future__ import annotations

from dispatcher.doctor.facts import IdentitySummary, Sender

VERIFIED = "SUCCESS"


def covering(name: str, identities: tuple[IdentitySummary, ...]) -> list[IdentitySummary]:
    """The identities that may cover sender `name`, nearest first: itself, its domain, parents."""
    by_name = {i.name: i for i in identities}
    out: list[IdentitySummary] = []
    if name in by_name:
        out.append(by_name[name])
    domain = name.rpartition("@")[2]
    while "." in domain:
        found = by_name.get(domain)
        if found is not None and found.kind == "DOMAIN" and found not in out:
            out.append(found)
        domain = domain.partition(".")[2]
    return out


def domain_identity_of(sender: Sender, identities: tuple[IdentitySummary, ...]) -> str | None:
    """The nearest domain identity covering `sender` (verified first): whose DKIM signs its mail."""
    domains = [i for i in covering(sender.name, identities) if i.kind == "DOMAIN"]
    verified = [i for i in domains if i.verification_status == VERIFIED]
    chosen = verified or domains
    return chosen[0].name if chosen else None
