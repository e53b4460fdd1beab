"""What a running local data plane tells people: its addresses, its settings and every difference from the cloud.

``serve`` prints `describe` and writes `addresses` as the ``ServeRecord`` other commands (``sql``, ``env``) read;
the experiment prints `describe` for each path. Kept apart from `plane` so that module only starts and stops.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from handler import app_contract as names
from local.common.serve_record import ServeRecord

if TYPE_CHECKING:
    from local.data_plane.plane import LocalDataPlane

LOOPBACK = "127.0.0.1"


def addresses(plane: LocalDataPlane, stack_name: str) -> ServeRecord:
    """Where this data plane can be reached (no secret in it)."""
    proxy, auth, db = plane.proxy, plane.auth, plane.db
    settings = plane.stack.proxy
    environment = plane.stack.function.environment
    stats_port = proxy.stats_port if proxy is not None else None
    return ServeRecord(
        stack=stack_name,
        pid=os.getpid(),
        http_url=plane.url,
        proxy_host=LOOPBACK if proxy is not None else "",
        proxy_port=proxy.port if proxy is not None else 0,
        stats_url=f"http://{LOOPBACK}:{stats_port}/stats" if stats_port else "",
        endpoint=auth.settings.proxy.endpoint if auth is not None else settings.endpoint,
        endpoint_port=auth.settings.port if auth is not None else int(environment.get(names.DB_PORT) or 0),
        ca_file=str(auth.authenticator.ca_bundle_path) if auth is not None else "",
        db_port=db.port if db is not None else 0,
        region=auth.region if auth is not None else settings.region,
    )


def address_lines(record: ServeRecord) -> list[str]:
    """The addresses as ``serve`` prints them: the same on every start (stable ports)."""
    lines = [f"HTTP API: {record.http_url}/"]
    if record.proxy_port:
        lines.append(f"RDS Proxy stand-in: {record.proxy_host}:{record.proxy_port}  (stats: {record.stats_url})")
    lines.append(f"DB instance (MariaDB): {LOOPBACK}:{record.db_port}")
    if record.proxy_port and record.endpoint:
        lines.append(
            f"hosts line, for clients that connect by the endpoint name (then use port {record.proxy_port}): "
            f"{LOOPBACK} {record.endpoint}"
        )
    return lines


def describe(plane: LocalDataPlane) -> str:
    db, config, stack = plane.db, plane.config, plane.stack
    lines = [
        f"settings from: {stack.source}",
        f"function: {stack.function.function_name} ({stack.function.handler}), "
        f"timeout {stack.function.timeout_s}s, up to {plane.max_concurrency} containers",
        f"database: MariaDB 127.0.0.1:{db.port if db else '?'} max_connections={config.db_max_connections}",
    ]
    persistent = config.persistent_db
    if persistent is not None and plane.instance is not None:
        instance = persistent.instance
        lines.append(
            f"database instance: {instance.identifier} (db {instance.db_name}, master user "
            f"{plane.instance.username} from its secret), data kept in {plane.instance.directory}; "
            f"deployed port {instance.port}, local port {db.port if db else '?'}"
        )
        applied = ", ".join(option.lstrip("-") for option in plane.instance.options) or "none"
        lines.append(f"parameter group applied: {applied}")
        if plane.instance.not_honoured:
            lines.append("parameters not honoured locally: " + "; ".join(map(str, plane.instance.not_honoured)))
    else:
        lines.append("database instance: throw-away (data removed when this process stops)")
    if plane.proxy is not None:
        pool = stack.pool
        lines.append(
            f"proxy: 127.0.0.1:{plane.proxy.port} pool cap {plane.pool_cap} "
            f"({pool.max_connections_percent}% of {config.db_max_connections}), "
            f"borrow timeout {pool.connection_borrow_timeout}s, idle client timeout {pool.idle_client_timeout}s"
        )
    else:
        lines.append("proxy: none (handler connects directly to the DB)")
    if plane.auth is not None:
        lines.append("client auth: IAM token signed with the function role's credentials, verified TLS (as deployed)")
    throttling = plane.throttling
    source = (
        "set by this run"
        if config.throttling is not None
        else ("the $default stage's" if throttling.from_stage else "API Gateway's account quota: the stage sets none")
    )
    lines.append(
        f"throttling: burst {throttling.burst_limit}, rate {throttling.rate_limit:g}/s ({source}); "
        'above it: 429 {"message":"Too Many Requests"}, the function is not invoked'
    )
    lines.append("differences from the cloud:")
    lines.extend(f"  {name}: {value}" for name, value in sorted(plane.overrides.items()))
    return "\n".join(lines)
