"""CLI: run the RDS Proxy stand-in in the foreground until SIGTERM/SIGINT.

Accounts are ``--account USER`` (its password in the environment variable ``RDSPROXY_PASSWORD_<USER>``, the
user upper-cased with other characters than letters and digits as ``_``) and ``--secret-arn ARN`` (read through
``--secrets-endpoint``), or everything comes from a ``--config-file`` (JSON, read once and deleted): passwords are
never on argv, which other users can read.
When listening, one JSON line is printed to stdout:
{"event": "ready", "host": ..., "port": ..., "stats_port": ...}; when it cannot start,
{"event": "error", "message": ...} (the message names the setting and the cause, never a password).
Programs that start it use ``launcher.build_command`` and the reader it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

from .accounts import Account, SecretAccount, StaticAccount
from .config import LOG_LEVELS, SESSION_PINNING_FILTERS, ProxyConfig, ProxyConfigError
from .growth import DEFAULT_PATIENCE_S
from .protocol import ProtocolError, ServerError
from .security import ProxyStartError
from .server import Proxy, new_event_loop

#: One line per event on stderr, which ``serve`` shows: ``<time> rdsproxy INFO refused login user=...``.
LOG_FORMAT = "%(asctime)s rdsproxy %(levelname)s %(message)s"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.data_plane.rdsproxy",
        description="Local stand-in for Amazon RDS Proxy (MySQL protocol, connection multiplexing). "
        "Each --account USER reads its password from the environment variable RDSPROXY_PASSWORD_<USER>.",
    )
    parser.add_argument(
        "--config-file", help="JSON with all ProxyConfig fields (deleted after reading); other options are then ignored"
    )
    parser.add_argument("--backend-host", default="127.0.0.1")
    parser.add_argument("--backend-port", type=int)
    parser.add_argument(
        "--account", action="append", default=[], metavar="USER", help="a DB user clients may log in as (repeatable)"
    )
    parser.add_argument(
        "--secret-arn", action="append", default=[], metavar="ARN", help="a secret holding an account (repeatable)"
    )
    parser.add_argument("--db-max-connections", type=int, help="the database's max_connections")
    parser.add_argument("--max-connections-percent", type=int, default=100)
    parser.add_argument("--max-idle-connections-percent", type=int, default=50)
    parser.add_argument("--connection-borrow-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--idle-client-timeout", type=float, default=1800.0, help="seconds")
    parser.add_argument("--init-query", default="")
    parser.add_argument(
        "--session-pinning-filter", action="append", default=[], choices=sorted(SESSION_PINNING_FILTERS)
    )
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--stats-port", type=int, default=None, help="port of GET /stats (0 picks a free one; omit to disable)"
    )
    parser.add_argument("--event-loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--login-timeout", type=float, default=10.0, help="seconds to finish logging in")
    parser.add_argument(
        "--client-write-timeout",
        type=float,
        default=60.0,
        help="seconds a client may leave response bytes unread before it is dropped",
    )
    parser.add_argument("--max-allowed-packet", type=int, default=64 << 20, help="largest client command (bytes)")
    parser.add_argument(
        "--pool-growth-patience",
        type=float,
        default=DEFAULT_PATIENCE_S,
        help="seconds a queued borrow waits for a returning connection before the pool opens one more",
    )
    parser.add_argument("--require-tls", action="store_true", help="refuse clients that do not start TLS")
    parser.add_argument(
        "--iam-state-file", default="", help="Terraform state of the deployed stack: clients log in with IAM tokens"
    )
    parser.add_argument("--ca-dir", default="", help="local CA directory (default .local/ca); offers TLS")
    parser.add_argument("--issuer-key-path", default="", help="runtime credential issuer key (IAM mode)")
    parser.add_argument("--secrets-endpoint", default="", help="Secrets Manager endpoint (the local emulator)")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="INFO logs every refused login")
    return parser.parse_args(argv)


def password_variable(user: str) -> str:
    """The environment variable holding ``--account USER``'s password."""
    return "RDSPROXY_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    if args.config_file:
        path = Path(args.config_file)
        try:
            fields = json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
        return ProxyConfig.from_json(fields)
    missing = [name for name in ("backend_port", "db_max_connections") if getattr(args, name) is None]
    if not args.account and not args.secret_arn:
        missing.append("account")
    if missing:
        raise ProxyConfigError(
            missing[0], None, "given (missing: " + ", ".join("--" + m.replace("_", "-") for m in missing) + ")"
        )
    accounts: list[Account] = []
    for user in args.account:
        variable = password_variable(user)
        if variable not in os.environ:
            raise ProxyConfigError("account", user, f"an account whose password is in the environment as {variable}")
        accounts.append(StaticAccount(user, os.environ[variable]))
    accounts.extend(SecretAccount(arn) for arn in args.secret_arn)
    return ProxyConfig(
        backend_host=args.backend_host,
        backend_port=args.backend_port,
        accounts=tuple(accounts),
        db_max_connections=args.db_max_connections,
        max_connections_percent=args.max_connections_percent,
        max_idle_connections_percent=args.max_idle_connections_percent,
        connection_borrow_timeout=args.connection_borrow_timeout,
        idle_client_timeout=args.idle_client_timeout,
        init_query=args.init_query,
        session_pinning_filters=frozenset(args.session_pinning_filter),
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        stats_port=args.stats_port,
        event_loop=args.event_loop,
        login_timeout=args.login_timeout,
        client_write_timeout=args.client_write_timeout,
        max_allowed_packet=args.max_allowed_packet,
        pool_growth_patience=args.pool_growth_patience,
        require_tls=args.require_tls,
        iam_state_file=args.iam_state_file,
        ca_dir=args.ca_dir,
        issuer_key_path=args.issuer_key_path,
        secrets_endpoint=args.secrets_endpoint,
        log_level=args.log_level,
    )


#: glibc's mallopt parameter, and the size from which allocations are mapped on their own (its default start).
_M_MMAP_THRESHOLD, _MMAP_THRESHOLD = -3, 128 << 10


def return_freed_buffers_to_the_os() -> None:
    """Keep reply buffers of 128 KiB and more in their own mappings, so that their memory goes back to the OS when a
    stalled client is dropped. glibc raises this threshold after the first such buffer is freed and then keeps large
    buffers in its heap (measured with 50 stalled readers: RSS 44 -> 82 -> 61 MB after they left; with a fixed
    threshold 44 -> 71 -> 44 MB). Does nothing where glibc is not the C library."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


async def serve(config: ProxyConfig) -> None:
    proxy = Proxy(config)
    await proxy.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(
        json.dumps({"event": "ready", "host": config.listen_host, "port": proxy.port, "stats_port": proxy.stats_port}),
        flush=True,
    )
    await stop.wait()
    await proxy.stop()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ProxyConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    # the stand-in's own level (INFO shows refused logins); libraries it loads (botocore, moto) stay at WARNING
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger(__package__).setLevel(config.log_level)
    return_freed_buffers_to_the_os()
    loop = new_event_loop(config.event_loop)
    try:
        loop.run_until_complete(serve(config))
    except (OSError, ConnectionError, ServerError, ProtocolError, ProxyStartError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        print(json.dumps({"event": "error", "message": str(exc)}), flush=True)  # for launcher.read_ready_line
        return 1
    finally:
        loop.close()
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
