"""Run moto's server with the compatibility fixes this project needs.

`local.control_plane.emulator.Emulator` starts this module in its own process
(`python -m local.control_plane.moto_server --host 127.0.0.1 --port N`); the fixes are applied
in that process only, before moto's own `moto.server.main` serves requests.
Every fix is small, targets moto 5.2.5 and is explained in `local/control_plane/EMULATOR.md`.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from local.control_plane import credential_lookup

TESTED_MOTO_VERSION = "5.2.5"

#: Error code returned for calls moto does not implement. Not an AWS code, so
#: the AWS SDK in the Terraform provider treats it as final (no retries).
NOT_IMPLEMENTED_CODE = "NotImplementedByLocalEmulator"

MODIFY_DB_PROXY_MESSAGE = (
    "ModifyDBProxy is not implemented by the local AWS emulator (moto), so an "
    "in-place change of an aws_db_proxy (e.g. require_tls, idle_client_timeout, "
    "auth, debug_logging) cannot be applied locally. Destroy and re-deploy the "
    "local stack (python -m local destroy && python -m local deploy), or apply "
    "the change against real AWS."
)

# Environment the server needs; set here too so that running this module by
# hand behaves like the launcher.
SERVER_ENVIRONMENT = {
    # Without it, attaching AWS managed policies (AWSLambdaVPCAccessExecutionRole)
    # fails with NoSuchEntity.
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
}


def _not_implemented_error(message: str) -> Exception:
    """A serializable moto error with our code, for any service.

    Defined outside moto's packages on purpose: moto looks up an extra error
    model from the exception's module name, which must not be `moto.core`.
    """
    from moto.core.exceptions import ServiceException

    class NotImplementedByLocalEmulator(ServiceException):
        code = NOT_IMPLEMENTED_CODE

    return NotImplementedByLocalEmulator(message)


def patch_security_group_rule_description() -> None:
    """Fix (a): keep the description of rules that reference another SG.

    moto stores such a rule's description in `source_group`, but
    `SecurityGroupRule.description` (used by DescribeSecurityGroupRules) only
    reads `ip_range`, so `aws_vpc_security_group_*_rule` resources with
    `referenced_security_group_id` drift forever.
    """
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self: SecurityGroupRule) -> str | None:
        return self.ip_range.get("Description") or self.source_group.get("Description")

    SecurityGroupRule.description = property(description)  # type: ignore[assignment,method-assign]


def patch_modify_db_proxy() -> None:
    """Fix (b): answer ModifyDBProxy with a clear, final 400 error.

    moto has no ModifyDBProxy; without this the call ends in an HTTP 500, which
    the provider retries until its timeout instead of saying what is missing.
    """
    from moto.rds.responses import RDSResponse

    def modify_db_proxy(self: RDSResponse) -> Any:
        raise _not_implemented_error(MODIFY_DB_PROXY_MESSAGE)

    RDSResponse.modify_db_proxy = modify_db_proxy  # type: ignore[attr-defined]


def patch_unimplemented_actions() -> None:
    """Fix (c): any other unimplemented action fails fast with a clear 400.

    moto raises NotImplementedError for actions it does not know, which the
    server turns into an HTTP 500 with a traceback; the AWS SDK retries 500s.
    A 400 with a named code stops the retries and names the missing call.
    """
    from moto.core.responses import ActionResult, BaseResponse

    original = BaseResponse.call_action

    def call_action(self: BaseResponse) -> Any:
        try:
            return original(self)
        except NotImplementedError as error:
            service = getattr(self, "service_name", None) or "unknown service"
            message = (
                f"{error} in the local AWS emulator (moto, service {service}); "
                "whatever needs this call works only against real AWS."
            )
            return self.serialized(ActionResult(_not_implemented_error(message)))

    BaseResponse.call_action = call_action  # type: ignore[method-assign]


def patch_db_parameter_source() -> None:
    """Fix (d): parameters set through ModifyDBParameterGroup have ``Source: user``.

    RDS reports the parameters a user set with ``Source=user``; the provider keeps only those when
    it reads an `aws_db_parameter_group`. moto stores no Source, so every `parameter` block would be
    planned again on each diff.
    """
    from moto.rds.models import DBParameterGroup

    original = DBParameterGroup.update_parameters

    def update_parameters(self: DBParameterGroup, new_parameters: Any) -> None:
        original(self, new_parameters)
        for parameter in self.parameters.values():
            parameter.setdefault("Source", "user")

    DBParameterGroup.update_parameters = update_parameters  # type: ignore[method-assign]


def patch_lambda_logging_config() -> None:
    """Fix (e): Lambda functions keep and report their ``LoggingConfig``.

    moto ignores LoggingConfig on CreateFunction/UpdateFunctionConfiguration and never returns it,
    so a function with `logging_config` (JSON logs into a given log group) drifts on every diff.
    Like AWS, a function without one reports ``Text`` format and ``/aws/lambda/<name>``.
    """
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def __init__(self: LambdaFunction, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.logging_config = dict(spec.get("LoggingConfig") or {})

    def _logging(self: LambdaFunction) -> dict[str, Any]:
        config = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{self.function_name}"}
        config.update(getattr(self, "logging_config", {}))
        return config

    def get_configuration(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original_get(self, *args, **kwargs)
        config["LoggingConfig"] = _logging(self)
        return config

    def update_configuration(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "LoggingConfig" in config_updates:
            self.logging_config = dict(config_updates["LoggingConfig"] or {})
        return original_update(self, config_updates)

    LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]


def patch_master_user_secret() -> None:
    """Fix (f): an RDS-managed master secret holds the instance's master user and a random password.

    RDS generates the password of ``manage_master_user_password`` into a Secrets Manager secret whose
    ``username`` is the instance's master user. moto writes a fixed ``admin`` / ``P@55w0rd!`` into every such
    secret, so the local DB instance, which takes its credentials from that secret, would run with a known
    password under a user name the stack never asked for.
    """
    import json
    import secrets

    from moto.rds.models import MasterUserSecret

    def _generate_secret_string(self: MasterUserSecret) -> str:
        username = getattr(self.resource, "master_username", None) or "admin"
        return json.dumps({"username": username, "password": secrets.token_urlsafe(24)})

    MasterUserSecret._generate_secret_string = _generate_secret_string  # type: ignore[method-assign]


def patch_modify_db_subnet_group() -> None:
    """Fix (g): ``ModifyDBSubnetGroup`` keeps the subnet group.

    moto pops the group out of its registry to modify it and never puts it back, so changing a DB subnet
    (a replacement of the proxy and its target) ends with "Root object was present, but now absent".
    """
    from moto.rds.models import RDSBackend

    original = RDSBackend.modify_db_subnet_group

    def modify_db_subnet_group(self: RDSBackend, subnet_name: str, description: str, subnets: Any) -> Any:
        group = original(self, subnet_name, description, subnets)
        self.subnet_groups[subnet_name] = group
        return group

    RDSBackend.modify_db_subnet_group = modify_db_subnet_group  # type: ignore[method-assign]


def apply_patches() -> None:
    """Apply every fix, once per process, before the server starts."""
    import moto

    if moto.__version__ != TESTED_MOTO_VERSION:
        print(
            f"warning: the emulator fixes were written for moto {TESTED_MOTO_VERSION}, found "
            f"{moto.__version__}; run tests/test_emulator.py to check them",
            file=sys.stderr,
        )
    # Our error code is not in the services' models; moto warns about that on every such answer.
    warnings.filterwarnings("ignore", message=rf"Exception\({NOT_IMPLEMENTED_CODE}\)")
    patch_security_group_rule_description()
    patch_modify_db_proxy()
    patch_unimplemented_actions()
    patch_db_parameter_source()
    patch_lambda_logging_config()
    patch_master_user_secret()
    patch_modify_db_subnet_group()
    credential_lookup.install()  # the key lookup RDS Proxy's IAM check needs (local/common/emulator_credentials.py)


def main(argv: list[str] | None = None) -> None:
    for name, value in SERVER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    apply_patches()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
