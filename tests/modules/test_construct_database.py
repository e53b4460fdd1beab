"""Database in isolation: engine version -> parameter family, protection flags, logs exported into our groups."""

from __future__ import annotations

import pytest

from modules.database import Database, DatabaseProps
from modules.validation import PropError
from tests.modules.construct_support import ABSENT, Template
from tests.modules.synth_support import TEST_KEY_ARN


def _props(**overrides) -> DatabaseProps:
    values = dict(
        name_prefix="t", subnet_ids=["subnet-a", "subnet-b"], security_group_id="sg-db", kms_key_arn=TEST_KEY_ARN
    )
    return DatabaseProps(**{**values, **overrides})


def _synth(**overrides) -> Template:
    return Template.of(lambda stack, ctx: Database(stack, "db", _props(**overrides)))


@pytest.fixture(scope="module")
def default_db() -> Template:
    return _synth()


def test_defaults_are_mysql_84_on_graviton_private_encrypted_and_protected(default_db):
    default_db.has_resource_properties(
        "aws_db_instance",
        {
            "identifier": "t-db",
            "engine": "mysql",
            "engine_version": "8.4",
            "instance_class": "db.t4g.micro",
            "publicly_accessible": False,
            "storage_encrypted": True,
            "kms_key_id": TEST_KEY_ARN,
            "master_user_secret_kms_key_id": TEST_KEY_ARN,
            "manage_master_user_password": True,
            "password": ABSENT,
            "iam_database_authentication_enabled": True,
            "deletion_protection": True,
            "skip_final_snapshot": False,
            "final_snapshot_identifier": "t-db-final",
            "allow_major_version_upgrade": True,
            "vpc_security_group_ids": ["sg-db"],
            "port": 3306,
            "db_name": "app",
            "username": "app_admin",
        },
    )
    default_db.has_resource_properties("aws_db_subnet_group", {"subnet_ids": ["subnet-a", "subnet-b"]})


def test_parameter_group_family_follows_the_engine_and_is_replaced_safely(default_db):
    group = default_db.has_resource_properties(
        "aws_db_parameter_group",
        {"name": "t-mysql84", "family": "mysql8.4", "lifecycle": {"create_before_destroy": True}},
    )
    assert {p["name"]: p["value"] for p in group["parameter"]} == {"slow_query_log": "1", "long_query_time": "1"}
    _synth(engine_version="8.0.40", instance_class="db.t3.micro").has_resource_properties(
        "aws_db_parameter_group", {"name": "t-mysql80", "family": "mysql8.0"}
    )


def test_exported_logs_go_to_groups_created_first(default_db):
    groups = [
        default_db.address("aws_cloudwatch_log_group", {"name": f"/aws/rds/instance/t-db/{kind}"})
        for kind in ("error", "slowquery")
    ]
    default_db.has_resource_properties(
        "aws_db_instance", {"depends_on": groups, "enabled_cloudwatch_logs_exports": ["error", "slowquery"]}
    )


def test_throwaway_flags_turn_protection_off():
    _synth(deletion_protection=False, final_snapshot=False).has_resource_properties(
        "aws_db_instance",
        {"deletion_protection": False, "skip_final_snapshot": True, "final_snapshot_identifier": ABSENT},
    )


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("port", 80, "an integer from 1150 to 65535"),
        ("instance_class", "db.t2.micro", "a current-generation class for MySQL 8.4"),
        ("allocated_storage_gb", 10, "an integer from 20 to 65536"),
        ("max_allocated_storage_gb", 50, "an integer from 100 to 65536"),
        ("username", "rdsadmin", "a name other than the reserved rdsadmin"),
        ("backup_retention_days", 0, "an integer from 1 to 35"),
        ("subnet_ids", ["subnet-a"], "at least two distinct subnet ids"),
        ("multi_az", "maybe", "true or false"),
    ],
)
def test_bad_props_are_refused_naming_the_field(field, value, allowed):
    overrides = {field: value, **({"allocated_storage_gb": 100} if field == "max_allocated_storage_gb" else {})}
    with pytest.raises(PropError) as refused:
        _props(**overrides)
    assert str(refused.value).startswith(f"invalid prop DatabaseProps.{field}={value!r}: allowed {allowed}")
