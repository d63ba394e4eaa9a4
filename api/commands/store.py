"""stats, linked, rings: looking at what the store holds."""

from __future__ import annotations

import argparse
import dataclasses

from api.commands.common import add_json_option, add_store_option, print_json, store_for
from graph import queries


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="count nodes and relationships by type")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=stats)

    p = sub.add_parser("linked", help="accounts linked to a user")
    p.add_argument("user_id")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--via", action="append", choices=queries.LINK_TYPES,
                   help="only these links (repeatable; default all)")
    p.add_argument("--limit", type=int, default=50)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=linked)

    p = sub.add_parser("rings", help="connected groups of linked users")
    p.add_argument("--min-size", type=int, default=3)
    p.add_argument("--limit", type=int, default=50)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=rings)


def stats(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        counts = store.counts()
    if args.json:
        print_json(counts)
        return 0
    for kind in ("nodes", "relationships"):
        print(kind)
        for name, n in counts[kind].items():
            print(f"  {name:<14}{n:>12,}")
    return 0


def linked(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        found = queries.linked_accounts(store, args.user_id, depth=args.depth, via=args.via)
    shown = found[: args.limit]
    if args.json:
        print_json({
            "user": args.user_id,
            "depth": args.depth,
            "total": len(found),
            "linked": [dataclasses.asdict(a) | {"strength": a.strength} for a in shown],
        })
        return 0
    print(f"{len(found)} accounts linked to {args.user_id} within depth {args.depth}")
    for a in shown:
        what = ", ".join(f"{lk.rel_type}:{lk.item_id}" for lk in a.links[:4])
        more = f" (+{len(a.links) - 4})" if len(a.links) > 4 else ""
        print(f"  d{a.depth}  {a.user_id:<20} {a.strength:>3} links  {what}{more}")
    return 0


def rings(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        found = queries.rings(store, min_size=args.min_size)
    shown = found[: args.limit]
    if args.json:
        print_json({
            "total": len(found),
            "rings": [dataclasses.asdict(r) | {"size": r.size} for r in shown],
        })
        return 0
    print(f"{len(found)} rings of at least {args.min_size} users")
    for r in shown:
        items = ", ".join(f"{s.label}:{s.id}" for s in r.shared_items[:3])
        print(f"  {r.id:<24} {r.size:>4} members  shared: {items}")
    return 0
