"""The stack's deployed functions, read the AWS way (Lambda ``ListFunctions`` against the emulator).

A client needs two facts the deployed functions hold: which DB user the application connects as (the request
function's ``DB_USER``), and which role the stack lets connect as a given user (the role of the function that
logs in as that user). The functions of this stack are the ones whose ``DB_HOST`` is its proxy endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from handler import app_contract


@dataclass(frozen=True)
class StackFunction:
    name: str
    handler: str
    role_arn: str
    db_user: str
    db_name: str


def stack_functions(lambda_client: Any, endpoint: str) -> list[StackFunction]:
    """The functions whose ``DB_HOST`` is ``endpoint`` (the deployed proxy endpoint name)."""
    found = []
    for page in lambda_client.get_paginator("list_functions").paginate():
        for function in page.get("Functions", []):
            variables = (function.get("Environment") or {}).get("Variables") or {}
            if variables.get(app_contract.DB_HOST, "").lower() == endpoint.lower():
                found.append(
                    StackFunction(
                        name=function["FunctionName"],
                        handler=function.get("Handler", ""),
                        role_arn=function.get("Role", ""),
                        db_user=variables.get(app_contract.DB_USER, ""),
                        db_name=variables.get(app_contract.DB_NAME, ""),
                    )
                )
    return found


def request_function(functions: Iterable[StackFunction]) -> StackFunction | None:
    """The function serving requests: its handler is ``REQUEST_HANDLER`` (else the only one there is)."""
    functions = list(functions)
    matching = [f for f in functions if f.handler == app_contract.REQUEST_HANDLER]
    if len(matching) == 1:
        return matching[0]
    return functions[0] if len(functions) == 1 else None


def role_for_user(functions: Iterable[StackFunction], db_user: str) -> str | None:
    """The role of the stack's function that logs in as ``db_user`` (the role the stack grants it to)."""
    roles = {f.role_arn for f in functions if f.db_user == db_user and f.role_arn}
    return roles.pop() if len(roles) == 1 else None
