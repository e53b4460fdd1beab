"""Settings: documented defaults, validation errors that name field/value/range, per-environment overrides."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from modules.environments import Environment, S3Backend, load_environment, load_environments
from modules.settings import SettingsError, StackSettings
from tests.modules.synth_support import function_named, only, synth_environments


def test_defaults_follow_the_reference_experiment_and_aws_defaults():
    s = StackSettings()
    assert (s.max_connections_percent, s.max_idle_connections_percent) == (70, 50)
    assert (s.connection_borrow_timeout, s.idle_client_timeout) == (120, 1800)
    assert s.effective_deletion_protection and s.effective_final_snapshot
    throwaway = StackSettings(throwaway=True)
    assert not throwaway.effective_deletion_protection and not throwaway.effective_final_snapshot
    assert StackSettings(throwaway=True, deletion_protection=True).effective_deletion_protection


@pytest.mark.parametrize(
    "overrides, field, allowed",
    [
        ({"max_connections_percent": 0}, "max_connections_percent", "from 1 to 100"),
        ({"max_connections_percent": 101}, "max_connections_percent", "from 1 to 100"),
        ({"max_idle_connections_percent": 80}, "max_idle_connections_percent", "max_connections_percent (70)"),
        ({"connection_borrow_timeout": 3601}, "connection_borrow_timeout", "from 0 to 3600"),
        ({"connection_borrow_timeout": -1}, "connection_borrow_timeout", "from 0 to 3600"),
        ({"idle_client_timeout": 0}, "idle_client_timeout", "from 1 to 28800"),
        ({"idle_client_timeout": 28801}, "idle_client_timeout", "from 1 to 28800"),
        ({"availability_zones": ("ap-northeast-1a",)}, "availability_zones", "at least two distinct"),
        ({"availability_zones": ("ap-northeast-1a", "ap-northeast-1a")}, "availability_zones", "at least two distinct"),
        ({"availability_zones": ("us-east-1a", "us-east-1b")}, "availability_zones", "zones of region ap-northeast-1"),
        ({"db_subnet_cidrs": ("10.1.0.0/24", "10.0.12.0/24")}, "db_subnet_cidrs", "inside vpc_cidr 10.0.0.0/16"),
        ({"db_subnet_cidrs": ("10.0.11.0/24",)}, "db_subnet_cidrs", "2 to 2 CIDR blocks"),
        ({"db_subnet_cidrs": ("10.0.11.0/24", "10.0.11.128/25")}, "db_subnet_cidrs", "not overlapping 10.0.11.0/24"),
        ({"vpc_cidr": "8.8.0.0/16"}, "vpc_cidr", "private (RFC 1918)"),
        ({"vpc_cidr": "10.0.0.1/16"}, "vpc_cidr", "no host bits"),
        ({"db_engine_version": "5.7"}, "db_engine_version", "MySQL 8.4 or 8.4.<minor>"),
        ({"db_engine_version": "8.1"}, "db_engine_version", "MySQL 8.4 or 8.4.<minor>"),
        ({"db_instance_class": "db.t2.micro"}, "db_instance_class", "current-generation class for MySQL 8.4"),
        ({"db_instance_class": "db.m4.large"}, "db_instance_class", "current-generation class for MySQL 8.4"),
        ({"db_instance_class": "db.m6g.micro"}, "db_instance_class", "micro sizes of burstable"),
        ({"db_instance_class": "t4g.micro"}, "db_instance_class", "an RDS instance class"),
        ({"db_max_connections": 0}, "db_max_connections", "from 1 to 100000"),
        ({"alarm_email_addresses": ("ops@example.com", "not-an-address")}, "alarm_email_addresses", "email addresses"),
        ({"alarm_topic_arn": "arn:aws:sqs:ap-northeast-1:123456789012:q"}, "alarm_topic_arn", "SNS topic ARN"),
        ({"alarm_period_s": 120}, "alarm_period_s", "one of 60, 300, 900, 3600"),
        ({"alarm_evaluation_periods": 0}, "alarm_evaluation_periods", "from 1 to 100"),
        ({"alarm_db_connections_percent": 101}, "alarm_db_connections_percent", "from 1 to 100"),
        ({"alarm_db_cpu_percent": 0}, "alarm_db_cpu_percent", "from 1 to 100"),
        ({"alarm_db_free_storage_gb": 21}, "alarm_db_free_storage_gb", "from 1 to 20"),
        ({"alarm_proxy_client_connections": 0}, "alarm_proxy_client_connections", "from 1 to 100000"),
        ({"alarm_proxy_borrow_latency_ms": 0}, "alarm_proxy_borrow_latency_ms", "from 1 to 3600000"),
        ({"alarm_lambda_duration_percent": 120}, "alarm_lambda_duration_percent", "from 1 to 100"),
        ({"alarm_lambda_errors": 0}, "alarm_lambda_errors", "from 1 to 100000"),
        ({"alarm_api_5xx": 0}, "alarm_api_5xx", "from 1 to 100000"),
        ({"db_username": "rdsadmin"}, "db_username", "reserved"),
        ({"db_app_username": "rdsadmin"}, "db_app_username", "a name other than the reserved rdsadmin"),
        ({"db_app_username": "app-user"}, "db_app_username", "1-16 letters, digits or underscores"),
        ({"db_app_username": "u" * 17}, "db_app_username", "1-16 letters, digits or underscores"),
        ({"db_app_username": ""}, "db_app_username", "1-16 letters, digits or underscores"),
        ({"db_app_username": "App_Admin"}, "db_app_username", "other than the master user db_username (app_admin)"),
        ({"api_throttling_burst_limit": 0}, "api_throttling_burst_limit", "an integer from 1 to 5000"),
        ({"api_throttling_burst_limit": 5001}, "api_throttling_burst_limit", "an integer from 1 to 5000"),
        ({"api_throttling_rate_limit": 0}, "api_throttling_rate_limit", "an integer from 1 to 10000"),
        ({"api_throttling_rate_limit": 10001}, "api_throttling_rate_limit", "an integer from 1 to 10000"),
        ({"api_throttling_rate_limit": 2.5}, "api_throttling_rate_limit", "an integer from 1 to 10000"),
        ({"db_username": "a-b"}, "db_username", "letters, digits or underscores"),
        ({"table_name": "times; DROP TABLE x"}, "table_name", "letters, digits or underscores"),
        ({"session_pinning_filters": ("NOPE",)}, "session_pinning_filters", "EXCLUDE_VARIABLE_SETS"),
        ({"lambda_runtime": "python3.8"}, "lambda_runtime", "python3.12"),
        ({"lambda_memory_mb": 64}, "lambda_memory_mb", "from 128 to 10240"),
        ({"lambda_timeout_s": 901}, "lambda_timeout_s", "from 1 to 900"),
        ({"log_retention_days": 10}, "log_retention_days", "one of 1, 3, 5"),
        ({"db_backup_retention_days": 0}, "db_backup_retention_days", "from 1 to 35"),
        ({"name_prefix": "Bad_Prefix"}, "name_prefix", "lowercase"),
        ({"init_query": "  "}, "init_query", "1-4096 characters"),
    ],
)
def test_invalid_settings_name_the_field_value_and_allowed_range(overrides, field, allowed):
    with pytest.raises(SettingsError) as caught:
        StackSettings(**overrides)
    assert caught.value.field_name == field
    message = str(caught.value)
    value = overrides[field]
    # A sequence may be reported whole or by its offending element.
    candidates = [value, *value] if isinstance(value, tuple) else [value]
    assert field in message and allowed in message and any(repr(v) in message for v in candidates)


def test_the_request_path_has_its_own_db_user_and_the_edge_is_throttled_by_default():
    s = StackSettings()
    assert (s.db_username, s.db_app_username) == ("app_admin", "app_user")
    assert (s.api_throttling_burst_limit, s.api_throttling_rate_limit) == (200, 100)
    # the two users only have to differ: a renamed master frees its old name
    assert StackSettings(db_username="owner", db_app_username="app_admin").db_app_username == "app_admin"


def test_app_user_and_throttling_come_from_environment_variables(tmp_path):
    path = _write_env(tmp_path, "dev", {"target": "aws", "settings": {"api_throttling_rate_limit": 50}})
    env = {"SMS_DB_APP_USERNAME": "reader", "SMS_DEV__API_THROTTLING_BURST_LIMIT": "20"}
    settings = load_environment(path, env).settings
    assert (settings.db_app_username, settings.api_throttling_burst_limit) == ("reader", 20)
    assert settings.api_throttling_rate_limit == 50
    with pytest.raises(SettingsError, match=r"api_throttling_rate_limit='fast': allowed an integer"):
        load_environment(path, {"SMS_API_THROTTLING_RATE_LIMIT": "fast"})


def test_engine_defaults_to_mysql_84_on_graviton_and_derives_family_and_auth():
    s = StackSettings()
    assert (s.db_engine_version, s.db_instance_class) == ("8.4", "db.t4g.micro")
    assert s.engine.parameter_group_family == "mysql8.4"
    assert s.engine.client_password_auth_type == "MYSQL_CACHING_SHA2_PASSWORD"
    assert StackSettings(db_engine_version="8.4.6").engine.parameter_group_family == "mysql8.4"
    old = StackSettings(db_engine_version="8.0.40", db_instance_class="db.t3.micro")
    assert old.engine.parameter_group_family == "mysql8.0"
    assert old.engine.client_password_auth_type == "MYSQL_NATIVE_PASSWORD"
    assert old.engine.extended_support_since == "2026-07-31" and s.engine.extended_support_since is None


def test_max_connections_comes_from_the_class_memory_or_the_setting():
    with pytest.raises(SettingsError, match=r"db_max_connections=None: .*required: the memory of db.x2iedn.24xlarge"):
        StackSettings(db_instance_class="db.x2iedn.24xlarge")
    assert StackSettings().max_connections == 1024**3 // 12582880 == 85
    assert StackSettings(db_instance_class="db.t4g.small").max_connections == 170
    assert StackSettings(db_instance_class="db.x2iedn.24xlarge", db_max_connections=5000).max_connections == 5000
    assert StackSettings(db_max_connections=65).max_connections == 65


def test_pool_fields_are_validated_by_the_shared_pool_rules():
    from modules.pool_rules import ConnectionPoolRules

    s = StackSettings(connection_borrow_timeout=30, init_query="SET time_zone = '+00:00'")
    assert s.pool_rules == ConnectionPoolRules(
        max_connections_percent=70, connection_borrow_timeout=30, init_query="SET time_zone = '+00:00'"
    )
    import modules.settings
    import modules.validation

    assert modules.settings.SettingsError is modules.validation.SettingsError


def test_mysql_80_is_accepted_only_explicitly_with_an_extended_support_warning(tmp_path, capsys):
    import io

    from modules.engine import warn_extended_support
    from tests.modules.synth_support import synth_environments

    envs, out = tmp_path / "envs", tmp_path / "out"
    envs.mkdir()
    _write_env(envs, "old", {"target": "aws", "settings": {"db_engine_version": "8.0"}})
    synth_environments({}, out, directory=envs)
    warned = capsys.readouterr().err
    assert "warning: db_engine_version=8.0" in warned and "paid RDS Extended Support" in warned
    stack = json.loads((out / "stacks" / "old" / "cdk.tf.json").read_text())
    assert only(stack, "aws_db_parameter_group")["family"] == "mysql8.0"
    assert only(stack, "aws_db_proxy")["auth"][0]["client_password_auth_type"] == "MYSQL_NATIVE_PASSWORD"
    quiet = io.StringIO()
    assert warn_extended_support(StackSettings().engine, quiet) is False and quiet.getvalue() == ""


def test_unknown_setting_is_rejected_with_the_list_of_known_ones():
    with pytest.raises(SettingsError, match="max_conections_percent.*a known setting: .*max_connections_percent"):
        StackSettings.from_mapping({"max_conections_percent": 80})


def _write_env(directory: Path, name: str, body: dict) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(body))
    return path


def test_environment_variables_override_files_global_then_scoped(tmp_path):
    path = _write_env(tmp_path, "staging", {"target": "aws", "settings": {"max_connections_percent": 60}})
    assert load_environment(path, {}).settings.max_connections_percent == 60
    env = {
        "SMS_MAX_CONNECTIONS_PERCENT": "80",
        "SMS_LAMBDA_MEMORY_MB": "512",
        "SMS_THROWAWAY": "yes",
        "SMS_STAGING__MAX_CONNECTIONS_PERCENT": "90",
        "SMS_OTHER__LAMBDA_MEMORY_MB": "1024",
        "SMS_AVAILABILITY_ZONES": "ap-northeast-1a,ap-northeast-1d",
    }
    settings = load_environment(path, env).settings
    assert settings.max_connections_percent == 90
    assert settings.lambda_memory_mb == 512
    assert settings.throwaway is True
    assert settings.availability_zones == ("ap-northeast-1a", "ap-northeast-1d")


def test_environment_variable_errors_are_clear(tmp_path):
    path = _write_env(tmp_path, "dev", {"target": "aws"})
    with pytest.raises(SettingsError, match=r"max_connections_percent='lots': allowed an integer"):
        load_environment(path, {"SMS_MAX_CONNECTIONS_PERCENT": "lots"})
    with pytest.raises(SettingsError, match=r"max_connections_percent=150: allowed an integer from 1 to 100"):
        load_environment(path, {"SMS_MAX_CONNECTIONS_PERCENT": "150"})


def test_environment_files_are_validated(tmp_path):
    with pytest.raises(SettingsError, match="target"):
        load_environment(_write_env(tmp_path, "x", {"target": "gcp"}), {})
    with pytest.raises(SettingsError, match="keys target, settings"):
        load_environment(_write_env(tmp_path, "y", {"target": "aws", "setings": {}}), {})
    with pytest.raises(SettingsError, match="no remote backend for the local target"):
        load_environment(
            _write_env(
                tmp_path,
                "z",
                {"target": "local", "backend": {"s3": {"bucket": "b-b-b", "key": "k", "region": "us-east-1"}}},
            ),
            {},
        )
    with pytest.raises(SettingsError, match="LOCAL_AWS_ENDPOINT"):
        load_environment(
            _write_env(tmp_path, "w", {"target": "local"}), {"LOCAL_AWS_ENDPOINT": "https://rds.amazonaws.com"}
        )
    with pytest.raises(SettingsError, match="SMS_ENVIRONMENTS"):
        load_environments(tmp_path, {"SMS_ENVIRONMENTS": "prod"})


def test_s3_backend_validation():
    with pytest.raises(SettingsError, match="backend.s3.bucket"):
        S3Backend(bucket="UPPER", key="k", region="us-east-1")
    with pytest.raises(SettingsError, match="backend.s3.key"):
        S3Backend(bucket="my-state", key="/abs", region="us-east-1")
    with pytest.raises(SettingsError, match="12-digit"):
        Environment(name="prod", target="aws", settings=StackSettings(), allowed_account_ids=("123",))


def test_settings_flow_into_the_synthesized_stack_and_s3_backend_when_configured():
    outdir = Path(tempfile.mkdtemp(prefix="sms-synth-overrides-"))
    environ = {
        "SMS_MAX_CONNECTIONS_PERCENT": "80",
        "SMS_CONNECTION_BORROW_TIMEOUT": "30",
        "SMS_SESSION_PINNING_FILTERS": "EXCLUDE_VARIABLE_SETS",
        "SMS_INIT_QUERY": "SET time_zone = '+00:00'",
        "SMS_LOCAL__IDLE_CLIENT_TIMEOUT": "600",
        "SMS_LAMBDA_RESERVED_CONCURRENCY": "50",
        "SMS_LOCAL__API_ROUTES": "GET /, GET /times",
        "LOCAL_AWS_ENDPOINT": "http://127.0.0.1:4777",
    }
    stacks = synth_environments(environ, outdir)
    local_routes = [r["route_key"] for r in stacks["local"]["resource"]["aws_apigatewayv2_route"].values()]
    assert local_routes == ["GET /", "GET /times"]
    permissions = stacks["local"]["resource"]["aws_lambda_permission"].values()
    assert sorted(p["source_arn"].rsplit("}", 1)[1] for p in permissions) == ["/*/GET/", "/*/GET/times"]
    assert [r["route_key"] for r in stacks["aws"]["resource"]["aws_apigatewayv2_route"].values()] == ["ANY /"]
    for name in ("local", "aws"):
        pool = only(stacks[name], "aws_db_proxy_default_target_group")["connection_pool_config"]
        assert pool == {
            "max_connections_percent": 80,
            "max_idle_connections_percent": 50,
            "connection_borrow_timeout": 30,
            "session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"],
            "init_query": "SET time_zone = '+00:00'",
        }
        assert function_named(stacks[name], "api")[1]["reserved_concurrent_executions"] == 50
    assert only(stacks["local"], "aws_db_proxy")["idle_client_timeout"] == 600
    assert only(stacks["aws"], "aws_db_proxy")["idle_client_timeout"] == 1800
    assert set(stacks["local"]["provider"]["aws"][0]["endpoints"][0].values()) == {"http://127.0.0.1:4777"}


def test_s3_backend_is_synthesized_with_locking(tmp_path):
    _write_env(
        tmp_path,
        "prod",
        {
            "target": "aws",
            "allowed_account_ids": ["123456789012"],
            "backend": {"s3": {"bucket": "acme-tf-state", "key": "sms/prod.tfstate", "region": "ap-northeast-1"}},
        },
    )
    stacks = synth_environments({}, tmp_path / "out", directory=tmp_path)
    backend = stacks["prod"]["terraform"]["backend"]["s3"]
    assert backend == {
        "bucket": "acme-tf-state",
        "key": "sms/prod.tfstate",
        "region": "ap-northeast-1",
        "encrypt": True,
        "use_lockfile": True,
    }
    assert stacks["prod"]["provider"]["aws"][0]["allowed_account_ids"] == ["123456789012"]


def test_every_setting_is_documented_in_the_generated_settings_table():
    from modules.settings_docs import SETTINGS_TABLE, settings_table

    table = SETTINGS_TABLE.read_text()
    undocumented = [name for name in StackSettings.model_fields if f"| `{name}` |" not in table]
    assert undocumented == []
    assert table == settings_table(), "docs/settings.md is out of date: run python -m modules.settings_docs"


def test_routes_are_a_list_of_route_keys_the_handler_implements(tmp_path):
    assert StackSettings().api_routes == ("ANY /",)
    path = _write_env(tmp_path, "dev", {"target": "aws", "settings": {"api_routes": ["GET /", "GET /times"]}})
    assert load_environment(path, {}).settings.api_routes == ("GET /", "GET /times")
    assert load_environment(path, {"SMS_DEV__API_ROUTES": "ANY /times"}).settings.api_routes == ("ANY /times",)
    with pytest.raises(SettingsError) as refused:
        load_environment(path, {"SMS_API_ROUTES": "GET /,GET /admin"})
    assert str(refused.value) == (
        "invalid setting api_routes='GET /admin': allowed route keys the handler implements: "
        "ANY /, GET /, ANY /times, GET /times"
    )


def test_table_name_leaves_room_for_the_handlers_side_tables():
    assert StackSettings(table_name="t" * 56).table_name == "t" * 56
    with pytest.raises(SettingsError, match=r"table_name='t{57}': allowed 1-56 letters, digits or underscores"):
        StackSettings(table_name="t" * 57)
