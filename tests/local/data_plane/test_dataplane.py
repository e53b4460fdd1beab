"""The composed local data plane: deployed settings in, the real handler answering over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from handler import app_contract
from local.data_plane.db_access import local_environment
from local.data_plane.deployed import (
    DeployedStack,
    DeployedStateError,
    FunctionSettings,
    PoolSettings,
    ThrottleSettings,
)
from local.data_plane.mariadb import mariadbd_available
from local.data_plane.plane import DataPlaneConfig, LocalDataPlane
from tests.local.data_plane.dataplane_support import APP_USER, MASTER_USER

DEPLOYED_ENV = {
    "DB_HOST": "sms-local-proxy.proxy-x.rds.amazonaws.com",
    "DB_PORT": "3306",
    "DB_NAME": "app",
    "DB_USER": APP_USER,
    "DB_TABLE": "access_times",
    "DB_AUTH": "iam",
    "RESPONSE_LIMIT": "5",
    "DB_SSL_CA": "/etc/pki/tls/certs/ca-bundle.crt",
}
MIGRATOR_ENV = {
    **{name: value for name, value in DEPLOYED_ENV.items() if name != "RESPONSE_LIMIT"},
    "DB_USER": MASTER_USER,
    "APP_DB_USER": APP_USER,
    "APP_DB_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:app-user-AbCdEf",
}
MIGRATOR = FunctionSettings(
    function_name="sms-local-migrator", handler=app_contract.MIGRATOR_HANDLER, environment=MIGRATOR_ENV, timeout_s=60
)


def stack(throttling: ThrottleSettings | None = None, **function_overrides) -> DeployedStack:
    """The least-privilege stack as deployed: the request function as the app user, the migrator as the master."""
    values = dict(
        function_name="sms-local-api",
        handler=app_contract.REQUEST_HANDLER,
        environment=DEPLOYED_ENV,
        memory_mb=256,
        timeout_s=10,
    )
    values.update(function_overrides)
    return DeployedStack(
        function=FunctionSettings(**values),
        pool=PoolSettings(max_connections_percent=70),
        route_keys=("ANY /",),
        source="test",
        migrator=MIGRATOR,
        throttling=throttling or ThrottleSettings(),
    )


def test_only_the_unavoidable_variables_are_overridden_and_each_is_reported():
    env, overrides = local_environment(stack(), "127.0.0.1", 4000, "secret")
    assert (env["DB_HOST"], env["DB_PORT"], env["DB_AUTH"], env["DB_PASSWORD"]) == (
        "127.0.0.1",
        "4000",
        "password",
        "secret",
    )
    assert "DB_SSL_CA" not in env
    unchanged = {k: v for k, v in DEPLOYED_ENV.items() if k not in overrides}
    assert unchanged == {k: env[k] for k in unchanged} and set(unchanged) == {
        "DB_NAME",
        "DB_USER",
        "DB_TABLE",
        "RESPONSE_LIMIT",
    }
    assert set(overrides) == {"DB_HOST", "DB_PORT", "DB_AUTH", "DB_PASSWORD", "DB_SSL_CA"}
    assert "secret" not in json.dumps(overrides)


def test_unresolved_synth_references_that_are_not_overridden_fail_clearly():
    unresolved = DeployedStack(
        function=stack().function, pool=PoolSettings(), source="cdk.tf.json", unresolved=("DB_HOST", "DB_TABLE")
    )
    with pytest.raises(DeployedStateError, match=r"\['DB_TABLE'\].*python -m local deploy"):
        local_environment(unresolved, "127.0.0.1", 1, "p")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="db_max_connections=5: must be in 10..100000"):
        DataPlaneConfig(db_max_connections=5)


@pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")
@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy"])
def test_the_real_handler_answers_through_the_local_stack(via_proxy, tmp_path):
    config = DataPlaneConfig(
        via_proxy=via_proxy, db_max_connections=20, max_concurrency=3, function_log=str(tmp_path / "function.log")
    )
    with LocalDataPlane(stack(), config) as plane:
        bodies = []
        for _ in range(3):
            with urllib.request.urlopen(plane.url + "/", timeout=15) as response:
                assert response.status == 200
                bodies.append(json.loads(response.read()))
        with pytest.raises(urllib.error.HTTPError) as not_allowed:
            urllib.request.urlopen(urllib.request.Request(plane.url + "/", method="POST", data=b"x"), timeout=15)
        assert not_allowed.value.code == 405
        assert [b["count"] for b in bodies] == [1, 2, 3]
        assert len(bodies[-1]["times"]) == 3 and bodies[-1]["limit"] == 5  # RESPONSE_LIMIT from the deployed env
        stats = plane.runtime.stats()
        assert stats.cold_starts == 1 and stats.invocations == 4  # warm reuse: one container served all
        assert plane.migration == {"schema_version": 4, "applied": [1, 2, 3, 4], "app_user": APP_USER, "revoked": []}
        assert plane.db.connection_ids(APP_USER) and not plane.db.connection_ids(MASTER_USER)  # requests: app user
        if via_proxy:
            proxy_stats = plane.proxy.stats()
            assert proxy_stats["client_connections"] == 1
            assert 1 <= proxy_stats["backend_connections_peak"] <= plane.pool_cap == 14
    assert (tmp_path / "function.log").read_text().count('"status":200') == 3


@pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")
def test_the_deployed_stage_limits_throttle_before_the_function_is_invoked(tmp_path):
    throttled = stack(throttling=ThrottleSettings(rate_limit=0.01, burst_limit=2, from_stage=True))
    config = DataPlaneConfig(via_proxy=False, db_max_connections=20, max_concurrency=2, supervise=False)
    with LocalDataPlane(throttled, config) as plane:
        statuses, bodies = [], []
        for _ in range(5):
            try:
                with urllib.request.urlopen(plane.url + "/", timeout=15) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                bodies.append(error.read())
        invocations = plane.runtime.stats().invocations
        described = plane.describe()
    assert statuses == [200, 200, 429, 429, 429]
    assert set(bodies) == {b'{"message":"Too Many Requests"}'}
    assert invocations == 2  # the three throttled requests never reached the function
    assert "throttling: burst 2, rate 0.01/s (the $default stage's)" in described
