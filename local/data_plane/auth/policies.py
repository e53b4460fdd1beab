"""Decide ``rds-db:connect`` from a principal's identity policies, as RDS Proxy does.

The stack's own roles come from Terraform state: inline ``aws_iam_role_policy`` (and the role's
``inline_policy``), customer policies ``aws_iam_policy`` attached via ``aws_iam_role_policy_attachment`` (or the
role's ``managed_policy_arns``), and AWS managed policies resolved from the documents moto bundles (those it does
not know are listed in ``unresolved``; none that a Lambda role normally gets grants or denies rds-db). Principals
the emulator issued (IAM users, assume-role sessions) bring their policies from the emulator.

The evaluation is moto's IAM engine (``moto.iam.access_control.IAMPolicy``: wildcards, explicit Deny wins).
It matches actions case-sensitively, treats patterns as regular expressions and only understands
``StringEquals`` conditions, so documents are normalised first and whatever it cannot evaluate fails closed:
an Allow it cannot fully check (Condition, NotResource, NotPrincipal, policy variables, no Resource) grants
nothing, and such a Deny applies to every resource of its actions.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult

from handler.app_contract import REQUEST_HANDLER
from modules.validation import SettingsError, check_pattern

CONNECT_ACTION = "rds-db:connect"
PROXY_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):rds:([a-z0-9-]+):(\d{12}):db-proxy:(prx-[a-z0-9]+)$")
_AWS_MANAGED = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::aws:policy/(.+/)?([^/]+)$")
_UNCHECKABLE = ("Condition", "NotResource", "NotPrincipal", "Principal")


@dataclass(frozen=True)
class ProxyIdentity:
    """The deployed proxy as ``rds-db:connect`` ARNs name it."""

    arn: str
    endpoint: str

    def __post_init__(self) -> None:
        check_pattern("proxy_arn", self.arn, PROXY_ARN, "arn:<partition>:rds:<region>:<account>:db-proxy:prx-<id>")

    @property
    def partition(self) -> str:
        return self._part(1)

    @property
    def region(self) -> str:
        return self._part(2)

    @property
    def account(self) -> str:
        return self._part(3)

    @property
    def resource_id(self) -> str:
        """The ``prx-...`` id (the ARN's last field)."""
        return self._part(4)

    def connect_arn(self, db_user: str) -> str:
        return f"arn:{self.partition}:rds-db:{self.region}:{self.account}:dbuser:{self.resource_id}/{db_user}"

    def _part(self, group: int) -> str:
        match = PROXY_ARN.match(self.arn)
        assert match is not None  # validated at construction
        return match.group(group)


@dataclass(frozen=True)
class PolicyDocument:
    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class PrincipalPolicies:
    """A principal's identity policies: a deployed role's, or an emulator user's or session's."""

    principal_arn: str
    documents: tuple[PolicyDocument, ...]
    unresolved: tuple[str, ...] = field(default=())
    """Attached policy ARNs whose document is neither in state nor bundled with moto (ignored)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explanation: str
    explicit_deny: bool = False


class ConnectAuthorizer:
    """``rds-db:connect`` decisions for one principal, with its documents normalised for moto once."""

    def __init__(self, policies: PrincipalPolicies) -> None:
        self.principal_arn = policies.principal_arn
        self._policies = [(doc.name, IAMPolicy(json.dumps(normalize(doc.document)))) for doc in policies.documents]

    def decide(self, resource_arn: str, action: str = CONNECT_ACTION) -> Decision:
        allowed_by = None
        for name, policy in self._policies:
            result = policy.is_action_permitted(action.lower(), resource_arn)
            if result == PermissionResult.DENIED:
                return Decision(False, f"explicitly denied by policy {name!r}", True)
            if result == PermissionResult.PERMITTED and allowed_by is None:
                allowed_by = name
        if allowed_by is None:
            return Decision(False, f"no policy of {self.principal_arn} allows {action} on {resource_arn}")
        return Decision(True, f"allowed by policy {allowed_by!r}")


# --- normalising documents for moto's evaluator -----------------------------------------------------
def normalize(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with only statements moto evaluates exactly (see module docstring)."""
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    kept = [s for s in (_statement(dict(raw)) for raw in statements if isinstance(raw, Mapping)) if s]
    return {"Version": "2012-10-17", "Statement": kept}


def _statement(statement: dict[str, Any]) -> dict[str, Any] | None:
    effect = statement.get("Effect")
    uncheckable = any(key in statement for key in _UNCHECKABLE) or "${" in json.dumps(statement.get("Resource"))
    if effect == "Allow" and (uncheckable or "Resource" not in statement):
        return None  # fail closed: grants nothing
    if effect not in ("Allow", "Deny"):
        return None
    out: dict[str, Any] = {"Effect": effect}
    for key in ("Action", "NotAction"):
        if key in statement:
            out[key] = [_pattern(a.lower()) for a in _strings(statement[key])]
    if "Action" not in out and "NotAction" not in out:
        return None
    if uncheckable or "Resource" not in statement:  # only a Deny gets here: it applies to every resource
        out["Resource"] = ["*"]
    else:
        out["Resource"] = [_pattern(r) for r in _strings(statement["Resource"])]
    return out


def _strings(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _pattern(iam_pattern: str) -> str:
    """IAM wildcards (``*``, ``?``) in moto's syntax (a regex in which moto turns ``*`` into ``.*``)."""
    return "".join("*" if c == "*" else "." if c == "?" else re.escape(c) for c in iam_pattern)


# --- reading Terraform state --------------------------------------------------------------------------
def _instances(state: Mapping[str, Any], rtype: str) -> Iterator[dict[str, Any]]:
    for resource in state.get("resources", []):
        if resource.get("mode") == "managed" and resource.get("type") == rtype:
            for instance in resource.get("instances", []):
                yield instance.get("attributes", {})


def function_role_arn(state: Mapping[str, Any], handler: str = REQUEST_HANDLER) -> str:
    """The role of the function whose handler is ``handler`` (or of the only function deployed)."""
    functions = list(_instances(state, "aws_lambda_function"))
    matching = [f for f in functions if f.get("handler") == handler] or (functions if len(functions) == 1 else [])
    roles = [str(f.get("role") or "") for f in matching]
    if len(roles) != 1 or not roles[0]:
        raise SettingsError("aws_lambda_function.role", roles, f"exactly one deployed function {handler} with a role")
    return roles[0]


def proxy_identity(state: Mapping[str, Any]) -> ProxyIdentity:
    proxies = list(_instances(state, "aws_db_proxy"))
    if len(proxies) != 1:
        raise SettingsError("aws_db_proxy", len(proxies), "exactly one deployed RDS proxy")
    return ProxyIdentity(arn=str(proxies[0].get("arn", "")), endpoint=str(proxies[0].get("endpoint", "")))


def deployed_roles(state: Mapping[str, Any]) -> dict[str, PrincipalPolicies]:
    """Every role in ``state`` with its identity policies, by ARN."""
    arns = [str(r.get("arn")) for r in _instances(state, "aws_iam_role") if r.get("arn")]
    return {arn: role_policies(state, arn) for arn in arns}


def role_policies(state: Mapping[str, Any], role_arn: str) -> PrincipalPolicies:
    """Every identity policy of ``role_arn`` found in ``state`` (inline and attached)."""
    role = next((r for r in _instances(state, "aws_iam_role") if r.get("arn") == role_arn), None)
    if role is None:
        raise SettingsError("role_arn", role_arn, "a role deployed in this stack's state (aws_iam_role)")
    names = {role.get("name"), role.get("id")} - {None, ""}
    inline: dict[str, str] = {}
    for attrs in _instances(state, "aws_iam_role_policy"):
        if attrs.get("role") in names:
            inline[str(attrs.get("name"))] = str(attrs.get("policy", ""))
    for block in role.get("inline_policy") or []:
        if block.get("policy"):
            inline.setdefault(str(block.get("name")), str(block["policy"]))
    attached = {
        str(a.get("policy_arn")) for a in _instances(state, "aws_iam_role_policy_attachment") if a.get("role") in names
    }
    attached |= set(role.get("managed_policy_arns") or [])
    customer = {str(p.get("arn")): str(p.get("policy", "")) for p in _instances(state, "aws_iam_policy")}
    documents = [PolicyDocument(f"inline:{name}", json.loads(text)) for name, text in sorted(inline.items())]
    unresolved: list[str] = []
    for arn in sorted(attached):
        document = json.loads(customer[arn]) if arn in customer else _aws_managed(arn)
        if document is None:
            unresolved.append(arn)
        else:
            documents.append(PolicyDocument(arn, document))
    return PrincipalPolicies(role_arn, tuple(documents), tuple(unresolved))


def _aws_managed(arn: str) -> Mapping[str, Any] | None:
    match = _AWS_MANAGED.match(arn)
    entry = _bundled_managed_policies().get(match.group(3)) if match else None
    return entry.get("Document") if entry else None


@functools.cache
def _bundled_managed_policies() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return dict(json.loads(aws_managed_policies_data))
