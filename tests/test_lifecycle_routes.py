"""Routes on the emulator: a second route (GET /times) deployed, served by ``python -m local serve``, and what is
not configured refused with API Gateway's 404.

One deployment of the ``local`` stack with ``api_routes = ANY /, GET /times`` (module fixture, in a fresh checkout);
run with ``pytest -m lifecycle -s tests/test_lifecycle_routes.py`` to see progress.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from local.control_plane import lifecycle as lc
from local.control_plane.checkout import fresh_checkout
from local.control_plane.emulator_control import down, up
from local.control_plane.project import LifecycleError, Project
from local.control_plane.state_queries import state_list

pytestmark = pytest.mark.lifecycle

STACK = "local"
ROUTES = {"SMS_LOCAL__API_ROUTES": "ANY /,GET /times"}
SERVE_START_S = 180.0


@dataclass
class Served:
    project: Project
    url: str


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("checkout") / "repo"
    try:
        fresh_checkout(root)
    except LifecycleError as exc:
        pytest.skip(str(exc))
    project = Project(root=root, emulator_port=0, output=lambda line: print(line, flush=True))
    up(project)
    try:
        lc.deploy(STACK, project, extra_env=ROUTES)
        yield project
    finally:
        try:
            if project.emulator().is_running() and state_list(STACK, project):
                lc.destroy(STACK, project, extra_env=ROUTES)
        except LifecycleError as exc:
            print(f"[test] cleanup: {exc}")
        finally:
            down(project)


def _resources(project: Project, rtype: str) -> list[dict]:
    """Attributes of every deployed ``rtype`` instance, from the checkout's state file."""
    state = json.loads((project.root / f"terraform.{STACK}.tfstate").read_text())
    return [
        instance["attributes"]
        for resource in state["resources"]
        if resource["mode"] == "managed" and resource["type"] == rtype
        for instance in resource["instances"]
    ]


def test_both_routes_are_deployed_each_with_an_invoke_permission_for_exactly_its_route(project):
    routes = sorted(route["route_key"] for route in _resources(project, "aws_apigatewayv2_route"))
    assert routes == ["ANY /", "GET /times"]
    (api,) = _resources(project, "aws_apigatewayv2_api")
    sources = sorted(p["source_arn"] for p in _resources(project, "aws_lambda_permission"))
    assert sources == [f"{api['execution_arn']}/*/*/", f"{api['execution_arn']}/*/GET/times"]


@pytest.fixture(scope="module")
def served(project, tmp_path_factory) -> Iterator[Served]:
    """``python -m local serve`` in the checkout, against its emulator, until the module's tests are done."""
    logs = tmp_path_factory.mktemp("serve")
    env = {**os.environ, **ROUTES, "LOCAL_AWS_ENDPOINT": project.emulator().endpoint, "PYTHONUNBUFFERED": "1"}
    out_path, err_path = logs / "serve.out", logs / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:  # files: an undrained pipe would block serve
        process = subprocess.Popen(
            [sys.executable, "-m", "local", "serve", "--password-auth"],
            cwd=project.root,
            stdout=out,
            stderr=err,
            env=env,
        )
    try:
        deadline = time.monotonic() + SERVE_START_S
        url = None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            match = re.search(r"^serving (http://\S+?)/ ", out_path.read_text(errors="replace"), re.MULTILINE)
            url = match.group(1) if match else None
            if url is None:
                time.sleep(0.2)
        assert url, f"serve did not start:\n{out_path.read_text()}\n{err_path.read_text()}"
        yield Served(project, url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


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


def test_the_second_route_is_served_and_reads_without_storing(served):
    status, _, stored = _until_served(served.url + "/")
    assert status == 200, stored
    status, _, listed = _request(served.url + "/times")
    assert status == 200, listed
    status, _, again = _request(served.url + "/times")
    assert status == 200 and again["count"] == listed["count"] >= stored["count"] >= 1
    assert stored["times"][0] in listed["times"]  # the time GET / stored, read back without storing another


def test_paths_and_methods_not_configured_get_api_gateways_404(served):
    for method, path in (("GET", "/nowhere"), ("POST", "/times"), ("GET", "/times/extra")):
        status, _, body = _request(served.url + path, method)
        assert (status, body) == (404, {"message": "Not Found"}), (method, path)


def test_the_configured_any_route_reaches_the_handler_which_answers_405_for_other_methods(served):
    status, headers, _ = _request(served.url + "/", "POST")
    assert status == 405 and "GET" in headers.get("Allow", headers.get("allow", ""))
