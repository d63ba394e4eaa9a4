"""A small graph for the API tests: two rings, a pair, a loner, products and limits.

    ring:u01  u01, u02, u03 share device d1; u03 and u04 share phone p1
    ring:u05  u05 referred u06; u06 sent money to u07 twice
    pair      u09 and u10 share bank card c1
    alone     u08, u11, u12
"""

from __future__ import annotations

from graph.store import GraphStore

USERS = [f"u{i:02d}" for i in range(1, 13)]
NAMES = {u: f"Name{u}" for u in USERS}


def load_small_graph(store: GraphStore) -> None:
    n = len(USERS)
    store.upsert_nodes("User", {
        "id": USERS,
        "name": [NAMES[u] for u in USERS],
        "city": ["Hangzhou"] * 6 + ["Shanghai"] * 6,
        "lifecycle": ["active"] * 8 + ["new"] * 4,
        "signup_ts": [1_600_000_000_000 + i * 86_400_000 for i in range(n)],
        "credit_score": [600 + 20 * i for i in range(n)],
        "income": [120_000.0 + 10_000 * i for i in range(n)],
        "months_on_book": [12 + i for i in range(n)],
        "repayment_history": ["000000000000"] * n,
        "overdue_count": [0] * n,
        "worst_dpd": [0] * n,
        "utilisation": [0.3] * n,
        "fraud_risk": [0.9, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05, 0.01, None, None, None, None],
        "relational_risk": [0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, None, None, None, None],
        "model_version": ["test-1"] * 8 + [None] * 4,
    })
    store.upsert_nodes("Device", {"id": ["d1", "d2"], "kind": ["phone", "tablet"],
                                  "os": ["android", "ios"]})
    store.upsert_nodes("Phone", {"id": ["p1"]})
    store.upsert_nodes("BankCard", {"id": ["c1"]})
    store.upsert_nodes("Merchant", {"id": ["m1"], "name": ["Tea House"],
                                    "category": ["food"], "city": ["Hangzhou"]})
    store.upsert_nodes("Product", {"id": ["bnpl", "cash", "wealth"],
                                   "name": ["Pay Later", "Cash Loan", "Wealth"],
                                   "kind": ["bnpl", "cash_loan", "wealth"]})
    store.upsert_relationships("USES", {"src": ["u01", "u02", "u03", "u08"],
                                        "dst": ["d1", "d1", "d1", "d2"]})
    store.upsert_relationships("HAS_PHONE", {"src": ["u03", "u04"], "dst": ["p1", "p1"]})
    store.upsert_relationships("HAS_CARD", {"src": ["u09", "u10"], "dst": ["c1", "c1"]})
    store.upsert_relationships("REFERRED", {"src": ["u05"], "dst": ["u06"]})
    store.upsert_relationships("TRANSFERRED", {"src": ["u06", "u06"], "dst": ["u07", "u07"],
                                               "id": ["t1", "t2"], "amount": [100.0, 50.0]})
    store.upsert_relationships("PAID", {"src": ["u01"], "dst": ["m1"], "id": ["pay1"],
                                        "amount": [35.0]})
    store.upsert_relationships("HOLDS", {
        "src": ["u01", "u01", "u02", "u05"],
        "dst": ["bnpl", "cash", "bnpl", "wealth"],
        "limit": [5000.0, 20000.0, 3000.0, None],
        "balance": [1200.0, 0.0, 100.0, 800.0],
        "status": ["active"] * 4,
    })
