"""The deployed function's own auth path, run locally: an IAM token over verified TLS through the stand-in.

A Terraform state like the one `python -m local deploy` leaves (proxy with `iam_auth = REQUIRED` and
`require_tls`, the function role's `rds-db:connect` grant) drives the real data plane: HTTP API -> runtime ->
stand-in -> MariaDB. Only the endpoint name's resolution and `DB_SSL_CA` may differ from the cloud.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from local.data_plane.deployed import parse_state
from local.data_plane.mariadb import mariadbd_available
from local.data_plane.plane import DataPlaneConfig, LocalDataPlane
from tests.local.data_plane.auth import auth_support
from tests.local.data_plane.auth.auth_support import APP_USER
from tests.local.data_plane.auth.auth_support import DB_USER as MASTER_USER

pytestmark = pytest.mark.skipif(not mariadbd_available(), reason="needs mariadbd")


APP_GRANT = auth_support.grant(auth_support.connect_arn(user=APP_USER))


def _plane(tmp_path: Path, grant: dict[str, Any]) -> LocalDataPlane:
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(auth_support.plane_state(inline=[grant])))
    stack = parse_state(json.loads(state_file.read_text()), source=str(state_file))
    config = DataPlaneConfig(
        max_concurrency=2,
        local_state_dir=str(tmp_path / ".local"),
        function_log=str(tmp_path / "function.log"),
        supervise=False,
    )
    return LocalDataPlane(stack, config)


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url + "/", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_real_handler_connects_with_an_iam_token_over_verified_tls(tmp_path):
    with _plane(tmp_path, APP_GRANT) as plane:
        assert plane.auth is not None
        first, second = _get(plane.url), _get(plane.url)
        log = (tmp_path / "function.log").read_text()
        stats = plane.proxy.stats()
        differences = dict(plane.overrides)
    assert first[0] == 200 and first[1]["count"] == 1, first
    assert second[0] == 200 and second[1]["count"] == 2, second
    connected = [json.loads(line) for line in log.splitlines() if '"db connected"' in line]
    assert connected and all(entry["tls"] is True for entry in connected)
    assert set(differences) == {"DB_HOST", "DB_SSL_CA"}  # nothing else differs from the deployed environment
    assert auth_support.ENDPOINT in differences["DB_HOST"] and "local CA" in differences["DB_SSL_CA"]
    assert stats["tls_clients"] >= 1 and not stats["iam_auth_failures"]
    assert "DB_PASSWORD" not in plane.stack.function.environment


@pytest.mark.parametrize(
    "grant",
    [
        auth_support.grant(auth_support.connect_arn(prx_id="prx-0another000000000")),
        auth_support.grant(auth_support.connect_arn(user="someone_else")),
        auth_support.grant(auth_support.connect_arn(user=APP_USER), effect="Deny"),
        auth_support.grant(auth_support.connect_arn(user=MASTER_USER)),  # the master's grant is the migrator's
    ],
    ids=["another-proxy", "another-user", "denied", "the-masters-grant"],
)
def test_a_grant_that_does_not_cover_this_proxy_and_user_is_refused_with_1045(tmp_path, grant):
    with _plane(tmp_path, grant) as plane:
        status, body = _get(plane.url)
        log = (tmp_path / "function.log").read_text()
        failures = plane.proxy.stats()["iam_auth_failures"]
    assert (status, body.get("code")) == (503, 1045), body
    assert "not authorized" in log and failures.get("not authorized", 0) >= 1
