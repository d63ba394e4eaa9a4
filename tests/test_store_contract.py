"""One contract, every store: these tests run unchanged against each GraphStore backend
(the ``store`` fixture), and one test loads the same graph into both and compares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

from graph import queries, rings
from graph.errors import InvalidBatchError, NotFoundError, UnknownTypeError
from graph.model import NODE_TYPES, REL_TYPES, Node, Relationship
from graph.queries import Link, LinkedAccount
from graph.store import Adjacency, GraphStore, WriteResult, get_node

TS = 1_700_000_000_000  # epoch ms
INJECTION = "x'}) DETACH DELETE n //"
ODD_TEXT = [
    "用户-一号",
    "o'brien",
    'say "hi"',
    "back\\slash\\",
    INJECTION,
    '"}) MATCH (m) DETACH DELETE m RETURN 1 //',
    "$rows",
    "$ids",
    "$after",
    "`tick` {braces}",
    "emoji 😀 tab\tnewline\nend",
    "  spaced  ",
]


# -- helpers -----------------------------------------------------------------------------
def nodes(store: GraphStore, label: str, ids: Sequence[str], **columns: Sequence[Any]) -> int:
    return store.upsert_nodes(label, {"id": list(ids), **{k: list(v) for k, v in columns.items()}})


def rels(
    store: GraphStore,
    rel_type: str,
    pairs: Sequence[tuple[str, str]],
    ids: Sequence[str] | None = None,
    **columns: Sequence[Any],
) -> WriteResult:
    batch: dict[str, list[Any]] = {
        "src": [s for s, _ in pairs],
        "dst": [d for _, d in pairs],
        **{k: list(v) for k, v in columns.items()},
    }
    if ids is not None:
        batch["id"] = list(ids)
    return store.upsert_relationships(rel_type, batch)


def gather(chunks: Iterable[dict[str, Any]], limit: int | None = None) -> dict[str, list[Any]]:
    """Exported chunks joined into lists, checking each chunk's arrays on the way."""
    out: dict[str, list[Any]] = {}
    for chunk in chunks:
        lengths = {len(a) for a in chunk.values()}
        assert len(lengths) == 1, f"ragged chunk {lengths}"
        if limit is not None:
            assert lengths.pop() <= limit
        for name, arr in chunk.items():
            assert isinstance(arr, np.ndarray), name
            out.setdefault(name, []).extend(arr.tolist())
    return out


def nan_to_none(values: list[Any]) -> list[Any]:
    return [None if isinstance(v, float) and np.isnan(v) else v for v in values]


def props(store: GraphStore, label: str, id_: str) -> dict[str, object]:
    node = get_node(store, label, id_)
    assert node is not None, f"{label} {id_!r} is missing"
    return node.properties


def zero_counts() -> dict[str, dict[str, int]]:
    return {
        "nodes": {label: 0 for label in NODE_TYPES},
        "relationships": {t: 0 for t in REL_TYPES},
    }


# -- empty and unknown ---------------------------------------------------------------------
def test_empty_graph_answers_empty(store: GraphStore) -> None:
    assert store.counts() == zero_counts()
    assert queries.rings(store) == []
    assert store.node_ids("User") == []
    assert store.get_nodes("User", ["u1", "u2"]) == [None, None]
    assert store.missing_nodes("User", ["u1"]) == {"u1"}
    assert store.adjacent("User", ["u1"], list(REL_TYPES)) == []
    assert store.relationships("PAID", ["u1"]) == []
    assert gather(store.export_nodes("User", ["name", "credit_score"])) in (
        {}, {"id": [], "name": [], "credit_score": []},
    )
    assert gather(store.export_relationships("TRANSFERRED", ["amount"])) in (
        {}, {"src": [], "dst": [], "id": [], "amount": []},
    )


def test_unknown_ids(store: GraphStore) -> None:
    nodes(store, "User", ["u1"])
    assert store.get_nodes("User", ["nobody", "u1", "nobody"]) == [
        None, Node("User", "u1", {}), None,
    ]
    assert store.get_nodes("Merchant", ["u1"]) == [None]  # same id, other label
    assert store.missing_nodes("User", ["u1", "nobody", "nobody"]) == {"nobody"}
    with pytest.raises(NotFoundError):
        queries.linked_accounts(store, "nobody")
    with pytest.raises(NotFoundError):
        queries.ring_of(store, "nobody")
    with pytest.raises(NotFoundError):
        queries.neighbourhood(store, "Device", "u1")


def test_unknown_types_are_rejected(store: GraphStore) -> None:
    with pytest.raises(UnknownTypeError):
        store.upsert_nodes("Person", {"id": ["p"]})
    with pytest.raises(UnknownTypeError):
        store.upsert_relationships("KNOWS", {"src": ["a"], "dst": ["b"]})
    with pytest.raises(UnknownTypeError):
        store.get_nodes("Person", ["p"])
    with pytest.raises(UnknownTypeError):
        store.adjacent("User", ["u"], ["KNOWS"])
    with pytest.raises(InvalidBatchError):  # a property, as in batches
        list(store.export_nodes("User", ["nickname"]))


