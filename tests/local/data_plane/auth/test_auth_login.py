"""End to end: the handler's own IAM connection code logs in over verified TLS through the auth building blocks.

The server side is a minimal prototype of the stand-in's client handshake with TLS and ``mysql_clear_password``
(SSLRequest -> ``StreamWriter.start_tls`` -> handshake response -> auth switch if needed -> ``check``); the
client is a separate process running the handler's ``app_db.connect`` as in Lambda (a boto3-signed token from the
container's role credentials, ``DB_SSL_CA``, host name verification), with the resolver shim installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mysql_mimic import packets as mimic_packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus

from local.data_plane.auth.authenticator import (
    IamAuthenticator,
    IamAuthSettings,
    RuntimeCredentials,
    clear_text_password,
)
from local.data_plane.auth.credentials import IssuerSettings
from local.data_plane.auth.errors import ER_ACCESS_DENIED, SQLSTATE_ACCESS_DENIED, AuthError
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.resolver_shim import AddressOverride
from modules.project import REPO_ROOT
from tests.local.data_plane.auth.auth_support import DB_USER, ENDPOINT, REGION, ROLE_ARN, grant, state

CLEAR_PASSWORD = "mysql_clear_password"
# The wire format is written out here so this test depends on nothing but the auth package.
CLIENT_SSL = 1 << 11
CAPABILITIES = (
    1 | 1 << 2 | 1 << 3 | 1 << 9 | 1 << 13 | 1 << 15 | 1 << 16 | 1 << 17 | 1 << 19 | 1 << 21 | CLIENT_SSL
)  # LONG_PASSWORD LONG_FLAG CONNECT_WITH_DB PROTOCOL_41 TRANSACTIONS SECURE_CONNECTION MULTI_* PLUGIN_AUTH(_LENENC)
SERVER_STATUS_AUTOCOMMIT = 2
COM_QUIT = 1

CLIENT = r"""
import json, os, sys
from local.data_plane.auth import resolver_shim
from handler.app_db import DatabaseUnavailable, Deadline, connect
from handler.app_iam import password_provider_for
from handler.app_settings import Settings

resolver_shim.install([resolver_shim.AddressOverride.decode(sys.argv[1])])
settings = Settings.from_env(os.environ)
try:
    connection = connect(settings, password_provider_for(settings), Deadline.none())
except DatabaseUnavailable as exc:
    print(json.dumps({"errno": exc.errno, "error": str(exc)}))
else:
    print(json.dumps({"connection_id": connection.connection_id, "tls": connection._ssl_active}))
    connection.close()
"""

SWITCHING_CLIENT = r"""
import json, os, sys
import boto3, mysql.connector
from local.data_plane.auth import resolver_shim

resolver_shim.install([resolver_shim.AddressOverride.decode(sys.argv[1])])
host, port, user = os.environ["DB_HOST"], int(os.environ["DB_PORT"]), os.environ["DB_USER"]
token = boto3.client("rds", region_name=os.environ["AWS_REGION"]).generate_db_auth_token(host, port, user)
connection = mysql.connector.connect(host=host, port=port, user=user, password=token, use_pure=True,
                                     ssl_ca=os.environ["DB_SSL_CA"], ssl_verify_identity=True)
