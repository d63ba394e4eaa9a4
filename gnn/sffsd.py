"""Transaction-level fraud model for S-FFSD: a transaction graph with time-ordered,
risk-aware neighbour statistics, fed to a gradient-boosted tree model.

The transaction graph joins two transactions when they share a source account, a
merchant (target), a location, a type, or a pair of these. For each transaction we
aggregate over its neighbours that happened *strictly earlier*:

* behaviour (no labels): how many there were, in all history and in recent windows,
  their mean and spread of amount, this amount against them, the time since the last
  one, how many distinct merchants/locations/types the source used before;
* risk (labels): how many of those earlier neighbours are known frauds and known
  legitimate, and the time since the last known fraud. A label is *known* only when
  the caller says so (``visible``): in the benchmarks, the labels of training rows.
  Test rows' labels, unlabelled rows and the row's own label never enter any feature.

Everything is computed with numpy prefix sums over rows sorted by (key, time), so the
whole dataset takes a second or two.
"""

from __future__ import annotations

import hashlib
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gnn.errors import GnnError
from gnn.metrics import best_f1_threshold, binary_metrics
from gnn.temporal import GroupIndex, pair_codes

SFFSD_SHA256 = "a2d78b983dfacaae394e4d69ece46ae880fd6bd4761bc5ee759977ba12b185c6"
COLUMNS = ("Time", "Source", "Target", "Amount", "Location", "Type", "Labels")
UNLABELLED = 2

# Keys that make two transactions neighbours. Single columns and pairs.
KEYS: tuple[tuple[str, ...], ...] = (
    ("Source",), ("Target",), ("Location",), ("Type",),
    ("Source", "Target"), ("Source", "Location"), ("Source", "Type"),
    ("Target", "Location"), ("Target", "Type"), ("Location", "Type"),
)
WINDOWS: tuple[int | None, ...] = (None, 1000, 100)  # all history, then recent events
PRIOR_WEIGHT = 5.0  # pseudo-count for the smoothed fraud rate


@dataclass(frozen=True)
class TransactionTable:
    """S-FFSD (or any table with its columns) as integer codes and floats."""

    time: np.ndarray  # int64
    codes: dict[str, np.ndarray]  # Source, Target, Location, Type -> int64 codes
    amount: np.ndarray  # float64
    labels: np.ndarray  # int64: 0, 1, or 2 (unlabelled)
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.time)

    @property
    def labelled(self) -> np.ndarray:
        return self.labels != UNLABELLED


def load_transactions(path: str | Path) -> TransactionTable:
    """Read the S-FFSD CSV. Raises GnnError with what is wrong when it cannot."""
    import csv

    p = Path(path)
    if not p.is_file():
        raise GnnError(f"no S-FFSD file at {p}; pass the path to S-FFSD.csv")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    rows = list(csv.reader(raw.decode("utf-8").splitlines()))
    header, body = rows[0], rows[1:]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GnnError(f"{p} lacks columns {missing}; expected {list(COLUMNS)}")
    col = {c: header.index(c) for c in COLUMNS}
    cols = {c: [r[col[c]] for r in body] for c in COLUMNS}
    codes = {}
    for c in ("Source", "Target", "Location", "Type"):
        _, inv = np.unique(np.array(cols[c], dtype=object).astype(str), return_inverse=True)
        codes[c] = inv.astype(np.int64)
    labels = np.array(cols["Labels"], dtype=np.int64)
    if not np.isin(labels, (0, 1, 2)).all():
        raise GnnError(f"{p}: Labels must be 0, 1 or 2")
    return TransactionTable(
        time=np.array(cols["Time"], dtype=np.int64),
        codes=codes,
        amount=np.array(cols["Amount"], dtype=np.float64),
        labels=labels,
        sha256=digest,
    )


# -- splits -------------------------------------------------------------------------
def published_split(
    labels: np.ndarray, test_size: float, random_state: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The AI4Risk protocol: a stratified random split of *all* row indices; rows with
    label 2 stay in the graph but leave both sides of the evaluation."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test, _, _ = train_test_split(
        index, labels, stratify=labels, test_size=test_size,
        random_state=random_state, shuffle=True,
    )
    return np.sort(train), np.sort(test)


