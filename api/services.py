"""The API's calls into the limit engine and the fraud model.

Each imports its module when first called, so the server starts fast. With no trained
model, the model's fields answer UNAVAILABLE with what to do (`riskgraph train`).
Decisions, reviews and explanations are read by attribute or key in api/types.py
(``decision_from``, ``review_from``, ``explanation_from``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from api import gnn_service
from api.gnn_service import ModelLoader
from api.settings import Settings
from graph.errors import StoreUnavailableError
from graph.store import GraphStore

log = logging.getLogger("riskgraph.api")


def build_limits_service(store: GraphStore, settings: Settings) -> Any:
    """A LimitsService over ``store`` with the configured policy and audit trail."""
    from api.limits_service import LimitsService
    from limits.audit import AuditLog
    from limits.policy import parse_policy, read_policy_text

    path = str(settings.policy) if settings.policy is not None else None
    text, source = read_policy_text(path)
    return LimitsService(store, AuditLog(settings.audit_dir, key=settings.audit_key_bytes),
                         parse_policy(text, source), text)


class Limits:
    """The LimitsService of one runtime, built when first asked for (parsing the policy
    per request would cost more than the decision; importing the engine at start-up
    would slow the server's start) and kept for the runtime's life."""

    def __init__(self, store: GraphStore, settings: Settings,
                 build: Callable[[GraphStore, Settings], Any] = build_limits_service) -> None:
        self._store = store
        self._settings = settings
        self._build = build
        self._lock = threading.Lock()
        self._service: Any = None

    def service(self) -> Any:
        with self._lock:
            if self._service is None:
                self._service = self._build(self._store, self._settings)
            return self._service


def as_of_ms(limits: Limits, as_of: str | None) -> int | None:
    """The instant a decision is made as of (``asOf``), in the policy's offset; None for
    now. BadInputError when it is not a date."""
    if as_of is None:
        return None
    from api.errors import BadInputError
    from limits.decision import as_of_ms as parse
    from limits.errors import AsOfError

    try:
        return parse(as_of, limits.service().policy)
    except AsOfError as exc:
        raise BadInputError(str(exc)) from None


def decide_limit(limits: Limits, user_id: str, *, dry_run: bool,
                 counterfactuals: bool = True, node: Any = None,
                 at_ms: int | None = None) -> Any:
    """The decision for one user; recorded in the audit trail and applied unless a dry run
    (under the user's apply lock, see ``LimitsService.applying``). Counterfactuals cost
    many decisions, so callers that do not show them skip them. A dry run may be given
    the User ``node`` the caller has just read; a decision to apply reads it again
    under the apply lock.

    When the store cannot be read the answer is the documented safe fallback
    (``unavailable_decision``: keep, no new exposure, not recorded). A store lost after
    the decision was recorded is not hidden: that error reaches the caller."""
    svc = limits.service()
    with nullcontext() if dry_run else svc.applying(user_id):
        try:
            profile = svc.profile(user_id, at_ms, node=node if dry_run else None)
        except StoreUnavailableError as exc:
            return fallback_decision(limits, user_id, dry_run=dry_run, cause=exc)
        return svc.decide_profile(profile, apply=not dry_run,
                                  counterfactuals=counterfactuals)


def fallback_decision(limits: Limits, user_id: str, *, dry_run: bool,
                      cause: BaseException) -> Any:
    """The safe decision while the store is unreachable (see ``decide_limit``)."""
    from api.limits_service import unavailable_decision

    svc = limits.service()
    log.warning("decideLimit fell back: risk data unavailable",
                extra={"user_id_hash": _short_hash(user_id), "error": type(cause).__name__})
    return unavailable_decision(user_id, dry_run=dry_run, at_ms=svc.clock(),
                                policy_version=svc.policy.version)


def _short_hash(text: str) -> str:
    """A stable pseudonym for an id in logs (ids are personal data)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def decision_history(limits: Limits, user_id: str, *, limit: int) -> Any:
    """Recorded decisions of one user, newest first, with their reasons (compact records
    are replayed under their own policy to give the texts back)."""
    from limits.errors import LimitsError

    svc = limits.service()
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
    limits: Limits, *, user_ids: list[str] | None, dry_run: bool,
    at_ms: int | None = None,
) -> Any:
    svc = limits.service()
    if user_ids is None:
        return svc.review(dry_run=dry_run, at_ms=at_ms).to_dict()
    decisions = [svc.decide(u, apply=not dry_run, counterfactuals=False, at_ms=at_ms)
                 for u in user_ids]
    return {"dry_run": dry_run, "decisions": decisions}


def rescore_user(models: ModelLoader, store: GraphStore, user_id: str) -> Any:
    return gnn_service.rescore_user(models, store, user_id)


def merchant_risk(store: GraphStore, merchant_id: str, *, top_k: int) -> Any:
    from gnn.merchants import merchant_risk as risk

    return risk(store, merchant_id, top=top_k)


def explain_user(models: ModelLoader, store: GraphStore, user_id: str, *, top_k: int) -> Any:
    return gnn_service.explain_user(models, store, user_id, top_k=top_k)
