"""train, evaluate, score, models: the fraud and relational-risk model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from api.commands.common import (
    add_json_option,
    add_store_option,
    print_json,
    settings_for,
    store_for,
)
from api.commands.scale import add_distributed_options, score_distributed
from graph.errors import NotFoundError, RiskGraphError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the fraud model on the store's labelled data")
    p.add_argument("--task", choices=["user", "transaction"], default="user")
    p.add_argument("--split", choices=["random", "time"], default="random")
    p.add_argument("--seed", type=int, default=0)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=train)

    p = sub.add_parser("evaluate", help="test metrics of a model beside its baselines")
    p.add_argument("--version", default=None, help="model version (default: latest)")
    p.add_argument("--plots", default=None, help="directory for the PNG figures")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=evaluate)

    p = sub.add_parser("score", help="score every user and write the scores to the store")
    p.add_argument("--version", default=None, help="model version (default: latest)")
    p.add_argument("--user", default=None,
                   help="score only this user, on demand, and store its scores (the next "
                        "decide reads them)")
    p.add_argument("--explain", action="store_true", help="with --user: what drove it")
    p.add_argument("--no-save", action="store_true",
                   help="with --user: show the scores without storing them")
    add_distributed_options(p)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=score)

    p = sub.add_parser("models", help="list trained model versions")
    add_json_option(p)
    p.set_defaults(func=models)


def _models_dir(args: argparse.Namespace) -> Path:
    return settings_for(args).models_dir


def _line(name: str, m: dict) -> str:
    return (f"  {name:<16} AUC {m.get('auc', float('nan')):.4f}  AP {m.get('ap', float('nan')):.4f}"
            f"  F1 {m.get('f1_macro', float('nan')):.4f}"
            f"  R@1%FPR {m.get('recall_at_1pct_fpr', float('nan')):.4f}")


def train(args: argparse.Namespace) -> int:
    from gnn import pipeline

    with store_for(args) as store:
        if args.task == "transaction":
            version, metrics = pipeline.train_transactions(
                store, _models_dir(args), args.split, args.seed)
        else:
            version, metrics = pipeline.train_users(
                store, _models_dir(args), args.split, args.seed)
    if args.json:
        print_json({"version": version, **metrics})
        return 0
    print(f"trained {version} ({args.task}, {args.split} split, seed {args.seed})")
    print(_line("model", metrics["model"]))
    for name, m in metrics.get("baselines", {}).items():
        print(_line(name, m))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from gnn import pipeline

    with store_for(args) as store:
        result = pipeline.evaluate(store, _models_dir(args), args.version,
                                   Path(args.plots) if args.plots else None)
    if args.json:
        print_json(result)
        return 0
    print(f"model {result['version']}")
    print(_line("model", result["model"]))
    for name, m in result["baselines"].items():
        print(_line(name, m))
    print("figures: " + ", ".join(result["plots"]))
    return 0


class ScoreUsageError(RiskGraphError):
    """Options of `score` that do not go together (exit code 2)."""


def score(args: argparse.Namespace) -> int:
    from gnn import pipeline

    if not args.user and (args.explain or args.no_save):
        opt = "--explain" if args.explain else "--no-save"
        raise ScoreUsageError(f"{opt} needs --user ID: it applies to one user scored on "
                              "demand (without --user, score rescores every user)")
    if args.distributed and not args.user:
        return score_distributed(args)

    with store_for(args) as store:
        if args.user:
            if store.get_nodes("User", [args.user])[0] is None:
                raise NotFoundError(f"no user with id {args.user!r} (ids are case-sensitive, "
                                    "e.g. u0000042); check it with `riskgraph stats`")
            result = pipeline.score_one(store, _models_dir(args), args.user, args.version,
                                        explain=args.explain)
            result["saved"] = not args.no_save
            if not args.no_save:
                s = result["scores"]
                store.write_scores([args.user], {k: [v] for k, v in s.items()},
                                   result["version"], int(time.time() * 1000))
        else:
            result = pipeline.score_all(store, _models_dir(args), args.version)
    if args.json:
        print_json(result)
        return 0
    if args.user:
        s = result["scores"]
        print(f"{args.user}: fraud_risk {s['fraud_risk']:.4f}  relational_risk "
              f"{s['relational_risk']:.4f}  own_risk {s['own_risk']:.4f}  ({result['version']})")
        print("  stored: the next decide uses these scores" if result["saved"]
              else "  not stored (--no-save): the store keeps its earlier scores")
        if result.get("contributions"):
            print("  what drove it (the change when the neighbour or item is taken away; "
                  "log-odds, and percentage points of probability):")
        for c in result.get("contributions", []):
            print(f"  {c['kind']:<8} {c['id']:<20} relational "
                  f"{_readable(c, 'relational')}  fraud {_readable(c, 'fraud')}"
                  f"  via {', '.join(c['via'])}")
        return 0
    print(f"scored {result['written']:,} users with {result['version']} "
          f"(export {result['export_seconds']}s, model and writes {result['score_seconds']}s"
          f" of which features {result['prepare_seconds']}s)")
    return 0


def _readable(c: dict, head: str) -> str:
    """A contribution as a change in log-odds and in percentage points."""
    pp = 100.0 * c[f"{head}_risk_drop"]
    lo = c.get(f"{head}_log_odds_drop")
    return f"{pp:+.2f} pp" if lo is None else f"{lo:+.2f} log-odds ({pp:+.2f} pp)"


def models(args: argparse.Namespace) -> int:
    from gnn import pipeline

    found = pipeline.models(_models_dir(args))
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no trained models; run `riskgraph train`")
    for m in found:
        auc = m["model"].get("auc")
        ap = m["model"].get("ap")
        perf = f"AUC {auc:.4f} AP {ap:.4f}" if auc is not None else ""
        print(f"  {m['version']:<36} seed {m['seed']}  {perf}")
    return 0
