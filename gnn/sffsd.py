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
DATA_RELATIVE = Path("shared") / "data" / "s-ffsd" / "S-FFSD.csv"


def default_data_path() -> Path:
    """``shared/data/s-ffsd/S-FFSD.csv`` beside the project root, or beside any folder
    above it (a git worktree may sit one level deeper than the main checkout); the first
    that exists, else the one beside the project root."""
    root = Path(__file__).resolve().parents[1]
    for folder in root.parents:
        if (folder / DATA_RELATIVE).is_file():
            return folder / DATA_RELATIVE
    return root.parent / DATA_RELATIVE

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
        known: np.ndarray = self.labels != UNLABELLED
        return known


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
    label_derived: list[int] = field(default_factory=list)

    def label_free(self) -> FeatureMatrix:
        """The same matrix without any column computed from labels (the ablation)."""
        keep = [i for i in range(len(self.names)) if i not in set(self.label_derived)]
        remap = {old: new for new, old in enumerate(keep)}
        return FeatureMatrix(
            self.x[:, keep], [self.names[i] for i in keep],
            [remap[i] for i in self.categorical if i in remap], [],
        )


def stale_label_times(
    times: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Per row, the time before which labels are known when that row is scored, for a
    split by time.

    A test row is scored with the labels known at the cut (the training period's), so
    its newest label evidence is as old as the row's distance from the cut. A training
    row gets the same staleness, drawn uniformly from ``[0, test period length]``: its
    label features then look like a test row's (counting labels only up to a random
    point before it), instead of always seeing every label up to the row itself.
    """
    cut = float(times[test].min()) if len(test) else float(times.max()) + 1.0
    span = float(times.max()) - cut + 1.0
    out = times.astype(np.float64).copy()
    out[test] = cut
    rng = np.random.default_rng(seed)
    out[train] = times[train] - rng.uniform(0.0, span, len(train))
    return out


class _KeyOrder:
    """A GroupIndex plus the sorted positions of arbitrary per-row time bounds."""

    def __init__(self, g: GroupIndex) -> None:
        self.g = g
        self.tmin = int(g.times.min())
        self.span = int(g.times.max()) - self.tmin + 2
        self.comp = g.keys[g.order] * self.span + (g.sorted_time - self.tmin)

    def position_before(self, bound: np.ndarray) -> np.ndarray:
        """Per row: the first sorted position of its key at time >= ``bound`` (clamped
        to its key's block and to strictly earlier rows)."""
        lo = np.clip(np.ceil(bound) - self.tmin, 0, self.span - 1).astype(np.int64)
        pos = np.searchsorted(self.comp, self.g.keys * self.span + lo, side="left")
        clamped: np.ndarray = np.clip(pos, self.g.start, self.g.end)
        return clamped

    def sums(self, values: np.ndarray, before: np.ndarray, window: int | None) -> np.ndarray:
        """Sums of ``values`` over earlier same-key rows with time < ``before`` (and
        within ``window`` of the row's own time)."""
        v = values[:, None] if values.ndim == 1 else values
        csum = np.zeros((len(v) + 1, v.shape[1]))
        np.cumsum(v[self.g.order], axis=0, out=csum[1:])
        hi = self.position_before(before)
        lo = self.g.start if window is None else self.g.window_start(window)
        out: np.ndarray = csum[hi] - csum[np.minimum(lo, hi)]
        return out[:, 0] if values.ndim == 1 else out

    def last_time(self, mask: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Time of the latest earlier same-key row with ``mask`` and time < ``before``."""
        sorted_mask = np.asarray(mask, bool)[self.g.order]
        idx = np.where(sorted_mask, np.arange(len(sorted_mask)), -1)
        run = np.maximum.accumulate(idx) if len(idx) else idx
        hi = self.position_before(before)
        last = run[np.clip(hi - 1, 0, None)]
        ok = (hi > self.g.start) & (last >= self.g.start)
        out = np.full(len(mask), np.nan)
        out[ok] = self.g.sorted_time[last[ok]]
        return out


def transaction_features(
    table: TransactionTable, visible: np.ndarray, label_before: np.ndarray | None = None
) -> FeatureMatrix:
    """Features for every row. ``visible`` marks rows whose label may be used as
    neighbour evidence (for the benchmarks: training rows with label 0 or 1);
    ``label_before`` (per row, default its own time) bounds the time of the labelled
    rows it may count, for splits where labels arrive only up to a cut. Columns that
    use no label never depend on either."""
    visible = np.asarray(visible, dtype=bool) & table.labelled
    n = len(table)
    before = table.time.astype(np.float64) if label_before is None else np.minimum(
        np.asarray(label_before, np.float64), table.time)
    amt = table.amount
    log_amt = np.log1p(np.maximum(amt, 0.0))
    fraud = (visible & (table.labels == 1)).astype(np.float64)
    legit = (visible & (table.labels == 0)).astype(np.float64)
    base = np.stack([np.ones(n), log_amt, log_amt**2], axis=1)
    risk = np.stack([fraud, legit], axis=1)

    cols: list[np.ndarray] = [amt, log_amt]
    names: list[str] = ["amount", "log_amount"]
    categorical: list[int] = []
    label_derived: list[int] = []

    def add(values: list[np.ndarray], labels: list[str], from_labels: bool) -> None:
        if from_labels:
            label_derived.extend(range(len(cols), len(cols) + len(values)))
        cols.extend(values)
        names.extend(labels)

    for c in ("Target", "Location", "Type"):
        categorical.append(len(cols))
        add([table.codes[c].astype(np.float64)], [f"{c.lower()}_code"], False)

    # the fraud rate among the labels a row may count: the prior that smooths each
    # key's rate (a global rate would carry later labels, and a training row's own
    # label, into every row)
    everything = _KeyOrder(GroupIndex.build(np.zeros(n, np.int64), table.time))
    seen = everything.sums(risk, before, None)
    prior = (seen[:, 0] + 1.0) / (seen[:, 0] + seen[:, 1] + 2.0)
    add([prior, seen[:, 0] + seen[:, 1]], ["prior_rate", "labels_known"], True)
    for key in KEYS:
        k = table.codes[key[0]] if len(key) == 1 else pair_codes(*(table.codes[c] for c in key))
        g = GroupIndex.build(k, table.time)
        ko = _KeyOrder(g)
        tag = "_".join(c[:3].lower() for c in key)
        for w in WINDOWS:
            cnt, s1, s2 = g.earlier_sums(base, w).T
            wt = "all" if w is None else f"w{w}"
            mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
            var = np.where(cnt > 1, s2 / np.maximum(cnt, 1) - mean**2, np.nan)
            std = np.sqrt(np.maximum(var, 0))
            add([cnt, mean, std, log_amt - mean],
                [f"{tag}_{wt}_n", f"{tag}_{wt}_mean", f"{tag}_{wt}_std", f"{tag}_{wt}_dev"],
                False)
            if len(key) <= 2:
                nf, nl = ko.sums(risk, before, w).T
                rate = (nf + PRIOR_WEIGHT * prior) / (nf + nl + PRIOR_WEIGHT)
                add([nf, nl, rate],
                    [f"{tag}_{wt}_fraud", f"{tag}_{wt}_legit", f"{tag}_{wt}_rate"], True)
        add([table.time - g.last_earlier_time()], [f"{tag}_gap"], False)
        add([table.time - ko.last_time(fraud > 0, before)], [f"{tag}_fraud_gap"], True)
        if key[0] == "Source" and len(key) == 2:
            # first time this source meets this partner: distinct partners so far
            first = (g.earlier_sums(np.ones(n)) == 0).astype(np.float64)
            src = GroupIndex.build(table.codes["Source"], table.time)
            add([src.earlier_sums(first)], [f"{tag}_distinct"], False)
    return FeatureMatrix(np.stack(cols, axis=1).astype(np.float32), names, categorical,
                         label_derived)


# -- model --------------------------------------------------------------------------
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
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


SMALL_FIT_ROWS = 5_000  # fits below this many rows use one thread


def fit_lgbm(
    x: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    categorical: list[int],
    seed: int,
    max_rounds: int = 2000,
    params: dict[str, Any] | None = None,
) -> Any:
    """LightGBM with early stopping on the validation rows' average precision."""
    import lightgbm as lgb

    p = {**LGBM_PARAMS, **(params or {}), "seed": seed, "metric": "average_precision"}
    if len(fit_idx) < SMALL_FIT_ROWS:
        # a second thread saves nothing on a few thousand rows, and when the other core
        # is busy its OpenMP waits made the tests' fits 3 to 20 times slower (6 to 45 s
        # against 2.3 s for two fits on 2,100 rows)
        p["num_threads"] = 1
    dtrain = lgb.Dataset(x[fit_idx], y[fit_idx], categorical_feature=categorical or "auto",
                         free_raw_data=False)
    dval = lgb.Dataset(x[val_idx], y[val_idx], reference=dtrain)
    return lgb.train(
        p, dtrain, num_boost_round=max_rounds, valid_sets=[dval],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )


def validation_rows(
    train: np.ndarray, labels: np.ndarray, times: np.ndarray, by_time: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labelled training rows split into fitting and validation rows: the latest 15% by
    time for a time split, a stratified 15% otherwise."""
    from sklearn.model_selection import train_test_split

    lab = train[labels[train] != UNLABELLED]
    if by_time:
        cut = np.quantile(times[lab], 0.85)
        return lab[times[lab] < cut], lab[times[lab] >= cut]
    fit, val = train_test_split(lab, stratify=labels[lab], test_size=0.15, random_state=seed)
    return np.sort(fit), np.sort(val)


@dataclass
class SplitData:
    """Everything one protocol run needs: features built with the labels the split
    allows, the rows of each role and the targets."""

    features: FeatureMatrix
    y: np.ndarray  # 1 fraud, 0 otherwise (unlabelled rows are never fitted or scored)
    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray  # labelled test rows only
    train: np.ndarray  # every training row, labelled or not
    label_before: np.ndarray | None


def prepare_split(
    table: TransactionTable, train: np.ndarray, test: np.ndarray, by_time: bool, seed: int = 0
) -> SplitData:
    """Features and roles for one split. Labels visible to the features: training rows
    only; for a split by time, only those before each row's label bound
    (:func:`stale_label_times`), the same rule for training and test rows."""
    labels = table.labels
    visible = np.zeros(len(table), dtype=bool)
    visible[train] = True
    before = stale_label_times(table.time, train, test, seed) if by_time else None
    feats = transaction_features(table, visible, before)
    fit, val = validation_rows(train, labels, table.time, by_time, seed)
    test_lab = test[labels[test] != UNLABELLED]
    if len(test_lab) == 0:
        raise GnnError("the test split holds no labelled rows")
    y = (labels == 1).astype(np.int64)
    return SplitData(feats, y, fit, val, test_lab, np.asarray(train), before)


@dataclass
class ModelRun:
    """One model's scores on the validation and test rows, and what it was."""

    name: str
    p_val: np.ndarray
    p_test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def run_lgbm(split: SplitData, label_free: bool, seed: int = 0) -> ModelRun:
    feats = split.features.label_free() if label_free else split.features
    booster = fit_lgbm(feats.x, split.y, split.fit, split.val, feats.categorical, seed)
    it = booster.best_iteration
    gain = booster.feature_importance("gain")
    return ModelRun(
        "lgbm_label_free" if label_free else "lgbm",
        booster.predict(feats.x[split.val], num_iteration=it),
        booster.predict(feats.x[split.test], num_iteration=it),
        {"best_iteration": int(it), "n_features": len(feats.names),
         "top_features": [feats.names[i] for i in np.argsort(-gain)[:8]]},
    )


def report(split: SplitData, run: ModelRun) -> dict[str, Any]:
    """Test metrics (macro F1 at 0.5, as the papers report, and at the threshold picked
    on validation), validation AP."""
    y_test, y_val = split.y[split.test], split.y[split.val]
    out = binary_metrics(y_test, run.p_test)
    t_best = best_f1_threshold(y_val, run.p_val)
    out["f1_macro_val_threshold"] = binary_metrics(y_test, run.p_test, t_best)["f1_macro"]
    out["val_threshold"] = t_best
    out["val_ap"] = binary_metrics(y_val, run.p_val)["ap"]
    return out | run.info


def paired_bootstrap_ap(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, reps: int = 1000, seed: int = 0
) -> dict[str, float]:
    """AP(a) - AP(b) on the same rows, and its 95% paired-bootstrap interval."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(int)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(reps):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(average_precision_score(y[i], p_a[i]) - average_precision_score(y[i], p_b[i]))
    d = np.asarray(diffs)
    return {
        "diff": float(average_precision_score(y, p_a) - average_precision_score(y, p_b)),
        "ci_low": float(np.quantile(d, 0.025)),
        "ci_high": float(np.quantile(d, 0.975)),
        "reps": len(d),
    }


def evaluate_protocol(
    table: TransactionTable,
    train: np.ndarray,
    test: np.ndarray,
    by_time: bool,
    seed: int = 0,
    label_free_ablation: bool = False,
) -> dict[str, Any]:
    """LightGBM on one split: test metrics at the top level; with
    ``label_free_ablation``, the same model without label-derived features under
    ``label_free``."""
    started = _time.perf_counter()
    split = prepare_split(table, train, test, by_time, seed)
    out = report(split, run_lgbm(split, False, seed))
    if label_free_ablation:
        out["label_free"] = report(split, run_lgbm(split, True, seed))
    out["train_rows_labelled"] = int((table.labels[train] != UNLABELLED).sum())
    out["seconds"] = round(_time.perf_counter() - started, 2)
    return out
