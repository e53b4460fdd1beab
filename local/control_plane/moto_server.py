"""Run moto's server with the compatibility fixes this project needs.

`local.control_plane.emulator.Emulator` starts this module in its own process
(`python -m local.control_plane.moto_server --host 127.0.0.1 --port N`); the fixes are applied
in that process only, before moto's own `moto.server.main` serves requests.
Every fix is small, targets moto 5.2.5 and is explained in `local/control_plane/EMULATOR.md`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from local.control_plane import credential_lookup

TESTED_MOTO_VERSION = "5.2.5"

#: Error code returned for calls moto does not implement. Not an AWS code, so
#: the AWS SDK in the Terraform provider treats it as final (no retries).
NOT_IMPLEMENTED_CODE = "NotImplementedByLocalEmulator"

RENAME_DB_PROXY_MESSAGE = (
    "ModifyDBProxy with NewDBProxyName (renaming an aws_db_proxy) is not emulated by the local AWS emulator: "
    "destroy and re-deploy the local stack, or apply the rename against real AWS."
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
    """Fix (b): ModifyDBProxy changes a proxy in place, as RDS does.

    moto has no ModifyDBProxy (HTTP 500, retried by the provider until its timeout), so no in-place change of an
    `aws_db_proxy` could apply: not adding an ``auth`` block for a new DB user (upgrading a deployed stack), not
    ``require_tls``, ``idle_client_timeout``, ``debug_logging``, the role or the security groups. Each parameter
    sent replaces the stored value (``Auth`` is the full new list, as the provider sends it). A rename is refused
    with a clear, final error: the endpoint name derives from the proxy name, which the emulator cannot change.
    """
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.rds.exceptions import DBProxyNotFoundFault
    from moto.rds.responses import RDSResponse

    def modify_db_proxy(self: RDSResponse) -> Any:
        params = self.params
        name = params["DBProxyName"]
        proxy = self.backend.db_proxies.get(name)
        if proxy is None:
            raise DBProxyNotFoundFault(name)
        if params.get("NewDBProxyName", name) != name:
            raise _not_implemented_error(RENAME_DB_PROXY_MESSAGE)
        for parameter, attribute in (
            ("Auth", "auth"),
            ("RequireTLS", "require_tls"),
            ("DebugLogging", "debug_logging"),
            ("RoleArn", "role_arn"),
            ("SecurityGroups", "vpc_security_group_ids"),
        ):
            if parameter in params:
                setattr(proxy, attribute, params[parameter])
        if "IdleClientTimeout" in params:
            proxy.idle_client_timeout = min(max(int(params["IdleClientTimeout"]), 1), 28800)  # as RDS clamps
        proxy.updated_date = utcnow()
        return ActionResult({"DBProxy": proxy})

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


def patch_apigatewayv2_update_stage() -> None:
    """Fix (h): UpdateStage of an HTTP API changes the stage in place.

    moto 5.2.5 has CreateStage but no UpdateStage, so any change of an `aws_apigatewayv2_stage` (throttling in
    ``default_route_settings``, access logs, auto-deploy) fails. Like API Gateway, each field sent replaces the
    stored one; ``defaultRouteSettings`` replaces the whole block (the provider always sends all of it).
    """
    import json
    from datetime import datetime
    from urllib.parse import unquote

    from moto.apigatewayv2.responses import ApiGatewayV2Response

    fields = {
        "accessLogSettings": "access_log_settings",
        "autoDeploy": "auto_deploy",
        "clientCertificateId": "client_certificate_id",
        "description": "description",
        "routeSettings": "route_settings",
        "stageVariables": "stage_variables",
    }

    def update_stage(self: ApiGatewayV2Response) -> Any:
        api_id = self.path.split("/")[-3]
        stage = self.apigatewayv2_backend.get_stage(api_id, unquote(self.path.split("/")[-1]))
        body = json.loads(self.body or "{}")
        for key, attribute in fields.items():
            if key in body:
                setattr(stage, attribute, body[key])
        if "defaultRouteSettings" in body:
            stage.default_route_settings = {"detailedMetricsEnabled": False, **body["defaultRouteSettings"]}
        stage.updated = datetime.now()
        return 200, {}, json.dumps(stage.to_json())

    ApiGatewayV2Response.update_stage = update_stage  # type: ignore[attr-defined]


def patch_random_password_source() -> None:
    """Fix (i): GetRandomPassword draws from the operating system's CSPRNG.

    moto picks password characters with its own ``random.Random`` (Mersenne Twister), which anyone can make
    reproducible through ``POST /moto-api/seed``; the application user's password comes from this call. The
    password module's generator becomes ``secrets.SystemRandom`` (moto uses that module's generator for nothing
    else), so the seed no longer decides passwords.
    """
    import secrets

    from moto.secretsmanager import utils

    utils.random = secrets.SystemRandom()  # type: ignore[attr-defined]


def _fix_rds_models() -> None:
    patch_db_parameter_source()
    patch_master_user_secret()
    patch_modify_db_subnet_group()


def apply_patches() -> None:
    """Install every fix, once per process, before the server starts: each applies when its moto module loads."""
    import moto

    if moto.__version__ != TESTED_MOTO_VERSION:
        print(
            f"warning: the emulator fixes were written for moto {TESTED_MOTO_VERSION}, found "
            f"{moto.__version__}; run tests/local/control_plane/test_emulator.py to check them",
            file=sys.stderr,
        )
    # Our error code is not in the services' models; moto warns about that on every such answer.
    warnings.filterwarnings("ignore", message=rf"Exception\({NOT_IMPLEMENTED_CODE}\)")
    patch_after_import(
        {
            "moto.core.responses": patch_unimplemented_actions,
            "moto.ec2.models.security_groups": patch_security_group_rule_description,
            "moto.rds.responses": patch_modify_db_proxy,
            "moto.rds.models": _fix_rds_models,
            "moto.awslambda.models": patch_lambda_logging_config,
            "moto.apigatewayv2.responses": patch_apigatewayv2_update_stage,
            "moto.secretsmanager.utils": patch_random_password_source,
        }
    )
    credential_lookup.install()  # the key lookup RDS Proxy's IAM check needs (local/common/emulator_credentials.py)


def patch_after_import(fixes: dict[str, Callable[[], object]]) -> None:
    """Apply each fix as soon as moto has imported the module it changes (at once if it already has).

    moto's server imports a service's models on that service's first request, so an emulator used only for IAM,
    STS and Secrets Manager never pays for importing EC2 or RDS (about 0.4 s of CPU per start).
    """
    pending = {name: fix for name, fix in fixes.items() if name not in sys.modules}
    for name, fix in fixes.items():
        if name in sys.modules:
            fix()
    if pending:
        sys.meta_path.insert(0, _FixAfterImport(pending))


class _FixAfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, fixes: dict[str, Callable[[], object]]):
        self._fixes = fixes

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        fix = self._fixes.pop(fullname, None)
        if fix is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot find {fullname} to apply its emulator fix")
        spec.loader = _ThenFix(spec.loader, fix)
        return spec


class _ThenFix(importlib.abc.Loader):
    """The module's own loader, then the fix; everything else (resources, source) is the own loader's."""

    def __init__(self, loader: importlib.abc.Loader, fix: Callable[[], object]):
        self._loader, self._fix = loader, fix

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        self._fix()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def main(argv: list[str] | None = None) -> None:
    for name, value in SERVER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    apply_patches()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
