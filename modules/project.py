"""Where the product's files live in a checkout: sources, build output, synthesized stacks, state files.

Imports nothing from cdktf, so the local tooling and the tests can use it without loading the provider bindings.
What only the local tooling keeps (``.local/``, the emulator's state) is in ``local/common/local_target.py``.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_DIR_NAME = "environments"
HANDLER_DIR_NAME = "handler"
BUILD_DIR_NAME = "build"


def stacks_dir(root: Path = REPO_ROOT) -> Path:
    """Where cdktf writes the synthesized stacks."""
    return root / "cdktf.out" / "stacks"


def stack_dir(stack: str, root: Path = REPO_ROOT) -> Path:
    """One synthesized stack: its ``cdk.tf.json`` and Terraform working directory."""
    return stacks_dir(root) / stack


def default_state_file(stack: str, root: Path = REPO_ROOT) -> Path:
    """The local backend's state file of a stack without a remote backend."""
    return root / f"terraform.{stack}.tfstate"
