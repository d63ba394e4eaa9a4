"""A small stand-in for the GNN scorer with the functions api/services.py calls; it
reads and writes the real store."""

from __future__ import annotations

import time
from typing import Any

from graph.store import GraphStore

SLOW_TOP_K = 42  # explain_user sleeps on this top_k, to exercise the request time limit


def rescore_user(store: GraphStore, settings: Any, user_id: str) -> Any:
    store.write_scores([user_id], {"fraud_risk": [0.33], "relational_risk": [0.22]},
                       "fake-rescore", 1_700_000_000_000)
    return {"user_id": user_id}


def explain_user(store: GraphStore, settings: Any, user_id: str, *, top_k: int) -> Any:
    if top_k == SLOW_TOP_K:
        time.sleep(1.5)
    return {"user_id": user_id, "model_version": "fake-1", "fraud_risk": 0.9,
            "drivers": [{"label": "Device", "id": "d1", "rel_type": "USES", "weight": 0.7}]}
