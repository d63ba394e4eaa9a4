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

from dataclasses import dataclass, field
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


LGBM_BASE: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 31,
    "min_data_in_leaf": 20, "feature_fraction": 0.8, "bagging_fraction": 0.8,
    "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "num_threads": 2,
    "deterministic": True, "force_row_wise": True, "metric": "average_precision",
}
# The search space of every LightGBM model; the first trial is always LGBM_BASE.
LGBM_SPACE: dict[str, list[Any]] = {
    "learning_rate": [0.03, 0.05, 0.1], "num_leaves": [15, 31, 63],
    "min_data_in_leaf": [10, 20, 50], "feature_fraction": [0.6, 0.8, 1.0],
    "lambda_l2": [0.0, 1.0, 10.0],
}


def sample_trials(space: dict[str, list[Any]], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` settings: the defaults (empty), then random draws from ``space`` with
    a generator seeded by ``seed``: the same budget and draws for every model."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = [{}]
    for _ in range(max(trials, 1) - 1):
        out.append({k: v[int(rng.integers(len(v)))] for k, v in space.items()})
    return out


@dataclass
class TreeFit:
    """The chosen LightGBM: test scores, rounds and settings, and every trial's
    validation AP."""

    pred: np.ndarray
    rounds: int
    params: dict[str, Any]
    tuning: dict[str, Any] = field(default_factory=dict)


def fit_predict_lgbm(
    x: np.ndarray, y: np.ndarray, fit: np.ndarray, val: np.ndarray, test: np.ndarray,
    seed: int, trials: int = 1,
) -> TreeFit:
    """LightGBM with early stopping on validation AP, ``trials`` settings tried
    (``sample_trials``), the best on validation AP kept; scores for ``test``."""
    import lightgbm as lgb

    # one binned dataset for every trial: no pre-filtering by the first trial's
    # min_data_in_leaf
    dtrain = lgb.Dataset(x[fit], y[fit], free_raw_data=False,
                         params={"feature_pre_filter": False})
    dval = lgb.Dataset(x[val], y[val], reference=dtrain)
    best: tuple[float, Any, dict[str, Any], int] | None = None
    record = []
    for i, extra in enumerate(sample_trials(LGBM_SPACE, trials, seed)):
        params = {**LGBM_BASE, **extra, "seed": seed}
        booster = lgb.train(params, dtrain, num_boost_round=2000, valid_sets=[dval],
                            callbacks=[lgb.early_stopping(100, verbose=False)])
        rounds = int(booster.best_iteration) or 100
        ap = float(booster.best_score["valid_0"]["average_precision"])
        record.append({"trial": i, "params": extra, "val_ap": ap, "rounds": rounds})
        if best is None or ap > best[0]:
            best = (ap, booster, params, rounds)
    assert best is not None
    _, booster, params, rounds = best
    pred = np.asarray(booster.predict(x[test], num_iteration=rounds))
    chosen = int(np.argmax([float(r["val_ap"]) for r in record]))  # type: ignore[arg-type]
    return TreeFit(pred, rounds, params, {"trials": record, "chosen": chosen})


def matched_aggregates(g: GraphArrays, label_in: np.ndarray, tree_logit: np.ndarray
                       ) -> tuple[np.ndarray, list[str]]:
    """What the network sees of a user's links, as columns for a tree, per relationship
    type (shared items, merchants through PAID, direct links): known-fraud and
    known-legitimate neighbours, the largest fraud share among the user's items (each
    item's other holders; a merchant's other payers), the mean and largest own-tree
    logit of the neighbours (out-of-fold for training users, gnn.boost), the fewest
    other holders of any of its items, and, for PAID, the share of the user's payments
    made at those (non-hub) merchants. The user itself never enters its own row."""
    n = g.n_users
    fraud = label_in[:, 0].astype(np.float64)
    legit = label_in[:, 1].astype(np.float64)
    t = np.asarray(tree_logit, np.float64)
    cols: list[np.ndarray] = []
    names: list[str] = []

    def per_user_max(u: np.ndarray, v: np.ndarray, empty: float = 0.0) -> np.ndarray:
        out = np.full(n, -np.inf)
        np.maximum.at(out, u, v)
        return np.where(np.isfinite(out), out, empty)

    for rt, (u, d) in g.item_edges.items():
        n_items = len(g.item_ids[rt])
        deg = np.bincount(d, minlength=n_items).astype(np.float64)
        others = deg[d] - 1
        f_other = np.bincount(d, weights=fraud[u], minlength=n_items)[d] - fraud[u]
        l_other = np.bincount(d, weights=legit[u], minlength=n_items)[d] - legit[u]
        t_other = np.bincount(d, weights=t[u], minlength=n_items)[d] - t[u]
        has = others > 0
        share = np.where(has, f_other / np.maximum(others, 1), 0.0)
        t_mean = np.where(has, t_other / np.maximum(others, 1), np.nan)
        cols += [
            np.bincount(u, weights=f_other, minlength=n),
            np.bincount(u, weights=l_other, minlength=n),
            per_user_max(u, share),
            np.bincount(u, weights=np.nan_to_num(t_mean), minlength=n)
            / np.maximum(np.bincount(u, weights=has.astype(np.float64), minlength=n), 1),
            per_user_max(u[has], t_mean[has], np.nan),
            np.log1p(-per_user_max(u[has], -others[has], np.nan)),
        ]
        names += [f"{rt}_nbr_fraud", f"{rt}_nbr_legit", f"{rt}_max_fraud_share",
                  f"{rt}_nbr_mean_tree", f"{rt}_nbr_max_tree", f"{rt}_min_other_holders"]
        if rt == "PAID":
            at_small = _payments_at_kept_merchants(g, n)
            cols.append(at_small / np.maximum(np.bincount(g.paid_user, minlength=n), 1))
            names.append("PAID_share_at_small_merchants")
    for rt, (a, b) in g.direct_edges.items():
        cnt = np.bincount(a, minlength=n).astype(np.float64)
        cols += [
            np.bincount(a, weights=fraud[b], minlength=n),
            np.bincount(a, weights=legit[b], minlength=n),
            np.where(cnt > 0, np.bincount(a, weights=t[b], minlength=n) / np.maximum(cnt, 1),
                     np.nan),
            per_user_max(a, t[b], np.nan),
        ]
        names += [f"{rt}_nbr_fraud", f"{rt}_nbr_legit", f"{rt}_nbr_mean_tree",
                  f"{rt}_nbr_max_tree"]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0)), names


def _payments_at_kept_merchants(g: GraphArrays, n: int) -> np.ndarray:
    """Per user, how many of its payments went to non-hub merchants (``item_ids``)."""
    import pandas as pd

    kept = pd.Index(np.asarray(g.item_ids["PAID"], dtype=object))
    hit = pd.Series(np.asarray(g.paid["merchant"], dtype=object)).isin(kept).to_numpy()
    return np.bincount(g.paid_user, weights=hit.astype(np.float64), minlength=n)
