"""Ring membership as the limit engine sees it, from the store: one user decided alone
and the same user in a bulk review must agree, for a small ring and for a community
far larger than ring_max_size."""

from __future__ import annotations

from pathlib import Path

from api.limits_service import LimitsService
from graph.store import GraphStore
from limits.audit import AuditLog
from limits.policy import parse_policy, read_policy_text

NOW = 1_757_000_000_000


def _population(store: GraphStore, community: int) -> None:
    ring = ["r1", "r2", "r3", "r4"]
    chain = [f"c{i:03d}" for i in range(community)]
    users = ring + chain + ["alone"]
    n = len(users)
    store.upsert_nodes("User", {
        "id": users, "lifecycle": ["active"] * n, "credit_score": [720] * n,
        "income": [180_000.0] * n, "months_on_book": [30] * n,
        "repayment_history": ["0" * 24] * n, "overdue_count": [0] * n, "worst_dpd": [0] * n,
        "utilisation": [0.45] * n, "monthly_spend": [3000.0] * n, "monthly_txns": [12.0] * n,
        "merchant_categories": [6] * n, "active_days_30d": [20] * n,
        "other_products": [1] * n, "obligations": [1500.0] * n,
        "fraud_risk": [0.05] * n, "relational_risk": [0.05] * n,
    })
    store.upsert_nodes("Product", {"id": ["P-BNPL", "P-CASH"], "kind": ["bnpl", "cash_loan"]})
    store.upsert_relationships("HOLDS", {"src": users, "dst": ["P-BNPL"] * n,
                                         "limit": [6000.0] * n, "balance": [2500.0] * n})
    # The ring shares one device; the community is a chain of households, each pair
    # sharing a tablet, so all of it is one connected group.
    devices = ["d-ring"] + [f"d{i:03d}" for i in range(community - 1)]
    store.upsert_nodes("Device", {"id": devices})
    src = ring + [u for i in range(community - 1) for u in (chain[i], chain[i + 1])]
    dst = ["d-ring"] * 4 + [f"d{i:03d}" for i in range(community - 1) for _ in (0, 1)]
    store.upsert_relationships("USES", {"src": src, "dst": dst})


def test_single_and_bulk_profiles_agree_on_rings(embedded_store: GraphStore,
                                                tmp_path: Path) -> None:
    text, source = read_policy_text(None)
    policy = parse_policy(text, source)
    community = policy.risk.ring_max_size * 3
    _population(embedded_store, community)
    svc = LimitsService(embedded_store, AuditLog(tmp_path / "audit"), policy, text,
                        clock=lambda: NOW)
    bulk = {p.user_id: p for batch in svc.profiles(NOW) for p in batch}
    for uid, counts in [("r2", True), ("c050", False), ("c000", False), ("alone", False)]:
        one = svc.profile(uid, NOW)
        assert policy.risk.counts_ring(one.ring_size) is counts, uid
        assert policy.risk.counts_ring(bulk[uid].ring_size) is counts, uid
        d_one = svc.decide(uid, apply=False, at_ms=NOW, counterfactuals=False)
        assert ("ring" in d_one.assessment.drivers) is counts, uid
    assert bulk["c050"].ring_size == community  # the review sees the whole community
    assert svc.profile("c050", NOW).ring_size == policy.risk.ring_max_size + 1  # walk stops
