"""RDS MySQL 8.0 in private subnets, encrypted, with its master password generated and kept by RDS.

``manage_master_user_password`` makes RDS create the password inside a Secrets Manager secret: Terraform never
sees it, so it is in no code, synthesized JSON, plan or state. RDS Proxy authenticates to the DB with that secret.
"""

from __future__ import annotations

from constructs import Construct

from modules.bindings import aws
from modules.logs import log_group
from modules.settings import StackSettings
from modules.suppressions import skip_checks

EXPORTED_LOGS = ("error", "slowquery")


class Database(Construct):
    def __init__(self, scope: Construct, id_: str, *, settings: StackSettings, subnet_ids: list[str],
                 security_group_id: str, kms_key_arn: str):
        super().__init__(scope, id_)
        self.identifier = f"{settings.name_prefix}-db"
        subnet_group = aws("db_subnet_group").DbSubnetGroup(
            self, "subnet-group", name=f"{settings.name_prefix}-db", subnet_ids=subnet_ids,
            description=f"{settings.name_prefix}: private DB subnets")
        parameter_group = aws("db_parameter_group")
        parameters = parameter_group.DbParameterGroup(
            self, "parameters", name=f"{settings.name_prefix}-mysql80", family="mysql8.0",
            description=f"{settings.name_prefix}: slow query log for CloudWatch",
            parameter=[parameter_group.DbParameterGroupParameter(name=name, value=value)
                       for name, value in (("slow_query_log", "1"), ("long_query_time", "1"))])
        # Created before the instance so RDS writes into groups that have retention and our key.
        exported = [log_group(self, f"log-{kind}", name=f"/aws/rds/instance/{self.identifier}/{kind}",
                              retention_days=settings.log_retention_days, kms_key_arn=kms_key_arn)
                    for kind in EXPORTED_LOGS]

        self.instance = aws("db_instance").DbInstance(
            self, "instance",
            identifier=self.identifier,
            engine="mysql", engine_version=settings.db_engine_version,
            instance_class=settings.db_instance_class,
            allocated_storage=settings.db_allocated_storage_gb,
            max_allocated_storage=settings.db_max_allocated_storage_gb,
            storage_type="gp3", storage_encrypted=True, kms_key_id=kms_key_arn,
            db_name=settings.db_name, username=settings.db_username, port=settings.db_port,
            manage_master_user_password=True, master_user_secret_kms_key_id=kms_key_arn,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnet_group.name, vpc_security_group_ids=[security_group_id],
            parameter_group_name=parameters.name,
            publicly_accessible=False, multi_az=settings.db_multi_az,
            backup_retention_period=settings.db_backup_retention_days, copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            deletion_protection=settings.effective_deletion_protection,
            skip_final_snapshot=not settings.effective_final_snapshot,
            final_snapshot_identifier=(f"{self.identifier}-final" if settings.effective_final_snapshot else None),
            enabled_cloudwatch_logs_exports=list(EXPORTED_LOGS),
            depends_on=exported,
        )
        accepted = {
            "CKV_AWS_118": "enhanced monitoring is an opt-in cost; CloudWatch metrics cover the experiment",
            "CKV2_AWS_69": "only RDS Proxy reaches the DB (SG-chained, private subnets); clients->proxy TLS is required",
        }
        if not settings.db_multi_az:
            accepted["CKV_AWS_157"] = "multi-AZ is a setting (db_multi_az), off by default for cost"
        if not settings.effective_deletion_protection:
            accepted["CKV_AWS_293"] = "deletion protection is off for this throwaway environment (settings.throwaway)"
        skip_checks(self.instance, accepted)

    @property
    def secret_arn(self) -> str:
        """ARN of the RDS-managed secret holding the master credentials (used by the proxy)."""
        return self.instance.master_user_secret.get(0).secret_arn
