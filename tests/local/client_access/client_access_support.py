"""The RDS Proxy stand-in as a local client meets it, and the clients: PyMySQL, mysql-connector, the ``mariadb`` CLI.

``standin`` runs the real stand-in (TLS required, IAM tokens checked against a deployed-stack state, backend
credentials from a secret in the real emulator, a fixed local port) in front of a real MariaDB holding a table.
Each client runs in its own process in which the deployed endpoint name resolves to the stand-in (the hosts line,
through ``local.client_access.endpoint_names``), and verifies the certificate for that name.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from local.client_access.endpoint_names import resolving
from local.common.processes import free_port
from local.data_plane.rdsproxy import ProxyConfig, ProxyServer
from local.data_plane.rdsproxy.accounts import SecretAccount
from modules.project import REPO_ROOT
from tests.local.data_plane.auth.auth_support import DB_USER, ENDPOINT, REGION, state
from tests.local.data_plane.auth.emulator_principals_support import client

AWS_CLI = str(Path(sys.executable).with_name("aws"))
TABLE_ROWS = [(1, "first"), (2, "second")]

# The reference experiment's client, as it runs against AWS: PyMySQL + generate_db_auth_token, one address for
# signing and connecting. The one local difference is the values of the first line (from `sql --print`).
PYMYSQL_CLIENT = r"""
import json, sys
import boto3, pymysql
HOST, PORT, USER, DATABASE, CA = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
token = boto3.client("rds").generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername=USER)
conn = pymysql.connect(host=HOST, port=PORT, user=USER, password=token, database=DATABASE, ssl={"ca": CA})
with conn.cursor() as cur:
    cur.execute("SELECT id, label FROM access_log ORDER BY id")
    rows = [list(r) for r in cur.fetchall()]
print(json.dumps({"rows": rows, "tls": conn._sock.version()}))
"""

# mysql-connector as the handler uses it: the token signed for the deployed port, the local port to connect.
CONNECTOR_CLIENT = r"""
import json, sys
import boto3, mysql.connector
HOST, PORT, USER, DATABASE, CA = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
token = boto3.client("rds").generate_db_auth_token(DBHostname=HOST, Port=3306, DBUsername=USER)
conn = mysql.connector.connect(host=HOST, port=PORT, user=USER, password=token, database=DATABASE, use_pure=True,
    auth_plugin="mysql_clear_password", ssl_ca=CA, ssl_verify_cert=True, ssl_verify_identity=True)
cur = conn.cursor()
cur.execute("SELECT id, label FROM access_log ORDER BY id")
print(json.dumps({"rows": [list(r) for r in cur.fetchall()], "tls": conn._ssl_active}))
"""


@dataclass(frozen=True)
class Standin:
    server: ProxyServer
    emulator: str
    database: str
    ca_file: str

    @property
    def port(self) -> int:
        return self.server.port


@contextlib.contextmanager
def standin(db, emulator: str, auth_dir: Path, **overrides) -> Iterator[Standin]:
    """The stand-in for ``state()``'s proxy on a fixed port, its DB credentials read from a secret in ``emulator``."""
    with contextlib.closing(db.app_connect()) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS access_log (id INT PRIMARY KEY, label VARCHAR(20))")
        cur.execute("REPLACE INTO access_log VALUES (%s, %s), (%s, %s)", [v for row in TABLE_ROWS for v in row])
        conn.commit()
    secret = json.dumps({"username": db.app_user, "password": db.app_password})
    arn = client(emulator, "secretsmanager").create_secret(Name=f"rds!{auth_dir.name}", SecretString=secret)["ARN"]
    state_file = auth_dir / "state.tfstate"
    state_file.write_text(json.dumps(state()))
    fields = dict(
        backend_host=db.host,
        backend_port=db.port,
        accounts=(SecretAccount(arn),),
        db_max_connections=40,
        max_connections_percent=50,
        listen_port=free_port(),
        require_tls=True,
        iam_state_file=str(state_file),
        ca_dir=str(auth_dir / "ca"),
        issuer_key_path=str(auth_dir / "issuer.key"),
        secrets_endpoint=emulator,
        login_timeout=5,
    )
    fields.update(overrides)
    with ProxyServer(ProxyConfig(**fields)) as server:
        yield Standin(server, emulator, db.database, str(auth_dir / "ca" / "ca.pem"))


def client_environment(credentials: Mapping[str, str], emulator: str) -> dict[str, str]:
    """A clean environment with these AWS credentials (nothing of the test process's AWS settings leaks in)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**keep, **credentials, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": emulator, "PYTHONPATH": ""}


def run_in_endpoint_namespace(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run ``argv`` where the endpoint name resolves to the stand-in, as with the hosts line."""
    with resolving(ENDPOINT, "127.0.0.1", argv) as wrapped:
        return subprocess.run(wrapped, env=dict(env), capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def python_client(script: str, target: Standin, credentials: Mapping[str, str], user: str = DB_USER):
    argv = [sys.executable, "-c", script, ENDPOINT, str(target.port), user, target.database, target.ca_file]
    return run_in_endpoint_namespace(argv, client_environment(credentials, target.emulator))


def mariadb_cli(target: Standin, credentials: Mapping[str, str], sql: str, user: str = DB_USER):
    """AWS's command-line recipe: ``aws rds generate-db-auth-token``, then the client over TLS with the token."""
    env = client_environment(credentials, target.emulator)
    token = subprocess.run(
        [AWS_CLI, "rds", "generate-db-auth-token", "--hostname", ENDPOINT, "--port", str(target.port)]
        + ["--username", user, "--region", REGION],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    argv = ["mariadb", "--no-defaults", f"--host={ENDPOINT}", f"--port={target.port}", f"--user={user}"]
    argv += [f"--ssl-ca={target.ca_file}", "--ssl-verify-server-cert", "--batch"]
    return run_in_endpoint_namespace([*argv, "-e", sql, target.database], {**env, "MYSQL_PWD": token})
