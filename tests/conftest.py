"""Shared fixtures: private MariaDB servers (real ``mariadbd``, own datadir and ports, cleaned up after use) and a
private emulator; and how the tests are split into units of work for pytest-xdist's workers (``make test``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from local.control_plane.emulator import Emulator, EmulatorConfig
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available

MariaDBFactory = Callable[..., MariaDBServer]

LIFECYCLE_UNIT = "lifecycle"
"""The lifecycle tier's modules share one session deployment, so under ``-n N`` they are one unit of work."""


def distributed(config: pytest.Config) -> bool:
    """True under pytest-xdist (``-n N``), in the controller and in each worker."""
    return bool(getattr(config.option, "numprocesses", None)) or hasattr(config, "workerinput")


IN_PROCESS_SYNTH_UNIT = "tests/modules"
"""The construct and stack tests synthesize in the worker's own jsii runtime; as one unit it starts once."""
OWN_PROCESS_SYNTH = ("tests/modules/test_examples.py", "tests/modules/test_synth_identity.py")
"""Modules under tests/modules that synthesize in fresh processes: units of their own, run beside the rest."""


def work_unit(nodeid: str) -> str:
    """A test module is one unit of work (its module-scoped servers start once), except the two shared ones."""
    module = nodeid.split("::", 1)[0]
    if module.startswith("tests/lifecycle/"):
        return LIFECYCLE_UNIT
    if module.startswith("tests/modules/") and module not in OWN_PROCESS_SYNTH:
        return IN_PROCESS_SYNTH_UNIT
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Units from `work_unit`, handed out in collection order (``--no-loadscope-reorder``): the longest first."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ModuleScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``-n N``: the lifecycle tier, then modules marked ``heavy`` and the experiment tier, then the rest, so
    the last units handed out are short and no worker is left alone with a long one (a stable sort)."""
    if not distributed(config):
        return

    def rank(item: pytest.Item) -> int:
        if work_unit(item.nodeid) == LIFECYCLE_UNIT:
            return 0
        return 1 if item.get_closest_marker("heavy") or item.get_closest_marker("experiment") else 2

    items.sort(key=rank)


def _require_mariadbd() -> None:
    if not mariadbd_available():
        pytest.skip("mariadbd / mariadb-install-db not installed (apt-get install mariadb-server)")


def _factory(started: list[MariaDBServer]) -> MariaDBFactory:
    def start(config: MariaDBConfig | None = None, **knobs: object) -> MariaDBServer:
        _require_mariadbd()
        server = MariaDBServer(config or MariaDBConfig(**knobs))  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    return start


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """One server for the whole session, sized like the experiment's RDS instance (max_connections=65)."""
    _require_mariadbd()
    with MariaDBServer(MariaDBConfig(max_connections=65)) as server:
        yield server


@pytest.fixture(scope="module")
def mariadb_factory() -> Iterator[MariaDBFactory]:
    """Start servers with custom knobs, e.g. ``mariadb_factory(max_connections=10)``; stopped after the module."""
    started: list[MariaDBServer] = []
    yield _factory(started)
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A private AWS emulator (moto with this project's fixes) on a free loopback port; stopped after the module."""
    with Emulator(EmulatorConfig(port=0, state_dir=tmp_path_factory.mktemp("emulator"))) as running:
        yield running
