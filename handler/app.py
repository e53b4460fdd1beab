"""Lambda entry point behind API Gateway HTTP API: ``GET /`` records its UTC time in MySQL (through RDS Proxy) and
returns the newest recorded times; ``GET /times`` returns them without recording anything.

Settings, logger and the store are created once per container at import (cold start); the database
connection itself is opened on first use and reused by later warm invocations. Each ``GET /`` stores exactly one
row per request id in one autocommitted statement (see ``app_store``), and its database calls end before the
invocation's deadline (``get_remaining_time_in_millis()`` minus ``DB_DEADLINE_MARGIN_MS``).
The handler never raises: failures become JSON 503 (database unavailable or schema not migrated yet: nothing
stored), 502 (a write's reply was lost and the retry could not learn whether it was applied) or 500 responses;
a path it does not serve is a 404 and another method a 405, as API Gateway answers them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

from handler.app_contract import ROUTES
from handler.app_db import DatabaseUnavailable, Deadline
from handler.app_http import METHOD_NOT_ALLOWED, NOT_FOUND, HttpRequest, parse_request, route
from handler.app_logging import get_logger
from handler.app_settings import ConfigError, Settings
from handler.app_store import AccessSnapshot, AccessTimesStore, OutcomeUnknown, SchemaNotReady, TimesSnapshot

__all__ = ["ConfigError", "SETTINGS", "STORE", "lambda_handler"]

SETTINGS = Settings.from_env(os.environ)  # raises ConfigError naming the variable: fails the cold start
LOGGER = get_logger(SETTINGS.log_level)
STORE = AccessTimesStore(SETTINGS, LOGGER)

_container = {"cold": True}  # first invocation of this execution environment


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    request = parse_request(event)
    fields: dict[str, Any] = {
        "request_id": getattr(context, "aws_request_id", None),
        "method": request.method if request else None,
        "path": request.path if request else None,
        "cold_start": _container.pop("cold", False),
    }
    try:
        response = _respond(request, context, fields)
    except OutcomeUnknown as exc:
        fields.update(errno=exc.errno, error=str(exc))
        response = _json_response(502, {"error": "outcome unknown: the time may have been stored", "code": exc.errno})
    except SchemaNotReady as exc:
        fields.update(error=str(exc))
        response = _json_response(503, {"error": "database schema not migrated yet"}, {"Retry-After": "1"})
    except DatabaseUnavailable as exc:
        fields.update(errno=exc.errno, error=str(exc))
        response = _json_response(503, {"error": "database unavailable", "code": exc.errno}, {"Retry-After": "1"})
    except Exception as exc:  # the contract is "never an unhandled exception"
        fields.update(errno=getattr(exc, "errno", None), error=type(exc).__name__)
        LOGGER.exception("unexpected error", extra={"request_id": fields["request_id"]})
        response = _json_response(500, {"error": "internal error"})
    fields.update(status=response["statusCode"], latency_ms=round((time.perf_counter() - started) * 1000, 2))
    LOGGER.log(_log_level(response["statusCode"]), "request", extra=fields)
    return response


def _respond(request: HttpRequest | None, context: Any, fields: dict[str, Any]) -> dict[str, Any]:
    if request is None:
        return _json_response(400, {"error": "not an API Gateway HTTP API event"})
    decision = route(request)
    if decision.status == 404:
        return _json_response(404, NOT_FOUND)
    if decision.status == 405:
        return _json_response(405, METHOD_NOT_ALLOWED, {"Allow": ", ".join(decision.allowed)})
    deadline = Deadline.from_context(context, SETTINGS.deadline_margin_ms)
    return _ROUTE_HANDLERS[decision.path](request, context, deadline, fields)


def _store_time(request: HttpRequest, context: Any, deadline: Deadline, fields: dict[str, Any]) -> dict[str, Any]:
    """``GET /``: store this request's time once, answer with the newest times and the total."""
    request_id = request.request_id or getattr(context, "aws_request_id", None)
    snapshot = STORE.record_access(datetime.now(UTC), request_id if isinstance(request_id, str) else None, deadline)
    fields["count"] = snapshot.total
    if snapshot.replayed:
        fields["replayed"] = True
    return _json_response(200, _snapshot_body(snapshot))


def _list_times(request: HttpRequest, context: Any, deadline: Deadline, fields: dict[str, Any]) -> dict[str, Any]:
    """``GET /times``: the newest times and the total, storing nothing."""
    times = STORE.newest_times(deadline)
    fields["count"] = times.total
    return _json_response(200, _times_body(times))


_ROUTE_HANDLERS = {"/": _store_time, "/times": _list_times}
if set(_ROUTE_HANDLERS) != set(ROUTES):  # every route of the contract has exactly one handler here
    raise ImportError(f"handlers for {sorted(_ROUTE_HANDLERS)} but app_contract.ROUTES has {sorted(ROUTES)}")


def _log_level(status: int) -> int:
    if status == 503:
        return logging.WARNING  # expected under overload or before the migrator ran; the fields say why
    return logging.ERROR if status >= 500 else logging.INFO


def _snapshot_body(snapshot: AccessSnapshot) -> dict[str, Any]:
    return {
        "inserted": snapshot.inserted,
        "count": snapshot.total,
        "limit": SETTINGS.response_limit,
        "times": snapshot.newest,
    }


def _times_body(times: TimesSnapshot) -> dict[str, Any]:
    return {
        "count": times.total,
        "limit": SETTINGS.response_limit,
        "times": times.newest,
    }


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
