"""The CI-sized load experiment (2,000 requests, 100 users): its result must have the reference experiment's shape.

Settings come from the synthesized `local` stack (what `--settings-from-synth` reads), so the run
uses the pool and function settings the stack deploys without needing a deployed emulator.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.data_plane.deployed import parse_synth
from local.data_plane.mariadb import mariadbd_available
from local.experiment.metrics import time_weighted_mean
from local.experiment.run import ExperimentConfig, run
from tests.modules.synth_support import default_synth


def load(test):
    """A test of the 2,000-request run (marked `experiment`; needs mariadbd)."""
    marks = (
        pytest.mark.experiment,
        pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed"),
    )
    for mark in marks:
        test = mark(test)
    return test


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


@load
def test_direct_path_reproduces_too_many_connections(experiment):
    direct = experiment[0]["results"]["direct"]
    assert direct["requests"] == 2000
    assert direct["failed"] > 0
    assert direct["failures_by_cause"].get("mysql-1040", 0) > 0
    # Every container holds its own connection: the server fills all 65 slots.
    assert direct["peak_db_connections_sampled"] >= 60


@load
def test_proxy_path_has_no_failures_and_stays_within_the_pool_cap(experiment):
    proxy = experiment[0]["results"]["proxy"]
    assert proxy["pool_cap"] == 45  # 70 % (deployed max_connections_percent) of 65
    assert (proxy["requests"], proxy["failed"]) == (2000, 0), (proxy["failures_by_cause"], proxy["proxy_stats"])
    assert proxy["peak_db_connections_sampled"] <= proxy["pool_cap"]
    assert proxy["peak_proxy_backend_connections"] <= proxy["pool_cap"]
    # The proxy absorbed more clients than it opened DB connections: it multiplexes.
    assert proxy["peak_proxy_client_connections"] > proxy["peak_proxy_backend_connections"], proxy["proxy_stats"]


@load
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


@load
def test_both_paths_report_connections_cold_starts_and_the_new_checks(experiment):
    document = experiment[0]
    for result in document["results"].values():
        assert 0 < result["mean_db_connections_sampled"] <= result["peak_db_connections_sampled"]
        assert 0 < result["first_200_after_s"] <= result["duration_s"]
        assert 0 < result["all_containers_warm_after_s"] <= result["duration_s"] + 1
        assert result["containers_created"] <= 100
    proxy = document["results"]["proxy"]
    assert proxy["peak_proxy_backend_connections"] <= proxy["pool_cap"]
    assert {"proxy_db_connections_at_most_10", "proxy_throughput_at_least_110pct_of_direct"} <= set(document["checks"])
    assert document["config"]["throttling"]["used"] == {"burst": 5000, "rate": 10000.0}
    assert set(proxy["http_status_counts"]) == {"200"}  # never throttled: the run sets limits it cannot reach


def test_time_weighted_mean_of_a_step_function():
    series = [(0.0, 10.0), (1.0, 2.0), (3.0, 4.0)]
    assert time_weighted_mean(series, 0.0, 4.0) == (10 * 1 + 2 * 2 + 4 * 1) / 4
    assert time_weighted_mean(series, 0.5, 2.0) == (10 * 0.5 + 2 * 1) / 1.5  # the value held when the window opens
    assert time_weighted_mean(series, 5.0, 5.0) is None and time_weighted_mean([], 0, 1) is None


@given(
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 65)), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0.001, 50),
)
def test_time_weighted_mean_lies_between_the_values_it_averages(points, start, length):
    mean = time_weighted_mean(points, start, start + length)
    held = [value for t, value in sorted(points) if t <= start][-1:]
    values = held + [value for t, value in points if start < t < start + length]
    if not values:
        assert mean is None
    else:
        assert min(values) - 1e-9 <= mean <= max(values) + 1e-9
