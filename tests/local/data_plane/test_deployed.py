"""Reading the deployed stack's function and pool settings from Terraform state or synth output."""

from __future__ import annotations

import json

import pytest

from handler import app_contract
from local.data_plane import deployed
from local.data_plane.deployed import DeployedStateError, PoolSettings, load, parse_state, parse_synth

ENV = {
    "DB_HOST": "proxy.example",
    "DB_PORT": "3306",
    "DB_NAME": "app",
    "DB_USER": "app_user",
    "DB_TABLE": "access_times",
    "DB_AUTH": "iam",
    "RESPONSE_LIMIT": "100",
    "DB_CONNECT_TIMEOUT": "5",
}


def state_fixture(**pool) -> dict:
    """A trimmed Terraform v4 state with the resources the parser reads (and one it must ignore)."""
    pool_config = {
        "connection_borrow_timeout": 120,
        "init_query": "",
        "max_connections_percent": 70,
        "max_idle_connections_percent": 50,
        "session_pinning_filters": [],
    }
    pool_config.update(pool)
    return {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": 7,
        "lineage": "x",
        "outputs": {},
        "resources": [
            {"mode": "data", "type": "aws_lambda_function", "name": "ignored", "instances": [{"attributes": {}}]},
            {
                "mode": "managed",
                "type": "aws_lambda_function",
                "name": "fn",
                "provider": "p",
                "instances": [
                    {
                        "schema_version": 0,
                        "attributes": {
                            "function_name": "sms-local-api",
                            "handler": "app.lambda_handler",
                            "memory_size": 256,
                            "timeout": 10,
                            "reserved_concurrent_executions": -1,
                            "environment": [{"variables": ENV}],
                        },
                    }
                ],
            },
            {
                "mode": "managed",
                "type": "aws_db_proxy_default_target_group",
                "name": "tg",
                "instances": [{"attributes": {"connection_pool_config": [pool_config]}}],
            },
            {
                "mode": "managed",
                "type": "aws_db_proxy",
                "name": "proxy",
                "instances": [{"attributes": {"idle_client_timeout": 1800, "require_tls": True}}],
            },
            {
                "mode": "managed",
                "type": "aws_apigatewayv2_route",
                "name": "route",
                "instances": [{"attributes": {"route_key": "GET /"}}],
            },
        ],
    }


def test_state_is_parsed_into_typed_settings():
    stack = parse_state(state_fixture())
    assert stack.function.handler == "app.lambda_handler"
    assert dict(stack.function.environment) == ENV
    assert (stack.function.memory_mb, stack.function.timeout_s, stack.function.reserved_concurrency) == (256, 10, None)
    assert stack.pool == PoolSettings(
        max_connections_percent=70,
        max_idle_connections_percent=50,
        connection_borrow_timeout=120,
        init_query=None,
        session_pinning_filters=(),
        idle_client_timeout=1800,
    )
    assert stack.proxy.require_tls is True
    assert stack.route_keys == ("GET /",)
    assert stack.pool.pool_cap(65) == 45  # 70% of a db.t2.micro's 65


def test_pool_values_come_from_state_not_defaults():
    stack = parse_state(
        state_fixture(
            max_connections_percent=40,
            max_idle_connections_percent=30,
            init_query="SET x=1",
            session_pinning_filters=["EXCLUDE_VARIABLE_SETS"],
            connection_borrow_timeout=3,
        )
    )
    assert (stack.pool.max_connections_percent, stack.pool.init_query) == (40, "SET x=1")
    assert stack.pool.session_pinning_filters == ("EXCLUDE_VARIABLE_SETS",)
    assert stack.pool.connection_borrow_timeout == 3
    assert stack.pool.pool_cap(65) == 26


def test_invalid_pool_values_are_rejected_with_field_and_range():
    with pytest.raises(
        ValueError,
        match=r"max_idle_connections_percent=80: allowed an integer from 0 to max_connections_percent \(70\)",
    ):
        parse_state(state_fixture(max_idle_connections_percent=80))


