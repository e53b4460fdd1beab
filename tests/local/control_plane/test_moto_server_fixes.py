"""The emulator's fixes apply when moto loads the module each changes, so unused services cost nothing at start."""

from __future__ import annotations

import subprocess
import sys

from modules.project import REPO_ROOT

PROBE = """
import sys
from local.control_plane import moto_server
moto_server.apply_patches()
print(sorted(name for name in ("moto.ec2", "moto.rds", "moto.awslambda", "moto.apigatewayv2") if name in sys.modules))
from moto.ec2.models.security_groups import SecurityGroupRule
from moto.rds.models import DBParameterGroup, MasterUserSecret, RDSBackend
from moto.rds.responses import RDSResponse
fixed = [
    isinstance(SecurityGroupRule.description, property),
    RDSResponse.modify_db_proxy.__module__,
    RDSBackend.modify_db_subnet_group.__module__,
    DBParameterGroup.update_parameters.__module__,
    MasterUserSecret._generate_secret_string.__module__,
]
print(fixed)
"""


def test_fixes_wait_for_their_moto_module_then_apply():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    loaded_at_start, fixed = run.stdout.strip().splitlines()
    assert loaded_at_start == "[]"
    fixer = "local.control_plane.moto_server"
    assert fixed == str([True, fixer, fixer, fixer, fixer])
