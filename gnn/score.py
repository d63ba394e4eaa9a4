"""Scoring users with a trained model: the whole graph in batch, or one user on demand.

The three scores, each a calibrated probability (Platt scaling on validation users):

* ``fraud_risk``: that the account is fraudulent, from everything the model sees;
* ``own_risk``: the same question answered from the user's own features only;
* ``relational_risk``: the same question answered from the user's links only: the
  users it shares a (non-hub) device, phone, card, IP or small merchant with, and the
  users it referred or transferred to or from, with their features and known labels.
  Nothing of the user itself enters it (features, label, or a path back to it).

While scoring, every label known in the store is visible as neighbour evidence. Both
paths run ``score_arrays`` on arrays built by the same functions (gnn.tensors), with the
scaling statistics and reference time saved in the model, so a user scored on demand
gets the batch score on an unchanged graph.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from gnn.models import Operators, build_operators, set_operators
from gnn.tensors import GraphArrays, neighbourhood_graph, to_heterodata
from gnn.train import UserModel, calibrated, label_input, user_inputs
from graph.store import GraphStore

SCORE_NAMES = {"fraud": "fraud_risk", "relational": "relational_risk", "own": "own_risk"}
WRITE_BATCH = 50_000


def prepare(model: UserModel, g: GraphArrays, operators: bool = False) -> Any:
    """The model's input for ``g``. With ``operators`` the whole-graph propagation
    operators are built too, in a thread while the features are encoded: the sparse
    products and sorts release the GIL, and the two took 7.9 s one after the other at
    1M users, 4.7 s side by side."""
    with ThreadPoolExecutor(1) if operators else nullcontext() as pool:
        ops = pool.submit(graph_operators, g) if pool is not None else None
        y = g.labels()
        label_in = label_input(y, np.isfinite(y))
        x, stack = user_inputs(model, g, label_in)
        data = to_heterodata(g, x, label_in)
        if stack is not None:
            data["user"].stack_in = torch.from_numpy(stack)
        if ops is not None:
            set_operators(data, ops.result())
    return data


def graph_operators(g: GraphArrays) -> Operators:
    """``propagation_operators`` of ``to_heterodata(g, ...)``, from ``g``'s edges."""
    items = {rt: (u, i, len(g.item_ids[rt])) for rt, (u, i) in g.item_edges.items()}
    return build_operators(g.n_users, items, dict(g.direct_edges))


def _calibrated(model: UserModel, heads: dict[str, Any]) -> dict[str, np.ndarray]:
    return {SCORE_NAMES[h]: calibrated(heads[h].numpy().astype(np.float64),
                                       model.calibration[h]) for h in SCORE_NAMES}


def score_arrays(model: UserModel, g: GraphArrays) -> dict[str, np.ndarray]:
    """fraud_risk, relational_risk and own_risk for every user of ``g``."""
    torch.set_num_threads(model.config.threads)
    return _calibrated(model, model.net.predict(prepare(model, g, operators=True)))


def score_and_write(store: GraphStore, model: UserModel, g: GraphArrays, version: str,
                    scored_at_ms: int | None = None, batch_size: int = WRITE_BATCH,
                    block_rows: int = 8192
                    ) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
    """``score_arrays`` and ``write_scores`` at once: each batch of users is written by
    a thread while the model computes the next (the store's driver waits on SQLite or
    the socket without the GIL, the model's kernels run without it). Returns the
    scores, the number of users written and the seconds spent preparing, predicting
    and waiting for the last writes. Batches are written in order; the first failed
    write stops the rest and is raised, earlier batches stay written (as with
    ``write_scores``)."""
    at = int(time.time() * 1000) if scored_at_ms is None else scored_at_ms
    torch.set_num_threads(model.config.threads)
    started = time.perf_counter()
    data = prepare(model, g, operators=True)
    prepared = time.perf_counter()
    scores = {name: np.empty(g.n_users) for name in SCORE_NAMES.values()}
    writes: list[Future[int]] = []
    failed = threading.Event()

    def write(sl: slice) -> int:  # in order, on the one writer thread
        if failed.is_set():
            return 0  # a batch before this one failed: write nothing after it
        try:
            return _write_slice(store, g, scores, sl, version, at)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(1, thread_name_prefix="score-writer") as writer:
        try:
            written_to = 0
            for s, e, heads in model.net.predict_blocks(data, block_rows):
                for name, v in _calibrated(model, heads).items():
                    scores[name][s:e] = v
                if e - written_to >= batch_size or e == g.n_users:
                    if failed.is_set():
                        break  # result() below raises the failure
                    writes.append(writer.submit(write, slice(written_to, e)))
                    written_to = e
            predicted = time.perf_counter()
            written = sum(f.result() for f in writes)
        except BaseException:
            writer.shutdown(wait=True, cancel_futures=True)
            raise
    return scores, written, {
        "prepare_seconds": prepared - started, "predict_seconds": predicted - prepared,
        "write_wait_seconds": time.perf_counter() - predicted,
    }


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
    return sum(_write_slice(store, g, scores, sl, version, at)
               for sl in _batches(g.n_users, batch_size))


def _write_slice(store: GraphStore, g: GraphArrays, scores: dict[str, np.ndarray],
                 sl: slice, version: str, at: int) -> int:
    block: dict[str, Any] = {k: v[sl] for k, v in scores.items()}  # arrays: both stores
    return store.write_scores(g.user_ids[sl].tolist(), block, version, at)  # take them