def test_missing_resources_and_unknown_versions_are_clear_errors():
    state = state_fixture()
    state["resources"] = [r for r in state["resources"] if r["type"] != "aws_db_proxy"]
    with pytest.raises(DeployedStateError, match="expected exactly one aws_db_proxy, found 0"):
        parse_state(state)
    with pytest.raises(DeployedStateError, match="need 4"):
        parse_state({**state_fixture(), "version": 3})


def test_synth_output_is_parsed_and_simple_references_resolved():
    synth = {
        "terraform": {"backend": {"local": {"path": "/nowhere/terraform.local.tfstate"}}},
        "resource": {
            "aws_db_instance": {"db": {"db_name": "app", "port": 3306}},
            "aws_db_proxy": {"proxy": {"idle_client_timeout": 900}},
            "aws_db_proxy_default_target_group": {"tg": {"connection_pool_config": {"max_connections_percent": 70}}},
            "aws_lambda_function": {
                "fn": {
                    "function_name": "sms-local-api",
                    "handler": "app.lambda_handler",
                    "timeout": 10,
                    "memory_size": 256,
                    "environment": {
                        "variables": {
                            **ENV,
                            "DB_NAME": "${aws_db_instance.db.db_name}",
                            "DB_PORT": "${aws_db_instance.db.port}",
                            "DB_HOST": "${aws_db_proxy.proxy.endpoint}",
                        }
                    },
                }
            },
        },
    }
    stack = parse_synth(synth)
    assert stack.function.environment["DB_NAME"] == "app"
    assert stack.function.environment["DB_PORT"] == "3306"
    assert stack.unresolved == ("DB_HOST",)  # only known after apply
    assert stack.pool.idle_client_timeout == 900
    assert stack.pool.max_idle_connections_percent == 50  # AWS default when not set


def test_load_reads_the_backend_path_from_synth_and_fails_clearly_without_state(tmp_path):
    directory = tmp_path / "cdktf.out" / "stacks" / "local"
    directory.mkdir(parents=True)
    state_path = tmp_path / "elsewhere.tfstate"
    (directory / "cdk.tf.json").write_text(json.dumps({"terraform": {"backend": {"local": {"path": str(state_path)}}}}))
    with pytest.raises(DeployedStateError, match=r"run `python -m local deploy` first"):
        load(root=tmp_path)
    state_path.write_text(json.dumps({"version": 4, "resources": []}))  # destroyed stack
    with pytest.raises(DeployedStateError, match="--settings-from-synth"):
        load(root=tmp_path)
    state_path.write_text(json.dumps(state_fixture()))
    assert load(root=tmp_path).source == str(state_path)
    assert deployed.state_file_candidates(root=tmp_path)[0] == state_path


def _managed(rtype: str, name: str, attributes: dict) -> dict:
    return {"mode": "managed", "type": rtype, "name": name, "instances": [{"attributes": attributes}]}


def _with_migrator_and_stage(state: dict, **route_settings) -> dict:
    """The stack as deployed with a migrator function, two proxy auth secrets and a throttled stage."""
    for resource in state["resources"]:
        attributes = resource["instances"][0]["attributes"]
        if resource["type"] == "aws_lambda_function" and resource["mode"] == "managed":
            attributes["handler"] = app_contract.REQUEST_HANDLER
            attributes["role"] = "arn:aws:iam::123456789012:role/sms-local-fn"
        if resource["type"] == "aws_db_proxy":
            attributes.update(
                endpoint="sms-local-proxy.proxy-abc.ap-northeast-1.rds.amazonaws.com",
                arn="arn:aws:rds:ap-northeast-1:123456789012:db-proxy:prx-0123",
                auth=[
                    {"iam_auth": "REQUIRED", "secret_arn": "arn:aws:secretsmanager:ap-northeast-1:1:secret:master"},
                    {"iam_auth": "REQUIRED", "secret_arn": "arn:aws:secretsmanager:ap-northeast-1:1:secret:app"},
                ],
            )
    migrator_env = {**ENV, "DB_USER": "app_admin", "APP_DB_USER": "app_user", "APP_DB_SECRET_ARN": "arn:s"}
    state["resources"] += [
        _managed(
            "aws_lambda_function",
            "migrator",
            {
                "function_name": "sms-local-migrator",
                "handler": app_contract.MIGRATOR_HANDLER,
                "timeout": 60,
                "role": "arn:aws:iam::123456789012:role/sms-local-migrator",
                "environment": [{"variables": migrator_env}],
            },
        ),
        _managed(
            "aws_apigatewayv2_stage",
            "stage",
            {"name": "$default", "default_route_settings": [route_settings] if route_settings else []},
        ),
    ]
    return state


