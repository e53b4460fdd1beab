"""The import layers (``[tool.importlinter]`` in pyproject.toml) hold on this tree and catch a planted violation.

``lint-imports`` runs on a copy of the packages with one planted module, so each contract is shown to fail on the
kind of import it forbids, including an import inside a function (grimp reads those too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.project import REPO_ROOT

PACKAGES = ("handler", "modules", "local", "tests", "bench")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("layers")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".venv")
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package, ignore=skip)
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    yield root


def test_the_contracts_hold_on_this_tree() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_copy_alone_passes(tree_copy: Path) -> None:
    """The planted cases below fail because of the plant, not because of the copy."""
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


PLANTS = [
    pytest.param(
        "local/data_plane/planted.py",
        "def later():\n    from local.control_plane import lifecycle\n\n    return lifecycle\n",
        "local.data_plane.planted -> local.control_plane.lifecycle",
        id="data plane imports the control plane inside a function",
    ),
    pytest.param(
        "local/control_plane/planted.py",
        "from local.data_plane import serve\n",
        "local.control_plane.planted -> local.data_plane.serve",
        id="control plane imports the data plane",
    ),
    pytest.param(
        "local/common/planted.py",
        "from local.data_plane import deployed\n",
        "local.common.planted -> local.data_plane.deployed",
        id="the common package imports a plane",
    ),
    pytest.param(
        "handler/planted.py",
        "from modules import project\n",
        "handler.planted -> modules.project",
        id="handler imports modules",
    ),
    pytest.param(
        "modules/planted.py",
        "import local.cli\n",
        "modules.planted -> local.cli",
        id="modules imports local",
    ),
    pytest.param(
        "bench/planted.py",
        "from tests.modules import synth_support\n",
        "bench.planted -> tests.modules.synth_support",
        id="bench imports tests",
    ),
    pytest.param(
        "local/planted.py",
        "import bench.bench_synth\n",
        "local.planted -> bench.bench_synth",
        id="the product imports a benchmark",
    ),
]


@pytest.mark.parametrize(("path", "source", "shown"), PLANTS)
def test_a_planted_violation_fails_the_check(tree_copy: Path, path: str, source: str, shown: str) -> None:
    planted = tree_copy / path
    planted.write_text(source)
    try:
        result = lint_imports(tree_copy)
    finally:
        planted.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert shown in result.stdout, result.stdout