# -- upserts ---------------------------------------------------------------------------------
def test_upserts_are_idempotent(store: GraphStore) -> None:
    users = {"id": ["u1", "u2"], "name": ["Ann", "Bo"], "credit_score": [700, 650],
             "signup_ts": [TS, TS + 1]}
    uses = {"src": ["u1", "u2"], "dst": ["d1", "d1"], "sessions": [3, 4]}
    paid = {"src": ["u1", "u1"], "dst": ["m1", "m1"], "id": ["t1", "t2"], "amount": [9.5, 1.0]}
    for _ in range(2):
        assert store.upsert_nodes("User", users) == 2
        assert store.upsert_nodes("Device", {"id": ["d1"], "os": ["android"]}) == 1
        assert store.upsert_nodes("Merchant", {"id": ["m1"]}) == 1
        assert store.upsert_relationships("USES", uses) == WriteResult(2, [])
        assert store.upsert_relationships("PAID", paid) == WriteResult(2, [])
        counts = store.counts()
        assert counts["nodes"]["User"] == 2
        assert counts["nodes"]["Device"] == 1
        assert counts["relationships"]["USES"] == 2
        assert counts["relationships"]["PAID"] == 2
        assert props(store, "User", "u1") == {"name": "Ann", "credit_score": 700,
                                              "signup_ts": TS}
        assert store.relationships("PAID", ["u1"]) == [
            Relationship("PAID", "u1", "m1", "t1", {"amount": 9.5}),
            Relationship("PAID", "u1", "m1", "t2", {"amount": 1.0}),
        ]


def test_newer_value_updates_and_others_stay(store: GraphStore) -> None:
    nodes(store, "User", ["u1"], name=["Ann"], city=["Hangzhou"], credit_score=[700])
    nodes(store, "User", ["u1"], name=["Ann Li"], credit_score=[720])
    assert props(store, "User", "u1") == {"name": "Ann Li", "city": "Hangzhou",
                                          "credit_score": 720}
    nodes(store, "Device", ["d1"])
    rels(store, "USES", [("u1", "d1")], sessions=[1], first_seen=[TS])
    rels(store, "USES", [("u1", "d1")], sessions=[2], last_seen=[TS + 5])
    assert store.relationships("USES", ["u1"]) == [
        Relationship("USES", "u1", "d1", "", {"sessions": 2, "first_seen": TS,
                                                "last_seen": TS + 5}),
    ]


def test_none_and_nan_never_erase(store: GraphStore) -> None:
    nodes(store, "User", ["u1", "u2"], name=["Ann", "Bo"], income=[120000.0, 80000.0],
          credit_score=[700, 650], fraud_ts=[TS, TS])
    nodes(store, "User", ["u1", "u2"], name=[None, "Bob"], income=[float("nan"), None],
          credit_score=[np.nan, ""], fraud_ts=[None, np.nan])
    nodes(store, "User", ["u1", "u2"], income=np.array([np.nan, np.nan]))
    assert props(store, "User", "u1") == {"name": "Ann", "income": 120000.0,
                                          "credit_score": 700, "fraud_ts": TS}
    assert props(store, "User", "u2") == {"name": "Bob", "income": 80000.0,
                                          "credit_score": 650, "fraud_ts": TS}
    nodes(store, "Merchant", ["m1"])
    rels(store, "PAID", [("u1", "m1")], ids=["t1"], amount=[5.0], channel=["app"])
    rels(store, "PAID", [("u1", "m1")], ids=["t1"], amount=[np.nan], channel=[None])
    assert store.relationships("PAID", ["u1"]) == [
        Relationship("PAID", "u1", "m1", "t1", {"amount": 5.0, "channel": "app"}),
    ]


def test_duplicate_keys_inside_one_batch(store: GraphStore) -> None:
    applied = store.upsert_nodes("User", {
        "id": ["a", "b", "a", "a"],
        "name": ["first", "Bo", None, "last"],
        "city": [None, None, "Shanghai", None],
    })
    assert applied == 2  # rows with the same key count once
    assert store.counts()["nodes"]["User"] == 2
    assert props(store, "User", "a") == {"name": "last", "city": "Shanghai"}
    nodes(store, "Device", ["d"])
    nodes(store, "Merchant", ["m"])
    assert rels(store, "USES", [("a", "d"), ("a", "d"), ("b", "d")],
                sessions=[1, 2, None]) == WriteResult(2, [])
    assert rels(store, "PAID", [("a", "m"), ("a", "m"), ("a", "m")], ids=["t1", "t2", "t1"],
                amount=[1.0, 2.0, 3.0]) == WriteResult(2, [])
    counts = store.counts()["relationships"]
    assert (counts["USES"], counts["PAID"]) == (2, 2)
    assert store.relationships("USES", ["a", "b"]) == [
        Relationship("USES", "a", "d", "", {"sessions": 2}),
        Relationship("USES", "b", "d", "", {}),
    ]
    assert [(r.key, r.properties) for r in store.relationships("PAID", ["a"])] == [
        ("t1", {"amount": 3.0}), ("t2", {"amount": 2.0}),
    ]


