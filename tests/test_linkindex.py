"""The embedded store's link index (graph/linkindex.py) answers ``linked_accounts``
exactly as the reference path over the store primitives does, and never from stale data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from graph import linkindex, queries
from graph.embedded import EmbeddedStore
from graph.errors import NotFoundError
from graph.queries import LINK_TYPES, Link
from loaders.load import LoadOptions, load_directory
from loaders.synthetic import GeneratorConfig, generate

TS = 1_700_000_000_000


def same_answers(store: EmbeddedStore, user: str, **kw: object) -> None:
    """The fast path was taken and agrees with the reference."""
    index = linkindex.fresh_index(store)
    assert index is not None, "the index should be fresh here"
    via = queries.check_via(kw.get("via"))  # type: ignore[arg-type]
    fast = index.linked_accounts(user, int(kw.get("depth", 1)), via,  # type: ignore[call-overload]
                                 int(kw.get("max_item_users", 50)), kw.get("limit"))  # type: ignore[call-overload]
    reference = queries.linked_accounts_from_primitives(store, user, **kw)  # type: ignore[arg-type]
    assert fast == reference, (user, kw)
    assert queries.linked_accounts(store, user, **kw) == reference  # type: ignore[arg-type]


# -- a generated ecosystem -------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    root = tmp_path_factory.mktemp("synthetic")
    generate(GeneratorConfig(users=600, seed=11), root / "files", "parquet")
    store = EmbeddedStore(root / "graph")
    store.init()
    load_directory(store, root / "files", LoadOptions(quarantine_dir=root / "quarantine"))
    linkindex.refresh(store)
    yield store
    store.close()


def test_every_user_of_a_generated_graph_gets_the_reference_answer(
    synthetic: EmbeddedStore,
) -> None:
    users = synthetic.node_ids("User", limit=10_000)
    assert len(users) == 600
    for user in users:
        for depth in (1, 2):
            same_answers(synthetic, user, depth=depth)
    assert sum(len(queries.linked_accounts(synthetic, u, depth=2)) for u in users) > 600


def same_links(store: EmbeddedStore, user: str, **kw: object) -> None:
    """One step's links through the index agree with the primitives' (groups come from
    the ring pass, graph/rings.py, not from walks)."""
    index = linkindex.fresh_index(store)
    assert index is not None, "the index should be fresh here"
    via = queries.check_via(kw.get("via"))  # type: ignore[arg-type]
    m = int(kw.get("max_item_users", 50))  # type: ignore[call-overload]
    assert index.user_links([user], via, m) == queries.user_links(store, [user], via, m)


def test_every_users_links_through_the_index_are_the_reference_links(
    synthetic: EmbeddedStore,
) -> None:
    users = synthetic.node_ids("User", limit=10_000)
    for user in users:
        same_links(synthetic, user)
    for user in users[::7]:
        same_links(synthetic, user, via=["USES", "REFERRED"], max_item_users=3)


@pytest.mark.parametrize("kw", [
    {"depth": 3},
    {"depth": 4, "limit": 7},
    {"depth": 2, "max_item_users": 2},  # most shared items become hubs
    {"depth": 2, "max_item_users": 5, "limit": 0},
    {"depth": 2, "via": ["LOGGED_FROM"]},
    {"depth": 3, "via": ["TRANSFERRED", "REFERRED"]},
    {"depth": 2, "via": ["USES", "HAS_CARD"], "limit": 3},
])
def test_options_give_the_reference_answer(synthetic: EmbeddedStore, kw: dict) -> None:
    for user in synthetic.node_ids("User", limit=150)[::3]:
        same_answers(synthetic, user, **kw)


def test_unknown_users_and_odd_limits_take_the_reference_path(synthetic: EmbeddedStore) -> None:
    with pytest.raises(NotFoundError):
        queries.linked_accounts(synthetic, "nobody", depth=2)
    index = linkindex.fresh_index(synthetic)
    assert index is not None and index.user_index("nobody") is None
    user = synthetic.node_ids("User", limit=1)[0]
    assert index.linked_accounts(user, 2, LINK_TYPES, 50, limit=-1) is None
    assert queries.linked_accounts(synthetic, user, depth=2, limit=-1) == \
        queries.linked_accounts_from_primitives(synthetic, user, depth=2, limit=-1)


def test_a_new_process_maps_the_saved_index(synthetic: EmbeddedStore) -> None:
    other = EmbeddedStore(synthetic.path)  # as another process would open it
    other.init()
    try:
        index = linkindex.fresh_index(other)
        assert index is not None
        assert isinstance(index.arrays["users"], np.memmap)
        for user in synthetic.node_ids("User", limit=40):
            same_answers(other, user, depth=2)
    finally:
        other.close()


# -- a hand-made graph with odd ids, caps, hubs and writes -------------------------------
ODD = ["用户-一号", "o'brien", 'say "hi"', "  spaced  ", "emoji 😀", "back\\slash", "a", "b"]


def build_graph(store: EmbeddedStore, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    users = ODD + [f"u{i:03d}" for i in range(40)]
    store.upsert_nodes("User", {"id": users})
    items = {"USES": "Device", "HAS_PHONE": "Phone", "HAS_CARD": "BankCard",
             "LOGGED_FROM": "IP"}
    for rt, label in items.items():
        ids = [f"{label}-{i}" for i in range(12)] + [f"{label}-ü{i}" for i in range(3)]
        store.upsert_nodes(label, {"id": ids})
        pairs = {(users[int(a)], ids[int(b)])
                 for a, b in zip(rng.integers(0, len(users), 90),
                                 np.minimum(rng.zipf(1.5, 90) - 1, len(ids) - 1))}
        store.upsert_relationships(rt, {"src": [p[0] for p in pairs],
                                        "dst": [p[1] for p in pairs]})
    pairs = {(users[int(a)], users[int(b)]) for a, b in rng.integers(0, len(users), (30, 2))}
    store.upsert_relationships("REFERRED", {"src": [p[0] for p in pairs],
                                            "dst": [p[1] for p in pairs],
                                            "ts": [TS] * len(pairs)})
    n = 60
    src = [users[int(i)] for i in rng.integers(0, 12, n)]  # few senders: repeated pairs
    dst = [users[int(i)] for i in rng.integers(0, 12, n)]  # some to themselves
    store.upsert_relationships("TRANSFERRED", {"src": src, "dst": dst,
                                               "id": [f"t{i}" for i in range(n)],
                                               "amount": [1.0] * n})
    return users


@pytest.fixture
def small(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    yield store
    store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_odd_ids_caps_and_hubs(small: EmbeddedStore, seed: int,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    users = build_graph(small, seed)
    linkindex.refresh(small)
    for caps in ((200, 1000), (2, 1)):  # the project's caps, then tiny ones
        for module in (queries, linkindex):
            monkeypatch.setattr(module, "MAX_ITEMS_PER_USER", caps[0])
            monkeypatch.setattr(module, "MAX_DIRECT_LINKS_PER_USER", caps[1])
        for user in users:
            for kw in ({"depth": 1}, {"depth": 2}, {"depth": 3, "max_item_users": 4}):
                same_answers(small, user, **kw)
            same_links(small, user)
            same_links(small, user, max_item_users=4)


def test_writes_make_the_index_stale_and_never_give_stale_answers(
    small: EmbeddedStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linkindex, "RESCAN_S", 0.0)
    users = build_graph(small, 5)
    linkindex.set_background_rebuild(small, False)
    linkindex.refresh(small)
    assert linkindex.fresh_index(small) is not None
    # A new link: the index is stale at once, and the answer has the link.
    small.upsert_nodes("User", {"id": ["late"]})
    assert linkindex.fresh_index(small) is not None  # a new node alone changes no link...
    assert queries.linked_accounts(small, "late") == []  # ...and it answers from SQL
    small.upsert_nodes("IP", {"id": ["ip-late"]})
    small.upsert_relationships("LOGGED_FROM", {"src": ["late", users[0]],
                                               "dst": ["ip-late", "ip-late"]})
    assert linkindex.fresh_index(small) is None
    found = queries.linked_accounts(small, "late")
    assert found == queries.linked_accounts_from_primitives(small, "late")
    assert found[0].links == [Link("LOGGED_FROM", "IP", "ip-late", "late")]
    # Scores, nodes and relationships that link nobody do not touch the generation...
    linkindex.refresh(small)
    small.write_scores([users[0]], {"fraud_risk": [0.5]}, "m1", TS)
    small.upsert_nodes("User", {"id": ["later"]})
    small.upsert_relationships("PAID", {"src": [], "dst": [], "id": []})
    small.upsert_relationships("LOGGED_FROM", {"src": ["nobody"], "dst": ["ip-late"]})
    assert linkindex.fresh_index(small) is not None
    for user in users[:10] + ["late"]:
        same_answers(small, user, depth=2)
    # ...a link's property update does (conservatively), and the answer stays right.
    small.upsert_relationships("LOGGED_FROM", {"src": ["late"], "dst": ["ip-late"],
                                               "last_seen": [TS]})
    assert linkindex.fresh_index(small) is None
    linkindex.refresh(small)
    assert linkindex.fresh_index(small) is not None
    for user in users[:10] + ["late"]:
        same_answers(small, user, depth=2)
        same_links(small, user)
    # Deleting everything is a write too.
    small.clear()
    assert linkindex.fresh_index(small) is None
    with pytest.raises(NotFoundError):
        queries.linked_accounts(small, users[0])


def test_a_stale_index_is_rebuilt_in_the_background(
    small: EmbeddedStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linkindex, "RESCAN_S", 0.0)
    monkeypatch.setattr(linkindex, "SETTLE_S", 0.0)
    users = build_graph(small, 6)
    assert linkindex.fresh_index(small) is None  # never built: never built by a query
    first = linkindex.refresh(small)
    small.upsert_relationships("HAS_CARD", {"src": [users[1]], "dst": ["BankCard-0"]})
    deadline = time.monotonic() + 30
    index = linkindex.fresh_index(small)
    while index is None and time.monotonic() < deadline:
        time.sleep(0.05)
        index = linkindex.fresh_index(small)
    assert index is not None and index.generation[1] > first.generation[1]
    for user in users[:12]:
        same_answers(small, user, depth=2)
    # The old files are gone, the new ones stay.
    assert len(list((small.path / linkindex.DIR_NAME).iterdir())) == 1


def test_a_write_by_another_store_object_makes_the_index_stale(
    small: EmbeddedStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linkindex, "RESCAN_S", 0.0)
    users = build_graph(small, 7)
    linkindex.set_background_rebuild(small, False)
    linkindex.refresh(small)
    other = EmbeddedStore(small.path)  # as another process would open it
    other.init()
    try:
        assert linkindex.fresh_index(other) is not None  # it maps the saved index
        other.upsert_relationships("REFERRED", {"src": [users[2]], "dst": [users[3]],
                                                "ts": [TS]})
        assert linkindex.fresh_index(small) is None
        assert linkindex.fresh_index(other) is None
        found = queries.linked_accounts(small, users[2], depth=2)
        assert found == queries.linked_accounts_from_primitives(small, users[2], depth=2)
        assert users[3] in {a.user_id for a in found}
    finally:
        other.close()


# -- the GNN's whole-graph export reads the linking types from the index ------------------
def _export_both_ways(store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch,
                      max_item_users: int, **kw: object) -> tuple[object, object]:
    """The export with the index and the export from the tables only."""
    from gnn import tensors

    used: list[bool] = []
    usable = tensors._usable_link_index

    def watched(*args: object) -> object:
        index = usable(*args)  # type: ignore[arg-type]
        used.append(index is not None)
        return index

    monkeypatch.setattr(tensors, "_usable_link_index", watched)
    fast = tensors.export_graph(store, max_item_users=max_item_users, **kw)  # type: ignore[arg-type]
    assert used == [True], "the export should have read the link index"
    monkeypatch.setattr(tensors, "_usable_link_index", lambda *args: None)
    tables = tensors.export_graph(store, max_item_users=max_item_users, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(tensors, "_usable_link_index", usable)
    return fast, tables


@pytest.mark.parametrize("max_item_users", [50, 3])
def test_gnn_export_from_the_index_equals_the_export_from_the_tables(
    synthetic: EmbeddedStore, monkeypatch: pytest.MonkeyPatch, max_item_users: int,
) -> None:
    from gnn import tensors
    from tests.gnn_graphs import assert_same_graph

    monkeypatch.setattr(tensors, "COLUMNAR_MIN_USERS", 1)  # as on a large store
    fast, tables = _export_both_ways(synthetic, monkeypatch, max_item_users)
    assert sum(len(e[0]) for e in tables.item_edges.values()) > 1000  # type: ignore[attr-defined]
    assert_same_graph(fast, tables)  # type: ignore[arg-type]
    # The payments and users exported as rows, as a store without Arrow tables does.
    monkeypatch.setattr(tensors, "_columnar", lambda store: False)
    rows, _ = _export_both_ways(synthetic, monkeypatch, max_item_users, batch_size=97)
    assert_same_graph(rows, tables)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2])
def test_gnn_export_from_the_index_with_odd_ids_hubs_and_a_user_added_later(
    small: EmbeddedStore, monkeypatch: pytest.MonkeyPatch, seed: int,
) -> None:
    from gnn import tensors
    from tests.gnn_graphs import assert_same_graph

    monkeypatch.setattr(tensors, "COLUMNAR_MIN_USERS", 1)  # users and payments as Arrow
    users = build_graph(small, seed)
    small.upsert_nodes("User", {"id": users, "signup_ts": [TS] * len(users)})
    small.upsert_nodes("Merchant", {"id": ["m1"]})
    small.upsert_relationships("PAID", {"src": users[:5], "dst": ["m1"] * 5,
                                        "id": [f"p{i}" for i in range(5)],
                                        "amount": [10.0] * 5, "ts": [TS] * 5})
    linkindex.refresh(small)
    # A user written after the index was built: no link, so the index stays current.
    small.upsert_nodes("User", {"id": ["zz-late"], "signup_ts": [TS]})
    for max_item_users in (50, 2):
        fast, tables = _export_both_ways(small, monkeypatch, max_item_users)
        assert_same_graph(fast, tables)  # type: ignore[arg-type]
        assert "zz-late" in fast.user_ids.tolist()  # type: ignore[attr-defined]
