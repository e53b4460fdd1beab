"""Accepted checkov findings, recorded inline on the resource with a reason."""

from __future__ import annotations

from collections.abc import Mapping

from cdktf import TerraformElement


def skip_checks(resource: TerraformElement, reasons: Mapping[str, str]) -> None:
    """Record accepted checkov findings inline, each with its reason (listed in the README)."""
    resource.add_override("//.checkov", [f"checkov:skip={check}:{why}" for check, why in sorted(reasons.items())])
