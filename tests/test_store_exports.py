"""Exports on every store: id-range partitions of a label, and whole-table exports that
page through many chunks (the Neo4j store streams one statement; see graph.cypher)."""

from __future__ import annotations

import numpy as np

from graph.store import GraphStore


def _users(store: GraphStore, n: int) -> list[str]:
    ids = [f"u{i:05d}" for i in range(n)]
    store.upsert_nodes("User", {"id": ids, "income": [float(i) for i in range(n)],
                                "city": [None if i % 3 else f"c{i}" for i in range(n)]})
    return ids


def test_id_ranges_partition_the_label(store: GraphStore) -> None:
    ids = _users(store, 257)
    bounds = [None, "u00050", "u00100", "u00199", None]
    seen: list[str] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part: list[str] = []
        for chunk in store.export_node_range("User", ["income", "city"], lo, hi, 17):
            assert len(chunk["id"]) <= 17
            assert np.array_equal(chunk["income"],
                                  np.array([float(i[1:]) for i in chunk["id"]]))
            part += chunk["id"].tolist()
        assert part == sorted(part)
        assert all((lo is None or i > lo) and (hi is None or i <= hi) for i in part)
        seen += part
    assert seen == ids
    assert list(store.export_node_range("User", [], "u99999", None)) == []


def test_whole_table_exports_in_many_chunks_equal_one(store: GraphStore) -> None:
    ids = _users(store, 300)
    store.upsert_nodes("Merchant", {"id": ["m1", "m2"]})
    n = 900
    store.upsert_relationships("PAID", {
        "src": [ids[(7 * i) % 300] for i in range(n)], "dst": ["m1", "m2"] * (n // 2),
        "id": [f"p{i:04d}" for i in range(n)], "amount": [float(i) for i in range(n)]})
    small = [c for c in store.export_relationships("PAID", ["amount"], 64)]
    whole = list(store.export_relationships("PAID", ["amount"], 10_000))
    assert len(small) == -(-n // 64) and len(whole) == 1
    for name in ("src", "dst", "id", "amount"):
        assert np.concatenate([c[name] for c in small]).tolist() == whole[0][name].tolist()
    keys = list(zip(whole[0]["src"], whole[0]["dst"], whole[0]["id"]))
    assert keys == sorted(keys) and len(set(keys)) == n
    users = np.concatenate([c["id"] for c in store.export_nodes("User", ["city"], 7)])
    assert users.tolist() == ids
