"""What the stand-in sets up once at start for RDS Proxy's client-side security: TLS and IAM auth.

- TLS: a server certificate from the local CA for the deployed endpoint name and loopback (the function
  verifies it against ``DB_SSL_CA``, as it verifies RDS Proxy's certificate in AWS).
- IAM: ``auth.IamAuthenticator`` built from the deployed Terraform state (endpoint, role policies).

The database side (the accounts' credentials, secrets read through the emulator) is ``accounts``'s. The ``auth``
package (and so moto, trustme, botocore) is imported only when TLS or IAM is configured.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ProxyConfig
from .tls_stream import remember_server_name

if TYPE_CHECKING:
    from local.data_plane.auth.authenticator import IamAuthenticator

LOOPBACK_NAMES = ("localhost", "127.0.0.1")


class ProxyStartError(RuntimeError):
    """The stand-in cannot start as configured; the message names the setting and the cause (never a secret)."""


@dataclass(frozen=True)
class ClientSecurity:
    """How clients must log in: the TLS context (None: TLS not offered), the IAM checker (None: password mode)."""

    tls: ssl.SSLContext | None = None
    iam: IamAuthenticator | None = None
    tls_required: bool = False


def client_security(config: ProxyConfig) -> ClientSecurity:
    """Build the TLS context and IAM authenticator ``config`` asks for; ProxyStartError if it cannot."""
    if not config.tls_offered:
        return ClientSecurity()
    try:
        from local.data_plane.auth.local_ca import LocalCa, LocalCaSettings

        ca_settings = LocalCaSettings(directory=Path(config.ca_dir)) if config.ca_dir else LocalCaSettings()
        iam = _authenticator(config, ca_settings) if config.iam_auth else None
        context = (
            iam.server_ssl_context() if iam is not None else LocalCa(ca_settings).server_ssl_context(LOOPBACK_NAMES)
        )
    except ProxyStartError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # SettingsError is a ValueError
        raise ProxyStartError(f"cannot set up TLS with the local CA in {config.ca_dir or '.local/ca'}: {exc}") from None
    context.sni_callback = remember_server_name
    return ClientSecurity(tls=context, iam=iam, tls_required=config.tls_required)


def _authenticator(config: ProxyConfig, ca_settings) -> IamAuthenticator:
    """IAM auth as deployed; keys the emulator issued are checked through ``secrets_endpoint`` (the emulator)."""
    from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings
    from local.data_plane.auth.credentials import IssuerSettings
    from local.data_plane.auth.emulator_principals import EmulatorPrincipalSettings

    issuer = IssuerSettings(key_path=Path(config.issuer_key_path)) if config.issuer_key_path else IssuerSettings()
    try:
        emulator = EmulatorPrincipalSettings(config.secrets_endpoint) if config.secrets_endpoint else None
        settings = IamAuthSettings.from_state_file(
            Path(config.iam_state_file),
            ca=ca_settings,
            issuer=issuer,
            local_port=config.listen_port or None,
            emulator=emulator,
        )
        return IamAuthenticator(settings)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProxyStartError(
            f"iam_state_file={config.iam_state_file!r}: cannot set up IAM auth from this Terraform state: {exc}"
        ) from None
