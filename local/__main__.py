"""``python -m local <command>``: the local environment's command line.

    up        start the local AWS emulator (idempotent)
    deploy    up, then `cdktf deploy` the stack (default: local)
    diff      synthesize and `terraform plan`; exit status 2 when changes are pending
    state     `terraform state list`; `state show ADDRESS` (or `state ADDRESS`) shows one
    outputs   the stack's outputs (API URL, proxy endpoint, secret ARN, ...) as JSON
    destroy   `cdktf destroy` the stack, then stop the emulator (unless --keep-emulator)
    down      stop the emulator

Adding a command is one function plus one ``@command(...)`` registration (it may live in another
module that this one imports, see ``_EXTENSIONS``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from local import lifecycle

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Configure
    run: Run


COMMANDS: dict[str, Command] = {}

#: Modules that register more commands when imported (e.g. ``"local.dataplane"``); missing ones are skipped.
_EXTENSIONS: tuple[str, ...] = ("local.app_commands",)

if __name__ == "__main__":
    # `python -m local` runs this file as `__main__`; extensions import `local.__main__` to register
    # their commands, which must be this very module (one COMMANDS registry), not a second copy.
    sys.modules.setdefault("local.__main__", sys.modules[__name__])


def command(name: str, help: str, configure: Configure = lambda parser: None) -> Callable[[Run], Run]:
    """Register ``run(args) -> exit status`` as ``python -m local <name>``."""
    def register(run: Run) -> Run:
        COMMANDS[name] = Command(name, help, configure, run)
        return run
    return register


def _default_port() -> int:
    """The port of LOCAL_AWS_ENDPOINT if set, else the stack's default endpoint's (4599)."""
    endpoint = os.environ.get("LOCAL_AWS_ENDPOINT")
    if not endpoint:
        return lifecycle.DEFAULT_LOCAL_PORT
    parsed = urlparse(endpoint)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
        raise SystemExit(f"error: LOCAL_AWS_ENDPOINT={endpoint!r}: expected http://127.0.0.1:<port>")
    return parsed.port


def _project(args: argparse.Namespace) -> lifecycle.Project:
    return lifecycle.Project(emulator_port=args.port)


def _stack_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=lifecycle.DEFAULT_STACK,
                        help="stack (environments/<stack>.json) to operate on (default: %(default)s)")


# ---------------------------------------------------------------- commands
@command("up", "start the local AWS emulator (no-op if it already runs)")
def _up(args: argparse.Namespace) -> int:
    emulator = lifecycle.up(_project(args))
    print(f"LOCAL_AWS_ENDPOINT={emulator.endpoint}")
    return 0


@command("deploy", "start the emulator if needed and deploy the stack", _stack_option)
def _deploy(args: argparse.Namespace) -> int:
    result = lifecycle.deploy(args.stack, _project(args))
    print(json.dumps(result, indent=2, sort_keys=True))
    lifecycle.print_step_times()
    return 0


def _configure_diff(parser: argparse.ArgumentParser) -> None:
    _stack_option(parser)
    parser.add_argument("--no-synth", action="store_true", help="plan the already synthesized config")


@command("diff", "plan against the deployed stack; exit status 2 if anything would change", _configure_diff)
def _diff(args: argparse.Namespace) -> int:
    changes = lifecycle.diff(args.stack, _project(args), synthesize=not args.no_synth)
    return 2 if changes else 0


def _configure_state(parser: argparse.ArgumentParser) -> None:
    _stack_option(parser)
    parser.add_argument("words", nargs="*", metavar="list | show ADDRESS | ADDRESS",
                        help="nothing or `list`: every address; `show ADDRESS` or just ADDRESS: one resource")


@command("state", "terraform state list | show ADDRESS", _configure_state)
def _state(args: argparse.Namespace) -> int:
    project = _project(args)
    words = list(args.words)
    if words in ([], ["list"]):
        print("\n".join(lifecycle.state_list(args.stack, project)))
        return 0
    if words[0] == "show":
        words = words[1:]
    if len(words) != 1:
        print("error: use `state`, `state list`, or `state show ADDRESS` (addresses: `python -m local state`)",
              file=sys.stderr)
        return 1
    print(lifecycle.state_show(args.stack, words[0], project))
    return 0


@command("outputs", "print the stack's outputs as JSON", _stack_option)
def _outputs(args: argparse.Namespace) -> int:
    print(json.dumps(lifecycle.outputs(args.stack, _project(args)), indent=2, sort_keys=True))
    return 0


def _configure_destroy(parser: argparse.ArgumentParser) -> None:
    _stack_option(parser)
    parser.add_argument("--keep-emulator", action="store_true", help="leave the emulator running afterwards")


@command("destroy", "destroy the stack, then stop the emulator", _configure_destroy)
def _destroy(args: argparse.Namespace) -> int:
    project = _project(args)
    lifecycle.destroy(args.stack, project)
    if not args.keep_emulator and project.target(args.stack) == lifecycle.LOCAL_TARGET:
        lifecycle.down(project)
    lifecycle.print_step_times()
    return 0


@command("down", "stop the local AWS emulator")
def _down(args: argparse.Namespace) -> int:
    lifecycle.down(_project(args))
    return 0


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    for module in _EXTENSIONS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None,
                        help="emulator port (default: from LOCAL_AWS_ENDPOINT, else 4599; 0 picks a free one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for item in COMMANDS.values():
        item.configure(sub.add_parser(item.name, help=item.help, description=item.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port is None:
        args.port = _default_port()
    try:
        return COMMANDS[args.command].run(args)
    except lifecycle.LifecycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
