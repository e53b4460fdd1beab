"""The CI-sized load experiment (2,000 requests, 100 users): its result must have the reference experiment's shape.

Settings come from the synthesized `local` stack (what `--settings-from-synth` reads), so the run
uses the pool and function settings the stack deploys without needing a deployed emulator.
"""

from __future__ import annotations

import json

import pytest

from local.data_plane.deployed import parse_synth
from local.data_plane.mariadb import mariadbd_available
from local.experiment.run import ExperimentConfig, run
from tests.synth_support import default_synth

pytestmark = [
    pytest.mark.experiment,
    pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed"),
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    _, stacks = default_synth()
    stack = parse_synth(stacks["local"], source="synth:local")
    out_dir = tmp_path_factory.mktemp("experiment")
    document = run(
        stack,
        ExperimentConfig(requests=2000, users=100, db_max_connections=65, out_dir=str(out_dir)),
        log=lambda line: None,
    )
    return document, out_dir


def test_direct_path_reproduces_too_many_connections(experiment):
    direct = experiment[0]["results"]["direct"]
    assert direct["requests"] == 2000
    assert direct["failed"] > 0
    assert direct["failures_by_cause"].get("mysql-1040", 0) > 0
    # Every container holds its own connection: the server fills all 65 slots.
    assert direct["peak_db_connections_sampled"] >= 60


def test_proxy_path_has_no_failures_and_stays_within_the_pool_cap(experiment):
    proxy = experiment[0]["results"]["proxy"]
    assert proxy["pool_cap"] == 45  # 70 % (deployed max_connections_percent) of 65
    assert (proxy["requests"], proxy["failed"]) == (2000, 0), (proxy["failures_by_cause"], proxy["proxy_stats"])
    assert proxy["peak_db_connections_sampled"] <= proxy["pool_cap"]
    assert proxy["peak_proxy_backend_connections"] <= proxy["pool_cap"]
    # The proxy absorbed more clients than it opened DB connections: it multiplexes.
    assert proxy["peak_proxy_client_connections"] > proxy["peak_proxy_backend_connections"], proxy["proxy_stats"]


def test_results_are_written_as_json_and_png(experiment):
    document, out_dir = experiment
    written = json.loads((out_dir / "experiment.json").read_text())
    assert set(written["results"]) == {"direct", "proxy"}
    for result in written["results"].values():
        assert result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]
        assert sum(result["timeseries"]["ok_per_bin"]) == result["succeeded"]
        assert sum(result["timeseries"]["errors_per_bin"]) == result["failed"]
        assert result["timeseries"]["db_connections"], "the sampler recorded nothing"
    assert (out_dir / "experiment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert document["checks"]["direct_reproduces_1040"] and document["checks"]["proxy_zero_failures"]
