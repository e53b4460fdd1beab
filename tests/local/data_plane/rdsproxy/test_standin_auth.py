"""The RDS Proxy stand-in with RDS Proxy's security: TLS required, IAM auth tokens, DB credentials from the secret.

Real components throughout: a private MariaDB, the stand-in (in a thread, or as a child process), tokens signed
by boto3 with credentials from the local issuer, the handler's own connection code in a subprocess with the
resolver shim (as a runtime container runs it), the ``mariadb`` CLI, and a moto server for Secrets Manager.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import boto3
import mysql.connector
import pytest
from botocore.compat import get_current_datetime

from handler.app_db import Deadline
from handler.app_schema import TableNames, migrate
from local.control_plane.emulator import Emulator, EmulatorConfig
from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings, RuntimeCredentials
from local.data_plane.auth.credentials import IssuerSettings
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.resolver_shim import AddressOverride
from local.data_plane.rdsproxy import (
    ProxyConfig,
    ProxyConfigError,
    ProxyProcess,
    ProxyServer,
    SecretAccount,
    StaticAccount,
)
from local.data_plane.rdsproxy.security import ProxyStartError
from modules.project import REPO_ROOT
from tests.local.data_plane.auth.auth_support import (
    ACCOUNT,
    DB_USER,
    ENDPOINT,
    REGION,
    ROLE_ARN,
    connect_arn,
    grant,
    signed_token,
    state,
)
from tests.local.data_plane.rdsproxy.standin_support import add_db_user, frame, read_packet, settled_stats

pytestmark = pytest.mark.heavy

ER_ACCESS_DENIED, ER_SECURE_TRANSPORT_REQUIRED = 1045, 3159
CLIENT_SSL, CLIENT_PROTOCOL_41, CLIENT_PLUGIN_AUTH = 1 << 11, 1 << 9, 1 << 19
CLIENT_SECURE_CONNECTION, CLIENT_PLUGIN_AUTH_LENENC = 1 << 15, 1 << 21

# What a runtime container does: resolve the deployed endpoint to the stand-in, then the handler's own GET.
HANDLER_GET = r"""
import json, os, sys
from datetime import UTC, datetime
from local.data_plane.auth import resolver_shim

resolver_shim.install([resolver_shim.AddressOverride.decode(sys.argv[1])])
from handler.app_logging import get_logger
from handler.app_settings import Settings
from handler.app_store import AccessTimesStore, DatabaseUnavailable

store = AccessTimesStore(Settings.from_env(os.environ), get_logger("WARNING"))
try:
    first = store.record_access(datetime.now(UTC), "request-1")
    second = store.record_access(datetime.now(UTC), "request-2")
except DatabaseUnavailable as exc:
    print(json.dumps({"errno": exc.errno, "error": str(exc)}))
else:
    connection = store._connection
    print(json.dumps({"totals": [first.total, second.total], "tls": connection._ssl_active,
                      "cipher": connection._socket.sock.cipher()[0]}))
store.close()
"""


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def db(mariadb_factory):
    """The DB user is the deployed function's DB_USER: the stand-in logs in as the user the token was signed for."""
    return mariadb_factory(max_connections=40, app_user=DB_USER)


@pytest.fixture(scope="module")
def auth_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("auth")


def iam_config(db, auth_dir: Path, deployed: dict | None = None, name: str = "state", **overrides) -> ProxyConfig:
    state_file = auth_dir / f"{name}.tfstate"
    state_file.write_text(json.dumps(deployed or state()))
    fields = dict(
        backend_host=db.host,
        backend_port=db.port,
        accounts=(StaticAccount(db.app_user, db.app_password),),
        db_max_connections=40,
        max_connections_percent=50,
        connection_borrow_timeout=10,
        require_tls=True,
        iam_state_file=str(state_file),
        ca_dir=str(auth_dir / "ca"),
        issuer_key_path=str(auth_dir / "issuer.key"),
        login_timeout=3,
    )
    fields.update(overrides)
    return ProxyConfig(**fields)


@pytest.fixture(scope="module")
def authenticator(auth_dir) -> IamAuthenticator:
    """The same CA and issuer key as the stand-in's: what the runtime side holds."""
    settings = IamAuthSettings.from_state(
        state(), ca=LocalCaSettings(directory=auth_dir / "ca"), issuer=IssuerSettings(key_path=auth_dir / "issuer.key")
    )
    return IamAuthenticator(settings)