def test_relationship_to_unknown_node_is_reported_not_written(store: GraphStore) -> None:
    nodes(store, "User", ["u1", "u2"])
    nodes(store, "Device", ["d1"])
    result = rels(store, "USES",
                  [("u1", "d1"), ("ghost", "d1"), ("u2", "d1"), ("u1", "nod"), ("ghost", "d1")],
                  sessions=[1, 2, 3, 4, 5])
    assert result == WriteResult(2, [1, 3, 4])
    assert store.counts()["relationships"]["USES"] == 2
    assert store.get_nodes("User", ["ghost"]) == [None]  # no node made up for it
    assert store.get_nodes("Device", ["nod"]) == [None]
    assert store.adjacent("Device", ["d1"], ["USES"], "in") == [
        Adjacency("d1", "USES", "in", "User", "u1"),
        Adjacency("d1", "USES", "in", "User", "u2"),
    ]
    # the endpoint has the right id but the wrong label
    nodes(store, "Merchant", ["m1"])
    assert rels(store, "REFERRED", [("u1", "m1")]) == WriteResult(0, [0])


INVALID_NODE_BATCHES = {
    "no id column": {"name": ["a"]},
    "ragged columns": {"id": ["a", "b"], "name": ["x"]},
    "unknown property": {"id": ["a"], "nickname": ["x"]},
    "not an integer": {"id": ["a", "b", "c"], "credit_score": [1, "high", 3]},
    "fraction for an integer": {"id": ["a"], "credit_score": [700.5]},
    "infinite float": {"id": ["a"], "income": [float("inf")]},
    "missing id": {"id": ["a", None]},
    "nan id": {"id": [float("nan")]},
    "empty id": {"id": [""]},
    "id too long": {"id": ["x" * 257]},
    "bad boolean": {"id": ["a"], "is_fraud": ["maybe"]},
}
INVALID_REL_BATCHES = {
    "keyed without id": ("PAID", {"src": ["u"], "dst": ["m"], "amount": [1.0]}),
    "unkeyed with id": ("USES", {"src": ["u"], "dst": ["d"], "id": ["k"]}),
    "no dst": ("USES", {"src": ["u"]}),
    "bad timestamp": ("USES", {"src": ["u"], "dst": ["d"], "first_seen": ["yesterday"]}),
    "unknown property": ("REFERRED", {"src": ["u"], "dst": ["u"], "amount": [1.0]}),
}


@pytest.mark.parametrize("columns", INVALID_NODE_BATCHES.values(), ids=INVALID_NODE_BATCHES)
def test_invalid_node_batches_are_rejected_whole(
    store: GraphStore, columns: dict[str, list[Any]]
) -> None:
    with pytest.raises(InvalidBatchError):
        store.upsert_nodes("User", columns)
    assert store.counts() == zero_counts()


@pytest.mark.parametrize("case", INVALID_REL_BATCHES.values(), ids=INVALID_REL_BATCHES)
def test_invalid_relationship_batches_are_rejected_whole(
    store: GraphStore, case: tuple[str, dict[str, list[Any]]]
) -> None:
    nodes(store, "User", ["u"])
    nodes(store, "Device", ["d"])
    nodes(store, "Merchant", ["m"])
    rel_type, columns = case
    with pytest.raises(InvalidBatchError):
        store.upsert_relationships(rel_type, columns)
    assert sum(store.counts()["relationships"].values()) == 0


def test_empty_batches_write_nothing(store: GraphStore) -> None:
    assert store.upsert_nodes("User", {"id": [], "name": []}) == 0
    assert store.upsert_relationships("USES", {"src": [], "dst": []}) == WriteResult(0, [])
    assert store.counts() == zero_counts()


def test_numpy_and_text_values_are_coerced(store: GraphStore) -> None:
    store.upsert_nodes("User", {
        "id": np.array(["u1", "u2"]),
        "credit_score": np.array([700, 650], dtype=np.int64),
        "income": np.array([1.5, 2.0], dtype=np.float32),
        "is_fraud": [True, False],
        "signup_ts": [float(TS), str(TS)],
    })
    assert props(store, "User", "u1") == {"credit_score": 700, "income": 1.5, "is_fraud": 1,
                                          "signup_ts": TS}
    assert props(store, "User", "u2") == {"credit_score": 650, "income": 2.0, "is_fraud": 0,
                                          "signup_ts": TS}


# -- awkward text --------------------------------------------------------------------------
def test_text_is_stored_and_returned_verbatim(store: GraphStore) -> None:
    ids = ODD_TEXT
    names = [f"name of {t}" for t in ids]
    assert nodes(store, "User", ids, name=names, city=ids) == len(ids)
    nodes(store, "Merchant", ids, name=ids)
    assert store.counts()["nodes"]["User"] == len(ids)
    assert store.get_nodes("User", ids) == [
        Node("User", i, {"name": n, "city": i}) for i, n in zip(ids, names)
    ]
    assert store.node_ids("User", limit=100) == sorted(ids)
    assert store.missing_nodes("User", ids) == set()
    pairs = list(zip(ids, reversed(ids)))
    keys = [f"txn {t}" for t in ids]
    assert rels(store, "PAID", pairs, ids=keys, channel=ids) == WriteResult(len(ids), [])
    assert store.relationships("PAID", ids) == sorted(
        (Relationship("PAID", s, d, k, {"channel": s}) for (s, d), k in zip(pairs, keys)),
        key=lambda r: (r.src, r.dst, r.key),
    )
    exported = gather(store.export_nodes("User", ["name"]))
    assert exported == {"id": sorted(ids), "name": [f"name of {t}" for t in sorted(ids)]}
    assert store.counts()["nodes"] == {**zero_counts()["nodes"], "User": len(ids),
                                       "Merchant": len(ids)}


