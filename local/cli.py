"""``python -m local <command>``: the local target's command line.

Control plane (the AWS emulator and the stack's lifecycle):
    up        start the local AWS emulator (idempotent)
    deploy    up, `cdktf synth`, then `terraform apply` the stack (default: local)
    diff      synthesize and `terraform plan`; exit status 2 when changes are pending
    state     `terraform state list`; `state show ADDRESS` (or `state ADDRESS`) shows one
    outputs   the stack's outputs (API URL, proxy endpoint, secret ARN, ...) as JSON
    destroy   `terraform destroy` the stack, then stop the emulator (unless --keep-emulator)
    down      stop the emulator
    env       `eval "$(python -m local env)"`: the real cdktf, terraform and aws CLIs against the local stack
Data plane (the deployed function run locally):
    serve       HTTP API -> Lambda-like runtime -> RDS Proxy stand-in -> MariaDB, until Ctrl-C
    sql         the mariadb client through the running serve's proxy, IAM token over verified TLS (--print: values)
    experiment  the load experiment, direct vs through the proxy (100 users, 10,000 requests)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlparse

from local.common.local_target import DEFAULT_EMULATOR_PORT, EMULATOR_HOST
from local.control_plane import emulator_control, lifecycle, state_queries
from local.control_plane.project import DEFAULT_STACK, LOCAL_TARGET, LifecycleError, Project


def default_port() -> int:
    """The port of LOCAL_AWS_ENDPOINT if set, else the default emulator port."""
    endpoint = os.environ.get("LOCAL_AWS_ENDPOINT")
    if not endpoint:
        return DEFAULT_EMULATOR_PORT
    parsed = urlparse(endpoint)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
        raise SystemExit(f"error: LOCAL_AWS_ENDPOINT={endpoint!r}: expected http://127.0.0.1:<port>")
    return parsed.port


def _project(args: argparse.Namespace) -> Project:
    return Project(emulator_port=args.port)


# ---------------------------------------------------------------- control plane
def _up(args: argparse.Namespace) -> int:
    emulator = emulator_control.up(_project(args))
    print(f"LOCAL_AWS_ENDPOINT={emulator.endpoint}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    project = _project(args)
    result = lifecycle.deploy(args.stack, project)
    print(json.dumps(result, indent=2, sort_keys=True))
    project.timings.report()
    return 0


def _diff(args: argparse.Namespace) -> int:
    return 2 if lifecycle.diff(args.stack, _project(args), synthesize=not args.no_synth) else 0


def _state(args: argparse.Namespace) -> int:
    project = _project(args)
    words = list(args.words)
    if words in ([], ["list"]):
        print("\n".join(state_queries.state_list(args.stack, project)))
        return 0
    if words[0] == "show":
        words = words[1:]
    if len(words) != 1:
        print(
            "error: use `state`, `state list`, or `state show ADDRESS` (addresses: `python -m local state`)",
            file=sys.stderr,
        )
        return 1
    print(state_queries.state_show(args.stack, words[0], project))
    return 0


def _outputs(args: argparse.Namespace) -> int:
    print(json.dumps(state_queries.outputs(args.stack, _project(args)), indent=2, sort_keys=True))
    return 0


def _destroy(args: argparse.Namespace) -> int:
    project = _project(args)
    lifecycle.destroy(args.stack, project)
    if not args.keep_emulator and project.target(args.stack) == LOCAL_TARGET:
        emulator_control.down(project)
    project.timings.report()
    return 0


def _down(args: argparse.Namespace) -> int:
    emulator_control.down(_project(args))
    return 0


def _emulator_endpoint(args: argparse.Namespace) -> str:
    return f"http://{EMULATOR_HOST}:{args.port}"


def _env(args: argparse.Namespace) -> int:
    from local.client_access.shell_env import EnvError, script
    from local.control_plane.toolchain import ToolchainError

    try:
        print(script(args.stack, _emulator_endpoint(args)))
    except (EnvError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _sql(args: argparse.Namespace) -> int:
    from local.client_access.sql import run_sql

    return run_sql(args, _emulator_endpoint(args))


def _configure_sql(parser: argparse.ArgumentParser) -> None:
    from local.client_access.sql import configure

    configure(parser)


# ---------------------------------------------------------------- data plane (imported on use: heavier)
def _serve(args: argparse.Namespace) -> int:
    from local.data_plane.serve import run_serve

    return run_serve(args)


def _experiment(args: argparse.Namespace) -> int:
    from local.experiment.run import run_cli

    return run_cli(args)


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    from local.data_plane.serve import configure_serve

    configure_serve(parser)


def _configure_experiment(parser: argparse.ArgumentParser) -> None:
    from local.experiment.run import configure

    configure(parser)


def _stack_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack", default=DEFAULT_STACK, help="stack (environments/<stack>.json) to operate on (default: %(default)s)"
    )


_IMPORTING_STEPS = (_configure_sql, _configure_serve, _configure_experiment)
"""Steps that import a command's module to add its options: run only for the command being parsed."""


def command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option or ``--port``'s value), if any."""
    words = iter(argv)
    for word in words:
        if word == "--port":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command; with ``command``, only that one's module is imported for its options (a faster start)."""
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description="The local target: the AWS emulator and "
        "the stack's lifecycle (control plane), the function run locally (data plane).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"emulator port (default: from LOCAL_AWS_ENDPOINT, else {DEFAULT_EMULATOR_PORT}; 0 picks a free one)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, run, *configure) -> argparse.ArgumentParser:
        command_parser = sub.add_parser(name, help=help_, description=help_)
        for step in configure:
            if step not in _IMPORTING_STEPS or command in (None, name):
                step(command_parser)
        command_parser.set_defaults(run=run)
        return command_parser

    add("up", "start the local AWS emulator (no-op if it already runs)", _up)
    add("deploy", "start the emulator if needed and deploy the stack", _deploy, _stack_option)
    diff = add("diff", "plan against the deployed stack; exit status 2 if anything would change", _diff, _stack_option)
    diff.add_argument("--no-synth", action="store_true", help="plan the already synthesized config")
    state = add("state", "terraform state list | show ADDRESS", _state, _stack_option)
    state.add_argument(
        "words",
        nargs="*",
        metavar="list | show ADDRESS | ADDRESS",
        help="nothing or `list`: every address; `show ADDRESS` or just ADDRESS: one resource",
    )
    add("outputs", "print the stack's outputs as JSON", _outputs, _stack_option)
    destroy = add("destroy", "destroy the stack, then stop the emulator", _destroy, _stack_option)
    destroy.add_argument("--keep-emulator", action="store_true", help="leave the emulator running afterwards")
    add("down", "stop the local AWS emulator", _down)
    env = add(
        "env",
        "print export lines for the real cdktf, terraform and aws CLIs against the local stack",
        _env,
        _stack_option,
    )
    env.epilog = 'use: eval "$(python -m local env)"'
    add(
        "serve",
        "run the app locally: HTTP API -> Lambda-like runtime -> RDS Proxy stand-in -> MariaDB",
        _serve,
        _configure_serve,
    )
    add(
        "sql",
        "the mariadb client through the running serve's RDS Proxy stand-in: IAM token, TLS verified for the "
        "endpoint name (--print: the values for any other client)",
        _sql,
        _stack_option,
        _configure_sql,
    )
    add(
        "experiment",
        "the load experiment, direct vs through the proxy (100 users, 10,000 requests)",
        _experiment,
        _configure_experiment,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv)).parse_args(argv)
    if args.port is None:
        args.port = default_port()
    try:
        return args.run(args)
    except LifecycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
