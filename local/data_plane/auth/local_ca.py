"""A local certificate authority, so the function verifies the proxy stand-in's certificate as it does in AWS.

RDS Proxy presents a certificate for its endpoint name signed by an Amazon root the function trusts
(``DB_SSL_CA``). Locally the CA is created once under ``.local/ca`` (keys 0600) with trustme, a maintained
library built on ``cryptography``; server certificates for the deployed endpoint name (plus loopback names)
are issued from it and reused while valid, so repeated runs keep one CA bundle the containers can trust.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from local.common.local_target import local_state_dir
from modules.validation import check_range

from .hostnames import normalize_hostnames

_CA_CERT, _CA_KEY, _LOCK = "ca.pem", "ca.key", ".lock"


def default_ca_dir() -> Path:
    return local_state_dir() / "ca"


@dataclass(frozen=True)
class LocalCaSettings:
    """Where the CA lives and how long the server certificates it issues last."""

    directory: Path = field(default_factory=default_ca_dir)
    cert_validity_days: int = 90
    """Lifetime of an issued server certificate (browsers' and RDS's limit is 397 days)."""
    renew_before_days: int = 7
    """A certificate expiring within this many days is reissued instead of reused."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        check_range("cert_validity_days", self.cert_validity_days, 1, 397)
        check_range("renew_before_days", self.renew_before_days, 0, self.cert_validity_days - 1)


@dataclass(frozen=True)
class ServerCertificate:
    """An issued server certificate on disk (key file 0600)."""

    cert_path: Path
    key_path: Path
    hostnames: tuple[str, ...]
    not_after: dt.datetime


class LocalCa:
    """The CA: created on first use, then loaded; issues and caches server certificates."""

    def __init__(self, settings: LocalCaSettings | None = None) -> None:
        self.settings = settings or LocalCaSettings()
        self.directory = self.settings.directory
        self._ca = self._load_or_create()
        self._ca_cert = x509.load_pem_x509_certificate(self.ca_bundle_path.read_bytes())

    @property
    def ca_bundle_path(self) -> Path:
        """The PEM bundle clients trust (the function's ``DB_SSL_CA``)."""
        return self.directory / _CA_CERT

    def server_certificate(self, hostnames: Iterable[str], now: dt.datetime | None = None) -> ServerCertificate:
        """A certificate for exactly these host names: the one on disk while valid, else a new one."""
        names = normalize_hostnames(hostnames)
        now = now or dt.datetime.now(dt.UTC)
        digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        cert_path, key_path = self.directory / f"server-{digest}.pem", self.directory / f"server-{digest}.key"
        with self._locked():
            existing = self._reusable(cert_path, key_path, names, now)
            if existing is not None:
                return existing
            not_after = now + dt.timedelta(days=self.settings.cert_validity_days)
            leaf = self._ca.issue_cert(*names, not_before=now - dt.timedelta(minutes=5), not_after=not_after)
            _write(key_path, leaf.private_key_pem.bytes(), 0o600)
            _write(cert_path, b"".join(blob.bytes() for blob in leaf.cert_chain_pems), 0o644)
        return ServerCertificate(cert_path, key_path, names, not_after.replace(microsecond=0))

    def server_ssl_context(self, hostnames: Iterable[str]) -> ssl.SSLContext:
        """Server-side TLS 1.2+ context presenting the certificate for ``hostnames``."""
        certificate = self.server_certificate(hostnames)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        return context

    # -- internals --------------------------------------------------------------------------------
    def _load_or_create(self) -> trustme.CA:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            cert, key = self.directory / _CA_CERT, self.directory / _CA_KEY
            if cert.is_file() and key.is_file():
                return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
            ca = trustme.CA(organization_name="serverless-mysql-stack local CA")
            _write(key, ca.private_key_pem.bytes(), 0o600)
            _write(cert, ca.cert_pem.bytes(), 0o644)
            return ca

    def _reusable(
        self, cert_path: Path, key_path: Path, names: tuple[str, ...], now: dt.datetime
    ) -> ServerCertificate | None:
        if not (cert_path.is_file() and key_path.is_file()):
            return None
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            cert.verify_directly_issued_by(self._ca_cert)  # issued by this CA (not a replaced one)
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
            return None
        covered = {str(v).lower() for v in sans.get_values_for_type(x509.DNSName)}
        covered |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
        renew_at = cert.not_valid_after_utc - dt.timedelta(days=self.settings.renew_before_days)
        if not set(names) <= covered or not cert.not_valid_before_utc <= now < renew_at:
            return None
        return ServerCertificate(cert_path, key_path, names, cert.not_valid_after_utc)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise creation across processes (the proxy and the plane may start together)."""
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final mode from the start (a key is never world-readable, even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
