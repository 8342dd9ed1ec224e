"""The certificate a door serves TLS with: the configured PEM files, or a self-signed one made
once under the data directory and reused on every restart (its SHA-256 fingerprint is logged so
a client can pin it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dispatcher.errors import ConfigError

__all__ = ["ServerCert", "self_signed_pem", "server_cert"]

SELF_SIGNED_NAME = "smtp-selfsigned.pem"  # key and certificate in one file, made atomically
VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class ServerCert:
    """A server-side TLS context and what identifies its certificate."""

    context: ssl.SSLContext
    cert_file: Path
    fingerprint: str  # SHA-256 of the DER certificate, colon-separated hex
    self_signed: bool


def self_signed_pem(hostname: str, *, loopback: bool = True) -> bytes:
    """A new EC P-256 key and a certificate for `hostname` (and, with `loopback`, localhost,
    127.0.0.1 and ::1), as PEM: the key first."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if loopback:
        alt += [x509.DNSName("localhost")] if hostname != "localhost" else []
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


def _ensure_self_signed(path: Path) -> bool:
    """Make the self-signed PEM at `path` unless it exists; True if made now.

    Written to a private temporary file and hard-linked into place, so concurrent children of
    `run --processes` all end up with the same, complete file (the first link wins)."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(self_signed_pem(socket.gethostname()))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _fingerprint(cert_file: Path) -> str:
    pem = cert_file.read_bytes()
    start = pem.index(b"-----BEGIN CERTIFICATE-----")
    der = ssl.PEM_cert_to_DER_cert(pem[start:].decode("ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_cert(
    section: str, cert: Path | None, key: Path | None, data_dir: Path
) -> tuple[ServerCert, bool]:
    """The TLS context for a door (and whether a self-signed certificate was made just now);
    ConfigError naming the section's settings when the files cannot be used."""
    made = False
    generated = cert is None or key is None
    if cert is None or key is None:
        cert = key = data_dir / SELF_SIGNED_NAME
        try:
            made = _ensure_self_signed(cert)
        except OSError as exc:
            raise ConfigError(
                f"{section}: cannot make a self-signed certificate at {cert}: "
                f"{exc.strerror or exc}; set {section}.tls_cert and {section}.tls_key"
            ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        fingerprint = _fingerprint(cert)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{section}: cannot load the certificate {cert} with the key {key}: {exc}; give PEM "
            f"files in {section}.tls_cert and {section}.tls_key (or neither, for a self-signed one)"
        ) from None
    return ServerCert(context, cert, fingerprint, self_signed=generated), made
