"""The user model on a small graph with rings: tensors, training, the three scores,
on-demand scoring, explanations, model files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from gnn import pipeline, registry
from gnn.explain import explain_user
from gnn.score import prepare, score_and_write, score_arrays, score_user
from gnn.tensors import export_graph, neighbourhood_graph, to_heterodata
from gnn.train import logits
from graph.embedded import EmbeddedStore
from tests.gnn_graphs import assert_same_graph, build

warnings.filterwarnings("ignore", message="Sparse")


@pytest.fixture
def world(gnn_world):
    """The session's small graph with rings and the model trained on it (conftest)."""
    return gnn_world


def test_export_builds_heterodata_with_id_maps(world) -> None:
    store, small, *_ = world
    g = export_graph(store)
    assert g.n_users == len(small.users)
    assert g.user_ids.tolist() == sorted(small.users)
    idx = g.index_of()
    u, i = g.item_edges["USES"]
    ring0 = {idx[m] for m in small.rings[0]}
    dev = int(np.nonzero(g.item_ids["USES"] == small.ring_devices[0])[0][0])
    assert set(u[i == dev].tolist()) == ring0 | {idx[small.tied[0]]}
    data = to_heterodata(g, np.zeros((g.n_users, 3), np.float32),
                         np.zeros((g.n_users, 2), np.float32))
    assert ("user", "uses", "device") in data.edge_types
    assert data["user"].x.shape == (g.n_users, 3)


def test_columnar_export_equals_the_export_of_rows(world, monkeypatch) -> None:
    """The embedded store's Arrow tables give the arrays the row exports give (the path
    of every other store), with and without a time cut."""
    import gnn.tensors as tensors

    store, *_ = world
    cut = float(np.median(export_graph(store).paid["ts"]))
    assert not tensors._columnar(store)  # a small graph reads faster as rows
    monkeypatch.setattr(tensors, "COLUMNAR_MIN_USERS", 1)
    assert tensors._columnar(store)
    columnar = [export_graph(store), export_graph(store, as_of_ms=cut)]
    monkeypatch.setattr(tensors, "_columnar", lambda store: False)
    for got, as_of in zip(columnar, (None, cut)):
        assert_same_graph(got, export_graph(store, as_of_ms=as_of, batch_size=97))


def test_training_reports_model_and_baselines(world) -> None:
    *_, metrics, _ = world
    for name in ("model",):
        assert set(metrics[name]) >= {"auc", "ap", "f1_macro", "recall_at_1pct_fpr"}
    assert set(metrics["baselines"]) == {"lgbm_own", "lgbm_graph", "lgbm_matched"}
    # every model had the same tuning budget, each trial's validation AP reported
    budget = {len(t["trials"]) for t in metrics["tuning"].values()}
    assert set(metrics["tuning"]) == {"lgbm_own", "lgbm_graph", "lgbm_matched", "gnn"}
    assert len(budget) == 1 and budget.pop() >= 2
    for name in metrics["baselines"]:
        ci = metrics["ap_diff_ci"][name]
        assert ci["lo"] - 1e-9 <= ci["diff"] <= ci["hi"] + 1e-9
    assert metrics["selection"]["shipped"] in ("gnn_fraud_head", "graph_trees")
    # rings are easy to see on this graph: the model must find them
    assert metrics["model"]["auc"] > 0.9


def test_clean_user_tied_to_ring_has_high_relational_low_own_risk(world) -> None:
    store, small, _, _, _, model = world
    g = export_graph(store)
    s = score_arrays(model, g)
    idx = g.index_of()
    clean = [idx[u] for u, y in small.labels.items() if y == 0]
    for u in small.tied:
        i = idx[u]
        assert s["relational_risk"][i] > 0.5
        assert s["own_risk"][i] < 0.2
        assert s["relational_risk"][i] > np.quantile(s["relational_risk"][clean], 0.95)
    assert s["relational_risk"][idx[small.loner]] < 0.2


def test_own_label_never_reaches_own_scores(world) -> None:
    store, small, _, _, _, model = world
    victim = small.rings[3][0]
    before = score_user(model, store, victim)
    store.upsert_nodes("User", {"id": [victim], "is_fraud": [0]})
    try:
        after = score_user(model, store, victim)
    finally:
        store.upsert_nodes("User", {"id": [victim], "is_fraud": [1]})
    for k in before:
        assert after[k] == pytest.approx(before[k], abs=1e-9)
    # while the ring-mates' known labels do reach it (compared as logits: the calibrated
    # probability of a ring member is saturated)
    mates = small.rings[3][1:]

    def rel_logit() -> float:
        g = neighbourhood_graph(store, victim)
        return float(logits(model.net, prepare(model, g))["relational"][0])

    known = rel_logit()
    store.upsert_nodes("User", {"id": mates, "is_fraud": [0] * len(mates)})
    try:
        cleared = rel_logit()
    finally:
        store.upsert_nodes("User", {"id": mates, "is_fraud": [1] * len(mates)})
    assert abs(cleared - known) > 0.1


