"""RDS Proxy in front of the DB: TLS and IAM auth required from clients, the DB secret for proxy -> DB."""

from __future__ import annotations

from cdktf import Fn
from constructs import Construct

from modules.bindings import aws
from modules.context import AwsContext
from modules.policy import policy_document, service_assume_role
from modules.settings import StackSettings


class DatabaseProxy(Construct):
    """The proxy, its role (reads only the DB secret), and the default target group with the pool settings."""

    def __init__(self, scope: Construct, id_: str, *, settings: StackSettings, ctx: AwsContext,
                 subnet_ids: list[str], security_group_id: str, secret_arn: str, kms_key_arn: str,
                 db_instance_identifier: str):
        super().__init__(scope, id_)
        self._ctx = ctx
        name = f"{settings.name_prefix}-proxy"
        role = aws("iam_role").IamRole(
            self, "role", name=f"{name}-secrets",
            assume_role_policy=service_assume_role(
                self, "trust", "rds.amazonaws.com",
                [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [ctx.account_id]}]))
        aws("iam_role_policy").IamRolePolicy(
            self, "read-secret", name="read-db-secret", role=role.id,
            policy=policy_document(self, "read-secret-permissions", [
                {"sid": "ReadTheDbSecretOnly", "actions": ["secretsmanager:GetSecretValue"],
                 "resources": [secret_arn]},
                {"sid": "DecryptOnlyThroughSecretsManager", "actions": ["kms:Decrypt"],
                 "resources": [kms_key_arn],
                 "condition": [{"test": "StringEquals", "variable": "kms:ViaService",
                                "values": [f"secretsmanager.{ctx.region}.amazonaws.com"]}]},
            ]))

        db_proxy = aws("db_proxy")
        self.proxy = db_proxy.DbProxy(
            self, "proxy", name=name, engine_family="MYSQL",
            require_tls=True, idle_client_timeout=settings.idle_client_timeout,
            debug_logging=settings.proxy_debug_logging,
            role_arn=role.arn, vpc_subnet_ids=subnet_ids, vpc_security_group_ids=[security_group_id],
            auth=[db_proxy.DbProxyAuth(auth_scheme="SECRETS", iam_auth="REQUIRED", secret_arn=secret_arn,
                                       description="DB master credentials managed by RDS")])

        pool = {
            "max_connections_percent": settings.max_connections_percent,
            "max_idle_connections_percent": settings.max_idle_connections_percent,
            "connection_borrow_timeout": settings.connection_borrow_timeout,
            "session_pinning_filters": list(settings.session_pinning_filters),
        }
        if settings.init_query is not None:
            pool["init_query"] = settings.init_query
        target_group = aws("db_proxy_default_target_group")
        self.target_group = target_group.DbProxyDefaultTargetGroup(
            self, "default-target-group", db_proxy_name=self.proxy.name,
            connection_pool_config=target_group.DbProxyDefaultTargetGroupConnectionPoolConfig(**pool))
        aws("db_proxy_target").DbProxyTarget(
            self, "target", db_proxy_name=self.proxy.name, target_group_name=self.target_group.name,
            db_instance_identifier=db_instance_identifier)

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def resource_id(self) -> str:
        """The proxy's ``prx-...`` id: the last field of its ARN, which ``rds-db:connect`` ARNs use."""
        return Fn.element(Fn.split(":", self.proxy.arn), 6)

    def connect_statement(self, db_user: str) -> dict:
        """Policy statement allowing IAM-auth connections through this proxy as one DB user only."""
        return {"sid": "ConnectThroughProxyAsOneUser", "actions": ["rds-db:connect"],
                "resources": [self._ctx.arn("rds-db", f"dbuser:{self.resource_id}/{db_user}")]}

    def grant_connect(self, role, db_user: str) -> None:
        """Let ``role`` connect through this proxy as ``db_user`` (like AWS CDK's DatabaseProxy.grant_connect)."""
        aws("iam_role_policy").IamRolePolicy(
            self, f"connect-{db_user}", name=f"rds-db-connect-{db_user}", role=role.id,
            policy=policy_document(self, f"connect-{db_user}-permissions", [self.connect_statement(db_user)]))
