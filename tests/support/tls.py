"""TLS for loopback servers in tests: a self-signed certificate for one host name."""

from __future__ import annotations

import ssl
from pathlib import Path

from dispatcher.doors.tls import self_signed_pem

_CERT = b"-----BEGIN CERTIFICATE-----"


def certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for `name` only (no loopback names),
    and that certificate as a CA bundle file."""
    pem = self_signed_pem(name, loopback=False)
    both = tmp_path / f"{name}.pem"  # the key, then the certificate
    both.write_bytes(pem)
    cert_file = tmp_path / f"{name}.crt"
    cert_file.write_bytes(pem[pem.index(_CERT) :])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(both)
    return context, str(cert_file)
