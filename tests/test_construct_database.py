"""Database in isolation: engine version -> parameter family, protection flags, logs exported into our groups."""

from __future__ import annotations

import pytest

from modules.database import Database, DatabaseProps
from modules.engine import EngineVersion
from tests.synth_support import TEST_KEY_ARN, only, resources, synth_construct


def _synth(**overrides):
    def build(stack, ctx):
        props = dict(
            name_prefix="t", subnet_ids=["subnet-a", "subnet-b"], security_group_id="sg-db", kms_key_arn=TEST_KEY_ARN
        )
        props.update(overrides)
        Database(stack, "db", DatabaseProps(**props))

    return synth_construct(build)


@pytest.fixture(scope="module")
def default_db():
    return _synth()


def test_defaults_are_mysql_84_on_graviton_private_encrypted_and_protected(default_db):
    db = only(default_db, "aws_db_instance")
    assert (db["identifier"], db["engine"], db["engine_version"], db["instance_class"]) == (
        "t-db",
        "mysql",
        "8.4",
        "db.t4g.micro",
    )
    assert db["publicly_accessible"] is False and db["storage_encrypted"] is True
    assert db["kms_key_id"] == TEST_KEY_ARN == db["master_user_secret_kms_key_id"]
    assert db["manage_master_user_password"] is True and "password" not in db
    assert db["iam_database_authentication_enabled"] is True
    assert db["deletion_protection"] is True and db["skip_final_snapshot"] is False
    assert db["final_snapshot_identifier"] == "t-db-final"
    assert db["allow_major_version_upgrade"] is True
    assert db["vpc_security_group_ids"] == ["sg-db"]
    assert only(default_db, "aws_db_subnet_group")["subnet_ids"] == ["subnet-a", "subnet-b"]


def test_parameter_group_family_follows_the_engine_and_is_replaced_safely(default_db):
    group = only(default_db, "aws_db_parameter_group")
    assert (group["name"], group["family"]) == ("t-mysql84", "mysql8.4")
    assert group["lifecycle"] == {"create_before_destroy": True}
    assert {p["name"]: p["value"] for p in group["parameter"]} == {"slow_query_log": "1", "long_query_time": "1"}
    old = only(_synth(engine_version=EngineVersion("8.0.40"), instance_class="db.t3.micro"), "aws_db_parameter_group")
    assert (old["name"], old["family"]) == ("t-mysql80", "mysql8.0")


def test_exported_logs_go_to_groups_created_first(default_db):
    db = only(default_db, "aws_db_instance")
    groups = resources(default_db, "aws_cloudwatch_log_group")
    assert sorted(g["name"] for g in groups.values()) == [
        "/aws/rds/instance/t-db/error",
        "/aws/rds/instance/t-db/slowquery",
    ]
    assert sorted(db["depends_on"]) == sorted(f"aws_cloudwatch_log_group.{n}" for n in groups)
    assert db["enabled_cloudwatch_logs_exports"] == ["error", "slowquery"]


def test_throwaway_flags_turn_protection_off():
    db = only(_synth(deletion_protection=False, final_snapshot=False), "aws_db_instance")
    assert db["deletion_protection"] is False and db["skip_final_snapshot"] is True
    assert "final_snapshot_identifier" not in db