def test_on_demand_equals_batch(world) -> None:
    store, small, root, version, _, model = world
    pipeline.score_all(store, root / "models", version)
    some = small.users[::17] + small.tied + [small.loner, small.rings[0][0]]
    nodes = store.get_nodes("User", some)
    for u, n in zip(some, nodes):
        s = score_user(model, store, u)
        assert n is not None and n.properties["model_version"] == version
        for k, v in s.items():
            assert abs(v - n.properties[k]) < 1e-4, (u, k)


def _built(store: EmbeddedStore) -> EmbeddedStore:
    store.init()
    build(store)
    return store


def test_scores_written_beside_the_model_are_the_batch_scores(tmp_path: Path, world) -> None:
    model = world[-1]
    store = _built(EmbeddedStore(tmp_path / "graph"))
    g = export_graph(store)
    expected = score_arrays(model, g)
    scores, written, seconds = score_and_write(store, model, g, "v-side", 1234,
                                               batch_size=120, block_rows=50)
    assert written == g.n_users and set(seconds) == {
        "prepare_seconds", "predict_seconds", "write_wait_seconds"}
    for k, v in expected.items():  # other blocks, other float32 sums: equal to 1e-6
        np.testing.assert_allclose(scores[k], v, rtol=0, atol=1e-6)
    nodes = store.get_nodes("User", g.user_ids.tolist())
    for i, n in enumerate(nodes):
        assert n is not None and n.properties["model_version"] == "v-side"
        assert n.properties["scored_at"] == 1234
        for k in expected:
            assert n.properties[k] == pytest.approx(scores[k][i], abs=1e-12)
    store.close()


class _FailingWrites(EmbeddedStore):
    """A store whose second score write fails, as a full disk would make it."""

    calls = 0

    def write_scores(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2:
            raise OSError("disk full")
        return super().write_scores(*args, **kwargs)


def test_a_failed_score_write_stops_the_writes_and_is_raised(tmp_path: Path, world) -> None:
    model = world[-1]
    store = _built(_FailingWrites(tmp_path / "graph"))
    g = export_graph(store)
    with pytest.raises(OSError, match="disk full"):
        score_and_write(store, model, g, "v-fail", 1234, batch_size=100, block_rows=100)
    versions = [n.properties.get("model_version") for n in
                store.get_nodes("User", g.user_ids.tolist()) if n is not None]
    assert versions[:100] == ["v-fail"] * 100  # the first batch was written
    assert "v-fail" not in versions[200:]  # nothing after the failed one
    store.close()


def test_new_link_to_ring_device_raises_relational_risk(tmp_path: Path, world) -> None:
    _, small, _, _, _, model = world
    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    build(store)
    before = score_user(model, store, small.loner)
    store.upsert_relationships("USES", {"src": [small.loner], "dst": [small.ring_devices[4]]})
    after = score_user(model, store, small.loner)
    assert after["relational_risk"] > before["relational_risk"] + 0.2
    assert after["own_risk"] == pytest.approx(before["own_risk"], abs=1e-9)
    g = neighbourhood_graph(store, small.loner)
    assert set(small.rings[4]) <= set(g.user_ids.tolist())
    store.close()


def test_explanation_names_the_ring(world) -> None:
    store, small, _, _, _, model = world
    out = explain_user(model, store, small.tied[0], top=5)
    top = out["contributions"][0]
    assert top.id in set(small.rings[0]) | {small.ring_devices[0]}
    assert top.relational_risk_drop > 0
    assert out["neighbours"] == len(small.rings[0])


def test_model_directory_round_trip(world) -> None:
    store, small, root, version, _, model = world
    d = registry.resolve(root / "models", version)
    for f in ("weights.pt", "model.json", "fingerprint.json", "metrics.json", "split.json"):
        assert (d / f).is_file()
    _, again = registry.load(root / "models", version)
    g = export_graph(store)
    a, b = score_arrays(model, g), score_arrays(again, g)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-7)
    assert registry.load(root / "models", "latest")[0] == version


def test_time_split_trains_on_the_past(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    build(store, seed=1)
    version, metrics = pipeline.train_users(store, tmp_path / "models", "time", seed=0,
                                            max_epochs=60)
    t = metrics["training"]
    assert t["split"] == "time" and t["cut_ms"] is not None
    _, model = registry.load(tmp_path / "models", version)
    g = export_graph(store)
    signup = dict(zip(g.user_ids.tolist(), g.users["signup_ts"].tolist()))
    assert max(signup[u] for u in model.split["fit"] + model.split["val"]) < t["cut_ms"]
    assert min(signup[u] for u in model.split["test"]) >= t["cut_ms"]
    store.close()
