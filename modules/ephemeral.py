"""Terraform ``ephemeral`` blocks, which cdktf 0.21 has no class for.

An ephemeral resource is opened for each plan and apply and never written to the plan or the state, so a value
it produces (a generated password) can feed a write-only argument and be kept nowhere Terraform stores. The
block is rendered with a stack override; references to it are plain Terraform expressions, which cdktf passes
through unchanged when they are the whole attribute value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cdktf import TerraformStack
from constructs import Construct

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_HIDDEN_ID = "Default"


class EphemeralResource(Construct):
    """``ephemeral "<resource_type>" "<name>" {config}`` in the enclosing stack, named after this construct's path."""

    def __init__(self, scope: Construct, id_: str, *, resource_type: str, config: Mapping[str, Any]):
        super().__init__(scope, id_)
        # Unique in the stack like cdktf's own logical ids: the id, then a hash of the construct path, in which (as
        # in cdktf's ids) a construct named "Default" does not count.
        path = "/".join(scope.node.id for scope in self.node.scopes[1:] if scope.node.id != _HIDDEN_ID)
        digest = hashlib.sha256(path.encode()).hexdigest()[:8].upper()
        self.resource_type = resource_type
        self.name = f"{_NAME_UNSAFE.sub('_', id_)}_{digest}"
        TerraformStack.of(self).add_override(f"ephemeral.{resource_type}.{self.name}", dict(config))

    def expression(self, attribute: str) -> str:
        """The bare Terraform expression of one attribute (no ``${}``), for use inside a larger expression."""
        return f"ephemeral.{self.resource_type}.{self.name}.{attribute}"
