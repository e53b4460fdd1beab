"""Builders shared by the IAM auth tests: a deployed-stack state and real boto3-signed tokens."""

from __future__ import annotations

import functools
import json
from typing import Any

import boto3

from handler import app_contract
from local.data_plane.auth.credentials import IssuedCredentials

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
PRX_ID = "prx-0abcdefghij123456"
PROXY_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:db-proxy:{PRX_ID}"
ENDPOINT = f"sms-local-proxy.proxy-abcdefghijkl.{REGION}.rds.amazonaws.com"
DB_USER = "app_admin"
APP_USER = "app_user"
ROLE_NAME = "sms-local-api-exec"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
VPC_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def connect_arn(prx_id: str = PRX_ID, user: str = DB_USER) -> str:
    return f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{prx_id}/{user}"


def policy(*statements: dict[str, Any]) -> str:
    """A policy document as the state stores it (the data source's rendered JSON)."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def grant(resource: str | list[str] | None = None, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": "rds-db:connect", "Resource": resource or connect_arn(), **extra}


def _resource(rtype: str, name: str, *attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": "managed",
        "type": rtype,
        "name": name,
        "instances": [{"schema_version": 0, "attributes": a} for a in attributes],
    }


def state(
    inline: list[dict[str, Any]] | None = None,
    attached: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Terraform v4 state of the deployed stack, trimmed to what auth reads (plus another role to ignore).

    ``inline``: statements of the role's one inline policy (default: the stack's own grant).
    ``attached``: policy ARN -> customer policy JSON (None: an AWS managed policy, not in state).
    """
    inline = [grant()] if inline is None else inline
    attached = {VPC_POLICY_ARN: None} if attached is None else attached
    env = {"DB_HOST": ENDPOINT, "DB_PORT": "3306", "DB_NAME": "app", "DB_USER": DB_USER, "DB_AUTH": "iam"}
    resources = [
        _resource(
            "aws_lambda_function",
            "function",
            {"function_name": "sms-local-api", "role": ROLE_ARN, "environment": [{"variables": env}]},
        ),
        _resource(
            "aws_iam_role",
            "role",
            {"name": ROLE_NAME, "id": ROLE_NAME, "arn": ROLE_ARN, "inline_policy": [], "managed_policy_arns": []},
            {
                "name": "sms-local-proxy-secrets",
                "id": "sms-local-proxy-secrets",
                "arn": f"arn:aws:iam::{ACCOUNT}:role/sms-local-proxy-secrets",
            },
        ),
        _resource(
            "aws_iam_role_policy",
            "other_role",
            {
                "role": "sms-local-proxy-secrets",
                "name": "grant-everything",
                "policy": policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
            },
        ),
        _resource("aws_db_proxy", "proxy", {"arn": PROXY_ARN, "endpoint": ENDPOINT, "require_tls": True}),
    ]
    if inline:
        resources.append(
            _resource(
                "aws_iam_role_policy",
                "connect",
                {"role": ROLE_NAME, "name": f"rds-db-connect-{DB_USER}", "policy": policy(*inline)},
            )
        )
    for index, (arn, document) in enumerate(attached.items()):
        resources.append(
            _resource("aws_iam_role_policy_attachment", f"a{index}", {"role": ROLE_NAME, "policy_arn": arn})
        )
        if document is not None:
            resources.append(_resource("aws_iam_policy", f"p{index}", {"arn": arn, "policy": document}))
    return {"version": 4, "resources": resources}


def signed_token(
    credentials: IssuedCredentials,
    host: str = ENDPOINT,
    port: int = 3306,
    user: str = DB_USER,
    region: str = REGION,
) -> str:
    """A real token: boto3's generate_db_auth_token with these credentials (no network involved)."""
    client = _rds_client(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
    return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))


@functools.lru_cache(maxsize=32)
def _rds_client(access_key_id: str, secret_access_key: str, session_token: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=REGION,
    )
    return session.client("rds")


def plane_state(inline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``state`` as the least-privilege stack deploys it, plus what the local data plane reads.

    The request function logs in as the application user, the migrator (its own role) as the master; the pool, the
    route and the proxy's auth block (no secret) complete it. ``inline`` defaults to the application user's grant.
    """
    deployed = state(inline=[grant(connect_arn(user=APP_USER))] if inline is None else inline)
    for resource in deployed["resources"]:
        attributes = resource["instances"][0]["attributes"]
        if resource["type"] == "aws_db_proxy":
            attributes.update(idle_client_timeout=1800, auth=[{"iam_auth": "REQUIRED", "secret_arn": ""}])
        if resource["type"] == "aws_lambda_function":
            attributes.update(handler=app_contract.REQUEST_HANDLER, memory_size=256, timeout=10)
            variables = attributes["environment"][0]["variables"]
            variables.update(DB_USER=APP_USER, DB_TABLE="access_times", RESPONSE_LIMIT="5")
            migrator_variables = {
                **variables,
                "DB_USER": DB_USER,
                "APP_DB_USER": APP_USER,
                "APP_DB_SECRET_ARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:a",
            }
    migrator = {
        "function_name": "sms-local-migrator",
        "handler": app_contract.MIGRATOR_HANDLER,
        "role": f"arn:aws:iam::{ACCOUNT}:role/sms-local-migrator",
        "timeout": 60,
        "environment": [{"variables": migrator_variables}],
    }
    pool = {"connection_pool_config": [{"max_connections_percent": 70, "max_idle_connections_percent": 50}]}
    deployed["resources"] += [
        _resource("aws_lambda_function", "migrator", migrator),
        _resource("aws_db_proxy_default_target_group", "tg", pool),
        _resource("aws_apigatewayv2_route", "route", {"route_key": "$default"}),
    ]
    return deployed
