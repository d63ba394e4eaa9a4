"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from api.bootstrap import open_store
from api.settings import STORES, Settings
from graph.errors import RiskGraphError
from graph.store import GraphStore


class UsageError(RiskGraphError):
    """A command was given arguments it cannot use (exit code 2)."""


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", choices=STORES, default=None,
        help="graph store (default: RISKGRAPH_STORE or embedded)",
    )


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def settings_for(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_store(getattr(args, "store", None))


@contextmanager
def store_for(args: argparse.Namespace) -> Iterator[GraphStore]:
    store = open_store(settings_for(args))
    try:
        yield store
    finally:
        store.close()


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
