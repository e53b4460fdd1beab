"""What the handler reads from an API Gateway event, and which route it asks for.

Payload 2.0 (HTTP APIs) carries the method in ``requestContext.http.method`` and the path in ``rawPath`` (also
``requestContext.http.path``); payload 1.0 in ``httpMethod`` and ``path``. With the ``$default`` stage the path is
the route path; with a named stage API Gateway puts ``/<stage>`` in front of it in payload 2.0, which is removed
here so routes match either way. Routes come from ``app_contract.ROUTES``: a path it does not know is a 404 with
API Gateway's own body, a known path with another method a 405 with an ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler import app_contract as contract

NOT_FOUND = {"message": "Not Found"}  # API Gateway's body for a request that matches no route
METHOD_NOT_ALLOWED = {"message": "Method Not Allowed"}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    """Upper case, as API Gateway sends it."""
    path: str
    """The route path, without the stage and the query string; ``/`` when the event names none."""
    request_id: str | None
    """API Gateway's id of the request (the same for every attempt at it); None when the event has none."""


@dataclass(frozen=True)
class RouteDecision:
    """``status`` 200: ``path`` is served; 404: no such route; 405: ``allowed`` lists the methods it has."""

    path: str
    status: int = 200
    allowed: tuple[str, ...] = ()


def parse_request(event: Any) -> HttpRequest | None:
    """The request an API Gateway event describes, or None when the event is not one."""
    if not isinstance(event, Mapping):
        return None
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    http = context.get("http")
    http = http if isinstance(http, Mapping) else {}
    method = http.get("method") or event.get("httpMethod")  # payload 2.0, else 1.0
    if not isinstance(method, str) or not method:
        return None
    path = _first_text(event.get("rawPath"), http.get("path"))
    if path is not None:
        path = _without_stage(path, context.get("stage"))
    else:
        path = _first_text(event.get("path")) or "/"  # payload 1.0 (already without the stage), else the root
    request_id = context.get("requestId")
    return HttpRequest(
        method=method.upper(),
        path=path,
        request_id=request_id if isinstance(request_id, str) and request_id else None,
    )


def route(request: HttpRequest, routes: Mapping[str, tuple[str, ...]] = contract.ROUTES) -> RouteDecision:
    """Which route serves ``request``: 404 for an unknown path, 405 (with the allowed methods) for another method."""
    methods = routes.get(request.path)
    if methods is None:
        return RouteDecision(request.path, status=404)
    if request.method not in methods:
        return RouteDecision(request.path, status=405, allowed=methods)
    return RouteDecision(request.path)


def _first_text(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def _without_stage(path: str, stage: Any) -> str:
    if not isinstance(stage, str) or not stage or stage == "$default":
        return path
    prefix = f"/{stage}"
    if path == prefix:
        return "/"
    return path[len(prefix) :] if path.startswith(prefix + "/") else path
