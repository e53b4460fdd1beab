"""Where things live in a checkout: the one definition of every project path and local port.

Imports nothing from cdktf, so the local tooling and the tests can use it without loading the provider bindings.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS_DIR_NAME = "environments"
HANDLER_DIR_NAME = "handler"
BUILD_DIR_NAME = "build"
LOCAL_STATE_DIR_NAME = ".local"
"""Everything the local target keeps between runs (emulator pid and logs, data plane state)."""

EMULATOR_HOST = "127.0.0.1"
DEFAULT_EMULATOR_PORT = 4599
DEFAULT_LOCAL_ENDPOINT = f"http://{EMULATOR_HOST}:{DEFAULT_EMULATOR_PORT}"


def stacks_dir(root: Path = REPO_ROOT) -> Path:
    """Where cdktf writes the synthesized stacks."""
    return root / "cdktf.out" / "stacks"


def stack_dir(stack: str, root: Path = REPO_ROOT) -> Path:
    """One synthesized stack: its ``cdk.tf.json`` and Terraform working directory."""
    return stacks_dir(root) / stack


def default_state_file(stack: str, root: Path = REPO_ROOT) -> Path:
    """The local backend's state file of a stack without a remote backend."""
    return root / f"terraform.{stack}.tfstate"


def local_state_dir(root: Path = REPO_ROOT) -> Path:
    return root / LOCAL_STATE_DIR_NAME


def emulator_state_dir(root: Path = REPO_ROOT) -> Path:
    return local_state_dir(root) / "emulator"


LOCAL_ACCESS_KEY_ID = "test"
LOCAL_SECRET_ACCESS_KEY = "test"
"""The local target's dummy credentials: the emulator accepts any, real AWS rejects these."""
