"""Synthesize the app once per test session (in-process) and give tests the stack JSON by name."""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def synth_environments(
    environ: Mapping[str, str], outdir: Path, directory: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Synthesize every environment with ``environ`` as the process environment seen by the settings."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from cdktf import App

    from modules.environments import ENVIRONMENTS_DIR, load_environments
    from modules.stack import ServerlessMysqlStack

    app = App(outdir=str(outdir))
    for environment in load_environments(directory or ENVIRONMENTS_DIR, environ=environ):
        ServerlessMysqlStack(app, environment)
    app.synth()
    return {p.parent.name: json.loads(p.read_text()) for p in (outdir / "stacks").glob("*/cdk.tf.json")}


@functools.cache
def default_synth() -> tuple[Path, dict[str, dict[str, Any]]]:
    """The app as a user gets it with no overrides: (outdir, {stack name: cdk.tf.json})."""
    outdir = Path(tempfile.mkdtemp(prefix="sms-synth-"))
    return outdir, synth_environments({}, outdir)


def resources(stack: Mapping[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return stack.get("resource", {}).get(rtype, {})


def only(stack: Mapping[str, Any], rtype: str) -> dict[str, Any]:
    found = list(resources(stack, rtype).values())
    assert len(found) == 1, f"expected exactly one {rtype}, found {len(found)}"
    return found[0]


def ref(rtype: str, resource_name: str, attribute: str) -> str:
    """How cdktf renders a reference to ``rtype.resource_name.attribute``."""
    return f"${{{rtype}.{resource_name}.{attribute}}}"


def name_of(stack: Mapping[str, Any], rtype: str, predicate) -> str:
    """The one resource name of ``rtype`` whose block satisfies ``predicate``."""
    matches = [n for n, r in resources(stack, rtype).items() if predicate(r)]
    assert len(matches) == 1, (rtype, matches)
    return matches[0]


def policy_statements(stack: Mapping[str, Any], policy_json_ref: str) -> list[dict]:
    """Statements of the aws_iam_policy_document data source referenced as ``${data...json}``."""
    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([^.]+)\.json\}", policy_json_ref)
    assert match, policy_json_ref
    return stack["data"]["aws_iam_policy_document"][match.group(1)]["statement"]


def role_policies(stack: Mapping[str, Any], role_arn_ref: str) -> tuple[list[str], list[dict]]:
    """(managed policy ARNs attached, inline statements) of the role an ``aws_iam_role...arn`` reference names."""
    role = re.fullmatch(r"\$\{aws_iam_role\.([^.]+)\.arn\}", role_arn_ref).group(1)
    attached = [
        a["policy_arn"]
        for a in resources(stack, "aws_iam_role_policy_attachment").values()
        if a["role"] == ref("aws_iam_role", role, "name")
    ]
    inline = [
        statement
        for policy in resources(stack, "aws_iam_role_policy").values()
        if policy["role"] == ref("aws_iam_role", role, "id")
        for statement in policy_statements(stack, policy["policy"])
    ]
    return attached, inline


def function_named(stack: Mapping[str, Any], suffix: str) -> tuple[str, dict[str, Any]]:
    """(resource name, block) of the Lambda function called ``<name_prefix>-<suffix>``: ``api`` or ``migrator``."""
    name = name_of(stack, "aws_lambda_function", lambda f: f["function_name"].endswith(f"-{suffix}"))
    return name, stack["resource"]["aws_lambda_function"][name]


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, leaf) in a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")
    else:
        yield path, value


# ---------------------------------------------------------------- one construct in isolation
TEST_CTX_REGION = "ap-northeast-1"
TEST_KEY_ARN = "arn:aws:kms:ap-northeast-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def sample_context():
    """An account context for props built outside a stack (construction-time validation tests)."""
    from modules.context import AwsContext

    return AwsContext(account_id="123456789012", partition="aws", region=TEST_CTX_REGION)


def synth_construct(build) -> dict[str, Any]:
    """Synthesize a test stack holding only what ``build(stack, ctx)`` adds (like AWS CDK's ``Template.fromStack``).

    The stack has the provider and the account/partition lookups (``AwsContext``) every construct may use;
    everything else a construct needs comes in through its props as plain values.
    """
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from cdktf import TerraformStack, Testing

    from modules.bindings import aws
    from modules.context import AwsContext

    app = Testing.app()
    stack = TerraformStack(app, "test")
    aws("provider").AwsProvider(stack, "aws", region=TEST_CTX_REGION)
    build(stack, AwsContext.lookup(stack, TEST_CTX_REGION))
    return json.loads(Testing.synth(stack))