@pytest.fixture(scope="module")
def proxy(db, auth_dir, authenticator):
    with ProxyServer(iam_config(db, auth_dir)) as server:
        yield server


def credentials(auth: IamAuthenticator, role_arn: str = ROLE_ARN, now: float | None = None):
    env = RuntimeCredentials(auth.issuer, role_arn, "sms-local-api").environment()
    return auth.issuer.resolve(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"], now)


def token_for(auth: IamAuthenticator, **kwargs) -> str:
    return signed_token(credentials(auth), **kwargs)


def connect(proxy, db, auth: IamAuthenticator, password: str, user: str = DB_USER, **options):
    """mysql-connector as the handler uses it: clear-text token over TLS, certificate and name verified."""
    params = dict(
        host="127.0.0.1",
        port=proxy.port,
        user=user,
        password=password,
        database=db.database,
        use_pure=True,
        auth_plugin="mysql_clear_password",
        ssl_ca=str(auth.ca_bundle_path),
        ssl_verify_cert=True,
        ssl_verify_identity=True,
        connection_timeout=10,
    )
    params.update(options)
    return mysql.connector.connect(**params)


def select_one(proxy, db, auth: IamAuthenticator) -> list:
    with contextlib.closing(connect(proxy, db, auth, token_for(auth))) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        return cur.fetchall()


def refused(proxy, db, auth: IamAuthenticator, password: str, **options) -> mysql.connector.Error:
    with pytest.raises(mysql.connector.Error) as caught:
        connect(proxy, db, auth, password, **options).close()
    return caught.value


def run_handler_get(auth: IamAuthenticator, port: int, db) -> dict:
    with contextlib.closing(db.app_connect()) as owner:  # the deploy's migrations: the request path never migrates
        migrate(owner, TableNames(db.database, "access_times"), Deadline.none())
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "DB_HOST": ENDPOINT,
        "DB_PORT": "3306",
        "DB_NAME": db.database,
        "DB_USER": DB_USER,
        "DB_AUTH": "iam",
        "AWS_REGION": REGION,
        "DB_SSL_CA": str(auth.ca_bundle_path),
        "DB_CONNECT_TIMEOUT": "10",
        **RuntimeCredentials(auth.issuer, ROLE_ARN, "sms-local-api").environment(),
    }
    result = subprocess.run(
        [sys.executable, "-c", HANDLER_GET, AddressOverride(ENDPOINT, 3306, port).encode()],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the production path ----------------------------------------------------------------------------
def test_the_handler_runs_a_get_through_the_stand_in_over_verified_tls_with_an_iam_token(proxy, db, authenticator):
    before = proxy.stats()
    reply = run_handler_get(authenticator, proxy.port, db)
    assert reply["totals"] == [1, 2] and reply["tls"] is True and reply["cipher"].startswith("TLS_")
    after = proxy.stats()
    assert after["tls_clients"] > before["tls_clients"]
    assert after["auth_failures"] == before["auth_failures"]
    assert after["require_tls"] is True and after["iam_auth"] is True
    # the row really is in the database, written through the stand-in's backend credentials
    with contextlib.closing(db.app_connect()) as direct:
        cur = direct.cursor()
        cur.execute("SELECT COUNT(*) FROM access_times WHERE request_id IN ('request-1', 'request-2')")
        assert cur.fetchall() == [(2,)]


def test_a_client_starting_with_another_plugin_is_switched_to_clear_text(proxy, db, authenticator):
    """Connector/Python's default plugin first (caching_sha2_password): the stand-in asks for the token in clear."""
    with contextlib.closing(
        connect(proxy, db, authenticator, token_for(authenticator), auth_plugin="caching_sha2_password")
    ) as conn:
        assert conn._ssl_active
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER() LIKE %s", (f"{db.app_user}@%",))
        assert cur.fetchall() == [(1,)]  # the backend session is the secret's user, not the IAM user


def test_the_mariadb_cli_logs_in_with_a_token_over_tls(proxy, db, authenticator):
    result = mariadb_cli(proxy.port, db.database, "SELECT 42", token_for(authenticator), "--ssl-ca", authenticator)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["42", "42"]


# -- TLS is required ------------------------------------------------------------------------------
def mariadb_cli(port: int, database: str, sql: str, password: str, *options, user: str = DB_USER):
    args = [str(o.ca_bundle_path) if isinstance(o, IamAuthenticator) else o for o in options]
    return subprocess.run(
        ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", user, "--batch", *args, database]
        + ["-e", sql],
        env=dict(os.environ, MYSQL_PWD=password),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_plain_text_client_is_refused_before_its_token_is_looked_at(proxy, db, authenticator):
    before = proxy.stats()
    # (Connector/Python itself never sends mysql_clear_password in plain text; its native plugin does go out)
    error = refused(
        proxy, db, authenticator, token_for(authenticator), ssl_disabled=True, auth_plugin="mysql_native_password"
    )
    assert error.errno == ER_SECURE_TRANSPORT_REQUIRED and error.sqlstate == "HY000"
    assert "insecure transport" in error.msg and "TLS is required" in error.msg
    result = mariadb_cli(proxy.port, db.database, "SELECT 1", token_for(authenticator), "--skip-ssl")
    assert result.returncode != 0
    assert "ERROR 3159 (HY000)" in result.stderr and "TLS is required" in result.stderr
    after = settled_stats(proxy, lambda now: now["auth_failures"] >= before["auth_failures"] + 2)
    assert after["auth_failures"] == before["auth_failures"] + 2
    assert after["iam_auth_failures"] == before["iam_auth_failures"]  # refused before any IAM check
    assert after["tls_clients"] == before["tls_clients"]


def test_a_password_mode_stand_in_with_require_tls_refuses_plain_text_and_serves_tls(db, auth_dir):
    account = add_db_user(db, "app", "pw")
    config = iam_config(db, auth_dir, iam_state_file="", issuer_key_path="", accounts=(account,))
    with ProxyServer(config) as server:
        params = dict(host="127.0.0.1", port=server.port, user="app", password="pw", use_pure=True)
        with pytest.raises(mysql.connector.Error) as caught:
            mysql.connector.connect(**params, ssl_disabled=True, auth_plugin="mysql_native_password")
        assert caught.value.errno == ER_SECURE_TRANSPORT_REQUIRED
        ca = str(auth_dir / "ca" / "ca.pem")
        with contextlib.closing(mysql.connector.connect(**params, ssl_ca=ca, ssl_verify_identity=True)) as conn:
            assert conn._ssl_active
            cur = conn.cursor()
            cur.execute("SELECT 7")
            assert cur.fetchall() == [(7,)]
        assert server.stats()["tls_clients"] == 1


# -- IAM checks: each refusal is 1045 naming its check -------------------------------------------------
def expired_token(auth: IamAuthenticator) -> str:
    signed_at = get_current_datetime() - datetime.timedelta(minutes=20)  # tokens live 15 minutes
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        return token_for(auth)


def tampered_token(auth: IamAuthenticator) -> str:
    token = token_for(auth)
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")  # X-Amz-Signature is the last parameter


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (expired_token, "expired"),
        (lambda auth: token_for(auth, user="someone_else"), "wrong user"),
        (tampered_token, "bad signature"),
        (lambda auth: token_for(auth, host="other.proxy.example"), "wrong host"),
        (lambda auth: "not-a-token", "malformed token"),
        (lambda auth: signed_token(credentials(auth, role_arn=f"arn:aws:iam::{ACCOUNT}:role/other")), "not authorized"),
    ],
    ids=["expired", "signed-for-another-user", "tampered-signature", "another-endpoint", "malformed", "foreign-role"],
)
def test_a_bad_token_gets_1045_naming_the_check(proxy, db, authenticator, make_token, reason, caplog):
    caplog.set_level("INFO", logger="local.data_plane.rdsproxy")
    before = proxy.stats()["iam_auth_failures"].get(reason, 0)
    error = refused(proxy, db, authenticator, make_token(authenticator))
    assert error.errno == ER_ACCESS_DENIED and error.sqlstate == "28000"
    assert f"IAM authentication failed: {reason}" in error.msg and DB_USER in error.msg
    failures = settled_stats(proxy, lambda now: now["iam_auth_failures"].get(reason, 0) > before)["iam_auth_failures"]
    assert failures[reason] == before + 1
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused login")]
    assert len(logged) == 1 and logged[0].startswith(f"refused login user={DB_USER} from 127.0.0.1:"), logged
    assert f": IAM authentication failed: {reason}" in logged[0]  # one line: who, from where, which check
    assert select_one(proxy, db, authenticator) == [(1,)]  # and it keeps serving