def test_very_long_strings(store: GraphStore) -> None:
    long_name = ("长" + "a'\\\"" * 3) * 10_000
    long_id = "i" * 256
    nodes(store, "User", [long_id, "u2"], name=[long_name, "b" * 100_000])
    assert props(store, "User", long_id) == {"name": long_name}
    assert props(store, "User", "u2") == {"name": "b" * 100_000}
    assert gather(store.export_nodes("User", ["name"]))["name"] == [long_name, "b" * 100_000]


# -- primitives: adjacency, relationships, ids -------------------------------------------------
def small_shop(store: GraphStore) -> None:
    nodes(store, "User", ["u1", "u2", "u3"])
    nodes(store, "Device", ["d1", "d2", "d3"])
    nodes(store, "Merchant", ["m0", "m1"])
    rels(store, "USES", [("u1", "d3"), ("u1", "d1"), ("u1", "d2"), ("u2", "d1")])
    rels(store, "PAID", [("u1", "m1"), ("u1", "m1"), ("u1", "m0"), ("u2", "m0")],
         ids=["p2", "p1", "p9", "p5"], amount=[10.5, 3.0, 7.25, 1.0], ts=[TS, None, TS + 9, None],
         channel=["app", None, "web", None])
    rels(store, "REFERRED", [("u1", "u2"), ("u3", "u1")], ts=[TS, TS])


def test_adjacent_ordering_and_limits(store: GraphStore) -> None:
    small_shop(store)
    out = store.adjacent("User", ["u2", "u1", "u1", "ghost"], ["USES", "PAID"], "out", 2)
    assert out == [
        Adjacency("u1", "PAID", "out", "Merchant", "m0", "p9"),
        Adjacency("u1", "PAID", "out", "Merchant", "m1", "p1"),
        Adjacency("u1", "USES", "out", "Device", "d1"),
        Adjacency("u1", "USES", "out", "Device", "d2"),
        Adjacency("u2", "PAID", "out", "Merchant", "m0", "p5"),
        Adjacency("u2", "USES", "out", "Device", "d1"),
    ]
    assert store.adjacent("User", ["u1"], ["USES"], "both") == [
        Adjacency("u1", "USES", "out", "Device", d) for d in ("d1", "d2", "d3")
    ]
    assert store.adjacent("Device", ["d1", "d3"], ["USES"], "in", 1) == [
        Adjacency("d1", "USES", "in", "User", "u1"),
        Adjacency("d3", "USES", "in", "User", "u1"),
    ]
    assert store.adjacent("Device", ["d1"], ["USES"], "out") == []
    # the limit holds per node, type and direction
    assert store.adjacent("User", ["u1"], ["REFERRED"], "both", 1) == [
        Adjacency("u1", "REFERRED", "in", "User", "u3"),
        Adjacency("u1", "REFERRED", "out", "User", "u2"),
    ]
    assert store.adjacent("Merchant", ["m1", "m0"], ["PAID"], "in", 10) == [
        Adjacency("m0", "PAID", "in", "User", "u1", "p9"),
        Adjacency("m0", "PAID", "in", "User", "u2", "p5"),
        Adjacency("m1", "PAID", "in", "User", "u1", "p1"),
        Adjacency("m1", "PAID", "in", "User", "u1", "p2"),
    ]
    assert store.adjacent("User", [], ["USES"]) == []


def test_relationships_with_properties(store: GraphStore) -> None:
    small_shop(store)
    assert store.relationships("PAID", ["u1"], "out") == [
        Relationship("PAID", "u1", "m0", "p9", {"amount": 7.25, "ts": TS + 9, "channel": "web"}),
        Relationship("PAID", "u1", "m1", "p1", {"amount": 3.0}),
        Relationship("PAID", "u1", "m1", "p2", {"amount": 10.5, "ts": TS, "channel": "app"}),
    ]
    assert store.relationships("PAID", ["m1", "m0"], "in", limit_per_node=1) == [
        Relationship("PAID", "u1", "m0", "p9", {"amount": 7.25, "ts": TS + 9, "channel": "web"}),
        Relationship("PAID", "u1", "m1", "p1", {"amount": 3.0}),
    ]
    assert store.relationships("USES", ["u2", "u1"], "out", limit_per_node=2) == [
        Relationship("USES", "u1", "d1", "", {}),
        Relationship("USES", "u1", "d2", "", {}),
        Relationship("USES", "u2", "d1", "", {}),
    ]
    assert store.relationships("REFERRED", ["u1"], "in") == [
        Relationship("REFERRED", "u3", "u1", "", {"ts": TS}),
    ]


