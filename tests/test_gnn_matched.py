"""The graph signals given to lgbm_matched and to the stacked trees, the spend
trajectory features, the fold trees' one path, and the paired bootstrap, on small
hand-made inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from gnn.baselines import matched_aggregates
from gnn.boost import user_folds
from gnn.features import DAY_MS, TRAJECTORY_NAMES, trajectory_features
from gnn.metrics import by_kind, paired_bootstrap_ap_diff, recall_in_top
from gnn.tensors import GraphArrays, add_merchant_links
from gnn.train import label_input


def _graph() -> GraphArrays:
    ids = np.array([f"u{i}" for i in range(5)], dtype=object)
    # u0..u2 pay the small shop m1; u3 pays m2; u4 pays nothing
    paid_user = np.array([0, 1, 2, 3, 0])
    paid = {"amount": np.array([10.0, 20, 30, 40, 50]), "ts": np.zeros(5),
            "channel": np.array(["app"] * 5, dtype=object),
            "merchant": np.array(["m1", "m1", "m1", "m2", "m2"], dtype=object)}
    g = GraphArrays(ids, {"is_fraud": np.array([np.nan, 1, 0, 1, 0])}, paid_user, paid)
    g.item_edges["USES"] = (np.array([3, 4]), np.array([0, 0]))
    g.item_ids["USES"] = np.array(["d1"])
    g.direct_edges["TRANSFERRED"] = (np.array([0, 4]), np.array([4, 0]))
    add_merchant_links(g)
    return g


def test_matched_aggregates_count_neighbours_never_the_user() -> None:
    g = _graph()
    y = g.labels()
    tree = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    x, names = matched_aggregates(g, label_input(y, np.isfinite(y)), tree)
    col = {n: x[:, i] for i, n in enumerate(names)}
    # u0 shares m1 with u1 (fraud) and u2 (legit), m2 with u3 (fraud)
    assert col["PAID_nbr_fraud"][0] == 2 and col["PAID_nbr_legit"][0] == 1
    assert col["PAID_max_fraud_share"][0] == 1.0  # m2: its one other payer is a fraud
    assert col["PAID_nbr_max_tree"][0] == 3.0
    assert col["TRANSFERRED_nbr_legit"][0] == 1 and col["TRANSFERRED_nbr_fraud"][4] == 0
    assert col["USES_nbr_fraud"][4] == 1 and col["USES_nbr_fraud"][3] == 0
    # a user's own label never enters its own row; a neighbour's label does
    for who in range(5):
        flipped = y.copy()
        flipped[who] = 1 - np.nan_to_num(flipped[who])
        x2, _ = matched_aggregates(g, label_input(flipped, np.isfinite(flipped)), tree)
        assert np.array_equal(x2[who], x[who], equal_nan=True)
    y3 = y.copy()
    y3[3] = 0
    x3, _ = matched_aggregates(g, label_input(y3, np.isfinite(y3)), tree)
    assert x3[0, names.index("PAID_nbr_fraud")] == 1


def test_trajectory_features_see_ramps_bursts_and_night_spend() -> None:
    day = DAY_MS
    # user 0: steady monthly spend then a spree in its last 30 days, three payments one
    # night; user 1: one payment at noon
    noon = 12 * 3600_000
    ts = np.array([noon, 60 * day + noon, 120 * day + noon, 200 * day + 3600_000,
                   200 * day + 7200_000, 200 * day + 10_800_000, 50 * day + noon],
                  dtype=np.float64)
    amount = np.array([100, 100, 100, 900, 900, 900, 10.0])
    user = np.array([0, 0, 0, 0, 0, 0, 1])
    merchant = np.array(["a", "b", "c", "s", "s", "s", "a"], dtype=object)
    f = trajectory_features(3, user, amount, ts, merchant)
    col = {n: f[:, i] for i, n in enumerate(TRAJECTORY_NAMES)}
    assert col["paid_ramp_30d"][0] > 2
    assert col["paid_max_per_day"][0] == 3 and col["paid_max_per_day"][1] == 1
    assert col["paid_night_share"][0] == pytest.approx(0.5) and col["paid_night_share"][1] == 0
    assert col["paid_merchants"][0] == 4 and col["paid_top_merchant_share"][0] == 0.5
    assert np.isnan(f[2]).all()  # no payments, nothing known


def test_folds_are_fixed_by_the_id_alone() -> None:
    ids = np.array([f"u{i:05d}" for i in range(2000)], dtype=object)
    a = user_folds(ids)
    assert np.array_equal(a, user_folds(ids[::-1])[::-1])  # order does not matter
    assert set(np.bincount(a).tolist()) and np.bincount(a).min() > 300


def test_paired_bootstrap_and_by_kind() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.05).astype(int)
    good = y + rng.normal(0, 0.6, 4000)
    worse = y + rng.normal(0, 1.2, 4000)
    ci = paired_bootstrap_ap_diff(y, good, worse, resamples=400)
    assert ci["diff"] == pytest.approx(average_precision_score(y, good)
                                       - average_precision_score(y, worse))
    assert 0 < ci["lo"] < ci["diff"] < ci["hi"]
    same = paired_bootstrap_ap_diff(y, good, good, resamples=200)
    assert same["lo"] == same["hi"] == 0
    kinds = np.where(y == 1, np.where(rng.random(4000) < 0.5, "ring", "mule"), None)
    out = by_kind(kinds.astype(object), {"good": good, "worse": worse})
    assert set(out) == {"mule", "ring"}
    assert out["ring"]["good"]["ap"] > out["ring"]["worse"]["ap"]
    assert recall_in_top(y, y.astype(float), 0.5) == 1.0
