"""``eval "$(python -m local env)"``: the real ``cdktf``, ``terraform`` and ``aws`` commands against the local stack.

The ``python -m local`` wrappers set this environment for each command they run; after the ``eval`` a shell has it
too, so the commands people already know work as typed:

    npx cdktf diff local --skip-provider-lock
    npx cdktf deploy local --skip-provider-lock --auto-approve
    terraform -chdir=cdktf.out/stacks/local state list
    aws rds describe-db-proxies
    aws rds generate-db-auth-token --hostname <endpoint> --port 3306 --username app_user

- Terraform's CLI config for the offline provider mirror (the file the control plane writes), and the cdktf/jsii
  quieting variables the control plane sets (no telemetry call, no Node end-of-life banner);
- ``LOCAL_AWS_ENDPOINT`` (the synthesized provider points at this emulator) and ``AWS_ENDPOINT_URL`` (the AWS CLI
  and SDKs do), the stack's region, and the local target's dummy credentials;
- ``unset`` of a profile or session token left from a real AWS session, which would otherwise be used or sent.

Every value is shell-quoted.
"""

from __future__ import annotations

import shlex

from local.control_plane.toolchain import terraform_env
from modules.environments import ENVIRONMENTS_DIR, load_environment
from modules.local_target import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY

#: Set by the control plane for its own non-interactive runs; an interactive shell keeps Terraform's hints.
_AUTOMATION_ONLY = ("TF_IN_AUTOMATION",)
#: Credentials of a real AWS session that would override or accompany the dummy ones.
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class EnvError(RuntimeError):
    """The stack is not a local one, or the toolchain is incomplete; the message says what to do."""


def variables(stack: str, emulator_endpoint: str) -> dict[str, str]:
    """The variables to export for ``stack`` against the emulator at ``emulator_endpoint``."""
    path = ENVIRONMENTS_DIR / f"{stack}.json"
    if not path.is_file():
        raise EnvError(f"no environment {path.name} in {ENVIRONMENTS_DIR}")
    environment = load_environment(path)  # SMS_* overrides apply, as at synth
    if environment.target != "local":
        raise EnvError(f"stack {stack!r} targets {environment.target!r}: `env` is for local stacks")
    tooling = {name: value for name, value in terraform_env({}).items() if name not in _AUTOMATION_ONLY}
    region = environment.settings.region
    return {
        **tooling,
        "LOCAL_AWS_ENDPOINT": emulator_endpoint,
        "AWS_ENDPOINT_URL": emulator_endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
    }


def script(stack: str, emulator_endpoint: str) -> str:
    lines = [f"# the local stack {stack!r} against the emulator at {emulator_endpoint}"]
    lines.append("unset " + " ".join(UNSET))
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables(stack, emulator_endpoint).items()]
    return "\n".join(lines)