def test_node_ids_pagination(store: GraphStore) -> None:
    ids = [f"d{i}" for i in (5, 0, 3, 6, 1, 4, 2)]
    nodes(store, "Device", ids)
    pages, after = [], None
    while True:
        page = store.node_ids("Device", after=after, limit=3)
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert pages == [["d0", "d1", "d2"], ["d3", "d4", "d5"], ["d6"]]
    assert store.node_ids("Device", after="d35", limit=10) == ["d4", "d5", "d6"]
    assert store.node_ids("User") == []


def test_counts_cover_every_type(store: GraphStore) -> None:
    small_shop(store)
    nodes(store, "Product", ["bnpl"], kind=["bnpl"])
    rels(store, "HOLDS", [("u1", "bnpl")], limit=[5000.0])
    expected = zero_counts()
    expected["nodes"].update(User=3, Device=3, Merchant=2, Product=1)
    expected["relationships"].update(USES=4, PAID=4, REFERRED=2, HOLDS=1)
    assert store.counts() == expected


# -- exports -------------------------------------------------------------------------------------
def test_export_nodes_arrays_order_and_gaps(store: GraphStore) -> None:
    nodes(store, "User", ["u3", "u1", "u2", "u5", "u4"],
          credit_score=[700, None, 650, float("nan"), 600],
          name=["c", "a", None, "e", "d"], signup_ts=[TS, TS, None, TS, TS],
          is_fraud=[1, 0, None, None, 1])
    chunks = list(store.export_nodes("User", ["credit_score", "name", "signup_ts", "is_fraud"],
                                     batch_size=2))
    assert len(chunks) >= 3
    for chunk in chunks:
        assert set(chunk) == {"id", "credit_score", "name", "signup_ts", "is_fraud"}
        assert chunk["id"].dtype == object and chunk["name"].dtype == object
        assert chunk["credit_score"].dtype == np.float64
        assert chunk["signup_ts"].dtype == np.float64
        assert chunk["is_fraud"].dtype == np.float64
    got = gather(chunks, limit=2)
    assert got["id"] == ["u1", "u2", "u3", "u4", "u5"]
    assert nan_to_none(got["credit_score"]) == [None, 650.0, 700.0, 600.0, None]
    assert got["name"] == ["a", None, "c", "d", "e"]
    assert nan_to_none(got["signup_ts"]) == [float(TS), None, float(TS), float(TS), float(TS)]
    assert nan_to_none(got["is_fraud"]) == [0.0, None, 1.0, 1.0, None]
    assert gather(store.export_nodes("User", [])) == {"id": ["u1", "u2", "u3", "u4", "u5"]}


def test_export_relationships_arrays_and_order(store: GraphStore) -> None:
    nodes(store, "User", ["u1", "u2"])
    nodes(store, "Merchant", ["m0", "m1"])
    nodes(store, "Device", ["d1", "d2"])
    rels(store, "PAID", [("u2", "m1"), ("u1", "m1"), ("u1", "m1"), ("u1", "m0"), ("u1", "m1")],
         ids=["t1", "t3", "t2", "t9", "t0"], amount=[1.0, None, 3.0, 4.0, 5.0],
         channel=["a", "b", None, "d", "e"])
    got = gather(store.export_relationships("PAID", ["amount", "channel"], batch_size=2), 2)
    assert list(zip(got["src"], got["dst"], got["id"])) == [
        ("u1", "m0", "t9"), ("u1", "m1", "t0"), ("u1", "m1", "t2"), ("u1", "m1", "t3"),
        ("u2", "m1", "t1"),
    ]
    assert nan_to_none(got["amount"]) == [4.0, 5.0, 3.0, None, 1.0]
    assert got["channel"] == ["d", "e", None, "b", "a"]
    rels(store, "USES", [("u2", "d1"), ("u1", "d2"), ("u1", "d1")], sessions=[1, None, 3])
    chunks = list(store.export_relationships("USES", ["sessions"], batch_size=2))
    assert all(c["sessions"].dtype == np.float64 and c["src"].dtype == object for c in chunks)
    got = gather(chunks, 2)
    assert got["src"] == ["u1", "u1", "u2"] and got["dst"] == ["d1", "d2", "d1"]
    assert got["id"] == ["", "", ""]
    assert nan_to_none(got["sessions"]) == [3.0, None, 1.0]


