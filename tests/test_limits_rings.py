"""Rings as the limit engine sees them: the ring exposure (graph/rings.py) never falls
when a fraud link is added, so no fraud link ever lowers a band or raises a limit.

The regression of issue 13: a group of 30 tied through a fraud ring's device; one
`uses` row added used to grow it past ``ring_max_size``, the group stopped counting,
the band fell and the next decision opened a 20,000 CNY cash-loan line."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.limits_service import LimitsService
from graph import queries, rings
from graph.embedded import EmbeddedStore
from graph.store import GraphStore
from limits.audit import AuditLog
from limits.engine import Decision
from limits.policy import BANDS, Policy, parse_policy, read_policy_text

NOW = 1_735_000_000_000
DAY = 86_400_000


def _policy() -> tuple[Policy, str]:
    text, source = read_policy_text(None)
    return parse_policy(text, source), text


def _users(store: GraphStore, ids: list[str], signup: list[int],
           fraud_risk: list[float | None]) -> None:
    """Users with a clean, seasoned credit record: only their links can refuse them."""
    n = len(ids)
    store.upsert_nodes("User", {
        "id": ids, "lifecycle": ["active"] * n, "credit_score": [760] * n,
        "income": [240_000.0] * n, "months_on_book": [36] * n,
        "repayment_history": ["0" * 24] * n, "overdue_count": [0] * n, "worst_dpd": [0] * n,
        "utilisation": [0.45] * n, "monthly_spend": [4000.0] * n, "monthly_txns": [15.0] * n,
        "merchant_categories": [7] * n, "active_days_30d": [22] * n,
        "other_products": [1] * n, "obligations": [1000.0] * n, "signup_ts": signup,
        "fraud_risk": fraud_risk, "relational_risk": [0.05] * n,
    })
    store.upsert_nodes("Product", {"id": ["P-BNPL", "P-CASH"], "kind": ["bnpl", "cash_loan"]})
    store.upsert_relationships("HOLDS", {"src": ids, "dst": ["P-BNPL"] * n,
                                         "limit": [8000.0] * n, "balance": [3600.0] * n})


def _link(store: GraphStore, rel: str, src: list[str], dst: list[str]) -> None:
    label = {"USES": "Device", "HAS_CARD": "BankCard", "HAS_PHONE": "Phone",
             "LOGGED_FROM": "IP"}.get(rel)
    if label is not None:
        store.upsert_nodes(label, {"id": sorted(set(dst))})
    cols: dict[str, list[object]] = {"src": list(src), "dst": list(dst)}
    if rel == "TRANSFERRED":
        cols["id"] = [f"t-{a}-{b}-{i}" for i, (a, b) in enumerate(zip(src, dst))]
        cols["amount"] = [300.0] * len(src)
        cols["ts"] = [NOW - 30 * DAY] * len(src)
    store.upsert_relationships(rel, cols)


def _decide(store: GraphStore, tmp: Path, policy: Policy, text: str, uid: str) -> Decision:
    svc = LimitsService(store, AuditLog(tmp / "audit"), policy, text, clock=lambda: NOW)
    return svc.decide(uid, apply=False, at_ms=NOW, counterfactuals=False)


def _never_safer(before: Decision, after: Decision, ctx: str) -> None:
    a, b = before.assessment, after.assessment
    assert BANDS.index(b.band) >= BANDS.index(a.band), ctx
    for lb, la in zip(before.lines, after.lines):
        assert la.effective_limit <= lb.effective_limit + 1e-6, (ctx, lb.line)
        if lb.action in ("refuse", "keep") and lb.current_limit is None:
            assert la.current_limit is not None or la.new_limit <= lb.new_limit, (ctx, lb.line)


def _ring_population(store: GraphStore) -> None:
    """A fraud ring of six (accounts opened within ten days, one card, one device,
    scored), 23 older accounts on the ring's device, and ``x``, a clean seasoned user
    who shares a phone with a ring member: the group of 30 the issue describes."""
    ring = [f"r{i}" for i in range(6)]
    tied = [f"c{i:03d}" for i in range(23)]
    users = ring + tied + ["x"]
    signup = ([NOW - 200 * DAY + i * DAY for i in range(6)]
              + [NOW - (400 + 97 * i) * DAY for i in range(23)] + [NOW - 1500 * DAY])
    _users(store, users, signup, [0.9] * 6 + [0.05] * 24)
    _link(store, "HAS_CARD", ring, ["card-r"] * 6)
    _link(store, "USES", ring + tied, ["d-ring"] * 29)
    _link(store, "HAS_PHONE", ["r0", "x"], ["+86-1", "+86-1"])


def test_a_fraud_link_never_opens_a_line_that_was_refused(embedded_store: GraphStore,
                                                          tmp_path: Path) -> None:
    policy, text = _policy()
    _ring_population(embedded_store)
    rings.run_pass(embedded_store)
    before = _decide(embedded_store, tmp_path, policy, text, "x")
    cash = {ld.line: ld for ld in before.lines}["cash_loan"]
    assert cash.current_limit is None and cash.new_limit == 0  # refused: ring exposure
    assert "ring" in before.assessment.drivers
    _link(embedded_store, "USES", ["x"], ["d-ring"])  # the one row of the issue
    between = _decide(embedded_store, tmp_path, policy, text, "x")  # before a new pass
    rings.run_pass(embedded_store)  # as `riskgraph load` or `riskgraph rings` would
    after = _decide(embedded_store, tmp_path, policy, text, "x")
    for d, ctx in ((between, "between passes"), (after, "after a new pass")):
        _never_safer(before, d, ctx)
        assert {ld.line: ld for ld in d.lines}["cash_loan"].new_limit == 0, ctx


def test_single_and_bulk_profiles_agree_on_rings(embedded_store: GraphStore,
                                                tmp_path: Path) -> None:
    policy, text = _policy()
    _ring_population(embedded_store)
    rings.run_pass(embedded_store)
    svc = LimitsService(embedded_store, AuditLog(tmp_path / "audit"), policy, text,
                        clock=lambda: NOW)
    bulk = {p.user_id: p for batch in svc.profiles(NOW) for p in batch}
    assert bulk["r1"].ring_kind == "ring" and bulk["r1"].ring_id == "ring:r0"
    for uid in ("r1", "c005", "x"):
        one = svc.profile(uid, NOW)
        assert (one.ring_id, one.ring_kind, one.ring_size) == (
            bulk[uid].ring_id, bulk[uid].ring_kind, bulk[uid].ring_size), uid
        # no link was added since the pass: the live exposure is the stored one
        assert abs(one.ring_exposure - bulk[uid].ring_exposure) < 1e-6, uid
    assert bulk["x"].ring_exposure >= policy.risk.ring.medium


# -- the property, on random graphs -------------------------------------------------------
ITEM_RELS = ("USES", "HAS_PHONE", "HAS_CARD", "LOGGED_FROM")


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, object]:
    n_clean = draw(st.integers(3, 14))
    n_ring = draw(st.integers(3, 7))
    clean = [f"u{i:02d}" for i in range(n_clean)]
    ring = [f"z{i}" for i in range(n_ring)]
    items = draw(st.lists(st.tuples(st.sampled_from(ITEM_RELS), st.integers(0, 5),
                                    st.lists(st.sampled_from(clean + ring), min_size=1,
                                             max_size=6, unique=True)), max_size=8))
    direct = draw(st.lists(st.tuples(st.sampled_from(("REFERRED", "TRANSFERRED")),
                                     st.sampled_from(clean + ring),
                                     st.sampled_from(clean + ring)), max_size=6))
    scored = draw(st.booleans())
    target = draw(st.one_of(
        st.tuples(st.sampled_from(("USES", "HAS_CARD")), st.just("ring-item")),
        st.tuples(st.sampled_from(("REFERRED", "TRANSFERRED")), st.sampled_from(ring))))
    spread = draw(st.lists(st.integers(0, 2000), min_size=n_clean, max_size=n_clean))
    return {"clean": clean, "ring": ring, "items": items, "direct": direct,
            "scored": scored, "target": target, "user": draw(st.sampled_from(clean)),
            "spread": spread}


def _build(store: GraphStore, w: dict[str, object]) -> None:
    clean, ring = list(w["clean"]), list(w["ring"])  # type: ignore[call-overload]
    spread = list(w["spread"])  # type: ignore[call-overload]
    signup = [NOW - (100 + s) * DAY for s in spread] + [NOW - (60 - i) * DAY
                                                         for i in range(len(ring))]
    risk = [0.05] * len(clean) + [0.9 if w["scored"] else None] * len(ring)
    _users(store, clean + ring, signup, risk)
    _link(store, "HAS_CARD", ring, ["ring-card"] * len(ring))
    _link(store, "USES", ring, ["ring-item"] * len(ring))
    for rel, k, holders in w["items"]:  # type: ignore[attr-defined]
        _link(store, rel, holders, [f"{rel}-{k}"] * len(holders))
    for rel, a, b in w["direct"]:  # type: ignore[attr-defined]
        if a != b:
            _link(store, rel, [a], [b])


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(w=worlds())
def test_a_link_to_a_fraud_ring_never_makes_a_user_look_safer(w: dict[str, object]) -> None:
    policy, text = _policy()
    with tempfile.TemporaryDirectory() as d:
        store = EmbeddedStore(Path(d) / "graph")
        store.init()
        try:
            _build(store, w)
            rings.run_pass(store)
            u = str(w["user"])
            before = _decide(store, Path(d), policy, text, u)
            m_before = queries.membership(store, u)
            rel, other = w["target"]  # type: ignore[misc]
            _link(store, rel, [u], [other])
            between = _decide(store, Path(d), policy, text, u)
            m_between = queries.membership(store, u)
            # Between passes: exact. The stored part does not move; the link adds evidence.
            assert m_between.exposure >= m_before.exposure - 1e-9
            _never_safer(before, between, "between passes")
        finally:
            store.close()
