"""Every example synthesizes as its own CDKTF app, has its key resources, and is valid Terraform (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.control_plane.toolchain import terraform_env
from modules.project import REPO_ROOT
from tests.modules.construct_support import Template

pytestmark = pytest.mark.heavy

EXAMPLES = REPO_ROOT / "examples"
NAMES = ("new-vpc", "existing-vpc", "alarms-to-sns", "shared-proxy")


_SYNTH_ALL = """
import os, runpy, sys
for directory in sys.argv[1:]:
    os.chdir(directory)
    runpy.run_path("main.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> dict[str, Path]:
    """Each example synthesized the way its cdktf.json runs it: its ``main.py`` as ``__main__``, in its directory,
    with the repository on PYTHONPATH; all four in one process, which starts Python and the jsii runtime once (the
    runtime reads ``CDKTF_OUTDIR`` once, so their stacks share one output directory, each under its own name)."""
    out = tmp_path_factory.mktemp("examples")
    for name in NAMES:
        config = json.loads((EXAMPLES / name / "cdktf.json").read_text())
        assert config["app"] == "PYTHONPATH=../.. ../../.venv/bin/python main.py"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CDKTF_OUTDIR": str(out)}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    directories = [str(EXAMPLES / name) for name in NAMES]
    run = subprocess.run(
        [sys.executable, "-c", _SYNTH_ALL, *directories], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return {name: out / "stacks" / name for name in NAMES}


def _template(synthesized, name) -> Template:
    return Template(json.loads((synthesized[name] / "cdk.tf.json").read_text()))


def test_every_example_has_a_main_a_cdktf_json_and_a_readme():
    for name in NAMES:
        assert {"main.py", "cdktf.json", "README.md"} <= {p.name for p in (EXAMPLES / name).iterdir()}


def test_new_vpc_creates_the_whole_architecture(synthesized):
    stack = _template(synthesized, "new-vpc")
    stack.has_resource_properties("aws_vpc", {"cidr_block": "10.0.0.0/16"})
    stack.resource_count_is("aws_subnet", 4)
    stack.has_resource_properties("aws_db_proxy", {"name": "demo-proxy", "require_tls": True})
    stack.has_resource_properties("aws_db_instance", {"identifier": "demo-db", "deletion_protection": True})
    stack.has_resource_properties("aws_lambda_function", {"function_name": "demo-api"})
    stack.has_resource_properties("aws_lambda_invocation", {})  # the deploy runs the migrator
    stack.has_resource_properties("aws_apigatewayv2_route", {"route_key": "ANY /"})
    assert set(stack.json["output"]) == {"api_url", "proxy_endpoint", "dashboard_url"}


def test_existing_vpc_creates_no_vpc_and_no_subnets(synthesized):
    stack = _template(synthesized, "existing-vpc")
    for owned_by_the_vpc in ("aws_vpc", "aws_subnet", "aws_flow_log", "aws_default_security_group"):
        stack.resource_count_is(owned_by_the_vpc, 0)
    assert set(stack.json["variable"]) == {"vpc_id", "lambda_subnet_ids", "db_subnet_ids"}
    assert {g["vpc_id"] for g in stack.resources("aws_security_group").values()} == {"${var.vpc_id}"}
    stack.has_resource_properties("aws_db_subnet_group", {"subnet_ids": "${var.db_subnet_ids}"})
    stack.has_resource_properties("aws_db_proxy", {"vpc_subnet_ids": "${var.db_subnet_ids}"})
    stack.has_resource_properties(
        "aws_lambda_function", {"function_name": "shared-api", "vpc_config": {"subnet_ids": "${var.lambda_subnet_ids}"}}
    )
    stack.has_resource_properties("aws_vpc_endpoint", {"vpc_id": "${var.vpc_id}"})


def test_alarms_go_to_the_given_topic_with_custom_throttling_and_concurrency(synthesized):
    stack = _template(synthesized, "alarms-to-sns")
    own_topic = stack.ref("aws_sns_topic", {"name": "orders-alarms"}, "arn")
    alarms = stack.resources("aws_cloudwatch_metric_alarm")
    assert len(alarms) == 11
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == [own_topic, "${var.on_call_topic_arn}"] == alarm["ok_actions"]
        assert alarm["period"] == 300
    stack.has_resource_properties(
        "aws_cloudwatch_metric_alarm", {"alarm_name": "orders-proxy-client-connections", "threshold": 45}
    )
    stack.has_resource_properties(
        "aws_lambda_function", {"function_name": "orders-api", "reserved_concurrent_executions": 50, "memory_size": 512}
    )
    stack.has_resource_properties(
        "aws_apigatewayv2_stage",
        {"default_route_settings": {"throttling_burst_limit": 40, "throttling_rate_limit": 20}},
    )
    assert sorted(r["route_key"] for r in stack.resources("aws_apigatewayv2_route").values()) == ["GET /", "GET /times"]
    assert sorted(p["source_arn"].rsplit("}", 1)[1] for p in stack.resources("aws_lambda_permission").values()) == [
        "/*/GET/",
        "/*/GET/times",
    ]


def test_shared_proxy_is_imported_and_granted_to_one_role_as_one_user(synthesized):
    stack = _template(synthesized, "shared-proxy")
    assert set(stack.json["resource"]) == {"aws_iam_role", "aws_iam_role_policy"}  # nothing for the proxy itself
    grant = stack.has_resource_properties(
        "aws_iam_role_policy", {"name": "rds-db-connect-reports", "role": stack.ref("aws_iam_role")}
    )
    (statement,) = stack.policy_statements(grant["policy"])
    assert statement["actions"] == ["rds-db:connect"]
    assert statement["resources"][0].endswith('${element(split(":", var.proxy_arn), 6)}/reports')


@pytest.mark.parametrize("name", NAMES)
def test_terraform_validate_passes(synthesized, name, tmp_path):
    env = terraform_env()
    env["TF_DATA_DIR"] = str(tmp_path / ".terraform")
    init = subprocess.run(
        ["terraform", "init", "-backend=false", "-input=false", "-no-color"],
        cwd=synthesized[name],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        ["terraform", "validate", "-json", "-no-color"],
        cwd=synthesized[name],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(validate.stdout)
    assert result["valid"] is True and result["error_count"] == 0, result["diagnostics"]
