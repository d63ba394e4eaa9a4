"""One id-range partition of the users with the bounded neighbourhood its scores need,
for scoring the graph in parts (api/distributed.py runs one part per worker).

A user's scores depend only on its own features and payments and on its one-step
neighbourhood: the holders of each non-hub item it holds and its direct neighbours, with
their own features and payments (gnn/models.py: the relational branch is one round of
message passing over fixed operators). ``neighbourhood_graph`` builds that for one user;
this builds the union for every user of a partition. The partition's users come first,
in id order, then the neighbours it needs; the scores of the first ``targets`` rows are
the whole graph's scores of those users (tests/test_distributed.py compares them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from gnn.features import USER_EXPORT_PROPS
from gnn.tensors import (
    MAX_LINKS_PER_USER,
    MAX_MERCHANT_PAYERS,
    GraphArrays,
    _direct_links,
    _item_links,
    _merchant_payers,
    _user_columns,
)
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.queries import DEFAULT_MAX_ITEM_USERS
from graph.store import GraphStore


@dataclass(frozen=True)
class PartitionGraph:
    graph: GraphArrays  # the partition's users first, then their neighbours
    targets: int  # how many of graph.user_ids are the partition's own users


def _columns(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    names = ["id", *USER_EXPORT_PROPS]
    if not chunks:
        return {n: np.zeros(0, dtype=object) for n in names}
    return {n: np.concatenate([c[n] for c in chunks]) for n in names}


def _shared_item_pairs(
    store: GraphStore, targets: list[str], max_item_users: int,
) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """For each shared-item relationship, the (holder, item) pairs of the non-hub items
    the ``targets`` hold, with every holder of those items; and the set of holders."""
    item_pairs: dict[str, list[tuple[str, str]]] = {}
    others: set[str] = set()
    if not targets:
        return item_pairs, others
    held = store.adjacent("User", targets, list(SHARED_ITEM_RELS), "out",
                          MAX_LINKS_PER_USER)
    by_rel: dict[str, set[str]] = defaultdict(set)
    for a in held:
        by_rel[a.rel_type].add(a.other_id)
    for rt, items in by_rel.items():
        holders: dict[str, set[str]] = defaultdict(set)
        for b in store.adjacent(REL_TYPES[rt].dst, sorted(items), [rt], "in",
                                max_item_users + 1):
            holders[b.node_id].add(b.other_id)
        pairs = []
        for item, hs in holders.items():
            if len(hs) > max_item_users:
                continue  # a hub links nobody
            pairs += [(h, item) for h in hs]
            others |= hs
        item_pairs[rt] = pairs
    return item_pairs, others


def partition_graph(
    store: GraphStore, lo: str | None, hi: str | None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS, batch_size: int = 50_000,
) -> PartitionGraph:
    """The users with ``lo < id <= hi`` and the neighbourhood their scores depend on,
    read from ``store``: its memory grows with the partition, not with the graph."""
    own = _columns(list(store.export_node_range("User", USER_EXPORT_PROPS, lo, hi,
                                                batch_size)))
    targets = own.pop("id").astype(str).tolist()
    target_set = set(targets)
    item_pairs, others = _shared_item_pairs(store, targets, max_item_users)
    # the payers of every non-hub merchant a partition user paid (as neighbourhood_graph
    # reads them for one user)
    shop_payers: dict[str, set[str]] = {}
    if targets:
        shops = sorted({a.other_id for a in store.adjacent("User", targets, ["PAID"], "out",
                                                            MAX_LINKS_PER_USER)})
        shop_payers = _merchant_payers(store, shops)
        for hs in shop_payers.values():
            others |= hs
    direct: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if targets:
        for a in store.adjacent("User", targets, list(USER_USER_RELS), "both",
                                MAX_LINKS_PER_USER):
            if a.other_id != a.node_id:
                direct[a.rel_type].append((a.node_id, a.other_id))
                others.add(a.other_id)
    halo = sorted(others - target_set)
    ids = np.array(targets + halo, dtype=object)
    index = {u: i for i, u in enumerate(ids.tolist())}
    theirs = _user_columns(store, halo)
    users = {p: np.concatenate([own[p], theirs[p]]) for p in USER_EXPORT_PROPS}
    rels = store.relationships("PAID", ids.tolist(), "out", MAX_LINKS_PER_USER)
    paid_user = np.array([index[r.src] for r in rels], dtype=np.int64)
    paid = {
        "amount": np.array([r.properties.get("amount", np.nan) for r in rels], np.float64),
        "ts": np.array([r.properties.get("ts", np.nan) for r in rels], np.float64),
        "channel": np.array([r.properties.get("channel") for r in rels], dtype=object),
        "merchant": np.array([r.dst for r in rels], dtype=object),
    }
    g = GraphArrays(ids, users, paid_user, paid)
    for rt in SHARED_ITEM_RELS:
        pairs = item_pairs.get(rt, [])
        u = np.array([index[h] for h, _ in pairs], dtype=np.int64)
        held_items = np.array([i for _, i in pairs], dtype=object)
        uu, ii, names = _item_links(u, held_items, max_item_users)
        g.item_edges[rt] = (uu, ii)
        g.item_ids[rt] = names
    for rt in USER_USER_RELS:
        links = direct.get(rt, [])
        a_idx = np.array([index[a] for a, _ in links], dtype=np.int64)
        b_idx = np.array([index[b] for _, b in links], dtype=np.int64)
        g.direct_edges[rt] = _direct_links(a_idx, b_idx)
    payer_merchant = [(index[h], m) for m, hs in shop_payers.items() for h in hs]
    uu, ii, names = _item_links(np.array([a for a, _ in payer_merchant], dtype=np.int64),
                                np.array([m for _, m in payer_merchant], dtype=object),
                                MAX_MERCHANT_PAYERS)
    g.item_edges["PAID"] = (uu, ii)
    g.item_ids["PAID"] = names
    return PartitionGraph(g, len(targets))
