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
