"""Seams to the limit engine and the GNN scorer.

Each function imports its service module when first called, so the API starts and
serves everything else while a service is not installed; a field that needs a missing
service answers with the error code UNAVAILABLE instead of made-up data.

The limit engine is part of every installation and is called directly. Expected in
``api.gnn_service``::

    rescore_user(store, settings, user_id: str) -> object   # scores written to the store
    explain_user(store, settings, user_id: str, *, top_k: int) -> Explanation

The shapes of Decision, Review and Explanation are read by attribute or key; see
api/types.py (``decision_from``, ``review_from``, ``explanation_from``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from api.errors import ServiceUnavailableError
from api.settings import Settings
from graph.store import GraphStore

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


_limits_lock = threading.Lock()
_limits: dict[tuple[int, str, str], Any] = {}


def limits_service(store: GraphStore, settings: Settings) -> Any:
    """The LimitsService for this store and audit directory, built once: parsing the
    policy per request would cost more than the decision."""
    key = (id(store), str(settings.audit_dir), str(settings.policy or ""))
    with _limits_lock:
        svc = _limits.get(key)
        if svc is None:
            from api.limits_service import LimitsService
            from limits.audit import AuditLog
            from limits.policy import parse_policy, read_policy_text

            path = str(settings.policy) if settings.policy is not None else None
            text, source = read_policy_text(path)
            svc = LimitsService(store, AuditLog(settings.audit_dir),
                                parse_policy(text, source), text)
            _limits[key] = svc
        return svc


def decide_limit(store: GraphStore, settings: Settings, user_id: str, *, dry_run: bool,
                 counterfactuals: bool = True) -> Any:
    """The decision for one user; recorded in the audit trail and applied unless a dry run.
    Counterfactuals cost many decisions, so callers that do not show them skip them."""
    return limits_service(store, settings).decide(
        user_id, apply=not dry_run, counterfactuals=counterfactuals)


def decision_history(store: GraphStore, settings: Settings, user_id: str, *, limit: int) -> Any:
    """Recorded decisions of one user, newest first, with their reasons (compact records
    are replayed under their own policy to give the texts back)."""
    from limits.errors import LimitsError

    svc = limits_service(store, settings)
    out: list[Any] = []
    for rec in reversed(svc.audit.history(user_id)):
        if len(out) >= limit:
            break
        try:
            out.append(svc.audit.replay(rec))
        except LimitsError:
            out.append(rec)  # still shown, without the texts replay would give
    return out


def review_limits(
    store: GraphStore, settings: Settings, *, user_ids: list[str] | None, dry_run: bool
) -> Any:
    svc = limits_service(store, settings)
    if user_ids is None:
        return svc.review(dry_run=dry_run).to_dict()
    decisions = [svc.decide(u, apply=not dry_run, counterfactuals=False) for u in user_ids]
    return {"dry_run": dry_run, "decisions": decisions}


def rescore_user(store: GraphStore, settings: Settings, user_id: str) -> Any:
    fn = _function(GNN_MODULE, "rescore_user", "GNN scorer")
    return fn(store, settings, user_id)


def explain_user(store: GraphStore, settings: Settings, user_id: str, *, top_k: int) -> Any:
    fn = _function(GNN_MODULE, "explain_user", "GNN scorer")
    return fn(store, settings, user_id, top_k=top_k)
