"""Hostile logins at the running data plane's proxy are refused, and the API keeps answering GETs with 200.

The real data plane (HTTP API -> runtime -> RDS Proxy stand-in -> MariaDB) with the deployed auth path; each hostile
login goes straight to its stand-in, the way a client on the machine could.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import urllib.request
from pathlib import Path
from unittest import mock

import mysql.connector
import pytest
from botocore.compat import get_current_datetime

from local.data_plane.auth.credentials import IssuedCredentials
from local.data_plane.deployed import parse_state
from local.data_plane.mariadb import mariadbd_available
from local.data_plane.plane import DataPlaneConfig, LocalDataPlane
from tests.local.data_plane.auth.auth_support import APP_USER, ROLE_ARN, plane_state, signed_token

pytestmark = pytest.mark.skipif(not mariadbd_available(), reason="needs mariadbd")


def _hostile(credentials: IssuedCredentials) -> dict[str, tuple[str, dict, int]]:
    """Case -> (password, connect options, the error number the client sees)."""
    twenty_minutes_ago = get_current_datetime() - datetime.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=twenty_minutes_ago):
        expired = signed_token(credentials, user=APP_USER)
    forged = IssuedCredentials(credentials.access_key_id, "x" * 40, credentials.session_token, ROLE_ARN, "fn", 0)
    return {
        "expired token": (expired, {}, 1045),
        "wrong key": (signed_token(forged, user=APP_USER), {}, 1045),
        "wrong host": (signed_token(credentials, host="other-proxy.example.com", user=APP_USER), {}, 1045),
        "wrong user": (signed_token(credentials, user=APP_USER), {"user": "root"}, 1045),
        "empty token": ("", {}, 1045),
        "oversized token": (signed_token(credentials, user=APP_USER) + "&X" * 5000, {}, 1045),
        "plain text": (
            signed_token(credentials, user=APP_USER),
            {"ssl_disabled": True, "auth_plugin": "mysql_native_password"},
            3159,
        ),
    }


def test_hostile_logins_are_refused_and_a_normal_get_still_returns_200(tmp_path: Path) -> None:
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(plane_state()))
    stack = parse_state(json.loads(state_file.read_text()), source=str(state_file))
    config = DataPlaneConfig(max_concurrency=2, local_state_dir=str(tmp_path / ".local"), supervise=False)
    with LocalDataPlane(stack, config) as plane:
        issuer = plane.auth.authenticator.issuer
        environment = plane.auth.container_environment()()
        credentials = issuer.resolve(environment["AWS_ACCESS_KEY_ID"], environment["AWS_SESSION_TOKEN"])
        for case, (password, options, errno) in _hostile(credentials).items():
            params = dict(host="127.0.0.1", port=plane.proxy.port, user=APP_USER, password=password, use_pure=True)
            params.update(
                auth_plugin="mysql_clear_password",
                ssl_ca=str(plane.auth.authenticator.ca_bundle_path),
                connection_timeout=10,
            )
            with pytest.raises(mysql.connector.Error) as caught:
                mysql.connector.connect(**{**params, **options}).close()
            assert caught.value.errno == errno, (case, caught.value)
        deadline = time.monotonic() + 5
        while plane.proxy.stats()["auth_failures"] < 7 and time.monotonic() < deadline:
            time.sleep(0.02)  # a refusal is counted just after the client read it
        assert plane.proxy.stats()["auth_failures"] == 7
        with contextlib.closing(urllib.request.urlopen(plane.url + "/", timeout=30)) as response:
            assert response.status == 200 and json.loads(response.read())["count"] == 1
