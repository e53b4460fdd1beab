"""Summarize a saved Terraform plan for a pull request: add/change/replace/destroy counts and what is replaced.

Input is ``terraform show -json <planfile>``; output is Markdown (for ``$GITHUB_STEP_SUMMARY``). A replacement is
called out by address and reason (``replace_by_triggers`` is our proxy's target group following the proxy), since
replacing the proxy, its target group or the DB is what a reviewer must not miss.

    terraform show -json plan.tfplan > plan.json
    python scripts/plan_summary.py plan.json --title "aws stack" >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("add", "change", "replace", "destroy")


@dataclass(frozen=True)
class PlanSummary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    replaced: list[tuple[str, str]] = field(default_factory=list)
    """(address, reason) of every replaced resource, in plan order."""
    destroyed: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(self.counts.values())


def classify(actions: Sequence[str]) -> str | None:
    """The kind of one resource change from its ``change.actions`` (None: no-op or a data source read)."""
    acts = set(actions)
    if {"create", "delete"} <= acts:
        return "replace"
    if "create" in acts:
        return "add"
    if "update" in acts:
        return "change"
    if "delete" in acts:
        return "destroy"
    return None


def summarize(plan: Mapping[str, Any]) -> PlanSummary:
    summary = PlanSummary()
    for change in plan.get("resource_changes") or []:
        if change.get("mode", "managed") != "managed":
            continue
        kind = classify(change.get("change", {}).get("actions", []))
        if kind is None:
            continue
        summary.counts[kind] += 1
        address = change.get("address", "?")
        if kind == "replace":
            summary.replaced.append((address, change.get("action_reason", "")))
        elif kind == "destroy":
            summary.destroyed.append(address)
    return summary


def to_markdown(summary: PlanSummary, title: str = "Terraform plan") -> str:
    c = summary.counts
    lines = [
        f"### {title}",
        "",
        "| add | change | replace | destroy |",
        "| ---: | ---: | ---: | ---: |",
        f"| {c['add']} | {c['change']} | {c['replace']} | {c['destroy']} |",
        "",
    ]
    if not summary.has_changes:
        lines.append("No changes.")
    if summary.replaced:
        lines.append("**Replaced** (destroyed and created again):")
        lines += [f"- `{address}`" + (f" ({reason})" if reason else "") for address, reason in summary.replaced]
    if summary.destroyed:
        lines.append("**Destroyed:**")
        lines += [f"- `{address}`" for address in summary.destroyed]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan_json", type=Path, help="output of `terraform show -json PLANFILE`")
    parser.add_argument("--title", default="Terraform plan")
    args = parser.parse_args(argv)
    try:
        plan = json.loads(args.plan_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"plan_summary: cannot read {args.plan_json}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(to_markdown(summarize(plan), args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
