"""The `riskgraph` command. Each area registers its subcommands from api/commands/."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from api.commands import demo, gnn, limits, load, scale, serve, store
from api.commands.common import UsageError
from graph.errors import NotFoundError, RiskGraphError

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "main"]

# Every module here has register(subparsers); each subcommand sets func(args) -> int.
COMMAND_MODULES = [store, limits, load, serve, gnn, demo, scale]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riskgraph", description="Graph-based risk analytics for consumer credit."
    )
    # A command that runs other commands (demo) calls args.run_cli(argv).
    parser.set_defaults(run_cli=main)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NotFoundError as exc:
        print(f"riskgraph: {exc}", file=sys.stderr)
        return 1
    except RiskGraphError as exc:
        print(f"riskgraph: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("riskgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`riskgraph rings | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
