"""The DNS records SES needs, by name, and the parsing of the ones doctor reads. Pure."""

from __future__ import annotations

DMARC_POLICIES = ("none", "quarantine", "reject")
DMARC_ALIGNMENT = ("r", "s")


def dkim_record(token: str, domain: str) -> tuple[str, str]:
    """(name, CNAME target) of one Easy DKIM record."""
    return f"{token}._domainkey.{domain}", f"{token}.dkim.amazonses.com"


def mail_from_records(mail_from: str, region: str) -> tuple[str, str]:
    """The MX and SPF records a custom MAIL FROM domain needs, as zone-file lines."""
    return (
        f"{mail_from} MX 10 feedback-smtp.{region}.amazonses.com",
        f'{mail_from} TXT "v=spf1 include:amazonses.com ~all"',
    )


def spf_records(texts: tuple[str, ...]) -> list[str]:
    """The SPF records among a name's TXT records (RFC 7208: `v=spf1` then a space or the end)."""
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def dmarc_names(domain: str) -> list[str]:
    """Where a receiver looks for the DMARC record of mail from `domain`: `_dmarc.<domain>`, then
    the organizational domain's. Without the Public Suffix List every parent down to two labels
    is asked, nearest first (one more question for `a.example.co.uk`, answered by no record)."""
    labels = domain.split(".")
    return [f"_dmarc.{'.'.join(labels[i:])}" for i in range(max(len(labels) - 1, 1))]


def parse_dmarc(record: str) -> tuple[dict[str, str], str | None]:
    """The tags of a DMARC record, and what is wrong with it (None: valid), after RFC 7489 6.3:
    `v=DMARC1` first, a `p` of none/quarantine/reject, `adkim`/`aspf` of r/s."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in record.split(";")]
    for part in parts:
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            return tags, f"{part!r} is not a tag=value pair"
        key = key.strip().lower()
        if key in tags:
            return tags, f"the tag {key} appears twice"
        tags[key] = value.strip()
    if next(iter(tags), None) != "v" or tags.get("v") != "DMARC1":
        return tags, "it must start with v=DMARC1"
    if "p" not in tags:
        return tags, "the policy tag p= is missing"
    for key, accepted in (("p", DMARC_POLICIES), ("sp", DMARC_POLICIES)):
        if key in tags and tags[key].lower() not in accepted:
            return tags, f"{key}={tags[key]} is not one of {'/'.join(accepted)}"
    for key in ("adkim", "aspf"):
        if key in tags and tags[key].lower() not in DMARC_ALIGNMENT:
            return tags, f"{key}={tags[key]} is not r or s"
    if "pct" in tags and not (tags["pct"].isdigit() and 0 <= int(tags["pct"]) <= 100):
        return tags, f"pct={tags['pct']} is not 0..100"
    tags = {k: (v.lower() if k in ("p", "sp", "adkim", "aspf") else v) for k, v in tags.items()}
    return tags, None
