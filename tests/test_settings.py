"""Settings: documented defaults, validation errors that name field/value/range, per-environment overrides."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from modules.environments import Environment, S3Backend, load_environment, load_environments
from modules.settings import SettingsError, StackSettings
from tests.synth_support import only, synth_environments


def test_defaults_follow_the_seed_experiment_and_aws_defaults():
    s = StackSettings()
    assert (s.max_connections_percent, s.max_idle_connections_percent) == (70, 50)
    assert (s.connection_borrow_timeout, s.idle_client_timeout) == (120, 1800)
    assert s.effective_deletion_protection and s.effective_final_snapshot
    throwaway = StackSettings(throwaway=True)
    assert not throwaway.effective_deletion_protection and not throwaway.effective_final_snapshot
    assert StackSettings(throwaway=True, deletion_protection=True).effective_deletion_protection


@pytest.mark.parametrize("overrides, field, allowed", [
    ({"max_connections_percent": 0}, "max_connections_percent", "from 1 to 100"),
    ({"max_connections_percent": 101}, "max_connections_percent", "from 1 to 100"),
    ({"max_idle_connections_percent": 80}, "max_idle_connections_percent", "from 0 to 70"),
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
    ({"db_engine_version": "5.7"}, "db_engine_version", "MySQL 8.0"),
    ({"db_username": "rdsadmin"}, "db_username", "reserved"),
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
])
def test_invalid_settings_name_the_field_value_and_allowed_range(overrides, field, allowed):
    with pytest.raises(SettingsError) as caught:
        StackSettings(**overrides)
    assert caught.value.field_name == field
    message = str(caught.value)
    value = overrides[field]
    # A sequence may be reported whole or by its offending element.
    candidates = [value, *value] if isinstance(value, tuple) else [value]
    assert field in message and allowed in message and any(repr(v) in message for v in candidates)


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
    env = {"SMS_MAX_CONNECTIONS_PERCENT": "80", "SMS_LAMBDA_MEMORY_MB": "512", "SMS_THROWAWAY": "yes",
           "SMS_STAGING__MAX_CONNECTIONS_PERCENT": "90", "SMS_OTHER__LAMBDA_MEMORY_MB": "1024",
           "SMS_AVAILABILITY_ZONES": "ap-northeast-1a,ap-northeast-1d"}
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
        load_environment(_write_env(tmp_path, "z", {
            "target": "local", "backend": {"s3": {"bucket": "b-b-b", "key": "k", "region": "us-east-1"}}}), {})
    with pytest.raises(SettingsError, match="LOCAL_AWS_ENDPOINT"):
        load_environment(_write_env(tmp_path, "w", {"target": "local"}), {"LOCAL_AWS_ENDPOINT": "https://rds.amazonaws.com"})
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
    environ = {"SMS_MAX_CONNECTIONS_PERCENT": "80", "SMS_CONNECTION_BORROW_TIMEOUT": "30",
               "SMS_SESSION_PINNING_FILTERS": "EXCLUDE_VARIABLE_SETS", "SMS_INIT_QUERY": "SET time_zone = '+00:00'",
               "SMS_LOCAL__IDLE_CLIENT_TIMEOUT": "600", "SMS_LAMBDA_RESERVED_CONCURRENCY": "50",
               "LOCAL_AWS_ENDPOINT": "http://127.0.0.1:4777"}
    stacks = synth_environments(environ, outdir)
    for name in ("local", "aws"):
        pool = only(stacks[name], "aws_db_proxy_default_target_group")["connection_pool_config"]
        assert pool == {"max_connections_percent": 80, "max_idle_connections_percent": 50,
                        "connection_borrow_timeout": 30, "session_pinning_filters": ["EXCLUDE_VARIABLE_SETS"],
                        "init_query": "SET time_zone = '+00:00'"}
        assert only(stacks[name], "aws_lambda_function")["reserved_concurrent_executions"] == 50
    assert only(stacks["local"], "aws_db_proxy")["idle_client_timeout"] == 600
    assert only(stacks["aws"], "aws_db_proxy")["idle_client_timeout"] == 1800
    assert set(stacks["local"]["provider"]["aws"][0]["endpoints"][0].values()) == {"http://127.0.0.1:4777"}


def test_s3_backend_is_synthesized_with_locking(tmp_path):
    _write_env(tmp_path, "prod", {"target": "aws", "allowed_account_ids": ["123456789012"],
                                  "backend": {"s3": {"bucket": "acme-tf-state", "key": "sms/prod.tfstate",
                                                     "region": "ap-northeast-1"}}})
    stacks = synth_environments({}, tmp_path / "out", directory=tmp_path)
    backend = stacks["prod"]["terraform"]["backend"]["s3"]
    assert backend == {"bucket": "acme-tf-state", "key": "sms/prod.tfstate", "region": "ap-northeast-1",
                       "encrypt": True, "use_lockfile": True}
    assert stacks["prod"]["provider"]["aws"][0]["allowed_account_ids"] == ["123456789012"]


def test_every_setting_is_documented_in_the_readme():
    import dataclasses

    from tests.synth_support import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    undocumented = [f.name for f in dataclasses.fields(StackSettings) if f"| `{f.name}` |" not in readme]
    assert undocumented == []
