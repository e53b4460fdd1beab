"""A handler for the runtime's production-path tests: what a container sees (credentials, region, name resolution).

At import it resolves ``PROBE_HOST`` (when set), so a test can tell that the resolver shim was installed before
the handler module was imported, as the real handler's import-time code relies on.
"""

import importlib
import os
import socket
import ssl
import sys
import time

_PID = os.getpid()
_RESOLVED_AT_IMPORT = None
if os.environ.get("PROBE_HOST"):
    _info = socket.getaddrinfo(os.environ["PROBE_HOST"], int(os.environ["PROBE_PORT"]), type=socket.SOCK_STREAM)
    _RESOLVED_AT_IMPORT = list(_info[0][4][:2])

_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PROBE_VALUE",
)


def _read_line(sock) -> str:
    data = b""
    while not data.endswith(b"\n") and (chunk := sock.recv(4096)):
        data += chunk
    return data.decode().rstrip("\n")


def lambda_handler(event, context):
    action = event.get("action")
    if action == "connect":  # plain TCP to the deployed name, as the handler's DB driver would connect
        with socket.create_connection((event["host"], event["port"]), timeout=5) as sock:
            return {"read": _read_line(sock)}
    if action == "tls":  # TLS verified for the deployed name (SNI and certificate), as with DB_SSL_CA
        tls = ssl.create_default_context(cafile=event["ca"])
        raw = socket.create_connection((event["host"], event["port"]), timeout=5)
        with tls.wrap_socket(raw, server_hostname=event["host"]) as sock:
            return {"read": _read_line(sock), "peer_names": [v for _, v in sock.getpeercert()["subjectAltName"]]}
    if action == "token":  # the real handler's IAM token: boto3 with the container's credentials and region
        import boto3

        warm = boto3.DEFAULT_SESSION is not None  # set up by the zygote's warm-up, if any
        time.sleep(event.get("seconds", 0))  # concurrent calls get containers of their own
        client = boto3.client("rds", region_name=os.environ["AWS_REGION"])
        token = client.generate_db_auth_token(
            DBHostname=event["host"], Port=event["port"], DBUsername=event["user"], Region=os.environ["AWS_REGION"]
        )
        return {"token": token, "session_was_warm": warm, "key": os.environ["AWS_ACCESS_KEY_ID"]}
    if action == "imports":  # what the function can import, as in Lambda: its code and the runtime's libraries
        found = {}
        for name in event["modules"]:
            try:
                found[name] = importlib.import_module(name).__name__ == name
            except ImportError:
                found[name] = False
        return {"importable": found, "path0": sys.path[0], "cwd_on_path": "" in sys.path}
    if action == "sleep":  # keeps this container busy so that concurrent calls get their own
        time.sleep(event["seconds"])
    return {
        "pid": _PID,
        "env": {name: os.environ.get(name) for name in _VARIABLES},
        "arn": context.invoked_function_arn,
        "resolved_at_import": _RESOLVED_AT_IMPORT,
    }
