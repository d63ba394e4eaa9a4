"""export: tables for warehouses and for comparing runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from api.commands.common import add_json_option, add_store_option, print_json, store_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a table for warehouses (Parquet)")
    esub = p.add_subparsers(dest="export_command", required=True, metavar="TABLE")
    s = esub.add_parser("scores", help="every user's scores, ring id, model version and "
                                       "scoring time")
    s.add_argument("out", metavar="OUT.parquet")
    add_store_option(s)
    add_json_option(s)
    s.set_defaults(func=export_scores)


def export_scores(args: argparse.Namespace) -> int:
    from api.exports import export_scores as write

    with store_for(args) as store:
        result = write(store, Path(args.out))
    if args.json:
        print_json({"path": str(result.path), "rows": result.rows, "scored": result.scored})
        return 0
    print(f"wrote {result.rows:,} users ({result.scored:,} scored) to {result.path}")
    return 0
