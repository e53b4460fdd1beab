"""The local CA: created once, keys 0600, server certificates reused while valid, verified by real TLS clients."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.data_plane.auth.hostnames import normalize_hostnames
from local.data_plane.auth.local_ca import LocalCa, LocalCaSettings
from modules.validation import SettingsError
from tests.local.data_plane.auth.auth_support import ENDPOINT

NAMES = (ENDPOINT, "localhost", "127.0.0.1")


@pytest.fixture
def ca(tmp_path: Path) -> LocalCa:
    return LocalCa(LocalCaSettings(directory=tmp_path / "ca"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_created_once_with_private_keys(ca: LocalCa, tmp_path: Path) -> None:
    certificate = ca.server_certificate(NAMES)
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert _mode(certificate.key_path) == 0o600
    assert _mode(tmp_path / "ca") == 0o700
    again = LocalCa(LocalCaSettings(directory=tmp_path / "ca"))
    assert again.ca_bundle_path.read_bytes() == ca.ca_bundle_path.read_bytes()


def test_server_certificate_is_reused_while_valid_and_reissued_otherwise(ca: LocalCa) -> None:
    first = ca.server_certificate(NAMES)
    pem = first.cert_path.read_bytes()
    assert ca.server_certificate(reversed(NAMES)).cert_path.read_bytes() == pem  # same names, any order
    assert ca.server_certificate(NAMES).not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=80)
    near_expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=85)  # inside the 7-day renewal window
    renewed = ca.server_certificate(NAMES, now=near_expiry)
    assert renewed.cert_path == first.cert_path and renewed.cert_path.read_bytes() != pem
    other = ca.server_certificate(["other.example"])
    assert other.cert_path != first.cert_path


def test_certificate_from_a_replaced_ca_is_not_reused(tmp_path: Path) -> None:
    ca = LocalCa(LocalCaSettings(directory=tmp_path / "ca"))
    pem = ca.server_certificate(NAMES).cert_path.read_bytes()
    (tmp_path / "ca" / "ca.pem").unlink()
    (tmp_path / "ca" / "ca.key").unlink()
    replaced = LocalCa(LocalCaSettings(directory=tmp_path / "ca"))
    assert replaced.server_certificate(NAMES).cert_path.read_bytes() != pem


@pytest.fixture
def tls_server(ca: LocalCa) -> Iterator[tuple[int, list[str]]]:
    """A loopback TLS server with the CA's context; records each handshake's outcome."""
    context = ca.server_ssl_context(NAMES)
    listener = socket.create_server(("127.0.0.1", 0))
    outcomes: list[str] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with raw:
                try:
                    with context.wrap_socket(raw, server_side=True) as tls:
                        outcomes.append(str(tls.version()))
                        tls.sendall(b"hello")
                except (ssl.SSLError, OSError) as exc:
                    outcomes.append(type(exc).__name__)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], outcomes
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    listener.close()
    thread.join(5)
    assert not thread.is_alive()


def _client(ca: LocalCa, port: int, server_hostname: str, **options: object) -> bytes:
    context = ssl.create_default_context(cafile=str(ca.ca_bundle_path))
    for name, value in options.items():
        setattr(context, name, value)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(5)


@pytest.mark.parametrize("hostname", NAMES)
def test_client_verifies_the_certificate_for_each_name(ca: LocalCa, tls_server, hostname: str) -> None:
    port, outcomes = tls_server
    assert _client(ca, port, hostname) == b"hello"
    assert outcomes[-1] in ("TLSv1.2", "TLSv1.3")


def test_another_host_name_fails_verification(ca: LocalCa, tls_server) -> None:
    port, _ = tls_server
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _client(ca, port, "sms-other-proxy.proxy-abcdefghijkl.ap-northeast-1.rds.amazonaws.com")


def test_a_client_without_the_bundle_fails_verification(ca: LocalCa, tls_server) -> None:
    port, _ = tls_server
    context = ssl.create_default_context()  # system roots only
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=ENDPOINT)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_server_refuses_tls_below_1_2(ca: LocalCa, tls_server) -> None:
    port, outcomes = tls_server
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _client(
            ca, port, ENDPOINT, minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED, maximum_version=ssl.TLSVersion.TLSv1_1
        )
    assert ca.server_ssl_context(NAMES).minimum_version == ssl.TLSVersion.TLSv1_2


def test_settings_and_host_names_are_validated(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cert_validity_days=0: allowed an integer from 1 to 397"):
        LocalCaSettings(directory=tmp_path, cert_validity_days=0)
    with pytest.raises(SettingsError, match="renew_before_days=30: allowed an integer from 0 to 29"):
        LocalCaSettings(directory=tmp_path, cert_validity_days=30, renew_before_days=30)
    with pytest.raises(SettingsError, match="hostnames"):
        normalize_hostnames(["bad_name.example"])
    with pytest.raises(SettingsError, match="at least one"):
        normalize_hostnames([])
    assert normalize_hostnames(["LocalHost.", "::1", "localhost"]) == ("localhost", "::1")
