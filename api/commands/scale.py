"""export: tables for warehouses and for comparing runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from api.commands.common import (
    add_json_option,
    add_store_option,
    print_json,
    settings_for,
    store_for,
)


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


# -- --distributed on `score` and `review` --------------------------------------------------
def add_distributed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distributed", action="store_true",
                   help="run on a Ray cluster: RISKGRAPH_CLUSTER, else a local one with "
                        "one worker per core (docs/scale.md)")
    p.add_argument("--partitions", type=int, default=None,
                   help="with --distributed: id-range partitions (default: one per worker)")
    p.add_argument("--cluster-workers", type=int, default=None,
                   help="with --distributed and no RISKGRAPH_CLUSTER: worker slots of the "
                        "local cluster (default: one per core)")


def score_distributed(args: argparse.Namespace) -> int:
    from api import distributed

    settings = settings_for(args)
    run = distributed.score(settings, settings.models_dir, args.version,
                            workers=args.cluster_workers, partitions=args.partitions)
    if args.json:
        print_json(run.to_dict())
        return 0
    d = run.to_dict()
    print(f"scored {run.written:,} users with {run.version} on {run.workers} workers in "
          f"{len(run.partitions)} partitions, {d['seconds']}s ({d['users_per_second']:,.0f}"
          f"/s); largest partition read {d['max_read_users']:,} users, worker peak "
          f"{d['max_peak_rss_mb']:,.0f} MB")
    return 0


def review_distributed(args: argparse.Namespace) -> int:
    from api import distributed
    from limits.policy import parse_policy, read_policy_text

    settings = settings_for(args)
    default = settings.policy
    text, source = read_policy_text(args.policy or (str(default) if default else None))
    policy = parse_policy(text, source)
    summary, run = distributed.review(settings, policy, text, dry_run=args.dry_run,
                                      workers=args.cluster_workers,
                                      partitions=args.partitions,
                                      counterfactuals=args.counterfactuals)
    if args.json:
        print_json(summary.to_dict() | {"dry_run": args.dry_run, "policy": policy.id,
                                        "distributed": run.to_dict()})
        return 0
    s = summary
    print(f"reviewed {s.users:,} users in {s.seconds:.1f} s ({s.users_per_second:,.0f}/s) "
          f"under policy {policy.id} on {run.workers} workers, {len(run.partitions)} "
          f"partitions{' (dry run)' if args.dry_run else ''}")
    for act in ("open", "raise", "keep", "reduce", "freeze"):
        print(f"  {act:<10}{s.actions.get(act, 0):>10,}")
    print(f"  exposure {s.exposure_before:,.0f} -> {s.exposure_after:,.0f}; "
          f"referred for investigation: {s.referred:,}")
    if not args.dry_run:
        print(f"  recorded {s.recorded:,} decisions, wrote {s.written:,} line changes")
    return 0
