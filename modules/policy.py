"""IAM policy documents as data sources, so checkov's IAM checks can read them."""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Mapping, Sequence

from constructs import Construct

from modules.bindings import aws


@functools.cache
def _bindings() -> types.ModuleType:
    """Loaded on first use: importing this module must not load the provider's jsii assembly (about 1.3 s)."""
    return aws("data_aws_iam_policy_document")


def policy_document(scope: Construct, id_: str, statements: Sequence[Mapping]) -> str:
    """An IAM policy document (data source, so checkov's IAM checks can read it); returns its JSON."""
    return _bindings().DataAwsIamPolicyDocument(scope, id_, statement=[_statement(s) for s in statements]).json


def _statement(values: Mapping):
    """Build the typed struct: jsii drops snake_case keys of plain dicts passed for structs."""
    values, _policy = dict(values), _bindings()
    if "principals" in values:
        values["principals"] = [_policy.DataAwsIamPolicyDocumentStatementPrincipals(**p) for p in values["principals"]]
    if "condition" in values:
        values["condition"] = [_policy.DataAwsIamPolicyDocumentStatementCondition(**c) for c in values["condition"]]
    return _policy.DataAwsIamPolicyDocumentStatement(**values)


def service_assume_role(scope: Construct, id_: str, service: str, conditions: Iterable[Mapping] = ()) -> str:
    """Trust policy that lets one AWS service principal assume a role."""
    statement = {"actions": ["sts:AssumeRole"], "principals": [{"type": "Service", "identifiers": [service]}]}
    if conditions:
        statement["condition"] = list(conditions)
    return policy_document(scope, id_, [statement])
