"""`serve` runs the deployed migrator once before the function serves (the emulator cannot invoke it, as the cloud's
deploy does), the function logs in as the application user, and rows and the schema survive a restart."""

from __future__ import annotations

import json
import re
import urllib.request

import mysql.connector
import pytest

from local.data_plane.mariadb import mariadbd_available
from tests.local.data_plane.dataplane_support import APP_USER, MASTER_USER, current_state
from tests.local.data_plane.deployed_state_support import make_secret
from tests.local.data_plane.serve_support import Deployment, Serve

pytestmark = [pytest.mark.heavy, pytest.mark.skipif(not mariadbd_available(), reason="mariadb-server is not installed")]
MIGRATED = re.compile(r"\[migrator\] (\{.*\})$", re.M)


@pytest.fixture
def deployment(emulator, tmp_path) -> Deployment:
    master = make_secret(emulator.endpoint, f"rds!db-{tmp_path.name}", {"username": MASTER_USER, "password": "pw-m"})
    app = make_secret(emulator.endpoint, f"app-{tmp_path.name}", {"username": APP_USER, "password": "pw-app"})
    state_file = tmp_path / "terraform.local.tfstate"
    state_file.write_text(json.dumps(current_state(master, app)))
    return Deployment(state_file, tmp_path / ".local", emulator.endpoint, tmp_path)


def _migrated(serve: Serve) -> list[dict]:
    return [json.loads(found) for found in MIGRATED.findall(serve.log())]


def _stand_in_login(deployment: Deployment, user: str, password: str):
    return mysql.connector.connect(
        host="127.0.0.1",
        port=deployment.port_base + 1,
        user=user,
        password=password,
        database="app",
        use_pure=True,
        connection_timeout=10,
    )


def test_serve_migrates_once_and_the_function_logs_in_as_the_app_user(deployment):
    first = Serve(deployment).start()
    try:
        assert _migrated(first) == [{"schema_version": 4, "applied": [1, 2, 3, 4], "app_user": APP_USER, "revoked": []}]
        assert "migrator: sms-local-migrator run once by serve in the local runtime" in first.stdout
        assert "AWS_ENDPOINT_URL_SECRETS_MANAGER (migrator)" in first.stdout
        assert [first.get()[1]["count"] for _ in range(2)] == [1, 2]
        with urllib.request.urlopen(f"http://127.0.0.1:{deployment.port_base + 2}/stats", timeout=10) as response:
            assert json.loads(response.read())["accounts"] == [MASTER_USER, APP_USER]
        with _stand_in_login(deployment, APP_USER, "pw-app") as app:  # what the function is: the app user
            cursor = app.cursor()
            cursor.execute("SELECT CURRENT_USER()")
            assert cursor.fetchone() == (f"{APP_USER}@%",)
            for ddl in ("CREATE TABLE intruder (x INT)", "DROP TABLE access_times"):
                with pytest.raises(mysql.connector.Error) as denied:
                    cursor.execute(ddl)
                assert denied.value.errno == 1142, ddl
        assert "pw-m" not in first.stdout + first.log() and "pw-app" not in first.stdout + first.log()
    finally:
        assert first.stop() == 0
    again = Serve(deployment).start()
    try:
        assert _migrated(again) == [{"schema_version": 4, "applied": [], "app_user": APP_USER, "revoked": []}]
        assert again.get()[1]["count"] == 3  # the rows survived the restart
    finally:
        again.stop()


def test_the_direct_path_migrates_too_and_logs_in_with_the_app_secret(deployment):
    serve = Serve(deployment, args=("--direct",)).start()
    try:
        assert _migrated(serve)[0]["app_user"] == APP_USER
        assert serve.get()[1]["count"] == 1
        assert "DB_PASSWORD: <local db password>" in serve.stdout and "DB_USER" not in serve.stdout.split("cloud:")[1]
    finally:
        serve.stop()
