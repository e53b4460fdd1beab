"""Offline Terraform plumbing: find the provider mirror and build the environment for terraform/cdktf.

The hashicorp/aws provider cannot be downloaded here; it comes from a filesystem mirror. Users should not
have to hard-code its location, so it is a setting (``TF_PROVIDER_MIRROR``) that is detected when unset.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from local.common.local_target import local_state_dir
from modules.project import REPO_ROOT

STATE_DIR = local_state_dir()
PROVIDER_SOURCE = "registry.terraform.io/hashicorp/aws"
PROVIDER_VERSION = "5.100.0"

# Where mirrors are commonly placed; searched in order when TF_PROVIDER_MIRROR is unset.
_CANDIDATE_MIRRORS = (
    "/opt/tf-plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
)


class ToolchainError(RuntimeError):
    """A missing tool or provider, with the fix in the message."""


def _has_provider(root: Path) -> bool:
    return any((root / PROVIDER_SOURCE / PROVIDER_VERSION).glob("*/terraform-provider-aws*"))


def find_provider_mirror() -> Path:
    """Return the filesystem-mirror root that holds hashicorp/aws at the pinned version."""
    configured = os.environ.get("TF_PROVIDER_MIRROR")
    if configured:
        root = Path(configured).expanduser()
        if not _has_provider(root):
            raise ToolchainError(
                f"TF_PROVIDER_MIRROR={configured} has no {PROVIDER_SOURCE}/{PROVIDER_VERSION}/<os_arch>/"
                "terraform-provider-aws*; point it at the directory that contains 'registry.terraform.io'."
            )
        return root
    for candidate in _CANDIDATE_MIRRORS:
        root = Path(candidate).expanduser()
        if _has_provider(root):
            return root
    raise ToolchainError(
        f"hashicorp/aws {PROVIDER_VERSION} was not found in a filesystem mirror "
        f"(looked in {', '.join(_CANDIDATE_MIRRORS)}). Set TF_PROVIDER_MIRROR to the mirror root "
        "(the directory containing 'registry.terraform.io'), or run with network access to the registry."
    )


def write_cli_config(mirror: Path, path: Path | None = None) -> Path:
    """Write a Terraform CLI config that installs registry providers only from ``mirror``."""
    path = path or STATE_DIR / "terraform.rc"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/*/*"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if not found:
        raise ToolchainError("terraform is not on PATH; install Terraform 1.11 (see README, 'Set-up').")
    return found


def cdktf_command() -> list[str]:
    """The pinned cdktf CLI from node_modules (package.json), never a global one."""
    local_cli = REPO_ROOT / "node_modules" / ".bin" / "cdktf"
    if not local_cli.exists():
        raise ToolchainError("cdktf CLI not installed: run `npm ci` in the repository root.")
    return [str(local_cli)]


def terraform_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for terraform and the cdktf CLI: offline provider mirror, no telemetry, quiet jsii."""
    env = dict(os.environ if base is None else base)
    env["TF_CLI_CONFIG_FILE"] = str(write_cli_config(find_provider_mirror()))
    env.setdefault("CHECKPOINT_DISABLE", "1")
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    env.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    # Keep cdktf from pointing TF_PLUGIN_CACHE_DIR at ~/.terraform.d: the mirror is already local.
    env.setdefault("CDKTF_DISABLE_PLUGIN_CACHE_ENV", "1")
    env.setdefault("TF_IN_AUTOMATION", "1")
    return env