def test_the_request_function_and_the_migrator_are_told_apart_by_their_handler():
    stack = parse_state(_with_migrator_and_stage(state_fixture()))
    assert stack.function.handler == app_contract.REQUEST_HANDLER
    assert stack.function.role_arn.endswith(":role/sms-local-fn")
    assert stack.migrator is not None and stack.migrator.function_name == "sms-local-migrator"
    assert (stack.migrator.timeout_s, stack.migrator.environment["APP_DB_USER"]) == (60, "app_user")
    assert stack.migrator.role_arn.endswith(":role/sms-local-migrator")
    assert parse_state(state_fixture()).migrator is None  # a stack deployed before the migrator existed


def test_the_request_function_is_found_by_its_handler_among_several():
    state = _with_migrator_and_stage(state_fixture())
    state["resources"][1]["instances"][0]["attributes"]["handler"] = "app.lambda_handler"  # an older handler string
    assert parse_state(state).function.handler == "app.lambda_handler"  # the only one that is not the migrator
    state["resources"].append(_managed("aws_lambda_function", "other", {"handler": "other.handler"}))
    with pytest.raises(DeployedStateError, match=r"one aws_lambda_function with handler handler\.app\.lambda_handler"):
        parse_state(state)


def test_the_proxy_endpoint_region_and_every_auth_secret_are_read():
    proxy = parse_state(_with_migrator_and_stage(state_fixture())).proxy
    assert proxy.endpoint == "sms-local-proxy.proxy-abc.ap-northeast-1.rds.amazonaws.com"
    assert proxy.region == "ap-northeast-1" and proxy.iam_auth == "REQUIRED"
    assert [arn.rsplit(":", 1)[1] for arn in proxy.secret_arns] == ["master", "app"]


def test_stage_throttling_is_read_and_absent_limits_mean_the_account_quota():
    limited = parse_state(
        _with_migrator_and_stage(state_fixture(), throttling_burst_limit=200, throttling_rate_limit=100.5)
    )
    assert limited.throttling == deployed.ThrottleSettings(rate_limit=100.5, burst_limit=200, from_stage=True)
    unlimited = parse_state(_with_migrator_and_stage(state_fixture()))
    assert unlimited.throttling == deployed.ThrottleSettings(10_000.0, 5_000, from_stage=False)
    provider_zeros = {"throttling_burst_limit": 0, "throttling_rate_limit": 0, "detailed_metrics_enabled": False}
    assert not parse_state(_with_migrator_and_stage(state_fixture(), **provider_zeros)).throttling.from_stage
    blocked = parse_state(
        _with_migrator_and_stage(state_fixture(), **{**provider_zeros, "detailed_metrics_enabled": True})
    ).throttling
    assert (blocked.burst_limit, blocked.rate_limit, blocked.from_stage) == (0, 0.0, True)  # API Gateway: all 429
    with pytest.raises(DeployedStateError, match=r"throttling_burst_limit=-1: allowed an integer from 0"):
        parse_state(_with_migrator_and_stage(state_fixture(), throttling_burst_limit=-1, throttling_rate_limit=1))
