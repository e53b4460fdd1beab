"""The cloud's client path, locally: the function signs an RDS IAM token and connects over verified TLS.

On AWS the function reaches RDS Proxy at its endpoint name, verifies the proxy's certificate against the CA bundle
of the Lambda image, and logs in with a token signed by its execution role; RDS Proxy admits it if the role's
policies allow ``rds-db:connect``. Locally the deployed environment is kept as it is, with exactly two differences:
the endpoint name resolves to the stand-in on 127.0.0.1 inside the runtime's containers, and ``DB_SSL_CA`` points at
the local CA that issued the stand-in's certificate. Each container gets its own credentials for the deployed role.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from handler import app_contract as env_names
from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings, RuntimeCredentials
from local.data_plane.auth.credentials import IssuerSettings
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.policies import function_role_arn
from local.data_plane.auth.resolver_shim import AddressOverride
from local.data_plane.deployed import DeployedStack

IAM_REQUIRED = "REQUIRED"


def _is_state_file(source: str) -> bool:
    try:
        return json.loads(Path(source).read_text()).get("version") == 4
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class ProductionAuth:
    """IAM auth + TLS for one data plane, built from the deployed Terraform state."""

    stack: DeployedStack
    authenticator: IamAuthenticator
    state_file: Path

    @classmethod
    def for_stack(cls, stack: DeployedStack, local_state_dir: Path | None = None) -> ProductionAuth | None:
        """None when the proxy does not require IAM auth, or when only synthesized settings are known.

        The synthesized config has no ``prx-`` id, role policies or endpoint name: those exist only after apply.
        ``local_state_dir``: where the local CA and the credential issuer's key live (default: the project's).
        """
        if stack.proxy.iam_auth != IAM_REQUIRED or not _is_state_file(stack.source):
            return None
        state_file = Path(stack.source)
        places: dict[str, object] = {}
        if local_state_dir is not None:
            places = {
                "ca": LocalCaSettings(directory=local_state_dir / "ca"),
                "issuer": IssuerSettings(key_path=local_state_dir / "auth" / "issuer.key"),
            }
        return cls(stack, IamAuthenticator(IamAuthSettings.from_state_file(state_file, **places)), state_file)

    @property
    def settings(self) -> IamAuthSettings:
        return self.authenticator.settings

    def proxy_fields(self) -> dict[str, object]:
        """The stand-in's client-side settings: TLS as deployed, IAM tokens checked against the deployed state."""
        return {
            "require_tls": self.stack.proxy.require_tls,
            "iam_state_file": str(self.state_file),
            "ca_dir": str(self.settings.ca.directory),
            "issuer_key_path": str(self.settings.issuer.key_path),
        }

    def function_environment(self) -> tuple[dict[str, str], dict[str, str]]:
        """(the deployed environment with the local CA bundle, what differs from the cloud)."""
        env = dict(self.stack.function.environment)
        env[env_names.DB_SSL_CA] = str(self.authenticator.ca_bundle_path)
        differences = {
            env_names.DB_SSL_CA: f"{self.authenticator.ca_bundle_path} (the local CA, instead of the Lambda image's)",
        }
        return env, differences

    def address_override(self, proxy_port: int) -> AddressOverride:
        return AddressOverride(self.settings.proxy.endpoint, self.settings.port, proxy_port)

    def host_difference(self, proxy_port: int) -> dict[str, str]:
        host = f"{self.settings.proxy.endpoint}:{self.settings.port}"
        return {env_names.DB_HOST: f"{host} resolves to the local stand-in at 127.0.0.1:{proxy_port}"}

    def container_environment(
        self, handler: str = env_names.REQUEST_HANDLER, function_name: str | None = None
    ) -> Callable[[], Mapping[str, str]]:
        """Fresh role credentials for each container of the deployed function whose handler is ``handler``.

        The migrator (``MIGRATOR_HANDLER``) gets its own role's, so it logs in as the master user it may
        ``rds-db:connect`` as, and the request function as the application user.
        """
        state = json.loads(self.state_file.read_text())
        name = function_name or self.stack.function.function_name
        return RuntimeCredentials(self.authenticator.issuer, function_role_arn(state, handler), name).environment

    @property
    def region(self) -> str:
        return self.settings.proxy.region