def test_logging_in_as_another_db_user_is_refused(proxy, db, authenticator):
    error = refused(proxy, db, authenticator, token_for(authenticator, user="root"), user="root")
    assert error.errno == ER_ACCESS_DENIED and "'root'" in error.msg  # no grant (or no account) for root


@pytest.mark.parametrize(
    "inline",
    [[grant(connect_arn(prx_id="prx-0ffffffffffffffff"))], [grant(connect_arn(user="root"))], []],
    ids=["grant-for-another-proxy", "grant-for-another-db-user", "no-grant"],
)
def test_a_role_without_the_exact_grant_gets_1045_not_authorized(db, auth_dir, authenticator, inline, request):
    config = iam_config(db, auth_dir, state(inline=inline), name=request.node.callspec.id)
    with ProxyServer(config) as server:
        error = refused(server, db, authenticator, token_for(authenticator))
        assert error.errno == ER_ACCESS_DENIED and "IAM authentication failed: not authorized" in error.msg
        assert settled_stats(server, lambda now: now["auth_failures"])["iam_auth_failures"] == {"not authorized": 1}


# -- hostile and stalled clients ------------------------------------------------------------------------
def recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the stand-in closed the connection")
    return data


def ssl_request(extra: int = 0) -> bytes:
    flags = CLIENT_SSL | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | extra
    return frame(1, flags.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\x2d" + bytes(23))


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionError:
        pass
    except TimeoutError:
        return False
    return True


def test_garbage_instead_of_a_tls_handshake_closes_only_that_client(proxy, db, authenticator):
    before = proxy.stats()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        read_packet(sock)
        sock.sendall(ssl_request() + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
        assert closed_within(sock, 5)
    after = settled_stats(proxy, lambda now: now["tls_handshake_failures"] > before["tls_handshake_failures"])
    assert after["tls_handshake_failures"] == before["tls_handshake_failures"] + 1
    assert select_one(proxy, db, authenticator) == [(1,)]


def test_a_client_that_stalls_mid_handshake_is_dropped_at_the_login_timeout(proxy, db, authenticator):
    before = proxy.stats()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        read_packet(sock)
        sock.sendall(ssl_request() + b"\x16\x03\x01\x02\x00")  # the first bytes of a ClientHello, then nothing
        assert select_one(proxy, db, authenticator) == [(1,)]  # others are served meanwhile
        started = time.monotonic()
        assert closed_within(sock, 10)
        assert time.monotonic() - started < 5  # login_timeout is 3 s
    assert settled_stats(proxy, lambda now: now["login_timeouts"] > before["login_timeouts"])["login_timeouts"] == (
        before["login_timeouts"] + 1
    )


def test_a_full_handshake_response_claiming_tls_without_the_upgrade_is_a_bad_handshake(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        read_packet(sock)
        sock.sendall(frame(1, ssl_request()[4:] + DB_USER.encode() + b"\x00"))  # not 32 bytes: no SSLRequest
        _, reply = read_packet(sock)
        assert reply[0] == 0xFF and int.from_bytes(reply[1:3], "little") == 1043


def test_a_client_hello_sent_right_behind_the_ssl_request_is_not_lost(proxy, db, authenticator):
    """One write with SSLRequest + ClientHello (the server reads both at once): the handshake still completes."""
    context = ssl.create_default_context(cafile=str(authenticator.ca_bundle_path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=ENDPOINT)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        read_packet(sock)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(ssl_request() + outgoing.read())
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(recv_some(sock))
        sock.sendall(outgoing.read())
        token = token_for(authenticator).encode() + b"\x00"
        flags = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC
        body = flags.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + b"\x2d" + bytes(23)
        body += DB_USER.encode() + b"\x00" + bytes((0xFC,)) + len(token).to_bytes(2, "little") + token
        body += b"mysql_clear_password\x00"
        tls.write(frame(2, body))
        sock.sendall(outgoing.read())
        reply = b""
        while len(reply) < 4 or len(reply) < 4 + int.from_bytes(reply[:3], "little"):
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(recv_some(sock))
        assert reply[4] == 0x00, reply  # OK: logged in


# -- backend credentials from the secret ---------------------------------------------------------------
@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    emulator = Emulator(EmulatorConfig(port=0, state_dir=tmp_path_factory.mktemp("emulator"))).start()
    try:
        client = boto3.client(
            "secretsmanager",
            endpoint_url=emulator.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        yield emulator.endpoint, client
    finally:
        emulator.stop()


def test_backend_credentials_come_from_the_deployed_secret(db, auth_dir, authenticator, secrets):
    endpoint, client = secrets
    arn = client.create_secret(
        Name="rds!db-local-proxy",
        SecretString=json.dumps({"username": db.app_user, "password": db.app_password}),
    )["ARN"]
    config = iam_config(db, auth_dir, accounts=(SecretAccount(arn),), secrets_endpoint=endpoint)
    assert db.app_password not in repr(config)
    with ProxyProcess(config) as server:  # as the data plane runs it: a child process, config via a private file
        assert select_one(server, db, authenticator) == [(1,)]
        assert server.stats()["backend_connections_opened"] >= 1


def test_each_secret_is_an_account_of_its_own_user(db, auth_dir, secrets):
    """Two secrets, as the stack's proxy has (the master's and the application user's): each client logs in with
    its own user's password and reaches the DB as that user."""
    endpoint, client = secrets
    reader = add_db_user(db, "report_reader", "report-pw")
    arns = [
        client.create_secret(Name=name, SecretString=json.dumps({"username": user, "password": password}))["ARN"]
        for name, user, password in (
            ("rds!db-master", db.app_user, db.app_password),
            ("sms-local-app-user", reader.user, reader.password),
        )
    ]
    config = iam_config(
        db,
        auth_dir,
        iam_state_file="",
        issuer_key_path="",
        require_tls=False,
        accounts=tuple(SecretAccount(arn) for arn in arns),
        secrets_endpoint=endpoint,
    )
    with ProxyProcess(config) as server:
        for user, password in ((db.app_user, db.app_password), (reader.user, reader.password)):
            with contextlib.closing(
                mysql.connector.connect(
                    host="127.0.0.1", port=server.port, user=user, password=password, database=db.database
                )
            ) as conn:
                cur = conn.cursor()
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchall()[0][0].startswith(user + "@")
        assert server.stats()["accounts"] == sorted([db.app_user, reader.user])


def test_a_proxy_naming_a_missing_secret_fails_to_start_with_the_arn(db, auth_dir, secrets, capfd):
    endpoint, _ = secrets
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-does-not-exist-AbCdEf"
    config = iam_config(db, auth_dir, accounts=(SecretAccount(arn),), secrets_endpoint=endpoint)
    with pytest.raises(ProxyStartError, match="ResourceNotFoundException") as caught:
        ProxyProcess(config).start()
    assert arn in str(caught.value) and "accounts" in str(caught.value)
    with pytest.raises(ProxyStartError, match="does-not-exist"):
        ProxyServer(config).start()


def test_a_proxy_with_a_broken_state_file_fails_to_start_naming_it(db, auth_dir, tmp_path):
    config = iam_config(db, auth_dir, {"version": 4, "resources": []}, name="empty")
    with pytest.raises(ProxyStartError, match="iam_state_file=.*empty.tfstate"):
        ProxyServer(config).start()


def test_security_settings_are_validated(db, auth_dir):
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x"
    with pytest.raises(ProxyConfigError, match="secrets_endpoint"):
        iam_config(db, auth_dir, accounts=(SecretAccount(arn),))
    with pytest.raises(ProxyConfigError, match="secret_arn 'my-secret'"):
        iam_config(db, auth_dir, accounts=(SecretAccount("my-secret"),), secrets_endpoint="http://127.0.0.1:1")
    with pytest.raises(ProxyConfigError, match="issuer_key_path"):
        iam_config(db, auth_dir, iam_state_file="")
    with pytest.raises(ProxyConfigError, match="require_tls"):
        iam_config(db, auth_dir, require_tls="yes")
    with pytest.raises(ProxyConfigError, match="accounts=.*user ''"):
        iam_config(db, auth_dir, accounts=(StaticAccount("", "pw"),))
