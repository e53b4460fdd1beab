"""A deployed-looking local stack for the data-plane tests: its trimmed Terraform state and its secrets in a real
emulator (the RDS-managed master secret, the application user's)."""

from __future__ import annotations

import json

import boto3

REGION = "ap-northeast-1"
ENV = {
    "DB_HOST": "sms-local-proxy.proxy-x.rds.amazonaws.com",
    "DB_PORT": "3306",
    "DB_NAME": "app",
    "DB_USER": "app_admin",
    "DB_TABLE": "access_times",
    "DB_AUTH": "iam",
    "RESPONSE_LIMIT": "5",
}


def _resource(rtype: str, attributes: dict) -> dict:
    return {"mode": "managed", "type": rtype, "name": rtype.split("_", 1)[1], "instances": [{"attributes": attributes}]}


def deployed_state(secret_arn: str, proxy_secret_arn: str | None = None, **instance: object) -> dict:
    """A trimmed Terraform v4 state of the local stack, shaped like the provider writes it."""
    db = {
        "identifier": "sms-local-db",
        "db_name": "app",
        "username": "app_admin",
        "port": 3306,
        "master_user_secret": [{"secret_arn": secret_arn, "secret_status": "active"}],
        "parameter_group_name": "sms-local-mysql80",
        "skip_final_snapshot": True,
        "final_snapshot_identifier": None,
    }
    db.update(instance)
    return {
        "version": 4,
        "resources": [
            _resource(
                "aws_lambda_function",
                {
                    "function_name": "sms-local-api",
                    "handler": "app.lambda_handler",
                    "memory_size": 256,
                    "timeout": 10,
                    "reserved_concurrent_executions": -1,
                    "environment": [{"variables": ENV}],
                },
            ),
            _resource(
                "aws_db_proxy_default_target_group",
                {"connection_pool_config": [{"max_connections_percent": 70, "max_idle_connections_percent": 50}]},
            ),
            _resource(
                "aws_db_proxy",
                {
                    "idle_client_timeout": 1800,
                    "require_tls": True,
                    "auth": [{"iam_auth": "REQUIRED", "secret_arn": proxy_secret_arn or secret_arn}],
                },
            ),
            _resource("aws_apigatewayv2_route", {"route_key": "GET /"}),
            _resource("aws_db_instance", db),
            _resource(
                "aws_db_parameter_group",
                {
                    "name": "sms-local-mysql80",
                    "parameter": [
                        {"name": "slow_query_log", "value": "1"},
                        {"name": "long_query_time", "value": "1"},
                        {"name": "innodb_flush_log_at_trx_commit", "value": "2"},
                        {"name": "binlog_group_commit_sync_delay", "value": "0"},
                    ],
                },
            ),
        ],
    }


def secrets_client(endpoint: str):
    return boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def make_secret(endpoint: str, name: str, value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return secrets_client(endpoint).create_secret(Name=name, SecretString=text)["ARN"]
