"""stats, linked, rings, ring: looking at what the store holds."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from api.commands.common import (
    UsageError,
    add_json_option,
    add_store_option,
    print_json,
    store_for,
)
from graph import queries
from graph.errors import NotFoundError
from graph.store import GraphStore

RING_PREFIX = "ring:"


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
    p.add_argument("--png", type=Path, metavar="FILE",
                   help="also draw the user and its linked accounts to this PNG file")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=linked)

    p = sub.add_parser("rings", help="groups of linked users: fraud rings apart from "
                                      "communities, most suspicious first")
    p.add_argument("--kind", choices=["ring", "community", "all"], default="ring",
                   help="ring: suspicious groups (default); community: households, offices, "
                        "campuses, public networks; all: both")
    p.add_argument("--min-size", type=int, default=3)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--stored", action="store_true",
                   help="print the last pass's groups instead of running the pass again")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=rings)

    p = sub.add_parser("ring", help="one group: kind, suspicion, why, members, shared items "
                                    "and direct links")
    p.add_argument("ring_id", help="ring:<smallest member id>, as `rings` lists them")
    p.add_argument("--png", type=Path, metavar="FILE", help="also draw the ring to this PNG file")
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=ring)


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
        if args.png is not None:
            from api import pictures

            pictures.draw(pictures.linked_network(store, args.user_id, found), args.png)
    shown = found[: args.limit]
    if args.json:
        print_json({
            "user": args.user_id,
            "depth": args.depth,
            "total": len(found),
            "more": len(found) - len(shown),
            "linked": [
                {"user_id": a.user_id, "depth": a.depth, "strength": a.strength,
                 "links": [lk._asdict() for lk in a.links]}
                for a in shown
            ],
        })
        return 0
    print(f"{len(found)} accounts linked to {args.user_id} within depth {args.depth}")
    for a in shown:
        what = ", ".join(f"{lk.rel_type}:{lk.item_id}" for lk in a.links[:4])
        more = f" (+{len(a.links) - 4})" if len(a.links) > 4 else ""
        print(f"  d{a.depth}  {a.user_id:<20} {a.strength:>3} links  {what}{more}")
    if len(found) > len(shown):
        print(f"  ... and {len(found) - len(shown):,} more (--limit {len(found)} shows all)")
    if args.png is not None:
        print(f"picture: {args.png}")
    return 0


def rings(args: argparse.Namespace) -> int:
    from graph import rings as ring_pass

    if args.min_size < 1 or args.limit < 0:
        raise UsageError("--min-size must be at least 1 and --limit at least 0")
    with store_for(args) as store:
        if not args.stored:
            ring_pass.run_pass(store)
        heads = queries.ring_headers(store, args.kind, args.min_size)
        shown = [queries.describe(store, h) for h in heads[: args.limit]]
    if args.json:
        print_json({"total": len(heads), "rings": [ring_dict(r) for r in shown]})
        return 0
    print(f"{len(heads)} groups of kind {args.kind} with at least {args.min_size} users, "
          "most suspicious first")
    for r in shown:
        print(f"  {r.id:<24} {r.kind:<10} suspicion {r.suspicion:.2f} {r.size:>4} members")
        for why in r.why:
            print(f"      - {why}")
    if len(heads) > len(shown):
        print(f"  ... and {len(heads) - len(shown):,} more (--limit {len(heads)} shows all)")
    return 0


def ring_dict(r: queries.Ring) -> dict[str, object]:
    """The JSON of one group, keys in the documented order."""
    return {
        "id": r.id, "size": r.size, "members": list(r.members), "kind": r.kind,
        "suspicion": r.suspicion, "why": list(r.why),
        "shared_items": [dataclasses.asdict(s) for s in r.shared_items],
        "direct_links": [list(d) for d in r.direct_links],
    }


def find_ring(store: GraphStore, ring_id: str) -> queries.Ring:
    """The group with id ``ring:<smallest member id>``; NotFoundError when there is none."""

    member = ring_id[len(RING_PREFIX):] if ring_id.startswith(RING_PREFIX) else ""
    if not member:
        raise UsageError(f"{ring_id!r} is not a ring id; ring ids look like ring:<user id>, "
                         "as `riskgraph rings` lists them")
    if store.missing_nodes("User", [member]):
        raise NotFoundError(f"no ring {ring_id!r}: there is no user {member!r}")
    queries.ensure_pass(store)
    found = queries.ring_by_id(store, ring_id)
    if found is None:
        other = queries.ring_of(store, member)
        where = (f"{member} belongs to {other.id}" if other is not None
                 else f"{member} is in no group")
        raise NotFoundError(f"no ring {ring_id!r}: {where} (`riskgraph rings --kind all` "
                            "lists the groups)")
    return found


def ring(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        found = find_ring(store, args.ring_id)
        if args.png is not None:
            from api import pictures

            pictures.draw(pictures.ring_network(store, found), args.png)
    if args.json:
        print_json(ring_dict(found))
        return 0
    print(f"{found.id}: {found.kind}, suspicion {found.suspicion:.2f}, {found.size} members")
    for why in found.why:
        print(f"  - {why}")
    print("  members: " + ", ".join(found.members))
    print(f"  shared items ({len(found.shared_items)}):")
    for s in found.shared_items:
        item = f"{s.label}:{s.id}"
        print(f"    {s.rel_type:<12} {item:<28} {', '.join(s.members)}")
    print(f"  direct links ({len(found.direct_links)}):")
    for rel_type, a, b, count in found.direct_links:
        times = f" x{count}" if count > 1 else ""
        print(f"    {rel_type:<12} {a} - {b}{times}")
    if args.png is not None:
        print(f"picture: {args.png}")
    return 0
