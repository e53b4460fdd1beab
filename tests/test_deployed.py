"""Reading the deployed stack's function and pool settings from Terraform state or synth output."""

from __future__ import annotations

import json

import pytest

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