def test_export_relationship_columns_is_a_projection_of_export_relationships(
    store: GraphStore,
) -> None:
    nodes(store, "User", ["u1", "u2", "ü3"])
    nodes(store, "Merchant", ["m0", "m1"])
    rels(store, "PAID", [("u2", "m1"), ("u1", "m1"), ("ü3", "m0"), ("u1", "m0"), ("u1", "m1")],
         ids=["t1", "t3", "t2", "t9", "t0"], amount=[1.0, None, 3.0, 4.0, 5.0],
         channel=["a", "b", None, "d", "e"])
    full = gather(store.export_relationships("PAID", ["amount", "channel", "ts"], 2))
    for cols in (["src", "dst"], ["dst", "amount"], ["id", "channel", "src"], ["ts"]):
        chunks = list(store.export_relationship_columns("PAID", cols, batch_size=2))
        assert all(set(c) == set(cols) for c in chunks)
        got = gather(chunks, 2)
        for c in cols:
            assert nan_to_none(got[c]) == nan_to_none(full[c]), c
    with pytest.raises(InvalidBatchError, match="nope"):
        list(store.export_relationship_columns("PAID", ["src", "nope"]))
    assert gather(store.export_relationship_columns("USES", ["src"])) == {}


# -- scores ----------------------------------------------------------------------------------------
def test_write_scores(store: GraphStore) -> None:
    nodes(store, "User", ["s1", "s2"], name=["A", "B"])
    updated = store.write_scores(
        ["s1", "s2", "ghost"],
        {"fraud_risk": [0.1, 0.2, 0.3], "relational_risk": [0.5, float("nan"), 0.7]},
        "gnn-1", TS,
    )
    assert updated == 2
    assert store.get_nodes("User", ["ghost"]) == [None]
    assert props(store, "User", "s1") == {"name": "A", "fraud_risk": 0.1,
                                          "relational_risk": 0.5, "model_version": "gnn-1",
                                          "scored_at": TS}
    assert props(store, "User", "s2") == {"name": "B", "fraud_risk": 0.2,
                                          "model_version": "gnn-1", "scored_at": TS}
    assert store.write_scores(["s1"], {"fraud_risk": np.array([0.9]),
                                       "relational_risk": [None]}, "gnn-2", TS + 1) == 1
    assert props(store, "User", "s1") == {"name": "A", "fraud_risk": 0.9,
                                          "relational_risk": 0.5, "model_version": "gnn-2",
                                          "scored_at": TS + 1}
    with pytest.raises((InvalidBatchError, UnknownTypeError)):
        store.write_scores(["s1"], {"name": [0.5]}, "gnn-3", TS)
    with pytest.raises((InvalidBatchError, UnknownTypeError)):
        store.write_scores(["s1"], {"fraud": [0.5]}, "gnn-3", TS)
    assert props(store, "User", "s1")["model_version"] == "gnn-2"


# -- graph queries on top of the primitives --------------------------------------------------------
def test_self_links_are_stored_but_link_nobody(store: GraphStore) -> None:
    nodes(store, "User", ["u1", "u2"])
    assert rels(store, "REFERRED", [("u1", "u1"), ("u1", "u2")]) == WriteResult(2, [])
    assert store.counts()["relationships"]["REFERRED"] == 2
    assert store.adjacent("User", ["u1"], ["REFERRED"], "both") == [
        Adjacency("u1", "REFERRED", "in", "User", "u1"),
        Adjacency("u1", "REFERRED", "out", "User", "u1"),
        Adjacency("u1", "REFERRED", "out", "User", "u2"),
    ]
    assert queries.linked_accounts(store, "u1") == [
        LinkedAccount("u2", 1, [Link("REFERRED", "User", "u2", "u1")]),
    ]
    assert queries.rings(store, kind="all", min_size=2) == []  # two make no group
    assert queries.ring_of(store, "u1") is None


def test_hub_item_links_nobody(store: GraphStore) -> None:
    users = ["h1", "h2", "h3", "h4"]
    nodes(store, "User", users)
    nodes(store, "Device", ["hub", "family"])
    rels(store, "USES", [(u, "hub") for u in users] + [("h1", "family"), ("h2", "family")])
    assert queries.linked_accounts(store, "h1", max_item_users=3) == [
        LinkedAccount("h2", 1, [Link("USES", "Device", "family", "h1")]),
    ]
    found = queries.linked_accounts(store, "h1", max_item_users=4)
    assert [(a.user_id, a.strength) for a in found] == [("h2", 2), ("h3", 1), ("h4", 1)]
    rings.run_pass(store, rings.RingConfig(max_item_users=3))
    assert queries.rings(store, kind="all") == []
    rings.run_pass(store, rings.RingConfig(max_item_users=4))
    assert [r.members for r in queries.rings(store, kind="all")] == [("h1", "h2", "h3", "h4")]


def test_neighbourhood_caps_a_busy_merchant(store: GraphStore) -> None:
    payers = [f"p{i:02d}" for i in range(30)]
    nodes(store, "User", payers)
    nodes(store, "Merchant", ["mega"])
    rels(store, "PAID", [(p, "mega") for p in reversed(payers)],
         ids=[f"t{i:02d}" for i in range(30)])
    sub = queries.neighbourhood(store, "Merchant", "mega", hops=2, max_nodes=10)
    assert sub.truncated
    assert sub.nodes == (("Merchant", "mega"), *(("User", p) for p in payers[:9]))
    assert len(sub.edges) == 9
    assert all(e.rel_type == "PAID" and e.direction == "out" for e in sub.edges)
    whole = queries.neighbourhood(store, "Merchant", "mega", hops=1, max_nodes=100)
    assert not whole.truncated and len(whole.nodes) == 31 and len(whole.edges) == 30


