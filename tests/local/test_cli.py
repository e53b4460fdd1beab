"""`python -m local` exposes the lifecycle and the data-plane commands, and passes options straight through."""

from __future__ import annotations

import subprocess
import sys

from local.cli import command_of
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


def test_the_command_is_the_first_word_that_is_not_an_option_or_the_ports_value():
    assert command_of(["--port", "4599", "state", "show", "aws_vpc.v"]) == "state"
    assert command_of(["--port=4599", "env", "--stack", "aws"]) == "env"
    assert command_of(["-h"]) is None and command_of([]) is None


def test_a_command_imports_only_its_own_modules_to_parse_its_options():
    probe = (
        "import sys; from local.cli import build_parser, command_of; argv = sys.argv[1:];"
        "build_parser(command_of(argv)).parse_args(argv);"
        "print(' '.join(m for m in ('local.data_plane.serve', 'local.experiment.run', 'local.client_access.sql')"
        " if m in sys.modules))"
    )

    def imported(*argv: str) -> str:
        run = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO_ROOT, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert imported("--port", "4599", "down") == ""
    assert imported("serve", "--direct") == "local.data_plane.serve"
    assert imported("sql", "--print") == "local.client_access.sql"
