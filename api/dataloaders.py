"""Batched reads behind the per-request DataLoaders. The batched graph searches
(linked accounts and groups of many users at once) live with the other graph queries,
in graph/queries.py; this module keeps the plain batched reads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from graph.model import Node, Relationship
from graph.queries import linked_accounts_many, rings_of_many
from graph.store import Adjacency, GraphStore

__all__ = ["adjacent_many", "holdings_many", "linked_accounts_many", "rings_of_many",
           "scan_users"]


def holdings_many(store: GraphStore, user_ids: Sequence[str]) -> list[list[Relationship]]:
    """HOLDS relationships (products, limits, balances) of each user, one store call."""
    by_user: dict[str, list[Relationship]] = defaultdict(list)
    for r in store.relationships("HOLDS", list(dict.fromkeys(user_ids)), "out"):
        by_user[r.src].append(r)
    return [by_user.get(u, []) for u in user_ids]


def adjacent_many(
    store: GraphStore, label: str, ids: Sequence[str], rel_type: str, direction: str,
    limit_per_node: int,
) -> list[list[Adjacency]]:
    by_node: dict[str, list[Adjacency]] = defaultdict(list)
    for a in store.adjacent(label, list(dict.fromkeys(ids)), [rel_type], direction,  # type: ignore[arg-type]
                            limit_per_node):
        by_node[a.node_id].append(a)
    return [by_node.get(i, []) for i in ids]


def scan_users(
    store: GraphStore,
    after: str | None,
    want: int,
    keep: object,
    batch: int = 500,
    max_scanned: int = 20_000,
) -> tuple[list[Node], str | None, bool]:
    """Users in id order after ``after`` for which ``keep(node)`` holds, up to ``want``.

    Returns (nodes, last id scanned, whether more ids may follow). The scan stops after
    ``max_scanned`` ids so a rare filter cannot turn one page into a full table scan;
    the caller then pages on from the last id scanned.
    """
    found: list[Node] = []
    last = after
    scanned = 0
    while len(found) < want + 1 and scanned < max_scanned:
        ids = store.node_ids("User", after=last, limit=batch)
        if not ids:
            return found, last, False
        for node in store.get_nodes("User", ids):
            scanned += 1
            if node is None:
                continue
            last = node.id
            if keep(node):  # type: ignore[operator]
                found.append(node)
                if len(found) == want + 1:
                    break
        if len(ids) < batch and len(found) <= want:
            return found, last, False
    return found, last, True
