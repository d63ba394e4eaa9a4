"""Classification metrics reported for every model: the same four numbers everywhere."""

from __future__ import annotations

from typing import Any

import numpy as np

from gnn.errors import GnnError


def recall_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float = 0.01) -> float:
    """The largest true-positive rate reached with a false-positive rate <= ``max_fpr``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """AUC, average precision, macro F1 of ``p >= threshold`` and recall at 1% FPR."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if len(y) != len(p):
        raise GnnError(f"{len(y)} labels but {len(p)} scores; pass one score per label")
    if len(np.unique(y)) < 2:
        raise GnnError(
            "evaluation needs both classes among the labelled rows; "
            "label more users or use a larger test split"
        )
    return {
        "auc": float(roc_auc_score(y, p)),
        "ap": float(average_precision_score(y, p)),
        "f1_macro": float(f1_score(y, (p >= threshold).astype(int), average="macro")),
        "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01),
        "n": int(len(y)),
        "positives": int(y.sum()),
    }


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold that maximises macro F1 on (validation) data."""
    from sklearn.metrics import f1_score

    qs = np.unique(np.quantile(p, np.linspace(0.5, 0.995, 100)))
    best, best_t = -1.0, 0.5
    for t in qs:
        f = f1_score(y, (p >= t).astype(int), average="macro")
        if f > best:
            best, best_t = f, float(t)
    return best_t


def recall_in_top(y: np.ndarray, p: np.ndarray, share: float = 0.01) -> float:
    """The share of positives among the ``share`` highest scores (ties broken by
    position, as a reviewer working down a sorted list would)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return float("nan")
    k = max(1, int(np.ceil(share * len(p))))
    top = np.argsort(-np.asarray(p, np.float64), kind="stable")[:k]
    return float(y[top].sum() / y.sum())


def by_kind(kinds: np.ndarray, scores: dict[str, np.ndarray], share: float = 0.01
            ) -> dict[str, dict[str, dict[str, float]]]:
    """Per fraud kind (ground truth, not the label), for each scorer: AP of the kind's
    users against clean users (no kind), and the kind's recall within the top
    ``share`` of scores over every user given."""
    from sklearn.metrics import average_precision_score

    k = np.array(["" if v is None or v != v else str(v) for v in kinds.tolist()], dtype=object)
    clean = k == ""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in sorted(set(k.tolist()) - {""}):
        mine = k == kind
        rows = mine | clean
        out[kind] = {"users": {"n": float(mine.sum())}} | {
            name: {"ap": float(average_precision_score(mine[rows], p[rows])),
                   f"recall_top_{share:.0%}": recall_in_top(mine, p, share)}
            for name, p in scores.items()
        }
    return out


def _ap_weighted(order: np.ndarray, ends: np.ndarray, y: np.ndarray, w: np.ndarray
                 ) -> np.ndarray:
    """Average precision for each row of weights ``w`` (resamples x n), with the rows'
    order by descending score and the last position of each run of tied scores fixed:
    the step formula of sklearn's average_precision_score, with weights."""
    yw = w[:, order] * y[order]
    tp = np.cumsum(yw, axis=1)[:, ends]
    seen = np.cumsum(w[:, order], axis=1)[:, ends]
    pos = tp[:, -1:]
    prec = tp / np.maximum(seen, 1e-12)
    rec_step = np.diff(np.concatenate([np.zeros((len(w), 1)), tp], axis=1), axis=1)
    ap: np.ndarray = (rec_step * prec).sum(axis=1) / np.maximum(pos[:, 0], 1e-12)
    return ap


def paired_bootstrap_ap_diff(y: np.ndarray, model: np.ndarray, baseline: np.ndarray,
                             resamples: int = 1000, seed: int = 0, level: float = 0.95
                             ) -> dict[str, float]:
    """AP(model) - AP(baseline) and its paired-bootstrap ``level`` interval: the same
    resampled users for both in each of ``resamples`` draws (seeded)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(np.float64)
    rng = np.random.default_rng(seed)
    n = len(y)
    prep = []
    for p in (np.asarray(model, np.float64), np.asarray(baseline, np.float64)):
        order = np.argsort(-p, kind="stable")
        sp = p[order]
        ends = np.flatnonzero(np.append(sp[1:] != sp[:-1], True))
        prep.append((order, ends))
    diffs = []
    for start in range(0, resamples, 100):
        b = min(100, resamples - start)
        w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(b)]
                     ).astype(np.float64)
        diffs.append(_ap_weighted(*prep[0], y, w) - _ap_weighted(*prep[1], y, w))
    d = np.concatenate(diffs)
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(average_precision_score(y, model) - average_precision_score(y, baseline)),
            "lo": float(lo), "hi": float(hi), "resamples": resamples, "level": level}
