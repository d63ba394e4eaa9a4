"""Scoring users with a trained model: the whole graph in batch, or one user on demand.

The three scores, each a calibrated probability (Platt scaling on validation users):

* ``fraud_risk``: that the account is fraudulent, from everything the model sees;
* ``own_risk``: the same question answered from the user's own features only;
* ``relational_risk``: the same question answered from the user's links only: the
  users it shares a (non-hub) device, phone, card or IP with, and the users it referred
  or transferred to or from, with their features and known labels. Nothing of the user
  itself enters it (features, label, or a path back to it).

While scoring, every label known in the store is visible as neighbour evidence. Both
paths run ``score_arrays`` on arrays built by the same functions (gnn.tensors), with the
scaling statistics and reference time saved in the model, so a user scored on demand
gets the batch score on an unchanged graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from gnn.features import encode
from gnn.tensors import GraphArrays, neighbourhood_graph, to_heterodata
from gnn.train import UserModel, calibrated, label_input, raw_features, with_tree
from graph.store import GraphStore

SCORE_NAMES = {"fraud": "fraud_risk", "relational": "relational_risk", "own": "own_risk"}
WRITE_BATCH = 50_000


def prepare(model: UserModel, g: GraphArrays) -> Any:
    raw, names = raw_features(g, model.spec.reference_ms, model.spec.channels)
    if model.tree is not None:
        raw, names = with_tree(raw, names, model.tree.logit(raw))
    y = g.labels()
    return to_heterodata(g, encode(raw, model.spec), label_input(y, np.isfinite(y)))


def score_arrays(model: UserModel, g: GraphArrays) -> dict[str, np.ndarray]:
    """fraud_risk, relational_risk and own_risk for every user of ``g``."""
    torch.set_num_threads(model.config.threads)
    out = model.net.predict(prepare(model, g))
    return {SCORE_NAMES[h]: calibrated(out[h].numpy().astype(np.float64), model.calibration[h])
            for h in SCORE_NAMES}


def score_target(model: UserModel, g: GraphArrays, target: int = 0) -> dict[str, float]:
    """The scores of one user of ``g``, computing only its row."""
    torch.set_num_threads(model.config.threads)
    with torch.no_grad():
        out = model.net(prepare(model, g), target=target)
    return {SCORE_NAMES[h]: float(calibrated(out[h].numpy().astype(np.float64),
                                             model.calibration[h])[0]) for h in SCORE_NAMES}


def score_user(model: UserModel, store: GraphStore, user_id: str) -> dict[str, float]:
    """One user's scores from its neighbourhood, read from the store now."""
    g = neighbourhood_graph(store, user_id, model.config.max_item_users)
    return score_target(model, g, 0)


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def write_scores(store: GraphStore, g: GraphArrays, scores: dict[str, np.ndarray],
                 version: str, scored_at_ms: int | None = None,
                 batch_size: int = WRITE_BATCH) -> int:
    """Write the scores back to User nodes, in batches, with the model version."""
    at = int(time.time() * 1000) if scored_at_ms is None else scored_at_ms
    written = 0
    for sl in _batches(g.n_users, batch_size):
        written += store.write_scores(
            g.user_ids[sl].tolist(), {k: v[sl].tolist() for k, v in scores.items()},
            version, at,
        )
    return written
