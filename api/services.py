"""Seams to the limit engine and the GNN scorer.

Each function imports its service module when first called, so the API starts and
serves everything else while a service is not installed; a field that needs a missing
service answers with the error code UNAVAILABLE instead of made-up data.

Expected, in ``api.limits_service``::

    decide_limit(store, settings, user_id: str, *, dry_run: bool) -> Decision
    decision_history(store, settings, user_id: str, *, limit: int) -> list[Decision]
    review_limits(store, settings, *, user_ids: list[str] | None, dry_run: bool) -> Review

and in ``api.gnn_service``::

    rescore_user(store, settings, user_id: str) -> object   # scores written to the store
    explain_user(store, settings, user_id: str, *, top_k: int) -> Explanation

The shapes of Decision, Review and Explanation are read by attribute or key; see
api/types.py (``decision_from``, ``review_from``, ``explanation_from``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from api.errors import ServiceUnavailableError
from api.settings import Settings
from graph.store import GraphStore

LIMITS_MODULE = "api.limits_service"
GNN_MODULE = "api.gnn_service"


def _function(module: str, name: str, what: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise ServiceUnavailableError(
                f"the {what} is not available in this installation ({module} is missing)"
            ) from None
        raise
    fn = getattr(mod, name, None)
    if fn is None:
        raise ServiceUnavailableError(f"the {what} does not offer {module}.{name}")
    return fn  # type: ignore[no-any-return]


def decide_limit(store: GraphStore, settings: Settings, user_id: str, *, dry_run: bool) -> Any:
    fn = _function(LIMITS_MODULE, "decide_limit", "limit engine")
    return fn(store, settings, user_id, dry_run=dry_run)


def decision_history(store: GraphStore, settings: Settings, user_id: str, *, limit: int) -> Any:
    fn = _function(LIMITS_MODULE, "decision_history", "limit engine")
    return fn(store, settings, user_id, limit=limit)


def review_limits(
    store: GraphStore, settings: Settings, *, user_ids: list[str] | None, dry_run: bool
) -> Any:
    fn = _function(LIMITS_MODULE, "review_limits", "limit engine")
    return fn(store, settings, user_ids=user_ids, dry_run=dry_run)


def rescore_user(store: GraphStore, settings: Settings, user_id: str) -> Any:
    fn = _function(GNN_MODULE, "rescore_user", "GNN scorer")
    return fn(store, settings, user_id)


def explain_user(store: GraphStore, settings: Settings, user_id: str, *, top_k: int) -> Any:
    fn = _function(GNN_MODULE, "explain_user", "GNN scorer")
    return fn(store, settings, user_id, top_k=top_k)
