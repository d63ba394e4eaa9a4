"""Evaluation figures: ROC and precision-recall curves, and score histograms, as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(y: np.ndarray, scores: dict[str, np.ndarray], out_dir: Path) -> list[Path]:
    """One figure per kind, every model in ``scores`` on it; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    ax.legend(loc="lower right")
    files.append(out_dir / "roc.png")
    fig.savefig(files[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label=name)
    ax.axhline(float(np.mean(y)), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    ax.legend(loc="upper right")
    files.append(out_dir / "pr.png")
    fig.savefig(files[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.5), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (name, p) in zip(axes[0], scores.items()):
        ax.hist(p[y == 0], bins=bins, alpha=0.6, label="legitimate", density=True)
        ax.hist(p[y == 1], bins=bins, alpha=0.6, label="fraud", density=True)
        ax.set(title=name, xlabel="score")
        ax.set_yscale("log")
        ax.legend()
    files.append(out_dir / "score_hist.png")
    fig.savefig(files[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return files
