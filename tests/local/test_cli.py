"""`python -m local` exposes the lifecycle and the data-plane commands, and passes options straight through."""

from __future__ import annotations

import subprocess
import sys

from modules.project import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "local", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_command_is_registered_once_in_the_cli():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for name in ("up", "deploy", "diff", "state", "outputs", "destroy", "down", "serve", "experiment"):
        assert f"    {name}" in result.stdout


def test_data_plane_commands_take_their_options_directly():
    result = _run("experiment", "--help")
    assert result.returncode == 0, result.stderr
    assert "--requests" in result.stdout and "--settings-from-synth" in result.stdout
    serve = _run("serve", "--help")
    assert serve.returncode == 0 and "--direct" in serve.stdout and "--http-port" in serve.stdout
    bad = _run("experiment", "--requests", "nope")
    assert bad.returncode != 0 and "--requests" in bad.stderr
    unknown = _run("serve", "--no-such-option")
    assert unknown.returncode != 0 and "--no-such-option" in unknown.stderr
