"""The embedded store's whole-table reads (``node_table``, ``relationship_table``): the
same values as its row exports, typed by the schema, with or without the ADBC driver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import graph.embedded as embedded
from graph.embedded import EmbeddedStore

TS = 1_700_000_000_000


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = EmbeddedStore(tmp_path / "graph")
    s.init()
    yield s
    s.close()


def _fill(store: EmbeddedStore, n: int = 3000) -> list[str]:
    """Users whose scores and fraud times are missing for the first 2,500 rows, then
    present: a reader that guessed types from the first rows would call them integers
    (or nothing) and then meet floats."""
    ids = [f"u{i:05d}" for i in range(n)] + ["用户-1", "zz-o'brien"]  # in id order
    late = [None] * 2500 + [TS + i for i in range(len(ids) - 2500)]
    store.upsert_nodes("User", {
        "id": ids,
        "credit_score": [600 + i % 200 for i in range(len(ids))],
        "income": [None if i % 7 == 0 else 1000.5 * i for i in range(len(ids))],
        "fraud_ts": late,
        "lifecycle": [None] * 2900 + ["active"] * (len(ids) - 2900),
        "repayment_history": ["00-1"] * len(ids),
    })
    store.write_scores(ids[2600:], {"fraud_risk": [0.25] * (len(ids) - 2600)}, "m1", TS)
    store.upsert_nodes("Merchant", {"id": ["m1", "m2"]})
    store.upsert_relationships("PAID", {
        "src": ids[:500] * 2, "dst": ["m1"] * 500 + ["m2"] * 500,
        "id": [f"p{i}" for i in range(1000)],
        "amount": [None] * 600 + [float(i) for i in range(400)],
        "ts": [TS + i for i in range(1000)],
        "channel": [None] * 700 + ["app"] * 300,
    })
    return ids


PROPS = ["credit_score", "income", "fraud_ts", "lifecycle", "repayment_history",
         "fraud_risk", "model_version"]


def _rows(store: EmbeddedStore, label: str, props: list[str]) -> dict[str, np.ndarray]:
    chunks = list(store.export_nodes(label, props, 1000))
    return {k: np.concatenate([c[k] for c in chunks]) for k in ["id", *props]}


def _same(table, rows: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    assert table.column_names == list(rows)
    for name, expected in rows.items():
        got = np.asarray(table.column(name).to_numpy(zero_copy_only=False))
        if expected.dtype == object:
            assert got.tolist() == expected.tolist(), name
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_node_table_has_the_values_of_export_nodes(store: EmbeddedStore,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    ids = _fill(store)
    with caplog.at_level("INFO", logger="graph.embedded"):
        table = store.node_table("User", PROPS)
    assert "reading rows" not in caplog.text  # the driver read it
    assert table.num_rows == len(ids)
    assert str(table.schema.field("fraud_ts").type) == "double"
    assert str(table.schema.field("lifecycle").type) == "string"
    _same(table, _rows(store, "User", PROPS))


def test_relationship_table_has_the_values_of_the_column_export(
    store: EmbeddedStore, caplog: pytest.LogCaptureFixture,
) -> None:
    _fill(store)
    cols = ["src", "dst", "id", "amount", "ts", "channel"]
    with caplog.at_level("INFO", logger="graph.embedded"):
        table = store.relationship_table("PAID", cols)
    assert "reading rows" not in caplog.text
    chunks = list(store.export_relationship_columns("PAID", cols, 300))
    _same(table, {k: np.concatenate([c[k] for c in chunks]) for k in cols})
    assert table.column("amount").null_count == 600


def test_empty_tables_and_bad_columns(store: EmbeddedStore) -> None:
    table = store.node_table("User", ["income", "lifecycle"])
    assert table.num_rows == 0 and str(table.schema.field("lifecycle").type) == "string"
    assert store.relationship_table("USES", ["src", "dst"]).num_rows == 0
    with pytest.raises(embedded.InvalidBatchError, match="nope"):
        store.node_table("User", ["nope"])
    with pytest.raises(embedded.InvalidBatchError, match="nope"):
        store.relationship_table("PAID", ["src", "nope"])


def test_without_the_driver_the_rows_answer_the_same(store: EmbeddedStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(store)
    with_driver = store.node_table("User", PROPS)
    paid = store.relationship_table("PAID", ["src", "amount", "channel"])

    def no_driver(*args: object) -> None:
        raise ImportError("No module named 'adbc_driver_sqlite'")

    monkeypatch.setattr(embedded, "_adbc_read", no_driver)
    assert store.node_table("User", PROPS).equals(with_driver)
    assert store.relationship_table("PAID", ["src", "amount", "channel"]).equals(paid)


def test_reading_tables_leaves_the_store_working(store: EmbeddedStore) -> None:
    """The driver reads in another process: in this one its own copy of SQLite would
    release the store's locks when it closes and remove the WAL under the store."""
    ids = _fill(store)
    for i in range(3):
        assert store.node_table("User", ["income"]).num_rows == len(ids)
        assert store.relationship_table("PAID", ["src"]).num_rows == 1000
        store.write_scores(ids[:100], {"fraud_risk": [0.1 * i] * 100}, f"m{i}", TS)
    node = store.get_nodes("User", ids[:1])[0]
    assert node is not None and node.properties["model_version"] == "m2"
    # What another connection sees: the writes, on a sound file.
    other = sqlite3.connect(store.db_file)
    try:
        assert other.execute('SELECT model_version FROM "n_User" WHERE id = ?',
                             (ids[0],)).fetchone() == ("m2",)
        assert other.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        other.close()
    store.close()
    again = EmbeddedStore(store.path)
    again.init()
    node = again.get_nodes("User", ids[:1])[0]
    assert node is not None and node.properties["model_version"] == "m2"
    again.close()


def test_several_tables_in_two_readers_are_each_table(store: EmbeddedStore) -> None:
    _fill(store)
    requests = [("node", "User", PROPS), ("relationship", "PAID", ["src", "amount"]),
                ("relationship", "USES", ["src", "dst"]), ("node", "Merchant", [])]
    together = store.tables(requests, processes=2)
    assert [t.num_rows for t in together] == [3002, 1000, 0, 2]
    alone = [store.node_table("User", PROPS), store.relationship_table("PAID", ["src", "amount"]),
             store.relationship_table("USES", ["src", "dst"]), store.node_table("Merchant", [])]
    for a, b in zip(together, alone):
        assert a.equals(b)
    with pytest.raises(embedded.InvalidBatchError, match="node or relationship"):
        store.tables([("edge", "PAID", ["src"])])
