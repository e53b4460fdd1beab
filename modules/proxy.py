"""RDS Proxy in front of the DB: TLS and IAM auth required from clients, the DB secret for proxy -> DB."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Fn, TerraformResourceLifecycle
from constructs import Construct

from modules.bindings import aws
from modules.context import AwsContext
from modules.engine import DEFAULT_ENGINE_VERSION, EngineVersion
from modules.logs import log_group
from modules.policy import policy_document, service_assume_role
from modules.pool_rules import ConnectionPoolRules

DEFAULT_TARGET_GROUP = "default"
# The provider's aws_db_proxy defaults (create/update 30m, delete 60m) are known to be too short for RDS Proxy:
# deletes past 60 m, https://github.com/cloudposse/terraform-aws-rds-db-proxy/releases (v1.1.0) and
# https://github.com/hashicorp/terraform-provider-aws/pull/15537 (which had to raise the delete default).
PROXY_TIMEOUTS = {"create": "60m", "update": "60m", "delete": "90m"}


@dataclass(frozen=True)
class ProxyProps:
    name_prefix: str
    """The proxy is ``<name_prefix>-proxy``; its role ``<name_prefix>-proxy-secrets``."""
    ctx: AwsContext
    subnet_ids: list[str]
    """At least two subnets in distinct AZs (RDS Proxy requirement)."""
    security_group_id: str
    secret_arn: str
    """The DB credentials the proxy logs in with (the only secret its role may read)."""
    kms_key_arn: str
    """Key of that secret (decrypt only via Secrets Manager) and of the proxy's log group."""
    db_instance_identifier: str
    """The target registered in the default target group."""
    pool: ConnectionPoolRules = ConnectionPoolRules()
    """Pool settings; default: AWS's (100 % of max_connections, 50 % idle, 120 s borrow, 1800 s idle client)."""
    engine_version: EngineVersion = EngineVersion(DEFAULT_ENGINE_VERSION)
    """Chooses the client password auth type (caching_sha2_password on 8.4)."""
    debug_logging: bool = False
    """Logs SQL text; debugging only."""
    log_retention_days: int = 365


