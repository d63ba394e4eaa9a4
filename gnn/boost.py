"""A tree model on each user's own features, whose score the GNN takes as one more input.

Trees read tabular credit features better than an MLP does; the GNN then spreads that
evidence over the links (a neighbour that *looks* fraudulent, labelled or not). To keep
the input honest, a training user's tree score is out-of-fold: it comes from a model
that never saw that user's label. Every other user gets the mean of the fold models'
logits, at training and at scoring time alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TREE_PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "num_threads": 2, "deterministic": True, "force_row_wise": True,
}


class OwnTreeScorer:
    """The fold models; ``logit(raw)`` is their mean raw score."""

    def __init__(self, boosters: list[Any]) -> None:
        self.boosters = boosters

    def __repr__(self) -> str:
        return f"OwnTreeScorer(folds={len(self.boosters)})"

    def logit(self, raw: np.ndarray) -> np.ndarray:
        if len(raw) == 0:
            return np.zeros(0)
        return np.mean([b.predict(raw, raw_score=True) for b in self.boosters], axis=0)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(self.boosters):
            b.save_model(str(directory / f"fold{i}.txt"))

    @classmethod
    def load(cls, directory: Path) -> OwnTreeScorer:
        import lightgbm as lgb

        files = sorted(directory.glob("fold*.txt"))
        return cls([lgb.Booster(model_file=str(f)) for f in files])


def fit_out_of_fold(
    raw: np.ndarray, y: np.ndarray, rows: np.ndarray, rounds: int, seed: int, folds: int = 5
) -> tuple[OwnTreeScorer, np.ndarray]:
    """Fold models over ``rows`` and per-user logits: out-of-fold for ``rows``, the fold
    mean for everyone else."""
    import lightgbm as lgb
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    boosters = []
    oof = np.zeros(len(rows))
    for k, (a, b) in enumerate(skf.split(rows, y[rows])):
        params = {**TREE_PARAMS, "seed": seed + k}
        bst = lgb.train(params, lgb.Dataset(raw[rows[a]], y[rows[a]]),
                        num_boost_round=max(rounds, 10))
        oof[b] = bst.predict(raw[rows[b]], raw_score=True)
        boosters.append(bst)
    scorer = OwnTreeScorer(boosters)
    out = scorer.logit(raw)
    out[rows] = oof
    return scorer, out
