"""A local stand-in for an API Gateway HTTP API with a Lambda proxy integration (payload format 2.0).

`config` holds the settings and API Gateway's quotas, `events` the 2.0 event and result mapping, `app` the
request reading under those limits (ASGI), `server` the hypercorn endpoint and the error mapping (see its
docstring for which status answers what, with sources).
"""

from local.data_plane.http_api.config import HttpApiConfig, integration_timeout_for
from local.data_plane.http_api.events import HttpResponse, build_event, map_result, match_route, message_response
from local.data_plane.http_api.server import HttpApi

__all__ = [
    "HttpApi",
    "HttpApiConfig",
    "HttpResponse",
    "build_event",
    "integration_timeout_for",
    "map_result",
    "match_route",
    "message_response",
]
