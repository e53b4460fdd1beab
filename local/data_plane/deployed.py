"""Read what the local stack actually deployed: the function's settings and the proxy's pool settings.

The local data plane must run the handler with the environment and pool settings that the stack
deploys, not with a hand-kept copy. They come from the Terraform state of the deployed `local`
stack, or (for CI and benchmarks, when nothing is deployed) from the synthesized `cdk.tf.json`,
which holds the same values before apply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from handler import app_contract
from modules.pool_rules import ConnectionPoolRules
from modules.project import REPO_ROOT, default_state_file, stack_dir

DEFAULT_STACK = "local"
_REFERENCE = re.compile(r"^\$\{([A-Za-z0-9_]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\}$")


class DeployedStateError(RuntimeError):
    """No usable deployed state (or synth output); the message says what to run."""


#: The pool settings as deployed: the one definition of their ranges, defaults and pool-cap arithmetic.
PoolSettings = ConnectionPoolRules


@dataclass(frozen=True)
class ProxySettings:
    """The deployed `aws_db_proxy`'s client-side settings (what a client of the proxy must do)."""

    require_tls: bool = False
    iam_auth: str = "DISABLED"
    """``REQUIRED`` or ``DISABLED`` (the proxy's ``auth`` block)."""
    endpoint: str = ""
    """The deployed endpoint name clients connect to and sign tokens for; "" before apply (synth)."""
    region: str = ""
    """The proxy's region (from its ARN); "" before apply."""
    secret_arns: tuple[str, ...] = ()
    """``auth[*].secret_arn``: one secret per DB user the proxy logs in as (RDS Proxy's accounts)."""


@dataclass(frozen=True)
class FunctionSettings:
    """The deployed `aws_lambda_function` as far as running it locally needs."""

    function_name: str
    handler: str
    environment: Mapping[str, str]
    memory_mb: int = 128
    timeout_s: int = 3
    reserved_concurrency: int | None = None  # None: unreserved (Terraform's -1)
    role_arn: str = ""
    """The execution role (its credentials sign the function's IAM tokens); "" before apply."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        if "." not in self.handler:
            raise ValueError(f"handler={self.handler!r}: expected 'module.function'")
        if not 128 <= self.memory_mb <= 10240:
            raise ValueError(f"memory_mb={self.memory_mb}: must be in 128..10240")
        if not 1 <= self.timeout_s <= 900:
            raise ValueError(f"timeout_s={self.timeout_s}: must be in 1..900")
        if self.reserved_concurrency is not None and not 0 <= self.reserved_concurrency <= 1000:
            raise ValueError(f"reserved_concurrency={self.reserved_concurrency}: must be in 0..1000 or None")


ACCOUNT_RATE_LIMIT = 10_000.0
ACCOUNT_BURST_LIMIT = 5_000
"""API Gateway's account-level throttling quota per Region, what applies when a stage sets no limits."""
THROTTLE_RATE_RANGE = (0.0, 1e9)
THROTTLE_BURST_RANGE = (0, 1_000_000_000)


@dataclass(frozen=True)
class ThrottleSettings:
    """The ``$default`` stage's ``default_route_settings`` throttling: a token bucket of ``burst_limit`` tokens,
    refilled at ``rate_limit`` per second. Default: the account quota (no stage limits set)."""

    rate_limit: float = ACCOUNT_RATE_LIMIT
    burst_limit: int = ACCOUNT_BURST_LIMIT
    from_stage: bool = False
    """True when the deployed stage sets the limits; False: the account quota applies."""

    def __post_init__(self) -> None:
        rate, burst = self.rate_limit, self.burst_limit
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not (THROTTLE_RATE_RANGE[0] <= rate <= THROTTLE_RATE_RANGE[1])
        ):
            raise ValueError(
                f"invalid setting throttling_rate_limit={rate!r}: allowed a number from {THROTTLE_RATE_RANGE[0]:g} "
                f"to {THROTTLE_RATE_RANGE[1]:g}"
            )
        if (
            isinstance(burst, bool)
            or not isinstance(burst, int)
            or not (THROTTLE_BURST_RANGE[0] <= burst <= THROTTLE_BURST_RANGE[1])
        ):
            raise ValueError(
                f"invalid setting throttling_burst_limit={burst!r}: allowed an integer from "
                f"{THROTTLE_BURST_RANGE[0]} to {THROTTLE_BURST_RANGE[1]}"
            )


