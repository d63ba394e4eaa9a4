"""A merchant's risk, from the model's scores of the users who pay it.

``risk`` is the payers' ``fraud_risk`` weighted by what each paid the merchant: the
expected share of the merchant's takings that came from fraudulent accounts. A shop
that colluding users cash out through takes most of its money from them; a popular
shop with a few fraudulent customers among thousands does not. The scores are the
ones written to the store (``riskgraph score``); payers not scored yet are left out
and counted apart. Read from the merchant's first ``max_payments`` payments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from graph.store import GraphStore

MAX_PAYMENTS = 20_000


@dataclass(frozen=True)
class Payer:
    user_id: str
    fraud_risk: float
    amount: float  # total paid to this merchant
    payments: int


@dataclass(frozen=True)
class MerchantRisk:
    merchant_id: str
    risk: float | None  # None when no payer is scored
    payers: int
    scored_payers: int
    model_version: str | None
    top_payers: list[Payer] = field(default_factory=list)


def merchant_risk(store: GraphStore, merchant_id: str, top: int = 5,
                  max_payments: int = MAX_PAYMENTS) -> MerchantRisk:
    """The merchant's risk and its ``top`` payers by fraud risk (then amount)."""
    amount: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for r in store.relationships("PAID", [merchant_id], "in", max_payments):
        a = r.properties.get("amount")
        amount[r.src] += float(a) if isinstance(a, (int, float)) and a == a and a > 0 else 0.0
        count[r.src] += 1
    ids = sorted(amount)
    payers: list[Payer] = []
    versions: set[str] = set()
    for uid, node in zip(ids, store.get_nodes("User", ids)):
        risk = None if node is None else node.properties.get("fraud_risk")
        if isinstance(risk, (int, float)):
            payers.append(Payer(uid, float(risk), amount[uid], count[uid]))
            v = node.properties.get("model_version") if node is not None else None
            if isinstance(v, str):
                versions.add(v)
    spent = sum(p.amount for p in payers)
    if payers and spent > 0:
        value: float | None = sum(p.fraud_risk * p.amount for p in payers) / spent
    elif payers:
        value = sum(p.fraud_risk for p in payers) / len(payers)
    else:
        value = None
    ranked = sorted(payers, key=lambda p: (-p.fraud_risk, -p.amount, p.user_id))[:top]
    return MerchantRisk(merchant_id, value, len(ids), len(payers),
                        max(versions) if versions else None, ranked)
