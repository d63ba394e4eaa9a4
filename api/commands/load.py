"""load, generate: getting data into the store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from api.bootstrap import open_store
from api.commands.common import add_json_option, add_store_option, print_json, settings_for
from graph.store import GraphStore
from loaders.load import FileReport, LoadOptions, load_directory
from loaders.sffsd import load_sffsd
from loaders.synthetic import GeneratorConfig, generate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load", help="load a directory of CSV or Parquet files (docs/data-format.md)"
    )
    p.add_argument("path", help="directory of files, or the S-FFSD CSV with --format s-ffsd")
    p.add_argument("--format", choices=["riskgraph", "s-ffsd"], default="riskgraph",
                   help="riskgraph: one file per type (default); s-ffsd: the S-FFSD CSV")
    p.add_argument("--batch-size", type=int, default=100_000, help="rows per write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-link-index", action="store_true",
                   help="embedded store: do not rebuild the link index after the load "
                        "(linked-account queries then use SQL until it is rebuilt)")
    p.add_argument("--no-rings", action="store_true",
                   help="do not run the ring pass after the load (`riskgraph rings` runs it)")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=load)

    p = sub.add_parser("generate", help="write a synthetic ecosystem in the load format")
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    add_json_option(p)
    p.set_defaults(func=generate_cmd)


def load(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    options = LoadOptions(
        quarantine_dir=settings.quarantine_dir,
        batch_size=args.batch_size,
        progress=not args.quiet and not args.json,
    )
    store = open_store(settings)
    try:
        if args.format == "s-ffsd":
            reports = [load_sffsd(store, Path(args.path), options)]
        else:
            reports = load_directory(store, Path(args.path), options)
        index = None if args.no_link_index else _refresh_link_index(store)
        ring_pass = None if args.no_rings else _ring_pass(store)
    finally:
        store.close()
    if args.json:
        doc: dict[str, object] = {"files": [r.as_dict() for r in reports]}
        if index is not None:
            doc["link_index"] = index
        if ring_pass is not None:
            doc["ring_pass"] = ring_pass
        print_json(doc)
    else:
        _print_reports(reports, settings.quarantine_dir)
        if index is not None:
            print(f"link index: {index['users']:,} users, {index['links']:,} links, "
                  f"built in {index['seconds']:.1f} s")
        if ring_pass is not None:
            print(f"ring pass: {ring_pass['rings']:,} rings, {ring_pass['communities']:,} "
                  f"communities, in {ring_pass['seconds']:.1f} s")
    return 0


def _ring_pass(store: GraphStore) -> dict[str, object]:
    """Find the groups of the data just loaded and write them to the users
    (graph/rings.py), so rings, ring_of and decisions read them."""
    from graph import rings

    started = time.perf_counter()
    result = rings.run_pass(store)
    kinds = [g.kind for g in result.groups]
    return {"rings": kinds.count("ring"), "communities": kinds.count("community"),
            "seconds": round(time.perf_counter() - started, 2)}


def _refresh_link_index(store: object) -> dict[str, object] | None:
    """The embedded store's link index, rebuilt for the data just loaded, so linked
    accounts are answered from arrays (graph/linkindex.py); other stores have none."""
    from graph import linkindex
    from graph.embedded import EmbeddedStore

    if not isinstance(store, EmbeddedStore):
        return None
    started = time.perf_counter()
    index = linkindex.refresh(store)
    return {"users": int(index.meta["users"]), "links": int(index.meta["links"]),
            "seconds": round(time.perf_counter() - started, 2)}


def _print_reports(reports: list[FileReport], quarantine: Path) -> None:
    print(f"{'file':<28}{'rows':>12}{'loaded':>12}{'rejected':>10}{'rows/s':>12}")
    for r in reports:
        print(f"{r.file:<28}{r.rows:>12,}{r.loaded:>12,}{r.rejected:>10,}"
              f"{r.rows_per_s:>12,.0f}")
    rejected = sum(r.rejected for r in reports)
    if rejected:
        print(f"{rejected:,} rejected rows, with their reasons, in {quarantine}/",
              file=sys.stderr)


def generate_cmd(args: argparse.Namespace) -> int:
    summary = generate(GeneratorConfig(users=args.users, seed=args.seed), args.out,
                       args.format)
    if args.json:
        print_json(summary.as_dict())
        return 0
    print(f"wrote {summary.users:,} users to {summary.out} ({summary.format}, seed {summary.seed})")
    for name, n in summary.files.items():
        print(f"  {name:<24}{n:>12,}")
    print("fraud (true): " + ", ".join(f"{k} {v:,}" for k, v in summary.fraud.items()))
    return 0
