"""Assertions on a synthesized stack in the style of AWS CDK's ``assertions.Template``.

``has_resource_properties(type, expected)`` finds the one resource whose block contains ``expected`` (a partial
match: mappings match by the keys given, sequences element by element, patterns and predicates by value), and
``resolve`` follows a ``${type.name.attribute}`` reference to the block it names, so tests never split Terraform
references by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.modules.synth_support import synth_construct

_REFERENCE = re.compile(r"\$\{(?P<data>data\.)?(?P<type>[a-z0-9_]+)\.(?P<name>[^.}]+)(?:\.(?P<attr>[^}]*))?\}")


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
"""Expect the key not to be in the block."""


def matches(actual: Any, expected: Any) -> bool:
    """Partial match of a synthesized value against an expectation."""
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.search(actual) is not None
    if callable(expected) and not isinstance(expected, type):
        return bool(expected(actual))
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return False
        for key, value in expected.items():
            if value is ABSENT:
                if key in actual:
                    return False
            elif key not in actual or not matches(actual[key], value):
                return False
        return True
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        return (
            isinstance(actual, Sequence)
            and not isinstance(actual, str)
            and len(actual) == len(expected)
            and all(matches(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return actual == expected


class Template:
    """One synthesized stack (``cdk.tf.json`` as a dict)."""

    def __init__(self, synthesized: Mapping[str, Any]):
        self.json = synthesized

    @classmethod
    def of(cls, build: Callable) -> Template:
        """Synthesize only what ``build(stack, ctx)`` adds to a test stack."""
        return cls(synth_construct(build))

    # ---- finding
    def resources(self, rtype: str, expected: Mapping | None = None, *, data: bool = False) -> dict[str, dict]:
        blocks = self.json.get("data" if data else "resource", {}).get(rtype, {})
        return {name: block for name, block in blocks.items() if expected is None or matches(block, expected)}

    def resource_count_is(self, rtype: str, count: int) -> None:
        found = self.resources(rtype)
        assert len(found) == count, f"expected {count} {rtype}, found {len(found)}: {sorted(found)}"

    def has_resource_properties(self, rtype: str, expected: Mapping, *, data: bool = False) -> dict:
        """The one ``rtype`` block matching ``expected``; fails listing the candidates otherwise."""
        return self.resource_named(rtype, expected, data=data)[1]

    def resource_named(self, rtype: str, expected: Mapping | None = None, *, data: bool = False) -> tuple[str, dict]:
        """(name, block) of the one ``rtype`` matching ``expected``."""
        found = self.resources(rtype, expected, data=data)
        if len(found) != 1:
            candidates = json.dumps(self.resources(rtype, data=data), indent=1, sort_keys=True, default=str)[:4000]
            raise AssertionError(
                f"expected exactly one {rtype} matching {expected!r}, found {len(found)}; candidates:\n{candidates}"
            )
        return next(iter(found.items()))

    def ref(self, rtype: str, expected: Mapping | None = None, attribute: str = "id") -> str:
        """How cdktf renders a reference to ``attribute`` of the one matching ``rtype`` resource."""
        name, _ = self.resource_named(rtype, expected)
        return f"${{{rtype}.{name}.{attribute}}}"

    def address(self, rtype: str, expected: Mapping | None = None) -> str:
        """The Terraform address (``type.name``) of the one matching resource, as ``depends_on`` lists it."""
        return f"{rtype}.{self.resource_named(rtype, expected)[0]}"

    # ---- following references
    def resolve(self, reference: str) -> dict:
        """The resource or data block a ``${type.name.attribute}`` reference names."""
        match = _REFERENCE.fullmatch(reference)
        assert match, f"not a single Terraform reference: {reference!r}"
        section = "data" if match["data"] else "resource"
        return self.json[section][match["type"]][match["name"]]

    def policy_statements(self, policy_json_ref: str) -> list[dict]:
        """Statements of the ``aws_iam_policy_document`` a ``${data....json}`` reference names."""
        return self.resolve(policy_json_ref)["statement"]

    def role_policies(self, role_ref: str) -> tuple[list[str], list[dict]]:
        """(attached managed policy ARNs, inline statements) of the role a reference to it names."""
        match = _REFERENCE.fullmatch(role_ref)
        assert match and match["type"] == "aws_iam_role", role_ref
        name = match["name"]
        attached = [
            a["policy_arn"]
            for a in self.resources("aws_iam_role_policy_attachment").values()
            if a["role"] == f"${{aws_iam_role.{name}.name}}"
        ]
        inline = [
            statement
            for policy in self.resources("aws_iam_role_policy").values()
            if policy["role"] == f"${{aws_iam_role.{name}.id}}"
            for statement in self.policy_statements(policy["policy"])
        ]
        return attached, inline
