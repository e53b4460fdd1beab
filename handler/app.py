"""Lambda entry point behind API Gateway HTTP API (payload 2.0): each GET records its UTC time in MySQL
(through RDS Proxy) and returns the newest recorded times.

Settings, logger and the store are created once per container at import (cold start); the database
connection itself is opened on first use and reused by later warm invocations. Each GET stores exactly one
row per request id (see ``app_store``), and its database calls end before the invocation's deadline
(``get_remaining_time_in_millis()`` minus ``DB_DEADLINE_MARGIN_MS``).
The handler never raises: failures become JSON 503 (database unavailable, nothing stored), 502 (the connection
failed after COMMIT was sent, so the row may exist) or 500 responses.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

if __package__:
    from .app_logging import get_logger
    from .app_settings import ConfigError, Settings
    from .app_store import AccessSnapshot, AccessTimesStore, DatabaseUnavailable, Deadline, OutcomeUnknown
else:  # top level of the Lambda zip: handler string "app.lambda_handler"
    from app_logging import get_logger  # type: ignore[no-redef]
    from app_settings import ConfigError, Settings  # type: ignore[no-redef]
    from app_store import (  # type: ignore[no-redef]
        AccessSnapshot,
        AccessTimesStore,
        DatabaseUnavailable,
        Deadline,
        OutcomeUnknown,
    )

__all__ = ["ConfigError", "SETTINGS", "STORE", "lambda_handler"]

SETTINGS = Settings.from_env(os.environ)  # raises ConfigError naming the variable: fails the cold start
LOGGER = get_logger(SETTINGS.log_level)
STORE = AccessTimesStore(SETTINGS, LOGGER)

_ALLOWED_METHODS = ("GET",)
_container = {"cold": True}  # first invocation of this execution environment


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    method = _http_method(event)
    fields: dict[str, Any] = {
        "request_id": getattr(context, "aws_request_id", None),
        "method": method,
        "cold_start": _container.pop("cold", False),
    }
    try:
        if method is None:
            response = _json_response(400, {"error": "not an API Gateway HTTP API event"})
        elif method not in _ALLOWED_METHODS:
            response = _json_response(
                405, {"error": f"method {method} not allowed"}, {"Allow": ", ".join(_ALLOWED_METHODS)}
            )
        else:
            deadline = Deadline.from_context(context, SETTINGS.deadline_margin_ms)
            snapshot = STORE.record_access(datetime.now(UTC), _request_id(event, context), deadline)
            response = _json_response(200, _snapshot_body(snapshot))
            fields["count"] = snapshot.total
            if snapshot.replayed:
                fields["replayed"] = True
    except OutcomeUnknown as exc:
        fields.update(errno=exc.errno, error=str(exc))
        response = _json_response(502, {"error": "outcome unknown: the time may have been stored", "code": exc.errno})
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


def _log_level(status: int) -> int:
    if status == 503:
        return logging.WARNING  # expected under overload; the errno field says why
    return logging.ERROR if status >= 500 else logging.INFO


def _http_method(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else None
    method = method or event.get("httpMethod")  # payload 2.0, else 1.0
    return method.upper() if isinstance(method, str) else None


def _request_id(event: dict[str, Any], context: Any) -> str | None:
    """API Gateway's id of the request (the same for every attempt at it), else the invocation's."""
    request_context = event.get("requestContext")
    request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if isinstance(request_id, str) and request_id:
        return request_id
    invocation_id = getattr(context, "aws_request_id", None)
    return invocation_id if isinstance(invocation_id, str) and invocation_id else None


def _iso_utc(naive_utc: datetime) -> str:
    # isoformat is twice as fast as strftime, and a response formats up to RESPONSE_LIMIT of these.
    return naive_utc.isoformat(timespec="microseconds") + "Z"


def _snapshot_body(snapshot: AccessSnapshot) -> dict[str, Any]:
    return {
        "inserted": _iso_utc(snapshot.inserted_at.replace(tzinfo=None)),
        "count": snapshot.total,
        "limit": SETTINGS.response_limit,
        "times": [_iso_utc(moment) for moment in snapshot.newest],
    }


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
