"""Routes on the emulator: a second route (GET /times) deployed on the shared stack, served by ``python -m local
serve``, and what is not configured refused with API Gateway's 404. ``GET /times`` also lists the rows the previous
release stored before the upgrade (see test_upgrade.py): no row was lost.

On the stack the lifecycle tier shares (see conftest), with ``api_routes = ANY /, GET /times``; run with
``pytest -m lifecycle -s tests/lifecycle`` to see progress.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.lifecycle.lifecycle_support import STACK, Deployment, ServeRun

pytestmark = pytest.mark.lifecycle

ROUTES = {"SMS_LOCAL__API_ROUTES": "ANY /,GET /times"}


@pytest.fixture(scope="module")
def routed(deployment: Deployment) -> Deployment:
    deployment.deploy(ROUTES)
    return deployment


def _resources(deployment: Deployment, rtype: str) -> list[dict]:
    """Attributes of every deployed ``rtype`` instance, from the checkout's state file."""
    state = json.loads((deployment.root / f"terraform.{STACK}.tfstate").read_text())
    return [
        instance["attributes"]
        for resource in state["resources"]
        if resource["mode"] == "managed" and resource["type"] == rtype
        for instance in resource["instances"]
    ]


@pytest.fixture(scope="module")
def served(routed: Deployment) -> Iterator[ServeRun]:
    """``python -m local serve`` in the checkout, against its emulator, until the module's tests are done."""
    with routed.serve("--password-auth") as running:
        yield running


def _request(url: str, method: str = "GET") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def _until_served(url: str, timeout_s: float = 60.0) -> tuple[int, dict, dict]:
    """The first answer that is not a 503 (the function answers 503 until the migrator has run)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = _request(url)
        if answer[0] != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_both_routes_are_deployed_each_with_an_invoke_permission_for_exactly_its_route(routed):
    routes = sorted(route["route_key"] for route in _resources(routed, "aws_apigatewayv2_route"))
    assert routes == ["ANY /", "GET /times"]
    (api,) = _resources(routed, "aws_apigatewayv2_api")
    sources = sorted(p["source_arn"] for p in _resources(routed, "aws_lambda_permission"))
    assert sources == [f"{api['execution_arn']}/*/*/", f"{api['execution_arn']}/*/GET/times"]


def test_the_second_route_is_served_and_reads_without_storing(served):
    status, _, stored = _until_served(served.url + "/")
    assert status == 200, stored
    status, _, listed = _request(served.url + "/times")
    assert status == 200, listed
    status, _, again = _request(served.url + "/times")
    assert status == 200 and again["count"] == listed["count"] >= stored["count"] >= 1
    assert stored["times"][0] in listed["times"]  # the time GET / stored, read back without storing another


def test_get_times_lists_the_rows_stored_before_the_upgrade(served, routed):
    assert routed.upgrade is not None
    status, _, listed = _request(served.url + "/times")
    assert status == 200, listed
    before = {answer["inserted"] for answer in routed.upgrade.previous_answers}
    assert before <= set(listed["times"]) and listed["count"] >= len(before) + 1, (before, listed)


def test_paths_and_methods_not_configured_get_api_gateways_404(served):
    for method, path in (("GET", "/nowhere"), ("POST", "/times"), ("GET", "/times/extra")):
        status, _, body = _request(served.url + path, method)
        assert (status, body) == (404, {"message": "Not Found"}), (method, path)


def test_the_configured_any_route_reaches_the_handler_which_answers_405_for_other_methods(served):
    status, headers, _ = _request(served.url + "/", "POST")
    assert status == 405 and "GET" in headers.get("Allow", headers.get("allow", ""))
