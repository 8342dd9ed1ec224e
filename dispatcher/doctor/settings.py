"""Settings of `dispatcher doctor` (section `doctor`): which DNS servers answer its lookups."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from dispatcher.errors import ConfigError

DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class DoctorSettings:
    """Where doctor's DNS questions go; empty nameservers: the system's resolver."""

    # Comma-separated HOST[:PORT] (IPv6 as [ADDR]:PORT), e.g. "1.1.1.1, 8.8.8.8"; a public
    # resolver sees what the world sees, a local cache may still hold yesterday's records.
    nameservers: str = ""
    dns_timeout: float = 5.0  # seconds per lookup, all servers tried

    def __post_init__(self) -> None:
        parse_nameservers(self.nameservers, key="doctor.nameservers")
        if not (math.isfinite(self.dns_timeout) and self.dns_timeout > 0):
            raise ConfigError(f"doctor.dns_timeout must be a number > 0, got {self.dns_timeout}")


def parse_nameservers(text: str, *, key: str = "--nameserver") -> tuple[tuple[str, int], ...]:
    """(address, port) of each comma-separated HOST[:PORT]; ConfigError naming `key` if not."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            out.append(_one(item, key))
    return tuple(out)


def _one(item: str, key: str) -> tuple[str, int]:
    host, port_text = item, ""
    if item.startswith("["):  # [IPv6]:PORT
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(
            f"{key} must be IP addresses with an optional port (HOST[:PORT], IPv6 as "
            f"[ADDR]:PORT, comma-separated), got {item!r}"
        ) from None
    port = DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"{key}: the port in {item!r} must be 1..65535")
        port = int(port_text)
    return address, port
