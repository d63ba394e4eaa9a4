"""Small graphs with fraud rings, upserted straight into a store, for the GNN tests.

Clean users have sound credit features and share devices in households of two. Ring
members have weaker features (overlapping the clean ones) and each ring shares one
device, one phone and one IP. Two clean users, with clean features and no label, each
use one ring's device: the relational-risk cases. One more clean user links to nothing
yet (``LONER``), for the on-demand test that adds a link.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gnn.tensors import GraphArrays
from graph.store import GraphStore

DAY = 86_400_000
T0 = 1_704_067_200_000


@dataclass
class SmallGraph:
    users: list[str]
    rings: list[list[str]]
    ring_devices: list[str]
    tied: list[str]  # clean users tied to a ring through its device
    loner: str
    labels: dict[str, int] = field(default_factory=dict)


def build(store: GraphStore, n_clean: int = 360, n_rings: int = 10, ring_size: int = 6,
          seed: int = 0) -> SmallGraph:
    rng = np.random.default_rng(seed)
    clean = [f"c{i:04d}" for i in range(n_clean)]
    rings = [[f"r{k:02d}m{j}" for j in range(ring_size)] for k in range(n_rings)]
    members = [u for r in rings for u in r]
    tied = ["tied0", "tied1"]
    loner = "loner"
    users = clean + members + tied + [loner]
    n_c, n_f = len(clean) + len(tied) + 1, len(members)

    def feats(n: int, fraud: bool) -> dict[str, np.ndarray]:
        shift = 0.6 if fraud else 0.0
        return {
            "credit_score": rng.normal(700 - 90 * shift, 60, n).round(),
            "income": np.exp(rng.normal(11.3 - 0.4 * shift, 0.5, n)),
            "months_on_book": np.maximum(1, rng.normal(30 - 18 * shift, 10, n)).round(),
            "utilisation": np.clip(rng.normal(0.3 + 0.25 * shift, 0.15, n), 0, 1.5),
            "overdue_count": rng.poisson(0.3 + 0.8 * shift, n).astype(float),
            "monthly_spend": np.exp(rng.normal(7.5 + 0.3 * shift, 0.6, n)),
            "monthly_txns": rng.poisson(12, n).astype(float),
            "signup_ts": (T0 - rng.integers(30, 900, n) * DAY * (1 - 0.7 * shift)).astype(
                np.int64),
        }

    fc, ff = feats(n_c, False), feats(n_f, True)
    cols = {k: np.concatenate([fc[k][: len(clean)], ff[k], fc[k][len(clean):]]) for k in fc}
    labels = {u: 0 for u in clean} | {u: 1 for u in members}
    is_fraud = np.array([labels.get(u, np.nan) for u in users], dtype=np.float64)
    store.upsert_nodes("User", {
        "id": users, **cols,
        "lifecycle": ["active"] * len(users),
        "repayment_history": ["0" * 12] * len(users),
        "is_fraud": is_fraud,
    })
    # households: clean users share a device in pairs
    devices = [f"h{i:04d}" for i in range(len(clean) // 2)]
    ring_devices = [f"rd{k:02d}" for k in range(n_rings)]
    own_devices = [f"d_{u}" for u in users]
    store.upsert_nodes("Device", {"id": devices + ring_devices + own_devices})
    store.upsert_nodes("Phone", {"id": [f"rp{k:02d}" for k in range(n_rings)]})
    store.upsert_nodes("IP", {"id": [f"ri{k:02d}" for k in range(n_rings)]})
    src, dst = list(users), list(own_devices)
    for i, u in enumerate(clean[: 2 * len(devices)]):
        src.append(u)
        dst.append(devices[i // 2])
    for k, r in enumerate(rings):
        src += r
        dst += [ring_devices[k]] * len(r)
    src += tied
    dst += ring_devices[: len(tied)]
    store.upsert_relationships("USES", {"src": src, "dst": dst})
    store.upsert_relationships("HAS_PHONE", {
        "src": members, "dst": [f"rp{k:02d}" for k, r in enumerate(rings) for _ in r]})
    store.upsert_relationships("LOGGED_FROM", {
        "src": members, "dst": [f"ri{k:02d}" for k, r in enumerate(rings) for _ in r]})
    # a few payments each, so payment features are not all missing
    store.upsert_nodes("Merchant", {"id": ["m0", "m1", "m2"]})
    p_src = [u for u in users for _ in range(3)]
    n_p = len(p_src)
    store.upsert_relationships("PAID", {
        "src": p_src, "dst": [f"m{i % 3}" for i in range(n_p)],
        "id": [f"p{i}" for i in range(n_p)],
        "amount": np.exp(rng.normal(4, 1, n_p)), "ts": T0 + rng.integers(0, 90, n_p) * DAY,
        "channel": rng.choice(["app", "pos"], n_p),
    })
    return SmallGraph(users, rings, ring_devices, tied, loner, labels)


def assert_same_graph(a: GraphArrays, b: GraphArrays) -> None:
    """Two exports of the user graph hold the same arrays."""
    assert a.user_ids.tolist() == b.user_ids.tolist()
    for k in a.users:
        np.testing.assert_array_equal(a.users[k], b.users[k])
    np.testing.assert_array_equal(a.paid_user, b.paid_user)
    for k in a.paid:
        np.testing.assert_array_equal(a.paid[k], b.paid[k])
    assert a.item_edges.keys() == b.item_edges.keys()
    for rt in a.item_edges:
        np.testing.assert_array_equal(np.stack(a.item_edges[rt]), np.stack(b.item_edges[rt]))
        assert a.item_ids[rt].tolist() == b.item_ids[rt].tolist()
    assert a.direct_edges.keys() == b.direct_edges.keys()
    for rt in a.direct_edges:
        np.testing.assert_array_equal(np.stack(a.direct_edges[rt]),
                                      np.stack(b.direct_edges[rt]))
    assert a.max_time_ms == b.max_time_ms
