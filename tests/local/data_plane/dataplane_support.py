"""A deployed-looking state of the current stack for the data-plane tests: the request function logs in as the
application user, the migrator as the master, and the proxy's ``auth`` names both secrets (no tests here)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from handler import app_contract
from tests.local.data_plane.auth.auth_support import APP_USER
from tests.local.data_plane.auth.auth_support import DB_USER as MASTER_USER
from tests.local.data_plane.deployed_state_support import deployed_state, make_secret


def with_migrator(state: dict[str, Any], master_arn: str, app_arn: str) -> dict[str, Any]:
    """``state`` (from ``deployed_state_support.deployed_state``) as the least-privilege stack deploys it."""
    state = copy.deepcopy(state)
    migrator: dict[str, Any] = {}
    for resource in state["resources"]:
        attributes = resource["instances"][0]["attributes"]
        if resource["type"] == "aws_lambda_function":
            attributes["handler"] = app_contract.REQUEST_HANDLER
            variables = attributes["environment"][0]["variables"]
            migrator_variables = {
                **variables,
                "DB_USER": MASTER_USER,
                "APP_DB_USER": APP_USER,
                "APP_DB_SECRET_ARN": app_arn,
            }
            migrator_variables.pop("RESPONSE_LIMIT", None)
            variables["DB_USER"] = APP_USER
            migrator = {
                "function_name": "sms-local-migrator",
                "handler": app_contract.MIGRATOR_HANDLER,
                "memory_size": 256,
                "timeout": 60,
                "reserved_concurrent_executions": -1,
                "environment": [{"variables": migrator_variables}],
            }
        if resource["type"] == "aws_db_proxy":
            attributes["auth"] = [
                {"iam_auth": "REQUIRED", "secret_arn": master_arn},
                {"iam_auth": "REQUIRED", "secret_arn": app_arn},
            ]
    state["resources"].append(
        {"mode": "managed", "type": "aws_lambda_function", "name": "migrator", "instances": [{"attributes": migrator}]}
    )
    return state


def current_state(master_arn: str, app_arn: str, **instance: object) -> dict[str, Any]:
    return with_migrator(deployed_state(master_arn, **instance), master_arn, app_arn)


def write_current_state(endpoint: str, tmp_path: Path, master_password: str = "pw-1") -> Path:
    """Both secrets in the emulator at ``endpoint`` and the current stack's state file in ``tmp_path``."""
    master = make_secret(endpoint, f"rds!db-{tmp_path.name}", {"username": MASTER_USER, "password": master_password})
    app = make_secret(endpoint, f"app-{tmp_path.name}", {"username": APP_USER, "password": "pw-app"})
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(current_state(master, app)))
    return state_file


RUNTIME_HANDLERS = str(Path(__file__).parent / "runtime_handlers")
"""Small functions the runtime and the HTTP API tests run (a directory imported like Lambda's /var/task)."""
DATAPLANE_HANDLERS = str(Path(__file__).parent / "dataplane_handlers")
"""Functions the cold-start tests run."""