print(json.dumps({"connection_id": connection.connection_id, "tls": connection._ssl_active}))
connection.close()
"""


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq & 0xFF,)) + payload


def _ok() -> bytes:
    return b"\x00\x00\x00" + SERVER_STATUS_AUTOCOMMIT.to_bytes(2, "little") + b"\x00\x00"


def _err(code: int, message: str, sqlstate: str) -> bytes:
    return b"\xff" + code.to_bytes(2, "little") + b"#" + sqlstate.encode() + message.encode()


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], await reader.readexactly(length)


async def _login(reader, writer, auth: IamAuthenticator, ssl_context, outcomes: list[str]) -> None:
    """Prototype of the stand-in's client login with TLS + IAM (the integration plan's steps 1-5)."""
    greeting = mimic_packets.make_handshake_v10(
        capabilities=Capabilities(CAPABILITIES),
        server_charset=CharacterSet.utf8mb4,
        server_version="8.0.36",
        connection_id=42,
        auth_data=b"0123456789abcdefghij\x00",
        status_flags=ServerStatus(SERVER_STATUS_AUTOCOMMIT),
        auth_plugin_name="mysql_native_password",
    )
    writer.write(_packet(0, greeting))
    seq, data = await _read(reader)
    (flags,) = struct.unpack_from("<I", data)
    if len(data) == 32 and flags & CLIENT_SSL:  # 1. SSLRequest: upgrade, then the real handshake response
        await writer.start_tls(ssl_context)
        seq, data = await _read(reader)
    if writer.get_extra_info("ssl_object") is None:  # 2. require_tls
        writer.write(_packet(seq + 1, _err(ER_ACCESS_DENIED, "TLS is required", SQLSTATE_ACCESS_DENIED)))
        outcomes.append("no tls")
        return
    parsed = mimic_packets.parse_handshake_response(Capabilities(CAPABILITIES), data)
    token = parsed.auth_response
    if parsed.client_plugin != CLEAR_PASSWORD:  # 3. ask for the token in clear text (safe: inside TLS)
        outcomes.append("auth switch")
        seq += 1
        writer.write(_packet(seq, mimic_packets.make_auth_switch_request(CharacterSet.utf8mb4, CLEAR_PASSWORD, b"")))
        seq, token = await _read(reader)
    try:  # 4. RDS Proxy's checks
        principal = auth.check(parsed.username, clear_text_password(token), port=3306)
    except AuthError as exc:
        message = exc.client_message(parsed.username)
        writer.write(_packet(seq + 1, _err(ER_ACCESS_DENIED, message, SQLSTATE_ACCESS_DENIED)))
        outcomes.append(exc.reason)
        return
    outcomes.append(f"admitted {principal.caller_arn}")
    writer.write(_packet(seq + 1, _ok()))  # 5. logged in: the stand-in's session takes over
    while True:
        _, command = await _read(reader)
        if command[:1] == bytes((COM_QUIT,)):
            return
        writer.write(_packet(1, _ok()))  # SET autocommit etc.


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, list[str], dict]]:
    """Start the prototype on loopback; yields its port, the outcomes and a holder for the authenticator."""
    holder: dict = {}
    outcomes: list[str] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def handle(reader, writer) -> None:
        try:
            await _login(reader, writer, holder["auth"], holder["tls"], outcomes)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            outcomes.append(type(exc).__name__)
        finally:
            writer.close()

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        holder["server"] = await asyncio.start_server(handle, "127.0.0.1", 0)
        started.set()
        async with holder["server"]:
            await holder["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield holder["server"].sockets[0].getsockname()[1], outcomes, holder
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(5)
    assert not thread.is_alive()
    loop.close()


def _run_handler_client(
    auth: IamAuthenticator, port: int, role_arn: str = ROLE_ARN, script: str = CLIENT, **env: str
) -> dict:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "DB_HOST": ENDPOINT,
        "DB_PORT": "3306",
        "DB_NAME": "app",
        "DB_USER": DB_USER,
        "DB_AUTH": "iam",
        "AWS_REGION": REGION,
        "DB_SSL_CA": str(auth.ca_bundle_path),
        "DB_CONNECT_TIMEOUT": "10",
        **RuntimeCredentials(auth.issuer, role_arn, "sms-local-api").environment(),
        **env,
    }
    override = AddressOverride(ENDPOINT, 3306, port).encode()
    result = subprocess.run(
        [sys.executable, "-c", script, override],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _auth(tmp_path: Path, deployed: dict) -> IamAuthenticator:
    return IamAuthenticator(
        IamAuthSettings.from_state(
            deployed, ca=LocalCaSettings(directory=tmp_path / "ca"), issuer=IssuerSettings(key_path=tmp_path / "k")
        )
    )


def test_handler_logs_in_with_an_iam_token_over_verified_tls(tmp_path: Path, server) -> None:
    port, outcomes, holder = server
    auth = _auth(tmp_path, state())
    holder.update(auth=auth, tls=auth.server_ssl_context())
    reply = _run_handler_client(auth, port)
    assert reply == {"connection_id": 42, "tls": True}
    assert outcomes[0] == "admitted arn:aws:sts::123456789012:assumed-role/sms-local-api-exec/sms-local-api"


def test_a_client_starting_with_another_plugin_is_switched_to_clear_text(tmp_path: Path, server) -> None:
    port, outcomes, holder = server
    auth = _auth(tmp_path, state())
    holder.update(auth=auth, tls=auth.server_ssl_context())
    assert _run_handler_client(auth, port, script=SWITCHING_CLIENT) == {"connection_id": 42, "tls": True}
    assert outcomes[0] == "auth switch" and outcomes[1].startswith("admitted")


@pytest.mark.parametrize(
    ("deployed", "reason"),
    [(state(inline=[]), "not authorized"), (state(inline=[grant(effect="Deny"), grant()]), "not authorized")],
    ids=["no-grant", "explicit-deny"],
)
def test_a_role_without_the_grant_gets_1045(tmp_path: Path, server, deployed: dict, reason: str) -> None:
    port, outcomes, holder = server
    auth = _auth(tmp_path, deployed)
    holder.update(auth=auth, tls=auth.server_ssl_context())
    reply = _run_handler_client(auth, port)
    assert reply["errno"] == ER_ACCESS_DENIED and reason in reply["error"]
    assert outcomes == [reason]


def test_a_foreign_role_gets_1045(tmp_path: Path, server) -> None:
    port, outcomes, holder = server
    auth = _auth(tmp_path, state())
    holder.update(auth=auth, tls=auth.server_ssl_context())
    reply = _run_handler_client(auth, port, role_arn="arn:aws:iam::123456789012:role/someone-else")
    assert reply["errno"] == ER_ACCESS_DENIED and outcomes == ["not authorized"]


def test_a_certificate_for_another_name_is_refused_by_the_handler(tmp_path: Path, server) -> None:
    port, outcomes, holder = server
    auth = _auth(tmp_path, state())
    holder.update(auth=auth, tls=auth.local_ca.server_ssl_context(["other.example"]))
    reply = _run_handler_client(auth, port)
    assert "CERTIFICATE_VERIFY_FAILED" in reply["error"] and "Hostname mismatch" in reply["error"]
    assert not any(outcome.startswith("admitted") for outcome in outcomes)
