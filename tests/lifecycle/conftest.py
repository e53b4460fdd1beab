"""The lifecycle tier (``-m lifecycle``): one stack deployed on the emulator for the whole session, shared by every
module here, and that deployment is the upgrade from the previous release (``lifecycle_support``).

Modules run in ``MODULE_ORDER`` (the destroy last); each starts from the stack's default settings. Run the tier with
``pytest -m lifecycle -s tests/lifecycle`` to see each step and its time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local.control_plane import lifecycle as lc
from local.control_plane.emulator_control import down, up
from local.control_plane.project import LifecycleError, Project
from local.control_plane.state_queries import state_list
from tests.checkout_support import release_checkout, switch_to_working_tree
from tests.lifecycle.lifecycle_support import (
    PREVIOUS_RELEASE,
    STACK,
    Deployment,
    UpgradeRecord,
    previous_release_serves,
    worth_one_more_run,
)

MODULE_ORDER = ("test_upgrade", "test_env_clis", "test_routes", "test_lifecycle", "test_cloud_ready", "test_destroy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The lifecycle modules last in a serial session, in ``MODULE_ORDER`` (each keeps its own tests' order); under
    ``-n N`` the root conftest then moves the whole tier first, keeping that order."""

    def rank(item: pytest.Item) -> int:
        name = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        if not item.nodeid.startswith("tests/lifecycle/") or name not in MODULE_ORDER:
            return -1
        return MODULE_ORDER.index(name)

    items.sort(key=rank)  # stable: everything else keeps its place, before the lifecycle tier


@pytest.fixture(scope="session")
def upgraded_stack(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("upgrade") / "repo"
    try:
        release_checkout(root, PREVIOUS_RELEASE)
    except LifecycleError as exc:
        pytest.skip(str(exc))
    project = Project(root=root, emulator_port=0, output=lambda line: print(line, flush=True))
    project.output(f"[test] lifecycle: the previous release {PREVIOUS_RELEASE} in {root}")
    started = time.monotonic()
    up(project)  # this release's launcher, recorded in the checkout's .local/ where both releases find it
    stack = Deployment(project)
    try:
        stack.upgrade = _upgrade(stack)
        yield stack
    finally:
        try:
            if project.emulator().is_running() and state_list(STACK, project):
                project.output("[test] cleanup: destroying what the tests left (a test failed or was deselected)")
                lc.destroy(STACK, project, extra_env=stack.applied)
        except LifecycleError as exc:
            print(f"[test] cleanup: {exc}")
        finally:
            down(project)
            upgrade_s = stack.upgrade.seconds if stack.upgrade is not None else {}
            _report_step_times(pytestconfig, project, upgrade_s, time.monotonic() - started)


def _upgrade(stack: Deployment) -> UpgradeRecord:
    seconds: dict[str, float] = {}
    mark = time.monotonic()
    deployed = stack.run_local("deploy")
    why = worth_one_more_run(deployed)  # that release runs `cdktf deploy`, which can lose terraform's error
    if why:
        stack.project.output(f"[test] the previous release's deploy: {why}; once more")
        deployed = stack.run_local("deploy")
    assert deployed.returncode == 0, (
        f"the previous release's deploy failed:\n{deployed.stdout[-4000:]}{deployed.stderr}"
    )
    seconds["previous deploy"] = time.monotonic() - mark
    mark = time.monotonic()
    previous_answers = previous_release_serves(stack)
    seconds["previous serve"] = time.monotonic() - mark

    switched = switch_to_working_tree(stack.root)
    stack.project.output(f"[test] lifecycle: switched the checkout to this tree ({switched})")
    mark = time.monotonic()
    changes = dict(lc.plan(STACK, stack.project, synthesize=True).changes)
    stack.deploy(synthesize=False)
    seconds["upgrade deploy"] = time.monotonic() - mark
    after = lc.plan(STACK, stack.project, synthesize=False).has_changes

    mark = time.monotonic()
    with stack.serve() as current:
        answer = current.get("/")
        migrated = current.migrated()
        stdout = current.stdout()
        stopped = current.stop()
    assert stopped == 0, f"this release's serve exited {stopped}:\n{current.log()}"
    seconds["serve after the upgrade"] = time.monotonic() - mark
    return UpgradeRecord(previous_answers, switched, changes, after, migrated, answer, stdout, seconds)


def _report_step_times(config: pytest.Config, project: Project, upgrade_s: dict[str, float], wall_s: float) -> None:
    """Each step's time on the terminal even when output is captured (CI runs plain `pytest`)."""
    lines = [f"  upgrade: {name:32s} {seconds:6.1f} s" for name, seconds in upgrade_s.items()]
    project.timings.report(lines.append)
    lines.append(f"  lifecycle wall time: {wall_s:.1f} s")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("-", "lifecycle step times")
        for line in lines:
            reporter.write_line(line)


@pytest.fixture(scope="module")
def deployment(upgraded_stack: Deployment) -> Deployment:
    """The shared stack, at its default settings when the module starts (a module before may have changed them)."""
    upgraded_stack.at_defaults()
    return upgraded_stack
