"""stats, linked, rings, ring: looking at what the store holds."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from api.commands.common import add_json_option, add_store_option, print_json, store_for
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

    p = sub.add_parser("rings", help="connected groups of linked users")
    p.add_argument("--min-size", type=int, default=3)
    p.add_argument("--limit", type=int, default=50)
    add_store_option(p)
    add_json_option(p)
    p.set_defaults(func=rings)

    p = sub.add_parser("ring", help="one ring: its members, shared items and direct links")
    p.add_argument("ring_id", help="ring:<smallest member id>, as `rings` lists them")
    p.add_argument("--min-size", type=int, default=3)
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
    if len(found) > len(shown):
        print(f"  ... and {len(found) - len(shown):,} more (--limit {len(found)} shows all)")
    return 0


def find_ring(store: GraphStore, ring_id: str, min_size: int = 3) -> queries.Ring:
    """The ring with id ``ring:<smallest member id>``; NotFoundError when there is none."""
    from api.cli import UsageError

    member = ring_id[len(RING_PREFIX):] if ring_id.startswith(RING_PREFIX) else ""
    if not member:
        raise UsageError(f"{ring_id!r} is not a ring id; ring ids look like ring:<user id>, "
                         "as `riskgraph rings` lists them")
    try:
        found = queries.ring_of(store, member, min_size=min_size)
    except NotFoundError:
        raise NotFoundError(f"no ring {ring_id!r}: there is no user {member!r}") from None
    if found is None:
        raise NotFoundError(f"no ring {ring_id!r}: {member} is in no group of at least "
                            f"{min_size} linked users")
    if found.id != ring_id:
        raise NotFoundError(f"no ring {ring_id!r}: {member} belongs to {found.id}")
    return found


def ring(args: argparse.Namespace) -> int:
    with store_for(args) as store:
        found = find_ring(store, args.ring_id, args.min_size)
        if args.png is not None:
            from api import pictures

            pictures.draw(pictures.ring_network(store, found), args.png)
    if args.json:
        print_json(dataclasses.asdict(found) | {"size": found.size})
        return 0
    print(f"{found.id}: {found.size} members")
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