# -- both stores, one graph ------------------------------------------------------------------------
def load_town(store: GraphStore) -> None:
    """Families sharing devices, a fraud ring, a referral chain, transfers, a hub IP."""
    family = ["fa1", "fa2", "fa3"]
    ring = ["r1", "r2", "r3", "r4", "r5"]
    chain = ["c1", "c2", "c3", "c4"]
    fillers = [f"u{i:03d}" for i in range(57)]
    users = family + ring + chain + fillers + ["lonely"]
    nodes(store, "User", users,
          name=[f"name {u}" for u in users],
          credit_score=[600 + (i * 7) % 300 if i % 5 else None for i in range(len(users))],
          income=[float(1000 * i) if i % 4 else np.nan for i in range(len(users))],
          signup_ts=[TS + i for i in range(len(users))],
          is_fraud=[1 if u in ring else 0 for u in users])
    nodes(store, "Device", ["tablet-A", "rd1", "rd2", "phone-c1"],
          os=["ios", None, "android", None])
    nodes(store, "IP", ["ip-cafe", "ip-home"])
    nodes(store, "BankCard", ["card-X"])
    nodes(store, "Phone", ["+86 138 0000 0000"])
    nodes(store, "Merchant", ["mega", "shop"], category=["retail", "food"])
    nodes(store, "Product", ["bnpl", "cash_loan"], kind=["bnpl", "cash_loan"])
    rels(store, "USES",
         [(u, "tablet-A") for u in family]
         + [("r1", "rd1"), ("r2", "rd1"), ("r3", "rd1"), ("r3", "rd2"), ("r4", "rd2"),
            ("c1", "phone-c1")],
         sessions=list(range(9)))
    rels(store, "HAS_CARD", [("r4", "card-X"), ("r5", "card-X")], since=[TS, TS])
    rels(store, "HAS_PHONE", [("fa1", "+86 138 0000 0000")])
    rels(store, "LOGGED_FROM",
         [(u, "ip-cafe") for u in fillers + ["r1", "fa2", "c3"]]
         + [("fa1", "ip-home"), ("fa2", "ip-home")])
    rels(store, "REFERRED", [("fa1", "c1"), ("c1", "c2"), ("c2", "c3"), ("c3", "c4")],
         ts=[TS, TS + 1, TS + 2, TS + 3])
    rels(store, "TRANSFERRED", [("r5", "r1"), ("r5", "r1"), ("r2", "r4"), ("u000", "u001")],
         ids=["tr1", "tr2", "tr3", "tr4"], amount=[500.0, 700.0, 50.0, 1.0],
         ts=[TS, TS + 10, TS + 20, TS + 30])
    rels(store, "PAID", [(u, "mega") for u in fillers[:40]] + [("r1", "shop"), ("r1", "shop")],
         ids=[f"pay{i}" for i in range(42)], amount=[float(i) for i in range(42)])
    rels(store, "HOLDS", [("fa1", "bnpl"), ("r1", "bnpl"), ("r1", "cash_loan")],
         limit=[5000.0, 2000.0, None], status=["active", "frozen", "active"])


def snapshot(store: GraphStore) -> dict[str, Any]:
    """Everything the queries answer about the town, in comparable form."""
    out: dict[str, Any] = {"counts": store.counts()}
    for user in ["fa1", "fa2", "r1", "r3", "c1", "c3", "u000", "lonely"]:
        for depth in (1, 2):
            out[f"linked {user} {depth}"] = queries.linked_accounts(store, user, depth=depth)
        out[f"ring {user}"] = queries.ring_of(store, user)
        out[f"membership {user}"] = queries.membership(store, user)
    out["rings"] = queries.rings(store)
    out["rings 2"] = queries.rings(store, kind="all", min_size=2)
    out["mega"] = queries.neighbourhood(store, "Merchant", "mega", hops=2, max_nodes=25)
    out["r1"] = queries.neighbourhood(store, "User", "r1", hops=2, max_nodes=200)
    user_props = ["name", "credit_score", "income", "signup_ts", "is_fraud"]
    out["users"] = {k: nan_to_none(v)
                    for k, v in gather(store.export_nodes("User", user_props, 7)).items()}
    for t, rt in REL_TYPES.items():
        out[t] = {k: nan_to_none(v)
                  for k, v in gather(store.export_relationships(t, list(rt.properties), 3)).items()}
    return out


