"""Routes: ``GET /`` stores and answers, ``GET /times`` answers without storing, other paths 404 and other methods
405 as API Gateway answers; the event parsing holds for any input (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.app_contract import ROUTES
from handler.app_http import HttpRequest, parse_request, route
from local.data_plane.mariadb import MariaDBServer
from tests.handler.handler_support import Accounts, HandlerLoader, create_master, invoke, migrate, new_table, stored

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")

UNTIMED = settings(deadline=None)
"""Properties have no time limit per example: on a loaded machine a descheduled example is not a failure."""


@pytest.fixture(scope="module")
def db(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory(max_connections=20)


@pytest.fixture(scope="module")
def accounts(db: MariaDBServer) -> Accounts:
    return create_master(db)


@pytest.fixture
def app(db: MariaDBServer, accounts: Accounts, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    table = new_table()
    migrate(db, accounts, table)
    loader = HandlerLoader(monkeypatch)
    yield loader(
        {
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_NAME": db.database,
            "DB_USER": accounts.app_user,
            "DB_PASSWORD": accounts.app_password,
            "DB_AUTH": "password",
            "DB_TABLE": table,
            "RESPONSE_LIMIT": "2",
        }
    )
    loader.close()


def event(method: str, path: str, stage: str = "$default") -> dict[str, Any]:
    prefix = "" if stage == "$default" else f"/{stage}"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": prefix + path,
        "requestContext": {"http": {"method": method, "path": prefix + path}, "stage": stage},
    }


def test_get_root_stores_and_get_times_reads_without_storing(app: Any, db: MariaDBServer) -> None:
    table = app.SETTINGS.table
    assert invoke(app, event("GET", "/times"))[:2] == (200, {"count": 0, "limit": 2, "times": []})
    stored_bodies = [invoke(app, event("GET", "/"))[1] for _ in range(3)]
    before = stored(db, table)

    status, body, headers = invoke(app, event("GET", "/times"))

    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body == {"count": 3, "limit": 2, "times": stored_bodies[-1]["times"]}  # the newest two, newest first
    assert stored(db, table) == before  # nothing stored


def test_get_times_through_a_named_stage_and_payload_1_0(app: Any) -> None:
    invoke(app, event("GET", "/"))
    assert invoke(app, event("GET", "/times", stage="prod"))[1]["count"] == 1
    version_1 = {"version": "1.0", "httpMethod": "GET", "path": "/times", "requestContext": {"stage": "prod"}}
    assert invoke(app, version_1)[1]["count"] == 1


@pytest.mark.parametrize("path", ["/nowhere", "/times/", "//", "/TIMES", "/times/extra"])
def test_unknown_paths_get_api_gateways_404_without_touching_the_database(app: Any, path: str) -> None:
    status, body, headers = invoke(app, event("GET", path))
    assert (status, body, headers) == (404, {"message": "Not Found"}, {"Content-Type": "application/json"})
    assert app.STORE.connection_id is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("path", ["/", "/times"])
def test_other_methods_get_405_with_allow_without_touching_the_database(app: Any, method: str, path: str) -> None:
    status, body, headers = invoke(app, event(method, path))
    assert (status, body, headers["Allow"]) == (405, {"message": "Method Not Allowed"}, "GET")
    assert app.STORE.connection_id is None


def test_non_http_events_get_400(app: Any) -> None:
    for bad in ({"foo": "bar"}, {"requestContext": "junk"}, {"requestContext": {"http": ["GET"]}}, None, []):
        assert app.lambda_handler(bad, None)["statusCode"] == 400
    assert app.STORE.connection_id is None


# -- parsing and routing, for any input ------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
event_keys = st.sampled_from(["rawPath", "path", "httpMethod", "requestContext", "version", "routeKey"])
paths = st.text(alphabet="/abcdefgimst%.-_", max_size=15)
stages = st.sampled_from(["$default", "prod", "v1", "times"])


@UNTIMED
@given(st.dictionaries(event_keys, json_values | paths) | json_values)
def test_any_event_parses_to_a_request_or_none_without_raising(raw: Any) -> None:
    request = parse_request(raw)
    if request is not None:
        assert request.method == request.method.upper() and request.method
        assert isinstance(request.path, str) and request.path
        assert request.request_id is None or (isinstance(request.request_id, str) and request.request_id)
        assert route(request).status in (200, 404, 405)


@UNTIMED
@given(
    st.sampled_from(METHODS) | st.text(min_size=1, max_size=8),
    paths.map(lambda p: "/" + p),
    stages,
)
def test_the_route_path_is_the_same_with_and_without_a_named_stage(method: str, path: str, stage: str) -> None:
    plain = parse_request(event(method, path))
    staged = parse_request(event(method, path, stage))
    assert plain == HttpRequest(method.upper(), path, None)
    assert staged is not None and staged.path == path and staged.method == plain.method


@UNTIMED
@given(st.sampled_from(METHODS) | st.text(min_size=1, max_size=8), paths.map(lambda p: "/" + p))
def test_routing_follows_the_contract(method: str, path: str) -> None:
    decision = route(HttpRequest(method.upper(), path, None))
    if path not in ROUTES:
        assert decision.status == 404
    elif method.upper() in ROUTES[path]:
        assert (decision.status, decision.path) == (200, path)
    else:
        assert (decision.status, decision.allowed) == (405, ROUTES[path])


@UNTIMED
@given(st.text(min_size=1, max_size=80))
def test_api_gateways_request_id_is_taken_as_is(request_id: str) -> None:
    parsed = parse_request(
        {**event("GET", "/"), "requestContext": {"http": {"method": "get"}, "requestId": request_id}}
    )
    assert parsed == HttpRequest("GET", "/", request_id)
