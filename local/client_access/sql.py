"""``python -m local sql``: the ``mariadb`` client through the running stack's RDS Proxy stand-in, as AWS documents.

AWS's recipe for RDS Proxy with IAM authentication (RDS User Guide, "Connecting to a database through RDS Proxy",
and "Connecting to your DB instance using IAM authentication from the command line"): a token from
``generate-db-auth-token`` for the proxy endpoint, then ``mysql --host=<endpoint> --ssl-ca=<CA>
--enable-cleartext-plugin --user=<user> --password=<token>`` over TLS (MariaDB's client needs no plugin flag).
Here the endpoint is the deployed name, reached at the stand-in's local port; the CA is the local CA that issued
the stand-in's certificate; the client verifies that certificate for the endpoint name
(``--ssl-verify-server-cert``); the token is signed for the deployed address (endpoint and port). ``--print``
shows those values for any other client instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from local.common.local_target import local_state_dir
from local.common.serve_record import ServeRecord, read_record
from modules.local_target import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY

from .endpoint_names import NameResolutionError, hosts_line, resolving
from .signing import SigningError, SigningIdentity, auth_token, signing_identity
from .stack_functions import StackFunction, request_function, role_for_user, stack_functions

TOKEN_LIFETIME_S = 900


class SqlError(RuntimeError):
    """Why no client can be started; the message says what to do."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="DB user to log in as (default: the request function's DB_USER)")
    parser.add_argument("--database", help="database (default: the request function's DB_NAME)")
    parser.add_argument("-e", "--execute", metavar="SQL", help="run this SQL and exit (the mariadb client's -e)")
    parser.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print host, port, CA file, user, database and a fresh token for another client, and exit",
    )
    parser.add_argument(
        "--role-arn",
        help="when your credentials are not an emulator principal, sign with a session of this role "
        "(default: the stack's role that connects as --user)",
    )


@dataclass(frozen=True)
class Connection:
    """What a client needs, with a fresh token."""

    record: ServeRecord
    user: str
    database: str
    token: str
    signer: SigningIdentity

    def mariadb_options(self) -> list[str]:
        """The AWS-documented client options (no password: it goes through ``MYSQL_PWD``, not the process list)."""
        return [
            "mariadb",
            "--no-defaults",
            f"--host={self.record.endpoint}",
            f"--port={self.record.proxy_port}",
            f"--user={self.user}",
            f"--ssl-ca={self.record.ca_file}",
            "--ssl-verify-server-cert",
        ]  # MariaDB's client sends the token in clear text over TLS by itself (MySQL's: --enable-cleartext-plugin)

    def mariadb_argv(self, execute: str | None) -> list[str]:
        argv = self.mariadb_options()
        if execute is not None:
            argv += ["--batch", f"--execute={execute}"]
        return [*argv, self.database] if self.database else argv

    def describe(self) -> str:
        r = self.record
        rows = [
            ("host", r.endpoint),
            ("port", str(r.proxy_port)),
            ("user", self.user),
            ("database", self.database or "(none)"),
            ("ca_file", r.ca_file),
            ("token", self.token),
            ("signed_for", f"{r.endpoint}:{r.endpoint_port} by {self.signer.principal_arn} ({TOKEN_LIFETIME_S} s)"),
            ("hosts_line", f"{hosts_line(r.endpoint, r.proxy_host)}   (in /etc/hosts, every client resolves the name)"),
        ]
        database = f" {shlex.quote(self.database)}" if self.database else ""
        rows.append(("mariadb", f'{shlex.join(self.mariadb_options())} --password="$TOKEN"{database}'))
        return "\n".join(f"{name:<11} {value}" for name, value in rows)


def connection(args: argparse.Namespace, emulator_endpoint: str) -> Connection:
    record = read_record(local_state_dir(), args.stack)
    if record is None:
        raise SqlError(f"no `serve` is running for stack {args.stack!r}: start it with `python -m local serve`")
    if not record.endpoint or not record.ca_file or not record.proxy_port:
        raise SqlError(
            f"the running `serve` of stack {args.stack!r} has no proxy with IAM authentication (direct path, "
            "password mode or --settings-from-synth): start `python -m local serve` against the deployed stack"
        )
    functions = _functions(record, emulator_endpoint)
    default = request_function(functions)
    user = args.user or (default.db_user if default else "")
    if not user:
        raise SqlError(f"no deployed function of stack {args.stack!r} names its DB user: pass --user")
    database = args.database if args.database is not None else (default.db_name if default else "")
    role = args.role_arn or role_for_user(functions, user)
    try:
        signer = signing_identity(emulator_endpoint, record.region, role)
    except SigningError as exc:
        raise SqlError(str(exc)) from None
    # Signed for the deployed address, as AWS's CLI recipe does (--port 3306); the stand-in also takes tokens
    # for its own port when it knows it, but the deployed one is accepted however it was started.
    token = auth_token(signer, record.endpoint, record.endpoint_port, user, record.region)
    return Connection(record, user, database, token, signer)


def _functions(record: ServeRecord, emulator_endpoint: str) -> list[StackFunction]:
    client = boto3.session.Session(
        aws_access_key_id=LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
        region_name=record.region,
    ).client("lambda", endpoint_url=emulator_endpoint)
    try:
        return stack_functions(client, record.endpoint)
    except (BotoCoreError, ClientError) as exc:
        raise SqlError(f"cannot list the stack's functions in the emulator at {emulator_endpoint}: {exc}") from None


def run_sql(args: argparse.Namespace, emulator_endpoint: str) -> int:
    try:
        target = connection(args, emulator_endpoint)
    except SqlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_only:
        print(target.describe())
        return 0
    if shutil.which("mariadb") is None:
        print("error: the `mariadb` client is not installed (apt-get install mariadb-client)", file=sys.stderr)
        return 1
    print(f"signing as {target.signer.how}", file=sys.stderr)
    record = target.record
    try:
        with resolving(record.endpoint, record.proxy_host, target.mariadb_argv(args.execute)) as argv:
            return _run(argv, target.token)
    except NameResolutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(argv: list[str], token: str) -> int:
    """Run the client in the foreground (Ctrl-C is the client's), passing the token in ``MYSQL_PWD``."""
    child = subprocess.Popen(argv, env={**os.environ, "MYSQL_PWD": token})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