@dataclass(frozen=True)
class DeployedStack:
    """What the local data plane takes from the deployed (or synthesized) stack."""

    function: FunctionSettings
    pool: ConnectionPoolRules
    proxy: ProxySettings = field(default_factory=ProxySettings)
    route_keys: tuple[str, ...] = ("$default",)
    source: str = ""
    unresolved: tuple[str, ...] = field(default=())
    """Environment variables whose value is a Terraform reference not resolvable here (synth only)."""
    migrator: FunctionSettings | None = None
    """The schema migrator function (handler ``MIGRATOR_HANDLER``); None in stacks deployed without one."""
    throttling: ThrottleSettings = field(default_factory=ThrottleSettings)


# --- locating the inputs ---------------------------------------------------------------------
def state_file_candidates(stack: str = DEFAULT_STACK, root: Path = REPO_ROOT) -> list[Path]:
    """The local backend's state path from the synthesized config first, then the usual cdktf places."""
    directory = stack_dir(stack, root)
    candidates: list[Path] = []
    synth = directory / "cdk.tf.json"
    if synth.is_file():
        try:
            backend = json.loads(synth.read_text()).get("terraform", {}).get("backend", {}).get("local", {})
        except json.JSONDecodeError:
            backend = {}
        if backend.get("path"):
            path = Path(backend["path"])
            candidates.append(path if path.is_absolute() else directory / path)
    candidates += [
        default_state_file(stack, root),
        directory / f"terraform.{stack}.tfstate",
        directory / "terraform.tfstate",
    ]
    return list(dict.fromkeys(candidates))


def load(stack: str = DEFAULT_STACK, root: Path = REPO_ROOT, settings_from_synth: bool = False) -> DeployedStack:
    """The deployed stack's settings; with `settings_from_synth`, read the synthesized config instead."""
    if settings_from_synth:
        synth = stack_dir(stack, root) / "cdk.tf.json"
        if not synth.is_file():
            raise DeployedStateError(f"{synth} does not exist: run `python main.py` (or `npx cdktf synth`) first.")
        return parse_synth(json.loads(synth.read_text()), source=str(synth))
    for path in state_file_candidates(stack, root):
        if path.is_file():
            state = json.loads(path.read_text())
            if state.get("resources"):
                return parse_state(state, source=str(path))
    looked = ", ".join(map(str, state_file_candidates(stack, root)))
    raise DeployedStateError(
        f"no deployed state for stack '{stack}' (looked for {looked}): "
        "run `python -m local deploy` first, or pass --settings-from-synth to use the synthesized config."
    )


