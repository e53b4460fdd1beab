"""The request function's options and the HTTP API's: what the ``Function`` and ``HttpApi`` constructs and the
settings share. Pure data (no cdktf)."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import model_validator

from handler import app_contract as contract
from modules.api_limits import (
    API_THROTTLING_BURST_RANGE,
    API_THROTTLING_RATE_RANGE,
    DEFAULT_API_THROTTLING_BURST_LIMIT,
    DEFAULT_API_THROTTLING_RATE_LIMIT,
)
from modules.field_types import LambdaMemoryMb, LambdaTimeoutS
from modules.props import Props, between, matching, one_of, satisfying

LAMBDA_RUNTIMES = ("python3.12", "python3.13")
LAMBDA_ARCHITECTURES = ("arm64", "x86_64")
LambdaRuntime = Annotated[str, one_of(LAMBDA_RUNTIMES)]
LambdaArchitecture = Annotated[str, one_of(LAMBDA_ARCHITECTURES)]
DEFAULT_TIMEOUT_S = 10
STAGE_NAME = "$default"
"""The HTTP API's one stage, deployed automatically."""
ANY_METHOD = "ANY"
DEFAULT_ROUTE = f"{ANY_METHOD} /"
"""Every method on the root path: the handler answers 405 for what it does not implement."""

_ROUTE_KEY = re.compile(r"(?P<method>[A-Z]+) (?P<path>/\S*)")


def route_parts(route_key: str) -> tuple[str, str]:
    """(method, path) of an API Gateway route key such as ``GET /times``."""
    match = _ROUTE_KEY.fullmatch(route_key)
    assert match is not None, route_key
    return match["method"], match["path"]


def _implemented(route_key: str) -> bool:
    match = _ROUTE_KEY.fullmatch(route_key)
    if match is None or match["path"] not in contract.ROUTES:
        return False
    return match["method"] in (ANY_METHOD, *contract.ROUTES[match["path"]])


IMPLEMENTED_ROUTES = ", ".join(
    f"{method} {path}" for path, methods in contract.ROUTES.items() for method in (ANY_METHOD, *methods)
)
RouteKey = Annotated[str, satisfying(f"route keys the handler implements: {IMPLEMENTED_ROUTES}", _implemented)]


class FunctionOptions(Props):
    """The request function: runtime, size and what it answers with."""

    runtime: LambdaRuntime = "python3.12"
    """Lambda's Python runtime. Default: python3.12."""
    architecture: LambdaArchitecture = "arm64"
    """The zip is pure Python, so either runs it; arm64 (Graviton) costs less per second. Default: arm64."""
    memory_mb: LambdaMemoryMb = 256
    """Memory, and with it the CPU share. Default: 256."""
    timeout_s: LambdaTimeoutS = DEFAULT_TIMEOUT_S
    """Invocation timeout; the API's integration waits one second longer (at most 30 s). Default: 10."""
    reserved_concurrency: Annotated[int, between(1, 1000)] | None = None
    """Reserved concurrency, which caps how many DB clients the function can open. Default: None, the account's
    unreserved pool."""
    response_limit: Annotated[int, between(*contract.RESPONSE_LIMIT_RANGE)] = contract.RESPONSE_LIMIT_DEFAULT
    """How many of the newest stored times a GET returns, with the total count. Default: 100."""
    table_name: Annotated[
        str,
        matching(
            rf"[A-Za-z][A-Za-z0-9_]{{0,{contract.TABLE_NAME_MAX_LENGTH - 1}}}",
            f"1-{contract.TABLE_NAME_MAX_LENGTH} letters, digits or underscores, starting with a letter",
        ),
    ] = contract.DEFAULT_TABLE
    """The table the handler writes; ``<table>_count`` and ``<table>_schema`` sit beside it, within MySQL's
    64-character names. Default: access_times."""


class ApiOptions(Props):
    """The HTTP API: which routes reach the function, and how much traffic the ``$default`` stage admits."""

    routes: tuple[RouteKey, ...] = (DEFAULT_ROUTE,)
    """Route keys (``METHOD /path``, or ``ANY /path``) sent to the function; each path must be one the handler
    implements. Only these routes may invoke the function; other paths get API Gateway's 404. Default: ANY /."""
    throttling_burst_limit: Annotated[int, between(*API_THROTTLING_BURST_RANGE)] = DEFAULT_API_THROTTLING_BURST_LIMIT
    """Requests the stage admits at once before answering 429 (the token bucket's size; 5000 is the account's burst
    quota). 200 concurrent GETs become at most ~200 proxy clients, multiplexed onto the pool (70 % of 85 = 59 DB
    connections on db.t4g.micro) with a few ms of borrow wait. Default: 200."""
    throttling_rate_limit: Annotated[int, between(*API_THROTTLING_RATE_RANGE)] = DEFAULT_API_THROTTLING_RATE_LIMIT
    """Steady requests per second the stage admits (10000 is the account's quota). Each GET writes a row and costs
    1-2 ms of DB time, so 100/s is db.t4g.micro's CPU baseline (2 vCPU at 10 %); it also bounds the table's growth to
    8.64 M rows a day. Default: 100."""

    @model_validator(mode="after")
    def _distinct_routes(self) -> Self:
        if not self.routes or len(set(self.routes)) != len(self.routes):
            self.refuse("routes", "at least one route key, each listed once")
        return self
