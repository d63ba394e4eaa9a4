"""The fraud model as the API uses it: rescore one user on demand, explain a score.

A runtime's ``ModelLoader`` loads the model once per version, and again when a newer
model is trained; scoring one user reads only its neighbourhood from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.errors import ServiceUnavailableError
from graph.errors import RiskGraphError
from graph.store import GraphStore

log = logging.getLogger("riskgraph.api")

Loaded = tuple[str, Any]  # (model version, model)


def _latest_name(models_dir: Path) -> str:
    from gnn import registry
    from gnn.errors import GnnError

    try:
        return registry.resolve(models_dir, None).name
    except GnnError as exc:
        # The caller is told what to do, not where the server keeps its files.
        log.warning("no model to score with", extra={"error": str(exc)})
        raise ServiceUnavailableError(
            "no trained model is installed; train one (riskgraph train) and try again"
        ) from None


def _load(models_dir: Path, version: str) -> Loaded:
    from gnn import registry

    return registry.load(models_dir, version)


class ModelLoader:
    """The latest trained model of one model directory, owned by a runtime: loaded when
    first asked for, and loaded again when a newer version is installed. ``latest`` and
    ``load`` are the registry's unless a test gives others."""

    def __init__(self, models_dir: Path,
                 latest: Callable[[Path], str] = _latest_name,
                 load: Callable[[Path, str], Loaded] = _load) -> None:
        self.models_dir = models_dir
        self._latest = latest
        self._load = load
        self._lock = threading.Lock()
        self._have: Loaded | None = None

    @property
    def loaded(self) -> Loaded | None:
        """What is loaded now, without looking for a newer version."""
        return self._have

    def current(self) -> Loaded:
        """(version, model) of the latest model; ServiceUnavailableError when none is
        trained."""
        latest = self._latest(self.models_dir)
        with self._lock:
            if self._have is None or self._have[0] != latest:
                self._have = self._load(self.models_dir, latest)
            return self._have


def warm_up(models: ModelLoader, store: GraphStore) -> str | None:
    """Load the latest model and score one user with it (nothing is written), so that
    the server reports ready only when ``rescoreUser`` answers in normal time: the model
    load and the first forward pass cost seconds, which the first caller used to pay.
    The version loaded, or None when there is no trained model yet (the model's fields
    then answer UNAVAILABLE, as before) or no user to score."""
    from gnn.score import score_user

    try:
        version, model = models.current()
    except ServiceUnavailableError:
        return None
    try:
        first = store.node_ids("User", limit=1)
        if first:
            score_user(model, store, first[0])
    except RiskGraphError as exc:
        # A store that cannot be read now is the API's to report per request (its
        # documented fallbacks); the model itself is loaded.
        logging.getLogger("riskgraph.api").warning(
            "model warm-up could not score a user", extra={"error": str(exc)})
    return version


def rescore_user(models: ModelLoader, store: GraphStore, user_id: str) -> dict[str, Any]:
    """Score one user from its neighbourhood as the store holds it now, and write the
    scores back with the model version, without retraining."""
    from gnn.score import score_user

    version, model = models.current()
    scores = score_user(model, store, user_id)
    store.write_scores([user_id], {k: [v] for k, v in scores.items()}, version,
                       int(time.time() * 1000))
    return {"user_id": user_id, "model_version": version, **scores}


def explain_user(models: ModelLoader, store: GraphStore, user_id: str, *, top_k: int
                 ) -> dict[str, Any]:
    """The user's scores and the linked users and shared items that drove its relational
    risk most: each weighed by how much the score falls when it is taken away."""
    from gnn.explain import explain_user as explain

    version, model = models.current()
    out = explain(model, store, user_id, top=top_k)
    return {
        "user_id": user_id,
        "model_version": version,
        "fraud_risk": out["scores"]["fraud_risk"],
        "relational_risk": out["scores"]["relational_risk"],
        "drivers": [
            {"label": "User" if c.kind == "user" else c.kind, "id": c.id,
             "rel_type": ",".join(c.via), "weight": c.relational_risk_drop}
            for c in out["contributions"]
        ],
    }
