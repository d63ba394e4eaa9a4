"""The fraud model as the API uses it: rescore one user on demand, explain a score.

The model is loaded once per model directory and version, and loaded again when a newer
model is trained; scoring one user reads only its neighbourhood from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from api.errors import ServiceUnavailableError
from api.settings import Settings
from graph.errors import RiskGraphError
from graph.store import GraphStore

log = logging.getLogger("riskgraph.api")
_lock = threading.Lock()
_loaded: dict[Path, tuple[str, Any]] = {}


def _model(settings: Settings) -> tuple[str, Any]:
    from gnn import registry
    from gnn.errors import GnnError

    try:
        latest = registry.resolve(settings.models_dir, None)
    except GnnError as exc:
        # The caller is told what to do, not where the server keeps its files.
        log.warning("no model to score with", extra={"error": str(exc)})
        raise ServiceUnavailableError(
            "no trained model is installed; train one (riskgraph train) and try again"
        ) from None
    with _lock:
        have = _loaded.get(settings.models_dir)
        if have is None or have[0] != latest.name:
            have = registry.load(settings.models_dir, latest.name)
            _loaded[settings.models_dir] = have
        return have


def warm_up(store: GraphStore, settings: Settings) -> str | None:
    """Load the latest model and score one user with it (nothing is written), so that
    the server reports ready only when ``rescoreUser`` answers in normal time: the model
    load and the first forward pass cost seconds, which the first caller used to pay.
    The version loaded, or None when there is no trained model yet (the model's fields
    then answer UNAVAILABLE, as before) or no user to score."""
    from gnn.score import score_user

    try:
        version, model = _model(settings)
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


def rescore_user(store: GraphStore, settings: Settings, user_id: str) -> dict[str, Any]:
    """Score one user from its neighbourhood as the store holds it now, and write the
    scores back with the model version, without retraining."""
    from gnn.score import score_user

    version, model = _model(settings)
    scores = score_user(model, store, user_id)
    store.write_scores([user_id], {k: [v] for k, v in scores.items()}, version,
                       int(time.time() * 1000))
    return {"user_id": user_id, "model_version": version, **scores}


def explain_user(store: GraphStore, settings: Settings, user_id: str, *, top_k: int
                 ) -> dict[str, Any]:
    """The user's scores and the linked users and shared items that drove its relational
    risk most: each weighed by how much the score falls when it is taken away."""
    from gnn.explain import explain_user as explain

    version, model = _model(settings)
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
