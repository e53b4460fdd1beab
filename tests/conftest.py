"""Shared fixtures: private MariaDB servers (real ``mariadbd``, own datadir and ports, cleaned up after use)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from local.control_plane.emulator import Emulator, EmulatorConfig
from local.data_plane.mariadb import MariaDBConfig, MariaDBServer, mariadbd_available

MariaDBFactory = Callable[..., MariaDBServer]


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
