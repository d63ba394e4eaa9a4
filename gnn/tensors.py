"""From the store to tensors: users, the items they share, direct user-user links.

The user graph keeps every relationship that ties accounts together
(``graph.model.SHARED_ITEM_RELS`` through a device, phone, card or IP, and
``USER_USER_RELS`` directly). An item held by more than ``max_item_users`` users is a
hub and is left out, as ``graph.queries`` does: sharing a café's IP says little, and it
keeps one user's receptive field small enough to score on demand. Payments (PAID) are
not message-passing edges (a merchant can have 100k payers); they are aggregated into
each user's own features.

The same code builds the tensors for the whole graph (``export_graph``) and for one
user's neighbourhood (``neighbourhood_graph``), which is why the two give equal scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gnn.errors import GnnError
from gnn.features import PAID_EXPORT_PROPS, USER_EXPORT_PROPS
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.queries import DEFAULT_MAX_ITEM_USERS
from graph.store import GraphStore

# The property that says when each linking relationship began, for as-of exports.
EDGE_TIME: dict[str, str | None] = {
    "USES": "first_seen", "HAS_PHONE": "since", "HAS_CARD": "since", "LOGGED_FROM": None,
    "REFERRED": "ts", "TRANSFERRED": "ts",
}
MAX_LINKS_PER_USER = 100_000


@dataclass
class GraphArrays:
    """The user graph as numpy arrays, with the id maps to get back to the store."""

    user_ids: np.ndarray  # object, ascending
    users: dict[str, np.ndarray]  # exported user columns, aligned with user_ids
    paid_user: np.ndarray  # user index per payment
    paid: dict[str, np.ndarray]  # amount, ts, channel per payment
    item_edges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    item_ids: dict[str, np.ndarray] = field(default_factory=dict)
    direct_edges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    max_time_ms: float = float("nan")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def index_of(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def labels(self) -> np.ndarray:
        """1.0 fraud, 0.0 legitimate, NaN unknown."""
        y = np.asarray(self.users["is_fraud"], dtype=np.float64)
        return np.where(np.isin(y, (0.0, 1.0)), y, np.nan)


def _concat(chunks: list[dict[str, Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    if not chunks:
        return {n: np.zeros(0, dtype=object) for n in names}
    return {n: np.concatenate([c[n] for c in chunks]) for n in names}


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``sorted_ids``, -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, values)
    pos = np.clip(pos, 0, len(sorted_ids) - 1)
    hit = sorted_ids[pos] == values
    return np.where(hit, pos, -1).astype(np.int64)


def _item_links(
    u: np.ndarray, items: np.ndarray, max_item_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs, hubs removed; items re-numbered 0..k-1."""
    if len(u) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    names, item_idx = np.unique(items.astype(str), return_inverse=True)
    pairs = np.unique(np.stack([u, item_idx.reshape(-1)], axis=1), axis=0)
    deg = np.bincount(pairs[:, 1], minlength=len(names))
    keep = deg[pairs[:, 1]] <= max_item_users
    pairs = pairs[keep]
    used, new_idx = np.unique(pairs[:, 1], return_inverse=True)
    return pairs[:, 0].astype(np.int64), new_idx.reshape(-1).astype(np.int64), names[used]


