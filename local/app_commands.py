"""`python -m local serve` and `python -m local experiment`: the data-plane commands.

They hand their arguments to ``local.dataplane.main_serve`` / ``local.experiment.main`` (run either with
``--help`` for the options), so each module keeps its own argument parser.
"""

from __future__ import annotations

import argparse

from local.__main__ import command


def _pass_through(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, help="options of the command (see `-- --help`)")


@command("serve", "run the app locally: HTTP API -> Lambda-like runtime -> RDS Proxy stand-in -> MariaDB",
         _pass_through)
def _serve(args: argparse.Namespace) -> int:
    from local.dataplane import main_serve

    return main_serve(_strip(args.args))


@command("experiment", "the seed's load experiment, direct vs through the proxy (locust, 100 users)",
         _pass_through)
def _experiment(args: argparse.Namespace) -> int:
    from local.experiment import main

    return main(_strip(args.args))


def _strip(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv
