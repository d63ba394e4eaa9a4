"""Honest baselines, trained in the same run as the GNN on the same split:

* ``lgbm_own``: LightGBM on the user's own (unscaled) features;
* ``lgbm_graph``: the same plus graph aggregates: per relationship type the number of
  shared (non-hub) items and of co-holders, direct-link degrees, and over all linked
  users the mean of a few of their features and the counts of *visible* known-fraud and
  known-legitimate labels. The user itself is excluded from its own aggregates (the
  diagonal is removed), so its label cannot reach its features; labels are visible
  under the same rule as for the GNN (training users only, when evaluating).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gnn.tensors import GraphArrays

NEIGHBOUR_STAT_FEATURES = ("credit_score", "utilisation", "overdue_count", "log_account_age_days",
                           "paid_n", "months_on_book")


def linked_matrix(g: GraphArrays) -> Any:
    """Sparse user x user matrix, 1 where two users share an item or a direct link."""
    import scipy.sparse as sp

    n = g.n_users
    total = sp.csr_matrix((n, n), dtype=np.float32)
    for rt, (u, i) in g.item_edges.items():
        if len(u) == 0:
            continue
        a = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n, len(g.item_ids[rt])))
        total = total + a @ a.T
    for a_, b_ in g.direct_edges.values():
        if len(a_):
            total = total + sp.csr_matrix((np.ones(len(a_), np.float32), (a_, b_)), shape=(n, n))
    total = total.tolil()
    total.setdiag(0)
    total = total.tocsr()
    total.eliminate_zeros()
    total.data[:] = 1.0
    return total


def graph_aggregates(
    g: GraphArrays, raw: np.ndarray, names: list[str], label_in: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Structural counts and neighbour statistics, one row per user."""
    n = g.n_users
    cols: list[np.ndarray] = []
    out_names: list[str] = []
    for rt, (u, i) in g.item_edges.items():
        deg_item = np.bincount(i, minlength=len(g.item_ids[rt])).astype(np.float64)
        shared = deg_item[i] > 1
        cols.append(np.bincount(u, minlength=n).astype(np.float64))
        cols.append(np.bincount(u, weights=shared.astype(np.float64), minlength=n))
        cols.append(np.bincount(u, weights=deg_item[i] - 1, minlength=n))
        out_names += [f"{rt}_items", f"{rt}_shared_items", f"{rt}_co_holders"]
    for rt, (a, _) in g.direct_edges.items():
        cols.append(np.bincount(a, minlength=n).astype(np.float64))
        out_names.append(f"{rt}_degree")
    m = linked_matrix(g)
    deg = np.asarray(m.sum(axis=1)).ravel()
    cols.append(deg)
    out_names.append("linked_users")
    for f in NEIGHBOUR_STAT_FEATURES:
        if f not in names:
            continue
        v = raw[:, names.index(f)]
        ok = np.isfinite(v)
        s = m @ np.where(ok, v, 0.0)
        c = m @ ok.astype(np.float64)
        cols.append(np.where(c > 0, s / np.maximum(c, 1), np.nan))
        out_names.append(f"nbr_mean_{f}")
    fraud = m @ label_in[:, 0].astype(np.float64)
    legit = m @ label_in[:, 1].astype(np.float64)
    cols += [fraud, legit, (fraud + 0.1) / (fraud + legit + 1.0)]
    out_names += ["nbr_known_fraud", "nbr_known_legit", "nbr_fraud_share"]
    return np.stack(cols, axis=1), out_names


def fit_predict_lgbm(
    x: np.ndarray, y: np.ndarray, fit: np.ndarray, val: np.ndarray, test: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, int]:
    """LightGBM with early stopping on validation AP; scores for ``test`` and the
    number of rounds kept."""
    import lightgbm as lgb

    params = {
        "objective": "binary", "learning_rate": 0.05, "num_leaves": 31,
        "min_data_in_leaf": 20, "feature_fraction": 0.8, "bagging_fraction": 0.8,
        "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "num_threads": 2,
        "deterministic": True, "force_row_wise": True, "seed": seed,
        "metric": "average_precision",
    }
    dtrain = lgb.Dataset(x[fit], y[fit])
    dval = lgb.Dataset(x[val], y[val], reference=dtrain)
    booster = lgb.train(params, dtrain, num_boost_round=2000, valid_sets=[dval],
                        callbacks=[lgb.early_stopping(100, verbose=False)])
    best = int(booster.best_iteration) or 100
    return np.asarray(booster.predict(x[test], num_iteration=best)), best
