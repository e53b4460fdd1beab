"""RDS MySQL (8.4 LTS by default) in private subnets, encrypted, with its master password generated and kept by RDS.

``manage_master_user_password`` makes RDS create the password inside a Secrets Manager secret: Terraform never
sees it, so it is in no code, synthesized JSON, plan or state. RDS Proxy authenticates to the DB with that secret.
"""

from __future__ import annotations

from typing import Self

from cdktf import TerraformResourceLifecycle
from constructs import Construct
from pydantic import model_validator

from modules.bindings import aws
from modules.database_options import DatabaseOptions
from modules.field_types import LogRetention, NamePrefix
from modules.logs import log_group
from modules.props import expect_props, is_unresolved
from modules.suppressions import skip_checks

EXPORTED_LOGS = ("error", "slowquery")
# Both exist under these names in 8.0 and 8.4 (8.4 renamed only replication/inclusive-language parameters).
PARAMETERS = (("slow_query_log", "1"), ("long_query_time", "1"))


class DatabaseProps(DatabaseOptions, LogRetention):
    name_prefix: NamePrefix
    """The instance is ``<name_prefix>-db``; subnet and parameter groups are named after it. Required."""
    subnet_ids: list[str]
    """At least two private subnets in distinct availability zones. Required."""
    security_group_id: str
    """The instance's security group (the proxy's is the only way in). Required."""
    kms_key_arn: str
    """Encrypts storage, the master-user secret and the exported log groups. Required."""

    @model_validator(mode="after")
    def _two_subnets(self) -> Self:
        if not is_unresolved(self.subnet_ids) and len(set(self.subnet_ids)) < 2:
            self.refuse("subnet_ids", "at least two distinct subnet ids (RDS needs two availability zones)")
        return self


class Database(Construct):
    """The instance, its subnet group, its parameter group (slow query log) and the log groups it exports to."""

    def __init__(self, scope: Construct, id_: str, props: DatabaseProps):
        super().__init__(scope, id_)
        expect_props(props, DatabaseProps)
        self.identifier = f"{props.name_prefix}-db"
        engine = props.engine
        # A construct on its own protects its data; a throwaway deployment turns this off explicitly.
        protected = props.deletion_protection is not False
        final_snapshot = props.final_snapshot is not False
        subnet_group = aws("db_subnet_group").DbSubnetGroup(
            self,
            "subnet-group",
            name=f"{props.name_prefix}-db",
            subnet_ids=props.subnet_ids,
            description=f"{props.name_prefix}: private DB subnets",
        )
        parameter_group = aws("db_parameter_group")
        # The name carries the family, so an engine upgrade creates the new group before the old one goes.
        self.parameter_group = parameter_group.DbParameterGroup(
            self,
            "parameters",
            name=f"{props.name_prefix}-{engine.parameter_group_family.replace('.', '')}",
            family=engine.parameter_group_family,
            description=f"{props.name_prefix}: slow query log for CloudWatch",
            parameter=[parameter_group.DbParameterGroupParameter(name=name, value=value) for name, value in PARAMETERS],
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        # Created before the instance so RDS writes into groups that have retention and our key.
        self.log_groups = {
            kind: log_group(
                self,
                f"log-{kind}",
                name=f"/aws/rds/instance/{self.identifier}/{kind}",
                retention_days=props.log_retention_days,
                kms_key_arn=props.kms_key_arn,
            )
            for kind in EXPORTED_LOGS
        }

        self.instance = aws("db_instance").DbInstance(
            self,
            "instance",
            identifier=self.identifier,
            engine="mysql",
            engine_version=engine.version,
            allow_major_version_upgrade=True,  # 8.0 -> 8.4 is a major upgrade; RDS refuses it otherwise
            instance_class=props.instance_class,
            allocated_storage=props.allocated_storage_gb,
            max_allocated_storage=props.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=props.kms_key_arn,
            db_name=props.db_name,
            username=props.username,
            port=props.port,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=props.kms_key_arn,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[props.security_group_id],
            parameter_group_name=self.parameter_group.name,
            publicly_accessible=False,
            multi_az=props.multi_az,
            backup_retention_period=props.backup_retention_days,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            deletion_protection=protected,
            skip_final_snapshot=not final_snapshot,
            final_snapshot_identifier=(f"{self.identifier}-final" if final_snapshot else None),
            enabled_cloudwatch_logs_exports=list(EXPORTED_LOGS),
            depends_on=list(self.log_groups.values()),
        )
        accepted = {
            "CKV_AWS_118": "enhanced monitoring is an opt-in cost; CloudWatch metrics cover the experiment",
            "CKV2_AWS_69": "only RDS Proxy reaches the DB (SG-chained, private subnets); "
            "clients->proxy TLS is required",
        }
        if not props.multi_az:
            accepted["CKV_AWS_157"] = "multi-AZ is a setting (db_multi_az), off by default for cost"
        if not protected:
            accepted["CKV_AWS_293"] = "deletion protection is off for this throwaway environment (settings.throwaway)"
        skip_checks(self.instance, accepted)

    @property
    def secret_arn(self) -> str:
        """ARN of the RDS-managed secret holding the master credentials (used by the proxy)."""
        return self.instance.master_user_secret.get(0).secret_arn