def time_split(times: np.ndarray, test_size: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Earlier rows train, later rows test, cut at the ``1 - test_size`` quantile of time."""
    cut = np.quantile(times, 1.0 - test_size)
    index = np.arange(len(times))
    return index[times < cut], index[times >= cut]


# -- features -----------------------------------------------------------------------
@dataclass
class FeatureMatrix:
    x: np.ndarray
    names: list[str]
    categorical: list[int] = field(default_factory=list)


def transaction_features(table: TransactionTable, visible: np.ndarray) -> FeatureMatrix:
    """Features for every row. ``visible`` marks rows whose label may be used as
    neighbour evidence (for the benchmarks: training rows with label 0 or 1)."""
    visible = np.asarray(visible, dtype=bool) & table.labelled
    n = len(table)
    amt = table.amount
    log_amt = np.log1p(np.maximum(amt, 0.0))
    fraud = (visible & (table.labels == 1)).astype(np.float64)
    legit = (visible & (table.labels == 0)).astype(np.float64)
    base = np.stack([np.ones(n), log_amt, log_amt**2, fraud, legit], axis=1)

    cols: list[np.ndarray] = [amt, log_amt]
    names: list[str] = ["amount", "log_amount"]
    categorical: list[int] = []
    for c in ("Target", "Location", "Type"):
        categorical.append(len(cols))
        cols.append(table.codes[c].astype(np.float64))
        names.append(f"{c.lower()}_code")

    # the fraud rate among visible labels strictly before each row: the prior that
    # smooths each key's rate (a global rate would carry later labels, and a training
    # row's own label, into every row)
    everything = GroupIndex.build(np.zeros(n, np.int64), table.time)
    seen = everything.earlier_sums(np.stack([fraud, legit], axis=1))
    prior = (seen[:, 0] + 1.0) / (seen[:, 0] + seen[:, 1] + 2.0)
    for key in KEYS:
        k = table.codes[key[0]] if len(key) == 1 else pair_codes(*(table.codes[c] for c in key))
        g = GroupIndex.build(k, table.time)
        tag = "_".join(c[:3].lower() for c in key)
        for w in WINDOWS:
            s = g.earlier_sums(base, w)
            cnt, s1, s2, nf, nl = s.T
            wt = "all" if w is None else f"w{w}"
            mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
            var = np.where(cnt > 1, s2 / np.maximum(cnt, 1) - mean**2, np.nan)
            std = np.sqrt(np.maximum(var, 0))
            cols += [cnt, mean, std, log_amt - mean]
            names += [f"{tag}_{wt}_n", f"{tag}_{wt}_mean", f"{tag}_{wt}_std", f"{tag}_{wt}_dev"]
            if len(key) <= 2:
                rate = (nf + PRIOR_WEIGHT * prior) / (nf + nl + PRIOR_WEIGHT)
                cols += [nf, nl, rate]
                names += [f"{tag}_{wt}_fraud", f"{tag}_{wt}_legit", f"{tag}_{wt}_rate"]
        last = g.last_earlier_time()
        last_fraud = g.last_earlier_time(fraud > 0)
        cols += [table.time - last, table.time - last_fraud]
        names += [f"{tag}_gap", f"{tag}_fraud_gap"]
        if key[0] == "Source" and len(key) == 2:
            # first time this source meets this partner: distinct partners so far
            first = (g.earlier_sums(np.ones(n)) == 0).astype(np.float64)
            src = GroupIndex.build(table.codes["Source"], table.time)
            cols.append(src.earlier_sums(first))
            names.append(f"{tag}_distinct")
    return FeatureMatrix(np.stack(cols, axis=1).astype(np.float32), names, categorical)


# -- model --------------------------------------------------------------------------
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 63,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 20,
    "max_cat_to_onehot": 8,
    "verbose": -1,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
}


def fit_lgbm(
    x: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    categorical: list[int],
    seed: int,
    max_rounds: int = 3000,
    params: dict[str, Any] | None = None,
) -> Any:
    """LightGBM with early stopping on the validation rows' average precision."""
    import lightgbm as lgb

    p = {**LGBM_PARAMS, **(params or {}), "seed": seed, "metric": "average_precision"}
    dtrain = lgb.Dataset(x[fit_idx], y[fit_idx], categorical_feature=categorical or "auto",
                         free_raw_data=False)
    dval = lgb.Dataset(x[val_idx], y[val_idx], reference=dtrain)
    return lgb.train(
        p, dtrain, num_boost_round=max_rounds, valid_sets=[dval],
        callbacks=[lgb.early_stopping(150, verbose=False)],
    )


def _validation_rows(
    train: np.ndarray, labels: np.ndarray, times: np.ndarray, by_time: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    lab = train[labels[train] != UNLABELLED]
    if by_time:
        cut = np.quantile(times[lab], 0.85)
        return lab[times[lab] < cut], lab[times[lab] >= cut]
    fit, val = train_test_split(lab, stratify=labels[lab], test_size=0.15, random_state=seed)
    return np.sort(fit), np.sort(val)


def evaluate_protocol(
    table: TransactionTable,
    train: np.ndarray,
    test: np.ndarray,
    by_time: bool,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on ``train`` rows, report metrics on ``test`` rows with labels 0/1.

    Labels visible to the features: training rows only. The validation rows used for
    early stopping are training rows, so their labels are visible to *later* rows, never
    to themselves.
    """
    started = _time.perf_counter()
    labels = table.labels
    visible = np.zeros(len(table), dtype=bool)
    visible[train] = True
    feats = transaction_features(table, visible)
    fit, val = _validation_rows(train, labels, table.time, by_time, seed)
    y = (labels == 1).astype(np.int64)
    booster = fit_lgbm(feats.x, y, fit, val, feats.categorical, seed)
    test_lab = test[labels[test] != UNLABELLED]
    if len(test_lab) == 0:
        raise GnnError("the test split holds no labelled rows")
    p_test = booster.predict(feats.x[test_lab], num_iteration=booster.best_iteration)
    p_val = booster.predict(feats.x[val], num_iteration=booster.best_iteration)
    out = binary_metrics(y[test_lab], p_test)
    t_best = best_f1_threshold(y[val], p_val)
    out["f1_macro_val_threshold"] = binary_metrics(y[test_lab], p_test, t_best)["f1_macro"]
    out["val_threshold"] = t_best
    out["best_iteration"] = int(booster.best_iteration)
    out["n_features"] = len(feats.names)
    out["train_rows_labelled"] = int((labels[train] != UNLABELLED).sum())
    out["seconds"] = round(_time.perf_counter() - started, 2)
    gain = booster.feature_importance("gain")
    top = np.argsort(-gain)[:10]
    out["top_features"] = [feats.names[i] for i in top]
    return out
