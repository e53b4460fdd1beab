"""Benchmark: what IAM auth over TLS costs the RDS Proxy stand-in per client login.

Prints microseconds per token verification (botocore SigV4), per rds-db:connect policy decision (moto's IAM
engine), per full ``IamAuthenticator.check`` (a runtime container's key; an emulator IAM user's key, cached and
looked up each time), per emulator lookup, per issued container credential against an ``sts assume-role`` from the
emulator (what a container would pay without the local issuer), the client's token signing for comparison, and the
loopback TLS handshake cost (TCP connect + handshake + first byte) against plain TCP. Everything runs in a temporary
directory and a private emulator on 127.0.0.1; nothing under .local is touched.

    .venv/bin/python bench/bench_auth.py [--iterations 2000] [--handshakes 300] [--no-emulator]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from local.common.emulator_credentials import lookup_credentials
from local.control_plane.emulator import Emulator, EmulatorConfig
from local.data_plane.auth.authenticator import IamAuthenticator, IamAuthSettings, RuntimeCredentials
from local.data_plane.auth.credentials import IssuedCredentials, IssuerSettings
from local.data_plane.auth.emulator_principals import EmulatorPrincipalSettings
from local.data_plane.auth.local_ca import LocalCaSettings
from local.data_plane.auth.policies import ConnectAuthorizer
from local.data_plane.auth.rds_token import TokenCheckSettings, verify_token

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
PRX_ID = "prx-0abcdefghij123456"
ENDPOINT = f"sms-local-proxy.proxy-abcdefghijkl.{REGION}.rds.amazonaws.com"
DB_USER = "app_user"
ROLE_NAME = "sms-local-api-exec"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
VPC_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def connect_arn() -> str:
    return f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{PRX_ID}/{DB_USER}"


def state() -> dict[str, Any]:
    """What IAM auth reads from a deployed stack's state: the function, its role and grant, the proxy."""

    def resource(rtype: str, attributes: dict[str, Any]) -> dict[str, Any]:
        return {"mode": "managed", "type": rtype, "name": "r", "instances": [{"attributes": attributes}]}

    grant = {"Effect": "Allow", "Action": "rds-db:connect", "Resource": connect_arn()}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [grant]})
    env = {"DB_HOST": ENDPOINT, "DB_PORT": "3306", "DB_NAME": "app", "DB_USER": DB_USER, "DB_AUTH": "iam"}
    return {
        "version": 4,
        "resources": [
            resource(
                "aws_lambda_function",
                {"function_name": "sms-local-api", "role": ROLE_ARN, "environment": [{"variables": env}]},
            ),
            resource("aws_iam_role", {"name": ROLE_NAME, "id": ROLE_NAME, "arn": ROLE_ARN}),
            resource(
                "aws_iam_role_policy",
                {"role": ROLE_NAME, "name": "connect", "policy": policy},
            ),
            resource("aws_iam_role_policy_attachment", {"role": ROLE_NAME, "policy_arn": VPC_POLICY_ARN}),
            resource(
                "aws_db_proxy",
                {"arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db-proxy:{PRX_ID}", "endpoint": ENDPOINT, "require_tls": True},
            ),
        ],
    }


