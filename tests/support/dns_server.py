"""A small authoritative DNS server on 127.0.0.1 (UDP) for tests, answers built with dnspython.

    async with dns_server({("_dmarc.example.com", "TXT"): ['"v=DMARC1; p=none"']}) as ns:
        ... --nameserver {ns.address} ...
        ns.records[("mail.example.com", "MX")] = ["10 feedback-smtp.us-east-1.amazonses.com."]

`records` maps (name, type) to rdata in zone-file form and may change while the server runs.
A name with none of the asked type answers NOERROR with no records (NODATA), an unknown name
NXDOMAIN, a name of `servfail` answers SERVFAIL: each as an authoritative server would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = dict[tuple[str, str], list[str]]
TTL = 60


def txt(text: str) -> str:
    """A TXT value in zone-file form (quoted, split in 255-byte strings as DNS requires)."""
    parts = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


class DnsServer(asyncio.DatagramProtocol):
    """Answers every question from `records`; counts the questions it was asked."""

    def __init__(self, records: Records) -> None:
        self.records: Records = {
            (n.lower().rstrip("."), t.upper()): v for (n, t), v in records.items()
        }
        self.servfail: set[str] = set()  # names answered with SERVFAIL
        self.asked: list[tuple[str, str]] = []
        self.address = ""
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return  # not DNS: a real server drops it too
        assert self._transport is not None
        self._transport.sendto(self.answer(query).to_wire(), addr)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        values = self.records.get((name, rdtype))
        if values is None and rdtype != "CNAME":
            cname = self.records.get((name, "CNAME"))
            if cname:
                values, rdtype = cname, "CNAME"
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, rdtype, values)
            )
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


@asynccontextmanager
async def dns_server(records: Records | None = None) -> AsyncIterator[DnsServer]:
    """The server on a free UDP port of 127.0.0.1; `address` is HOST:PORT for --nameserver."""
    loop = asyncio.get_running_loop()
    server = DnsServer(records or {})
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        server.address = f"{host}:{port}"
        yield server
    finally:
        transport.close()