def check_town(snap: dict[str, Any]) -> None:
    """Answers worked out by hand, so the comparison cannot pass on two wrong stores."""
    assert snap["counts"]["nodes"]["User"] == 70
    assert snap["counts"]["relationships"]["LOGGED_FROM"] == 62
    assert [(a.user_id, a.strength) for a in snap["linked fa2 1"]] == [("fa1", 2), ("fa3", 1)]
    assert [a.user_id for a in snap["linked fa1 2"]] == ["fa2", "c1", "fa3", "c2"]
    assert [a.user_id for a in snap["linked r1 1"]] == ["r2", "r3", "r5"]
    assert snap["linked r1 1"][2].links == [Link("TRANSFERRED", "User", "r5", "r1", 2)]
    assert snap["linked lonely 1"] == [] and snap["linked u000 2"] == [
        LinkedAccount("u001", 1, [Link("TRANSFERRED", "User", "u001", "u000", 1)])
    ]
    # Opened together, sharing devices and a card, moving money: the one ring. The
    # family (a tablet, a home IP) is a community; a chain of single referrals (each
    # account brought in the next) is no group: on its own each referral ties a pair,
    # and two users are no group; the cafe's IP (60 users) links nobody.
    assert [(r.id, r.size, r.kind) for r in snap["rings"]] == [("ring:r1", 5, "ring")]
    assert snap["rings"][0].suspicion >= 0.5 and snap["rings"][0].why
    assert snap["ring r3"] == snap["rings"][0]
    assert snap["ring r3"].shared_items[0] == queries.SharedItem(
        "HAS_CARD", "BankCard", "card-X", ("r4", "r5"))
    assert snap["ring lonely"] is None and snap["membership lonely"].exposure == 0
    assert [(r.id, r.kind) for r in snap["rings 2"]] == [
        ("ring:r1", "ring"), ("ring:fa1", "community")]
    assert snap["ring fa1"] == snap["rings 2"][1] and snap["ring fa1"].size == 3
    assert snap["ring c1"] is None and snap["ring c3"] is None
    assert snap["membership r1"].exposure >= snap["rings"][0].suspicion
    assert snap["mega"].truncated and len(snap["mega"].nodes) == 25
    assert snap["users"]["id"][:3] == ["c1", "c2", "c3"]
    assert snap["TRANSFERRED"]["id"] == ["tr3", "tr1", "tr2", "tr4"]


def test_the_store_answers_the_town(store: GraphStore) -> None:
    load_town(store)
    check_town(snapshot(store))


def test_ring_of_agrees_with_rings_for_every_user(store: GraphStore) -> None:
    load_town(store)
    groups = queries.rings(store, kind="all", min_size=1)
    of = {m: r for r in groups for m in r.members}
    assert len(of) == sum(r.size for r in groups)  # each user in one group at most
    users = store.node_ids("User", limit=1000)
    assert len(users) == 70
    for u in users:
        assert queries.ring_of(store, u) == of.get(u), u
    assert queries.rings_of_many(store, users) == {u: of.get(u) for u in users}


@pytest.mark.neo4j
def test_both_stores_answer_the_same(embedded_store: GraphStore, neo4j_store: GraphStore) -> None:
    load_town(embedded_store)
    load_town(neo4j_store)
    embedded, bolt = snapshot(embedded_store), snapshot(neo4j_store)
    assert embedded.keys() == bolt.keys()
    for key in embedded:
        assert embedded[key] == bolt[key], key
    check_town(bolt)


# -- the Neo4j store's own duties: statements, errors, retries ---------------------------------
def test_cypher_statements_come_from_the_model_only() -> None:
    from graph import cypher

    keyed = {t for t, rt in REL_TYPES.items() if rt.keyed}
    tables = {n: v for n, v in vars(cypher).items()
              if n.isupper() and isinstance(v, dict) and n not in ("NODE_TYPES", "REL_TYPES")}
    assert tables
    for name, table in tables.items():
        assert set(table) in (set(NODE_TYPES), set(REL_TYPES), keyed), name
        for statement in (s for v in table.values() for s in (v if isinstance(v, list) else [v])):
            assert "__LABEL__" not in statement and "__TYPE__" not in statement, name
            assert "__SRC__" not in statement and "__DST__" not in statement, name


@pytest.mark.neo4j
def test_neo4j_errors_say_what_is_wrong(bolt_settings: Any) -> None:
    from graph.errors import RiskGraphError, StoreUnavailableError
    from graph.neo4j_store import Neo4jStore, connect
    from tests.bolt_server import free_port

    with pytest.raises(StoreUnavailableError):
        connect("http://127.0.0.1:1", "u", "p")
    down = Neo4jStore(connect(f"bolt://127.0.0.1:{free_port()}", "u", "p"), owns_driver=True)
    with down, pytest.raises(StoreUnavailableError):
        down.ping()
    wrong = Neo4jStore(connect(bolt_settings.uri, bolt_settings.user, "wrong password"),
                       owns_driver=True)
    with wrong, pytest.raises(StoreUnavailableError):
        wrong.ping()
    good = connect(bolt_settings.uri, bolt_settings.user, bolt_settings.password)
    with Neo4jStore(good, database="no_such_database", owns_driver=True) as missing:
        with pytest.raises(StoreUnavailableError):
            missing.ping()
        with pytest.raises(RiskGraphError):
            missing.counts()


@pytest.mark.neo4j
def test_neo4j_concurrent_upserts_of_the_same_keys(neo4j_store: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"c{i:04d}" for i in range(500)]

    def load(k: int) -> int:
        return int(neo4j_store.upsert_nodes("User", {"id": ids, "city": [f"city {k}"] * 500}))

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(load, range(3))) == [500] * 3
    assert neo4j_store.counts()["nodes"]["User"] == 500
    neo4j_store.ping()