def signed_token(credentials: IssuedCredentials) -> str:
    """A real token: boto3's generate_db_auth_token with these credentials (no network involved)."""
    client = _rds_client(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
    return str(client.generate_db_auth_token(ENDPOINT, 3306, DB_USER, Region=REGION))


@functools.lru_cache(maxsize=8)
def _rds_client(access_key_id: str, secret_access_key: str, session_token: str) -> Any:
    """One client per key, as an application keeps it: the row measures signing, not client creation."""
    session = boto3.session.Session(access_key_id, secret_access_key, session_token or None, region_name=REGION)
    return session.client("rds")


def per_call_us(func: Callable[[], object], iterations: int) -> float:
    func()  # warm caches
    started = time.perf_counter()
    for _ in range(iterations):
        func()
    return (time.perf_counter() - started) / iterations * 1e6


def handshake_latencies(port: int, make: Callable[[socket.socket], socket.socket], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as raw:
            connection = make(raw)
            assert connection.recv(1) == b"!"
            connection.close()
        latencies.append((time.perf_counter() - started) * 1e6)
    return latencies


def serve(listener: socket.socket, context: ssl.SSLContext | None) -> None:
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        try:
            connection = context.wrap_socket(raw, server_side=True) if context else raw
            connection.sendall(b"!")
            connection.close()
        except (ssl.SSLError, OSError):
            raw.close()


def bench_tls(auth: IamAuthenticator, count: int) -> None:
    server_context = auth.server_ssl_context()
    for label, context, max_version in (
        ("plain TCP (connect + 1 byte)", None, None),
        ("TLS 1.3 handshake (verified, ECDSA P-256)", server_context, ssl.TLSVersion.TLSv1_3),
        ("TLS 1.2 handshake (verified, ECDSA P-256)", server_context, ssl.TLSVersion.TLSv1_2),
    ):
        listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=serve, args=(listener, context), daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=str(auth.ca_bundle_path))
        if max_version is not None:
            client.maximum_version = max_version

        def make(raw: socket.socket, client: ssl.SSLContext = client, tls: bool = context is not None) -> socket.socket:
            return client.wrap_socket(raw, server_hostname=ENDPOINT) if tls else raw

        latencies = handshake_latencies(listener.getsockname()[1], make, count)
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        print(
            f"  {label:44s} median {statistics.median(latencies):8.0f} us   "
            f"p95 {statistics.quantiles(latencies, n=20)[-1]:8.0f} us   (n={count})"
        )


def bench_emulator_keys(settings: IamAuthSettings, tmp: Path, n: int) -> None:
    """Checks of tokens signed with an emulator IAM user's key, and what a container's STS session would cost."""
    with Emulator(EmulatorConfig(port=0, state_dir=tmp / "emulator")) as emulator:
        endpoint = emulator.start().endpoint
        session = boto3.session.Session("test", "test", region_name=REGION)
        iam, sts = session.client("iam", endpoint_url=endpoint), session.client("sts", endpoint_url=endpoint)
        iam.create_user(UserName="bench")
        grant = {"Effect": "Allow", "Action": "rds-db:connect", "Resource": connect_arn()}
        document = json.dumps({"Version": "2012-10-17", "Statement": [grant]})
        iam.put_user_policy(UserName="bench", PolicyName="connect", PolicyDocument=document)
        key = iam.create_access_key(UserName="bench")["AccessKey"]
        user = IssuedCredentials(key["AccessKeyId"], key["SecretAccessKey"], "", ROLE_ARN, "bench", 0)
        token = signed_token(user)
        cached = IamAuthenticator(dataclasses.replace(settings, emulator=EmulatorPrincipalSettings(endpoint)))
        uncached = IamAuthenticator(
            dataclasses.replace(settings, emulator=EmulatorPrincipalSettings(endpoint, cache_s=0, lookups_per_s=1000))
        )
        print(f"Emulator-issued keys ({n} iterations each, emulator on 127.0.0.1)")
        rows = [
            ("proxy: full check, IAM user key (cached)", lambda: cached.check(DB_USER, token)),
            ("proxy: full check, IAM user key (lookup)", lambda: uncached.check(DB_USER, token)),
            ("proxy: emulator lookup alone", lambda: lookup_credentials(endpoint, key["AccessKeyId"])),
            (
                "container credentials from emulator STS",
                lambda: sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="sms-local-api"),
            ),
        ]
        for label, func in rows:
            print(f"  {label:44s} {per_call_us(func, n):8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--no-emulator", action="store_true", help="skip the rows that need a private emulator")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = IamAuthSettings.from_state(
            state(), ca=LocalCaSettings(directory=Path(tmp) / "ca"), issuer=IssuerSettings(key_path=Path(tmp) / "k")
        )
        auth = IamAuthenticator(settings)
        runtime = RuntimeCredentials(auth.issuer, ROLE_ARN, "sms-local-api")
        env = runtime.environment()
        credentials = auth.issuer.resolve(env["AWS_ACCESS_KEY_ID"], env["AWS_SESSION_TOKEN"])
        token = signed_token(credentials)
        check = TokenCheckSettings(ENDPOINT, 3306, REGION)
        authorizer = ConnectAuthorizer(settings.roles[ROLE_ARN])
        resource = connect_arn()
        n = args.iterations
        print(f"IAM auth building blocks ({n} iterations each, one process, {sys.version.split()[0]})")
        rows = [
            ("client: generate_db_auth_token (boto3)", lambda: signed_token(credentials)),
            ("runtime: issue one container's credentials", runtime.environment),
            (
                "proxy: resolve credentials from the token",
                lambda: auth.issuer.resolve(credentials.access_key_id, credentials.session_token),
            ),
            ("proxy: verify token (parse + SigV4 + claims)", lambda: verify_token(token, DB_USER, check, auth.issuer)),
            ("proxy: rds-db:connect policy decision", lambda: authorizer.decide(resource)),
            ("proxy: full IamAuthenticator.check", lambda: auth.check(DB_USER, token)),
        ]
        for label, func in rows:
            print(f"  {label:44s} {per_call_us(func, n):8.1f} us")
        if not args.no_emulator:
            bench_emulator_keys(settings, Path(tmp), max(50, n // 10))
        print(f"Loopback handshakes to 127.0.0.1 ({args.handshakes} sequential connections each)")
        bench_tls(auth, args.handshakes)


if __name__ == "__main__":
    main()
