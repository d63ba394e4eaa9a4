"""A small, real stand-in for the limit engine and the GNN scorer, with the module-level
functions api/services.py calls. Tests point api.services at this module; it reads and
writes the real store."""

from __future__ import annotations

import time
from typing import Any

from graph.store import GraphStore, get_node

SLOW_TOP_K = 42  # explain_user sleeps on this top_k, to exercise the request time limit
FAIL_USER = "u12"  # decide_limit fails unexpectedly for this user

history: list[dict[str, Any]] = []


def decide_limit(store: GraphStore, settings: Any, user_id: str, *, dry_run: bool) -> Any:
    if user_id == FAIL_USER:
        raise RuntimeError("secret internal detail")
    node = get_node(store, "User", user_id)
    assert node is not None
    risk = float(node.properties.get("fraud_risk") or 0.0)  # type: ignore[arg-type]
    action = "decrease" if risk > 0.5 else "hold"
    decision = {
        "user_id": user_id,
        "action": action,
        "policy_version": "fake-1",
        "model_version": node.properties.get("model_version"),
        "decided_at_ms": 1_700_000_000_000,
        "lines": [{"line": "bnpl", "action": action, "current_limit": 5000.0,
                   "new_limit": 2500.0 if action == "decrease" else 5000.0,
                   "temp_limit": 0.0, "reasons": []}],
        "reasons": [{"code": "FRAUD_RISK" if risk > 0.5 else "STABLE", "line": None,
                     "en": f"fraud risk {risk:.2f}", "zh": f"欺诈风险 {risk:.2f}"}],
        "counterfactuals": [{"lever": "fraud_risk", "current": risk, "needed": 0.5,
                             "action": "hold", "en": "fraud risk below 0.5",
                             "zh": "欺诈风险低于 0.5"}],
    }
    if not dry_run:
        history.insert(0, {"dry_run": False, "decision": decision})
    return decision


def decision_history(store: GraphStore, settings: Any, user_id: str, *, limit: int) -> Any:
    return [h for h in history if h["decision"]["user_id"] == user_id][:limit]


def review_limits(store: GraphStore, settings: Any, *, user_ids: list[str] | None,
                  dry_run: bool) -> Any:
    ids = user_ids if user_ids is not None else store.node_ids("User", limit=10_000)
    return {"dry_run": dry_run,
            "decisions": [decide_limit(store, settings, u, dry_run=True) for u in ids
                          if u != FAIL_USER]}


def rescore_user(store: GraphStore, settings: Any, user_id: str) -> Any:
    store.write_scores([user_id], {"fraud_risk": [0.33], "relational_risk": [0.22]},
                       "fake-rescore", 1_700_000_000_000)
    return {"user_id": user_id}


def explain_user(store: GraphStore, settings: Any, user_id: str, *, top_k: int) -> Any:
    if top_k == SLOW_TOP_K:
        time.sleep(1.5)
    return {"user_id": user_id, "model_version": "fake-1", "fraud_risk": 0.9,
            "drivers": [{"label": "Device", "id": "d1", "rel_type": "USES", "weight": 0.7}]}
