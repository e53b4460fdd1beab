"""``python -m local serve``: run the deployed app locally until Ctrl-C or SIGTERM.

The DB is the deployed instance's persistent local DB instance (its data kept under
``.local/db-instances/<identifier>/``) when the state has an ``aws_db_instance``; with ``--settings-from-synth``
(nothing deployed) it is a throw-away one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from local.common import db_instance
from local.common.db_instance import DbInstanceError
from local.common.emulator_record import running_endpoint
from local.common.local_target import emulator_state_dir, local_state_dir
from local.common.ports import PORT_BASE_VARIABLE, PORT_OPTIONS, PortSettingError, stack_ports
from local.common.serve_record import remove_record, write_record
from local.data_plane import deployed, plane_report
from local.data_plane.local_instance import PersistentDb, ProxyAuthError
from local.data_plane.mariadb_config import MariaDBError
from local.data_plane.plane import (
    DEFAULT_DB_MAX_CONNECTIONS,
    DEFAULT_LOCAL_CONCURRENCY,
    DataPlaneConfig,
    LocalDataPlane,
)
from local.data_plane.secrets import SecretError
from modules.validation import SettingsError


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=deployed.DEFAULT_STACK, help="CDKTF stack name (default: local)")
    parser.add_argument(
        "--settings-from-synth",
        action="store_true",
        help="read settings from cdktf.out/stacks/<stack>/cdk.tf.json instead of the deployed state",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_DB_MAX_CONNECTIONS,
        help="the local DB's max_connections (default 65, like a db.t2.micro)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help=f"most containers (default: reserved concurrency, else {DEFAULT_LOCAL_CONCURRENCY})",
    )


def configure_serve(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m local serve`."""
    add_settings_arguments(parser)
    for name, option in PORT_OPTIONS.items():
        parser.add_argument(
            option,
            type=int,
            default=None,
            dest=f"{name}_port",
            help=f"the {name} port (default: the stack's stable block; {PORT_BASE_VARIABLE} moves the whole block)",
        )
    parser.add_argument("--direct", action="store_true", help="connect the handler directly to the DB (no proxy)")
    parser.add_argument(
        "--password-auth",
        action="store_true",
        help="through the proxy with a password and no TLS instead of the deployed IAM auth (printed as a difference)",
    )
    parser.add_argument("--state-file", type=Path, default=None, help="the deployed stack's Terraform state file")
    parser.add_argument(
        "--local-state-dir",
        type=Path,
        default=None,
        help="where the local DB instance keeps its data (default: .local in the checkout)",
    )
    parser.add_argument(
        "--aws-endpoint",
        default=None,
        help="the emulator holding the deployed secret (default: LOCAL_AWS_ENDPOINT, else the running emulator)",
    )


def emulator_endpoint(explicit: str | None) -> str:
    """The emulator endpoint: the option, else LOCAL_AWS_ENDPOINT, else the running emulator's record."""
    if explicit or os.environ.get("LOCAL_AWS_ENDPOINT"):
        return explicit or os.environ["LOCAL_AWS_ENDPOINT"]
    endpoint = running_endpoint(emulator_state_dir())
    if endpoint is None:
        raise DbInstanceError(
            "the local AWS emulator is not running, and the deployed DB secret lived only in it: the deployed "
            "stack is gone. Run `python -m local deploy` (it sets the stale state aside and deploys afresh)."
        )
    return endpoint


def _load(args: argparse.Namespace) -> deployed.DeployedStack:
    if args.state_file is not None:
        return deployed.parse_state(json.loads(args.state_file.read_text()), source=str(args.state_file))
    return deployed.load(args.stack, settings_from_synth=args.settings_from_synth)


def _persistent_db(args: argparse.Namespace, stack: deployed.DeployedStack) -> PersistentDb | None:
    if args.settings_from_synth:
        return None
    instance = db_instance.from_state_file(Path(stack.source))
    if instance is None:
        return None
    return PersistentDb(
        instance=instance,
        local_state_dir=(args.local_state_dir or local_state_dir()).resolve(),
        secrets_endpoint=emulator_endpoint(args.aws_endpoint),
    )


def run_serve(args: argparse.Namespace) -> int:
    """`python -m local serve`: run the app locally until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    local_dir = (args.local_state_dir or local_state_dir()).resolve()
    try:
        ports = stack_ports(args.stack).with_overrides(http=args.http_port, proxy=args.proxy_port, db=args.db_port)
        stack = _load(args)
        config = DataPlaneConfig(
            via_proxy=not args.direct,
            db_max_connections=args.max_connections,
            max_concurrency=args.max_concurrency,
            ports=ports,
            persistent_db=_persistent_db(args, stack),
            production_auth=not args.password_auth,
            local_state_dir=str(args.local_state_dir) if args.local_state_dir else None,
        )
        plane = LocalDataPlane(stack, config).start()
    except (
        deployed.DeployedStateError,
        DbInstanceError,
        SecretError,
        ProxyAuthError,
        MariaDBError,
        SettingsError,
        PortSettingError,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, deployed.DeployedStateError) else 1
    try:
        record = plane_report.addresses(plane, args.stack)
        write_record(local_dir, record)
        print(plane.describe())
        print("\n".join(plane_report.address_lines(record)))
        print(f"serving {plane.url}/  (Ctrl-C stops everything)", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping...", flush=True)
    finally:
        remove_record(local_dir, args.stack, pid=os.getpid())
        plane.stop()
    return 0
