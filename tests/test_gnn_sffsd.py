"""Time-ordered neighbour aggregation and the S-FFSD transaction model: correctness
against brute force, and no label leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gnn import sffsd
from gnn.metrics import binary_metrics
from gnn.temporal import GroupIndex


def _brute_sums(keys, times, values, window=None):
    out = np.zeros(len(keys))
    for i in range(len(keys)):
        m = (keys == keys[i]) & (times < times[i])
        if window is not None:
            m &= times >= times[i] - window
        out[i] = values[m].sum()
    return out


def _brute_last(keys, times, mask):
    out = np.full(len(keys), np.nan)
    for i in range(len(keys)):
        m = (keys == keys[i]) & (times < times[i]) & mask
        if m.any():
            out[i] = times[m].max()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_earlier_sums_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    keys = rng.integers(0, 12, n)
    times = rng.integers(0, 100, n)  # with ties: same-time rows are not "earlier"
    values = rng.normal(size=n)
    g = GroupIndex.build(keys, times)
    np.testing.assert_allclose(g.earlier_sums(values), _brute_sums(keys, times, values))
    np.testing.assert_allclose(g.earlier_sums(values, 10),
                               _brute_sums(keys, times, values, 10))
    mask = rng.random(n) < 0.3
    np.testing.assert_array_equal(g.last_earlier_time(mask), _brute_last(keys, times, mask))
    np.testing.assert_array_equal(g.last_earlier_time(),
                                  _brute_last(keys, times, np.ones(n, bool)))


def _table(n: int = 600, seed: int = 0) -> sffsd.TransactionTable:
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 1, 2], size=n, p=[0.5, 0.15, 0.35])
    return sffsd.TransactionTable(
        time=np.arange(n, dtype=np.int64),
        codes={"Source": rng.integers(0, 40, n), "Target": rng.integers(0, 8, n),
               "Location": rng.integers(0, 5, n), "Type": rng.integers(0, 4, n)},
        amount=rng.exponential(50, n),
        labels=labels,
    )


def test_hidden_labels_never_change_features() -> None:
    table = _table()
    train, test = sffsd.published_split(table.labels, 0.3)
    visible = np.zeros(len(table), bool)
    visible[train] = True
    base = sffsd.transaction_features(table, visible).x
    flipped = table.labels.copy()
    lab_test = test[flipped[test] != 2]
    flipped[lab_test] = 1 - flipped[lab_test]
    other = sffsd.TransactionTable(table.time, table.codes, table.amount, flipped)
    np.testing.assert_array_equal(base, sffsd.transaction_features(other, visible).x)


def test_a_visible_label_reaches_only_later_rows() -> None:
    table = _table()
    visible = np.ones(len(table), bool)
    base = sffsd.transaction_features(table, visible).x
    row = int(np.nonzero(table.labels == 1)[0][50])
    flipped = table.labels.copy()
    flipped[row] = 0
    other = sffsd.TransactionTable(table.time, table.codes, table.amount, flipped)
    new = sffsd.transaction_features(other, visible).x
    same = (new == base) | (np.isnan(new) & np.isnan(base))
    changed = np.nonzero(~same.all(axis=1))[0]
    assert len(changed) > 0
    assert changed.min() > row  # never the row itself, never an earlier one


def test_published_split_is_stratified_and_keeps_unlabelled_rows_out_of_metrics() -> None:
    labels = np.array([0] * 700 + [1] * 100 + [2] * 200)
    train, test = sffsd.published_split(labels, 0.3)
    assert len(test) == 300 and len(set(train) & set(test)) == 0
    assert (labels[test] == 1).sum() == 30 and (labels[test] == 2).sum() == 60


def test_time_split_puts_later_rows_in_test() -> None:
    times = np.arange(1000)
    train, test = sffsd.time_split(times, 0.3)
    assert times[train].max() < times[test].min()


def test_model_learns_a_planted_pattern_and_metrics_are_honest() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    src = rng.integers(0, 100, n)
    bad = rng.random(100) < 0.1  # fraudulent sources commit most frauds
    y = np.where(rng.random(n) < np.where(bad[src], 0.7, 0.03), 1, 0)
    labels = np.where(rng.random(n) < 0.3, 2, y)
    table = sffsd.TransactionTable(
        np.arange(n), {"Source": src, "Target": rng.integers(0, 20, n),
                       "Location": rng.integers(0, 5, n), "Type": rng.integers(0, 3, n)},
        rng.exponential(30, n), labels)
    train, test = sffsd.published_split(labels, 0.3)
    out = sffsd.evaluate_protocol(table, train, test, by_time=False, label_free_ablation=True)
    assert out["auc"] > 0.8 and out["label_free"]["auc"] < out["auc"]
    # shuffled scores must not look good: the metric code is not hard-wired
    lab = test[labels[test] != 2]
    shuffled = binary_metrics(labels[lab], rng.random(len(lab)))
    assert shuffled["auc"] < 0.6


def test_time_split_label_features_count_only_labels_known_at_the_cut() -> None:
    table = _table(800, seed=4)
    train, test = sffsd.time_split(table.time, 0.3)
    visible = np.zeros(len(table), bool)
    visible[train] = True
    before = sffsd.stale_label_times(table.time, train, test, seed=0)
    assert (before[test] == table.time[test].min()).all()
    assert (before[train] <= table.time[train]).all()
    feats = sffsd.transaction_features(table, visible, before)
    free = [i for i in range(len(feats.names)) if i not in feats.label_derived]
    for row in np.nonzero(visible & (table.labels != 2))[0][::40]:
        flipped = table.labels.copy()
        flipped[row] = 1 - flipped[row]
        other = sffsd.TransactionTable(table.time, table.codes, table.amount, flipped)
        new = sffsd.transaction_features(other, visible, before).x
        same = (new == feats.x) | (np.isnan(new) & np.isnan(feats.x))
        changed = np.nonzero(~same.all(axis=1))[0]
        # a label reaches only rows scored after it is known, and no label-free column
        assert (before[changed] > table.time[row]).all()
        assert (table.time[changed] > table.time[row]).all()
        assert same[:, free].all()
    # test rows see labels only from the training period
    assert len(np.nonzero(~np.isnan(feats.x[test][:, feats.names.index("sou_all_fraud")]))[0])


def test_flipped_test_labels_leave_test_predictions_unchanged() -> None:
    table = _table(900, seed=5)
    train, test = sffsd.time_split(table.time, 0.3)
    a = sffsd.prepare_split(table, train, test, by_time=True)
    flipped = table.labels.copy()
    lab = test[flipped[test] != 2]
    flipped[lab] = 1 - flipped[lab]
    other = sffsd.TransactionTable(table.time, table.codes, table.amount, flipped)
    b = sffsd.prepare_split(other, train, test, by_time=True)
    np.testing.assert_array_equal(a.features.x, b.features.x)
    ra, rb = sffsd.run_lgbm(a, False), sffsd.run_lgbm(b, False)
    np.testing.assert_array_equal(ra.p_test, rb.p_test)


def test_graph_edges_join_only_strictly_earlier_rows() -> None:
    from gnn import sffsd_gnn

    rng = np.random.default_rng(6)
    keys = rng.integers(0, 10, 200)
    times = rng.integers(0, 60, 200)  # ties: same-time rows are not joined
    src, dst = sffsd_gnn.earlier_edges(keys, times, 3)
    assert (keys[src] == keys[dst]).all() and (times[src] < times[dst]).all()
    for i in range(200):
        earlier = np.nonzero((keys == keys[i]) & (times < times[i]))[0]
        assert (dst == i).sum() == min(3, len(earlier))


def test_graph_model_learns_on_a_small_slice_and_ignores_test_labels() -> None:
    from gnn import sffsd_gnn

    rng = np.random.default_rng(7)
    n = 1500
    src = rng.integers(0, 60, n)
    bad = rng.random(60) < 0.15
    y = np.where(rng.random(n) < np.where(bad[src], 0.8, 0.03), 1, 0)
    labels = np.where(rng.random(n) < 0.2, 2, y)
    table = sffsd.TransactionTable(
        np.arange(n), {"Source": src, "Target": rng.integers(0, 10, n),
                       "Location": rng.integers(0, 4, n), "Type": rng.integers(0, 3, n)},
        rng.exponential(30, n), labels)
    train, test = sffsd.time_split(table.time, 0.3)
    cfg = sffsd_gnn.GnnConfig(hidden=16, epochs=40, patience=40)
    split = sffsd.prepare_split(table, train, test, by_time=True)
    run = sffsd_gnn.run_gnn(table, split, label_free=False, cfg=cfg)
    assert binary_metrics(split.y[split.test], run.p_test)["auc"] > 0.75
    flipped = labels.copy()
    lab = test[labels[test] != 2]
    flipped[lab] = 1 - flipped[lab]
    other = sffsd.TransactionTable(table.time, table.codes, table.amount, flipped)
    again = sffsd_gnn.run_gnn(other, sffsd.prepare_split(other, train, test, by_time=True),
                              label_free=False, cfg=cfg)
    np.testing.assert_allclose(run.p_test, again.p_test, atol=1e-6)


def test_bench_combine_recomputes_targets_over_every_split(tmp_path: Path) -> None:
    import json

    from bench import sffsd as bench

    def part(name: str, ap: float, auc: float = 0.95, f1: float = 0.8) -> dict:
        m = {"auc": auc, "ap": ap, "f1_macro": f1, "val_ap": ap}
        return {"load_average_before": [1.0, 1.0, 1.0], "load_average_after": [2.0, 2.0, 2.0],
                "splits": {name: {"picked_on_validation": "lgbm", "models": {"lgbm": m}}}}

    files = []
    for name, ap in (("gtan", 0.83), ("rgtan", 0.81), ("time", 0.69)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(part(name, ap)))
    out = tmp_path / "all.json"
    assert bench.main(["--combine", *map(str, files), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert list(merged["splits"]) == ["gtan", "rgtan", "time"]
    assert merged["targets"]["gtan"]["met"] and merged["targets"]["rgtan"]["met"]
    assert not merged["targets"]["time"]["met"] and merged["target_met"] is False
    files[2].write_text(json.dumps(part("time", 0.71)))
    bench.main(["--combine", *map(str, files), "--out", str(out)])
    assert json.loads(out.read_text())["target_met"] is True


def test_default_data_path_names_the_shared_copy() -> None:
    p = sffsd.default_data_path()
    assert p.parts[-4:] == ("shared", "data", "s-ffsd", "S-FFSD.csv")
