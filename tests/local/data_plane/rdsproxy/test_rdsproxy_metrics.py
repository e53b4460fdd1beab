"""Property tests of the stand-in's pure parts: borrow metrics, the pool's growth rule, accounts, the greeting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mysql_mimic import packets as mimic_packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus

from local.data_plane.rdsproxy import ProxyConfig, ProxyConfigError, SecretAccount, StaticAccount
from local.data_plane.rdsproxy.accounts import AccountError, account_from_json, check_accounts
from local.data_plane.rdsproxy.constants import PROXY_CAPABILITIES, Capability
from local.data_plane.rdsproxy.growth import GrowthPolicy
from local.data_plane.rdsproxy.metrics import RELATIVE_ERROR, SMALLEST_S, LatencyHistogram, TimeWeightedGauge
from local.data_plane.rdsproxy.protocol import handshake_v10
from local.data_plane.rdsproxy.stats import Stats
from tests.local.data_plane.rdsproxy.standin_support import UNIT_FIELDS

DURATIONS = st.floats(min_value=0, max_value=3600, allow_nan=False)
ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:rds!db-app-AbCdEf"


# -- latency percentiles ---------------------------------------------------------------------------
@settings(max_examples=300)
@given(samples=st.lists(DURATIONS, min_size=1, max_size=400), fraction=st.sampled_from([0.5, 0.95, 0.99, 1.0]))
def test_a_reported_percentile_is_the_exact_one_or_at_most_2_percent_above(samples, fraction):
    histogram = LatencyHistogram()
    for sample in samples:
        histogram.add(sample)
    exact = max(sorted(samples)[math.ceil(fraction * len(samples)) - 1], SMALLEST_S)
    reported = histogram.quantile(fraction)
    assert exact <= reported <= exact * (1 + RELATIVE_ERROR) * (1 + 1e-9)
    assert histogram.count == len(samples) and histogram.max == max(max(samples), SMALLEST_S)


def test_the_summary_is_in_milliseconds_and_empty_histograms_report_zeros():
    histogram = LatencyHistogram()
    assert histogram.summary_ms() == {"count": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    for ms in range(1, 101):
        histogram.add(ms / 1000)
    summary = histogram.summary_ms()
    assert summary["count"] == 100 and summary["max"] == 100.0
    assert 50 <= summary["p50"] <= 51 and 95 <= summary["p95"] <= 96.9
    with pytest.raises(ValueError, match="fraction=0"):
        histogram.quantile(0)


# -- time-weighted connections ------------------------------------------------------------------------
@settings(max_examples=300)
@given(steps=st.lists(st.tuples(st.integers(0, 10240).map(lambda n: n / 1024), st.integers(0, 50)), max_size=60))
def test_the_gauge_integrates_the_level_over_time_and_keeps_the_peak(steps):
    """Times are binary fractions of a second, so the sums compare exactly."""
    gauge = TimeWeightedGauge(now=100.0)
    now, level, area, peak = 100.0, 0, 0.0, 0
    for delay, value in steps:
        area += level * delay
        now += delay
        gauge.set(value, now)
        level, peak = value, max(peak, value)
    assert gauge.area(now + 1) == area + level
    assert gauge.peak == peak and gauge.value == level
    if now > 100.0:
        assert gauge.mean(now) == area / (now - 100.0)
    gauge.reset(now)
    assert gauge.peak == level and gauge.area(now) == 0 and gauge.mean(now) == level


def test_stats_reset_answers_the_closing_window_and_starts_a_new_one():
    clock = iter([0.0, 0.0, 1.0, 2.0, 4.0, 4.0, 5.0]).__next__
    stats = Stats(clock=clock)
    stats.backend_opened()  # t=0: 1 connection
    stats.backend_opened()  # t=1: 2
    stats.backend_closed()  # t=2: 1
    stats.borrowed(0.002)
    closing = stats.reset_window()  # snapshot at t=4, then the window restarts at t=4
    assert closing["backend_connections_peak"] == 2
    assert closing["backend_connection_seconds"] == 1 * 1 + 2 * 1 + 1 * 2
    assert closing["backend_connections_mean"] == 1.25 and closing["window_s"] == 4
    assert closing["borrow_wait_ms"]["count"] == 1
    fresh = stats.snapshot()  # t=5
    assert fresh["backend_connections_peak"] == 1 and fresh["backend_connection_seconds"] == 1
    assert fresh["borrow_wait_ms"]["count"] == 0 and fresh["backend_connections_opened"] == 2
    assert fresh["uptime_s"] == 5 and fresh["window_s"] == 1


# -- the pool's growth rule -----------------------------------------------------------------------------
@given(patience=st.floats(0.0001, 10), timeout=st.sampled_from([0, 0.3, 5, 120]))
def test_patience_never_exceeds_a_quarter_of_the_borrow_timeout(patience, timeout):
    """So a borrow below the cap always gets a connection before it could time out."""
    policy = GrowthPolicy(cap=10, borrow_timeout=timeout, patience=patience)
    assert policy.patience == (patience if timeout == 0 else min(patience, timeout / 4))


@given(slots=st.integers(0, 20), idle=st.integers(0, 20), waited=st.floats(0, 1), growing=st.booleans())
def test_the_pool_never_grows_past_its_cap_and_opens_at_once_only_when_nothing_would_come_back(
    slots, idle, waited, growing
):
    policy = GrowthPolicy(cap=10, borrow_timeout=120)
    idle = min(idle, slots)
    if policy.open_at_once(slots=slots, idle=idle):
        assert slots < 10 and idle == slots  # nothing busy, nothing opening
    if policy.may_grow(slots=slots, growing=growing, waited=waited):
        assert slots < 10 and not growing and waited >= policy.patience


@settings(max_examples=200)
@given(
    holds=st.lists(st.floats(0.0001, 0.5), min_size=1, max_size=80),
    ages=st.lists(st.floats(0, 2), max_size=10),
    waited=st.floats(0, 1),
)
def test_an_oversubscribed_database_gets_no_more_connections_unless_the_busy_ones_are_overdue(holds, ages, waited):
    policy = GrowthPolicy(cap=45, borrow_timeout=120)
    for index, hold in enumerate(holds):
        policy.observe_hold(hold, now=index * 0.001)
    assert min(holds) <= policy.hold_floor <= policy.hold_mean * (1 + 1e-9)  # the floor is below the mean
    grows = policy.may_grow(slots=5, growing=False, waited=waited, busy_ages=ages)
    if grows:
        assert waited >= policy.patience
        assert not policy.congested or all(age >= policy.overdue_after for age in ages)
    elif waited >= policy.patience and not policy.congested:
        pytest.fail("a queue that waited its patience, with the database not oversubscribed, must grow the pool")


def test_the_floor_learns_a_lasting_change_in_seconds_not_borrows():
    policy = GrowthPolicy(cap=45, borrow_timeout=120)
    for step in range(2000):  # 1 ms holds at 2000 a second: the floor stays the quickest hold
        policy.observe_hold(0.001 if step % 2 else 0.0005, now=step / 2000)
    assert policy.hold_floor == pytest.approx(0.0005, rel=0.2)
    for step in range(100):  # then 50 ms queries, ten a second for ten seconds
        policy.observe_hold(0.05, now=1 + step / 10)
    assert policy.hold_floor > 0.025 and not policy.congested  # long queries, learnt: not oversubscription


# -- accounts -------------------------------------------------------------------------------------------
def test_accounts_are_validated_naming_the_account_and_never_the_password():
    cases = [
        ((), "no account"),
        ((StaticAccount("app", "pw"), StaticAccount("app", "other-pw")), "user 'app' has two accounts"),
        ((SecretAccount("my-secret"),), "secret_arn 'my-secret'"),
        ((SecretAccount(ARN), SecretAccount(ARN)), "named twice"),
        ((StaticAccount("a\x00b", "pw"),), "without NUL"),
        ("app", "not a list"),
    ]
    for accounts, expected in cases:
        with pytest.raises(ProxyConfigError) as caught:
            ProxyConfig(**dict(UNIT_FIELDS, accounts=accounts))
        assert expected in str(caught.value) and caught.value.field_name == "accounts"
        assert "other-pw" not in str(caught.value)
    with pytest.raises(ProxyConfigError, match="secrets_endpoint"):
        ProxyConfig(**dict(UNIT_FIELDS, accounts=(SecretAccount(ARN),)))


@given(user=st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=80), password=st.text())
def test_accounts_travel_to_the_child_process_unchanged(user, password):
    accounts = (StaticAccount(user, password), SecretAccount(ARN))
    config = ProxyConfig(**dict(UNIT_FIELDS, accounts=accounts, secrets_endpoint="http://127.0.0.1:4602"))
    fields = config.to_json()
    back = ProxyConfig.from_json(fields)
    assert back.accounts == config.accounts and back == config
    assert check_accounts([account_from_json(a) for a in fields["accounts"]]) == config.accounts
    with pytest.raises(AccountError):
        account_from_json({"user": "a"})


# -- the greeting -----------------------------------------------------------------------------------------
@given(
    version=st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=1, max_size=30),
    connection_id=st.integers(0, 2**32 - 1),
    scramble=st.binary(min_size=20, max_size=20).filter(lambda b: b"\x00" not in b),
    tls=st.booleans(),
)
def test_the_greeting_is_byte_for_byte_mysql_mimics(version, connection_id, scramble, tls):
    capabilities = int(PROXY_CAPABILITIES | (Capability.SSL if tls else 0))
    ours = handshake_v10(
        capabilities=capabilities,
        charset=CharacterSet.utf8mb4,
        server_version=version,
        connection_id=connection_id,
        scramble=scramble,
        plugin="mysql_native_password",
    )
    theirs = mimic_packets.make_handshake_v10(
        capabilities=Capabilities(capabilities),
        server_charset=CharacterSet.utf8mb4,
        server_version=version,
        connection_id=connection_id,
        auth_data=scramble + b"\x00",
        status_flags=ServerStatus.SERVER_STATUS_AUTOCOMMIT,
        auth_plugin_name="mysql_native_password",
    )
    assert ours == theirs
