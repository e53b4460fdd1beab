"""The lifecycle tier's last module: destroying the shared stack (upgraded, then changed by the modules before)
leaves an empty state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.control_plane import lifecycle as lc
from local.control_plane.state_files import state_file
from local.control_plane.state_queries import state_list
from tests.lifecycle.lifecycle_support import STACK, Deployment

pytestmark = pytest.mark.lifecycle


def test_destroy_leaves_an_empty_state(upgraded_stack: Deployment) -> None:
    project = upgraded_stack.project
    lc.destroy(STACK, project, extra_env=upgraded_stack.applied)  # the config last applied, whatever it was
    assert state_list(STACK, project) == []
    assert json.loads(state_file(project, STACK).read_text())["resources"] == []
    assert Path(project.root).is_dir()
