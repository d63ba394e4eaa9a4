"""A tree model on each user's own features, whose score the GNN takes as one more input.

Trees read tabular credit features better than an MLP does; the GNN then spreads that
evidence over the links (a neighbour that *looks* fraudulent, labelled or not). To keep
the input honest, no user's tree score comes from a model that saw its label: every
user belongs to one of ``folds`` folds, fixed by a hash of its id, and fold ``k``'s model
is trained on the training users of the other folds. A user's tree score is the score of
its own fold's model, always: while training (out-of-fold for training users), while
evaluating and while scoring, in batch or on demand. One path, so the test metrics that
training reports are the ones evaluation and production reproduce.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

TREE_PARAMS: dict[str, Any] = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
    "verbose": -1, "num_threads": 2, "deterministic": True, "force_row_wise": True,
}
FOLDS = 5
SMALL_PREDICT = 10_000


def user_folds(ids: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """The fold of each user id: CRC-32 of its UTF-8 bytes modulo ``folds`` (stable
    across processes and machines, unlike ``hash``)."""
    return np.fromiter((zlib.crc32(str(u).encode()) % folds for u in np.asarray(ids).tolist()),
                       np.int64, len(ids))


class OwnTreeScorer:
    """The fold models; ``logit(raw, ids)`` scores each user with its own fold's model."""

    def __init__(self, boosters: list[Any]) -> None:
        self.boosters = boosters

    def __repr__(self) -> str:
        return f"OwnTreeScorer(folds={len(self.boosters)})"

    def logit(self, raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(raw))
        if len(raw) == 0:
            return out
        fold = user_folds(ids, len(self.boosters))
        for k, b in enumerate(self.boosters):
            rows = np.flatnonzero(fold == k)
            if len(rows):
                # one thread for a neighbourhood's few rows: starting OpenMP threads
                # costs more than the trees, and far more when the other core is busy
                threads = 1 if len(rows) < SMALL_PREDICT else TREE_PARAMS["num_threads"]
                out[rows] = b.predict(raw[rows], raw_score=True, num_threads=threads)
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(self.boosters):
            b.save_model(str(directory / f"fold{i}.txt"))

    @classmethod
    def load(cls, directory: Path) -> OwnTreeScorer:
        import lightgbm as lgb

        files = sorted(directory.glob("fold*.txt"), key=lambda f: int(f.stem[4:]))
        return cls([lgb.Booster(model_file=str(f)) for f in files])


def fit_folds(raw: np.ndarray, y: np.ndarray, rows: np.ndarray, ids: np.ndarray, rounds: int,
              seed: int, folds: int = FOLDS, params: dict[str, Any] | None = None
              ) -> tuple[OwnTreeScorer, np.ndarray]:
    """Fold models over the training ``rows`` (fold ``k`` never sees a user of fold
    ``k``) and every user's logit from its own fold's model."""
    import lightgbm as lgb

    fold = user_folds(ids, folds)
    boosters = []
    for k in range(folds):
        a = rows[fold[rows] != k]
        p = {**TREE_PARAMS, **(params or {}), "seed": seed + k}
        boosters.append(lgb.train(p, lgb.Dataset(raw[a], y[a]), num_boost_round=max(rounds, 10)))
    scorer = OwnTreeScorer(boosters)
    return scorer, scorer.logit(raw, ids)