class DatabaseProxy(Construct):
    """The proxy, its role (reads only the DB secret), its log group, and the default target group with the pool."""

    def __init__(self, scope: Construct, id_: str, props: ProxyProps):
        super().__init__(scope, id_)
        self._ctx = props.ctx
        self.name = name = f"{props.name_prefix}-proxy"
        self.role = role = aws("iam_role").IamRole(
            self,
            "role",
            name=f"{name}-secrets",
            assume_role_policy=service_assume_role(
                self,
                "trust",
                "rds.amazonaws.com",
                [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [props.ctx.account_id]}],
            ),
        )
        aws("iam_role_policy").IamRolePolicy(
            self,
            "read-secret",
            name="read-db-secret",
            role=role.id,
            policy=policy_document(
                self,
                "read-secret-permissions",
                [
                    {
                        "sid": "ReadTheDbSecretOnly",
                        "actions": ["secretsmanager:GetSecretValue"],
                        "resources": [props.secret_arn],
                    },
                    {
                        "sid": "DecryptOnlyThroughSecretsManager",
                        "actions": ["kms:Decrypt"],
                        "resources": [props.kms_key_arn],
                        "condition": [
                            {
                                "test": "StringEquals",
                                "variable": "kms:ViaService",
                                "values": [f"secretsmanager.{props.ctx.region}.amazonaws.com"],
                            }
                        ],
                    },
                ],
            ),
        )
        # RDS Proxy logs to this group; created first so it has our retention and key, not the defaults.
        self.log_group = log_group(
            self,
            "log-group",
            name=f"/aws/rds/proxy/{name}",
            retention_days=props.log_retention_days,
            kms_key_arn=props.kms_key_arn,
        )

        pool = props.pool
        db_proxy = aws("db_proxy")
        self.proxy = db_proxy.DbProxy(
            self,
            "proxy",
            name=name,
            engine_family="MYSQL",
            require_tls=True,
            idle_client_timeout=pool.idle_client_timeout,
            debug_logging=props.debug_logging,
            role_arn=role.arn,
            vpc_subnet_ids=props.subnet_ids,
            vpc_security_group_ids=[props.security_group_id],
            auth=[
                db_proxy.DbProxyAuth(
                    auth_scheme="SECRETS",
                    iam_auth="REQUIRED",
                    secret_arn=props.secret_arn,
                    client_password_auth_type=props.engine_version.client_password_auth_type,
                    description="DB master credentials managed by RDS",
                )
            ],
            timeouts=db_proxy.DbProxyTimeouts(**PROXY_TIMEOUTS),
            depends_on=[self.log_group],
        )

        # A replaced proxy comes up with an empty default target group: replace the group (pool settings) and
        # the target (the DB registration) in the same plan, or the new proxy has no DB and AWS's pool defaults.
        replace_with_proxy = [f"{self.proxy.terraform_resource_type}.{self.proxy.friendly_unique_id}.id"]
        target_group = aws("db_proxy_default_target_group")
        self.target_group = target_group.DbProxyDefaultTargetGroup(
            self,
            "default-target-group",
            db_proxy_name=self.proxy.name,
            connection_pool_config=target_group.DbProxyDefaultTargetGroupConnectionPoolConfig(**_pool_config(pool)),
            lifecycle=TerraformResourceLifecycle(
                replace_triggered_by=replace_with_proxy, ignore_changes=_unclearable(pool) or None
            ),
        )
        self.target = aws("db_proxy_target").DbProxyTarget(
            self,
            "target",
            db_proxy_name=self.proxy.name,
            target_group_name=self.target_group.name,
            db_instance_identifier=props.db_instance_identifier,
            lifecycle=TerraformResourceLifecycle(replace_triggered_by=replace_with_proxy),
        )

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def arn(self) -> str:
        return self.proxy.arn

    @property
    def resource_id(self) -> str:
        """The proxy's ``prx-...`` id: the last field of its ARN, which ``rds-db:connect`` ARNs use."""
        return Fn.element(Fn.split(":", self.proxy.arn), 6)

    def connect_statement(self, db_user: str) -> dict:
        """Policy statement allowing IAM-auth connections through this proxy as one DB user only."""
        return {
            "sid": "ConnectThroughProxyAsOneUser",
            "actions": ["rds-db:connect"],
            "resources": [self._ctx.arn("rds-db", f"dbuser:{self.resource_id}/{db_user}")],
        }

    def grant_connect(self, role, db_user: str) -> None:
        """Let ``role`` connect through this proxy as ``db_user`` (like AWS CDK's DatabaseProxy.grant_connect)."""
        aws("iam_role_policy").IamRolePolicy(
            self,
            f"connect-{db_user}",
            name=f"rds-db-connect-{db_user}",
            role=role.id,
            policy=policy_document(self, f"connect-{db_user}-permissions", [self.connect_statement(db_user)]),
        )


def _pool_config(pool: ConnectionPoolRules) -> dict:
    config = {
        "max_connections_percent": pool.max_connections_percent,
        "max_idle_connections_percent": pool.max_idle_connections_percent,
        "connection_borrow_timeout": pool.connection_borrow_timeout,
        "session_pinning_filters": list(pool.session_pinning_filters),
    }
    if pool.init_query is not None:
        config["init_query"] = pool.init_query
    return config


def _unclearable(pool: ConnectionPoolRules) -> list[str]:
    """Pool fields the provider cannot clear once set (terraform-provider-aws #49875: it omits an empty
    ``InitQuery``/``SessionPinningFilters`` from ModifyDBProxyTargetGroup, a partial update, so removing them
    never applies and every plan shows the same update). Ignoring them while unset keeps plans clean; clearing an
    old value takes ``aws rds modify-db-proxy-target-group --target-group-name default --db-proxy-name NAME
    --connection-pool-config 'InitQuery=""'`` (verified in #49876)."""
    fields = []
    if pool.init_query is None:
        fields.append("connection_pool_config[0].init_query")
    if not pool.session_pinning_filters:
        fields.append("connection_pool_config[0].session_pinning_filters")
    return fields