def _direct_links(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct undirected user pairs, both directions, self-loops removed."""
    ok = (u >= 0) & (v >= 0) & (u != v)
    a, b = u[ok], v[ok]
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    both = np.unique(np.concatenate([np.stack([a, b], 1), np.stack([b, a], 1)]), axis=0)
    return both[:, 0].astype(np.int64), both[:, 1].astype(np.int64)


def _before(col: np.ndarray, as_of_ms: float | None) -> np.ndarray:
    if as_of_ms is None:
        return np.ones(len(col), dtype=bool)
    # a link with no start time is kept: the store cannot say it is new
    return ~(np.asarray(col, dtype=np.float64) >= as_of_ms)


def export_graph(
    store: GraphStore,
    as_of_ms: float | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    batch_size: int = 200_000,
) -> GraphArrays:
    """The whole user graph; with ``as_of_ms``, payments and links that began at or
    after that time are left out (what was known before a time split)."""
    users = _concat(list(store.export_nodes("User", USER_EXPORT_PROPS, batch_size)),
                    ["id", *USER_EXPORT_PROPS])
    ids = users.pop("id").astype(str).astype(object)
    if len(ids) == 0:
        raise GnnError("the store holds no users; load data first (riskgraph load DIR)")
    paid = _concat(list(store.export_relationships("PAID", PAID_EXPORT_PROPS, batch_size)),
                   ["src", *PAID_EXPORT_PROPS])
    keep = _before(paid["ts"], as_of_ms)
    paid_user = _lookup(ids, paid["src"][keep].astype(str))
    ok = paid_user >= 0
    paid_cols = {p: paid[p][keep][ok] for p in PAID_EXPORT_PROPS}
    times = [np.asarray(users["signup_ts"], np.float64), paid_cols["ts"]]
    g = GraphArrays(ids, users, paid_user[ok], paid_cols)
    for rt in SHARED_ITEM_RELS:
        tprop = EDGE_TIME.get(rt)
        props = [tprop] if tprop else []
        e = _concat(list(store.export_relationships(rt, props, batch_size)),
                    ["src", "dst", *props])
        keep = _before(e[tprop], as_of_ms) if tprop else np.ones(len(e["src"]), bool)
        u = _lookup(ids, e["src"][keep].astype(str))
        uu, ii, names = _item_links(u[u >= 0], e["dst"][keep][u >= 0], max_item_users)
        g.item_edges[rt] = (uu, ii)
        g.item_ids[rt] = names
    for rt in USER_USER_RELS:
        tprop = EDGE_TIME.get(rt)
        props = [tprop] if tprop else []
        e = _concat(list(store.export_relationships(rt, props, batch_size)),
                    ["src", "dst", *props])
        keep = _before(e[tprop], as_of_ms) if tprop else np.ones(len(e["src"]), bool)
        g.direct_edges[rt] = _direct_links(_lookup(ids, e["src"][keep].astype(str)),
                                           _lookup(ids, e["dst"][keep].astype(str)))
    finite = [t[np.isfinite(t)] for t in times]
    allt = np.concatenate(finite) if finite else np.zeros(0)
    g.max_time_ms = float(allt.max()) if len(allt) else float("nan")
    if as_of_ms is not None:
        g.max_time_ms = float(as_of_ms)
    return g


def _user_columns(store: GraphStore, ids: list[str]) -> dict[str, np.ndarray]:
    from graph.model import NODE_TYPES, PropType

    props = NODE_TYPES["User"].properties
    nodes = store.get_nodes("User", ids)
    cols: dict[str, np.ndarray] = {}
    for p in USER_EXPORT_PROPS:
        vals = [None if n is None else n.properties.get(p) for n in nodes]
        if props[p] is PropType.STR:
            cols[p] = np.array(vals, dtype=object)
        else:
            cols[p] = np.array([np.nan if v is None else float(v)  # type: ignore[arg-type]
                                for v in vals], np.float64)
    return cols


def neighbourhood_graph(
    store: GraphStore, user_id: str, max_item_users: int = DEFAULT_MAX_ITEM_USERS
) -> GraphArrays:
    """The part of the graph one user's score depends on: the user, every non-hub item
    it holds with all of that item's holders, and its direct neighbours. User 0 is the
    target; the others follow in ascending id order."""
    from graph.errors import NotFoundError

    if store.missing_nodes("User", [user_id]):
        raise NotFoundError(f"no user with id {user_id!r}")
    item_pairs: dict[str, list[tuple[str, str]]] = {}
    held = store.adjacent("User", [user_id], list(SHARED_ITEM_RELS), "out", MAX_LINKS_PER_USER)
    by_rel: dict[str, list[str]] = defaultdict(list)
    for a in held:
        by_rel[a.rel_type].append(a.other_id)
    others: set[str] = set()
    for rt, items in by_rel.items():
        label = REL_TYPES[rt].dst
        holders: dict[str, set[str]] = defaultdict(set)
        for b in store.adjacent(label, sorted(set(items)), [rt], "in", max_item_users + 1):
            holders[b.node_id].add(b.other_id)
        pairs = []
        for item, hs in holders.items():
            if len(hs) > max_item_users:
                continue
            pairs += [(h, item) for h in hs]
            others |= hs
        item_pairs[rt] = pairs
    direct: dict[str, list[str]] = defaultdict(list)
    for a in store.adjacent("User", [user_id], list(USER_USER_RELS), "both", MAX_LINKS_PER_USER):
        if a.other_id != user_id:
            direct[a.rel_type].append(a.other_id)
            others.add(a.other_id)
    others.discard(user_id)
    ids = np.array([user_id, *sorted(others)], dtype=object)
    index = {u: i for i, u in enumerate(ids.tolist())}
    users = _user_columns(store, ids.tolist())
    rels = store.relationships("PAID", ids.tolist(), "out", MAX_LINKS_PER_USER)
    paid_user = np.array([index[r.src] for r in rels], dtype=np.int64)
    paid = {
        "amount": np.array([r.properties.get("amount", np.nan) for r in rels], np.float64),
        "ts": np.array([r.properties.get("ts", np.nan) for r in rels], np.float64),
        "channel": np.array([r.properties.get("channel") for r in rels], dtype=object),
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
        v = np.array([index[o] for o in direct.get(rt, [])], dtype=np.int64)
        g.direct_edges[rt] = _direct_links(np.zeros(len(v), np.int64), v)
    return g


def to_heterodata(g: GraphArrays, x: np.ndarray, label_in: np.ndarray) -> Any:
    """A torch_geometric HeteroData: ``user`` nodes with encoded features and the
    visible-label input, one node type per shared item, and edges user->item and
    user->user for each relationship type."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    data["user"].label_in = torch.from_numpy(np.ascontiguousarray(label_in, dtype=np.float32))
    data["user"].num_nodes = g.n_users
    for rt, (u, i) in g.item_edges.items():
        item = REL_TYPES[rt].dst.lower()
        data[item].num_nodes = len(g.item_ids[rt])
        data["user", rt.lower(), item].edge_index = torch.from_numpy(np.stack([u, i]))
    for rt, (a, b) in g.direct_edges.items():
        data["user", rt.lower(), "user"].edge_index = torch.from_numpy(np.stack([a, b]))
    return data