# --- Terraform state (format version 4) ------------------------------------------------------
def _state_resources(state: Mapping[str, Any], rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in state.get("resources", []):
        if resource.get("mode") == "managed" and resource.get("type") == rtype:
            for instance in resource.get("instances", []):
                yield resource.get("name", ""), instance.get("attributes", {})


def _block(value: Any) -> dict[str, Any]:
    """Nested blocks are lists in state and objects (or lists) in synth output."""
    if isinstance(value, list):
        return value[0] if value else {}
    return value or {}


def _only(items: list[tuple[str, dict[str, Any]]], rtype: str, source: str) -> dict[str, Any]:
    if len(items) != 1:
        raise DeployedStateError(
            f"{source}: expected exactly one {rtype}, found {len(items)}: run `python -m local deploy`."
        )
    return items[0][1]


def _functions(items: list[tuple[str, dict[str, Any]]], source: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(request function, migrator or None), told apart by their handler strings (`app_contract`).

    A stack deployed with an older handler string for the request function (before the handler was a package) has
    it as its only function besides the migrator: that one serves.
    """
    by_handler: dict[str, list[dict[str, Any]]] = {}
    for _, attrs in items:
        by_handler.setdefault(str(attrs.get("handler", "")), []).append(attrs)
    migrators = by_handler.get(app_contract.MIGRATOR_HANDLER, [])
    others = [attrs for _, attrs in items if attrs.get("handler") != app_contract.MIGRATOR_HANDLER]
    requests = by_handler.get(app_contract.REQUEST_HANDLER) or (others if len(others) == 1 else [])
    for role, found in (("request function", requests), ("migrator", migrators)):
        if len(found) > 1 or (role == "request function" and not found):
            handler = app_contract.REQUEST_HANDLER if role == "request function" else app_contract.MIGRATOR_HANDLER
            raise DeployedStateError(
                f"{source}: expected one aws_lambda_function with handler {handler} (the {role}), found "
                f"{len(found)}: run `python -m local deploy`."
            )
    return requests[0], migrators[0] if migrators else None


_UNSET_ROUTE_SETTINGS = {"data_trace_enabled": False, "detailed_metrics_enabled": False, "logging_level": ""}


def _throttling(stages: list[tuple[str, dict[str, Any]]]) -> ThrottleSettings:
    """The ``$default`` stage's limits; the account quota when the stage sets none.

    The provider writes ``default_route_settings`` with 0/0 limits into the state of a stage whose configuration
    has no such block (terraform-provider-aws #27674): an all-default block means "not configured". A block that
    sets anything else with 0/0 limits is what API Gateway then enforces: every request gets 429.
    """
    stage = next((attrs for _, attrs in stages if attrs.get("name") == "$default"), stages[0][1] if stages else {})
    routes = _block(stage.get("default_route_settings"))
    burst, rate = routes.get("throttling_burst_limit"), routes.get("throttling_rate_limit")
    others = {key: routes.get(key, default) or default for key, default in _UNSET_ROUTE_SETTINGS.items()}
    if (burst is None and rate is None) or (not burst and not rate and others == _UNSET_ROUTE_SETTINGS):
        return ThrottleSettings()
    try:
        return ThrottleSettings(
            rate_limit=float(rate if rate is not None else ACCOUNT_RATE_LIMIT),
            burst_limit=int(burst if burst is not None else ACCOUNT_BURST_LIMIT),
            from_stage=True,
        )
    except (TypeError, ValueError) as exc:
        raise DeployedStateError(f"the $default stage's throttling: {exc}") from None


def parse_state(state: Mapping[str, Any], source: str = "state") -> DeployedStack:
    if state.get("version") != 4:
        raise DeployedStateError(
            f"{source}: Terraform state version {state.get('version')!r} is not supported (need 4)"
        )
    function, migrator = _functions(list(_state_resources(state, "aws_lambda_function")), source)
    target_group = _only(
        list(_state_resources(state, "aws_db_proxy_default_target_group")), "aws_db_proxy_default_target_group", source
    )
    proxy = _only(list(_state_resources(state, "aws_db_proxy")), "aws_db_proxy", source)
    routes = tuple(attrs["route_key"] for _, attrs in _state_resources(state, "aws_apigatewayv2_route"))
    return DeployedStack(
        function=_function_settings(function, {}),
        pool=_pool_settings(_block(target_group.get("connection_pool_config")), proxy),
        proxy=_proxy_settings(proxy),
        route_keys=routes or ("$default",),
        source=source,
        migrator=_function_settings(migrator, {}) if migrator is not None else None,
        throttling=_throttling(list(_state_resources(state, "aws_apigatewayv2_stage"))),
    )


# --- synthesized cdk.tf.json ------------------------------------------------------------------
def parse_synth(config: Mapping[str, Any], source: str = "cdk.tf.json") -> DeployedStack:
    resources: Mapping[str, Mapping[str, Any]] = config.get("resource", {})

    def of_type(rtype: str) -> list[tuple[str, dict[str, Any]]]:
        return list(resources.get(rtype, {}).items())

    function, migrator = _functions(of_type("aws_lambda_function"), source)
    target_group = _only(of_type("aws_db_proxy_default_target_group"), "aws_db_proxy_default_target_group", source)
    proxy = _only(of_type("aws_db_proxy"), "aws_db_proxy", source)
    routes = tuple(attrs["route_key"] for _, attrs in of_type("aws_apigatewayv2_route"))
    unresolved: list[str] = []
    settings = _function_settings(function, resources, unresolved)
    return DeployedStack(
        function=settings,
        pool=_pool_settings(_block(target_group.get("connection_pool_config")), proxy),
        proxy=_proxy_settings(proxy),
        route_keys=routes or ("$default",),
        source=source,
        unresolved=tuple(unresolved),
        migrator=_function_settings(migrator, resources, []) if migrator is not None else None,
        throttling=_throttling(of_type("aws_apigatewayv2_stage")),
    )


def _resolve(value: Any, resources: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace a whole-value `${type.name.attr}` reference by that attribute when it is a literal."""
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    if not match:
        return value
    rtype, name, attr = match.groups()
    target = resources.get(rtype, {}).get(name, {}).get(attr)
    return target if isinstance(target, (str, int, float)) and not isinstance(target, bool) else value


# --- shared ----------------------------------------------------------------------------------
def _function_settings(
    attrs: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]], unresolved: list[str] | None = None
) -> FunctionSettings:
    variables = _block(attrs.get("environment")).get("variables") or {}
    environment: dict[str, str] = {}
    for name, value in variables.items():
        value = _resolve(value, resources)
        if isinstance(value, str) and "${" in value and unresolved is not None:
            unresolved.append(name)
        environment[name] = str(value)
    reserved = attrs.get("reserved_concurrent_executions")
    return FunctionSettings(
        function_name=str(_resolve(attrs.get("function_name", "function"), resources)),
        handler=str(attrs.get("handler", "")),
        environment=environment,
        memory_mb=int(attrs.get("memory_size") or 128),
        timeout_s=int(attrs.get("timeout") or 3),
        reserved_concurrency=None if reserved is None or int(reserved) < 0 else int(reserved),
        role_arn=role if isinstance(role := attrs.get("role"), str) and role.startswith("arn:") else "",
    )


def _pool_settings(pool: Mapping[str, Any], proxy: Mapping[str, Any]) -> ConnectionPoolRules:
    defaults = ConnectionPoolRules()
    return ConnectionPoolRules(
        max_connections_percent=int(pool.get("max_connections_percent", defaults.max_connections_percent)),
        max_idle_connections_percent=int(
            pool.get("max_idle_connections_percent", defaults.max_idle_connections_percent)
        ),
        connection_borrow_timeout=int(pool.get("connection_borrow_timeout", defaults.connection_borrow_timeout)),
        init_query=pool.get("init_query") or None,  # state stores "" for unset
        session_pinning_filters=tuple(pool.get("session_pinning_filters") or ()),
        idle_client_timeout=int(proxy.get("idle_client_timeout", defaults.idle_client_timeout)),
    )


def _proxy_settings(proxy: Mapping[str, Any]) -> ProxySettings:
    blocks = proxy.get("auth") or []
    blocks = [blocks] if isinstance(blocks, Mapping) else list(blocks)
    auth = blocks[0] if blocks else {}
    endpoint, arn = proxy.get("endpoint"), proxy.get("arn")
    arns = (str(block.get("secret_arn") or "") for block in blocks)
    return ProxySettings(
        require_tls=bool(proxy.get("require_tls", False)),
        iam_auth=str(auth.get("iam_auth") or "DISABLED"),
        endpoint=endpoint if isinstance(endpoint, str) and "${" not in endpoint else "",
        region=arn.split(":")[3] if isinstance(arn, str) and arn.startswith("arn:") and arn.count(":") >= 5 else "",
        secret_arns=tuple(dict.fromkeys(a for a in arns if a and "${" not in a)),
    )
