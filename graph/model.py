"""The graph model: node labels, relationship types, their typed properties and keys.

Every node has a string business key ``id``. A relationship is identified by its type,
its two endpoints and, for types that can repeat between the same pair (payments,
transfers), its own ``id``. Timestamps are stored as epoch milliseconds (``TS``) so
that every store keeps them the same way.

This module is the single source of truth for the schema: the stores create their
tables and constraints from it, the loaders validate files against it and the GNN
reads its feature columns from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class PropType(str, Enum):
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TS = "ts"  # epoch milliseconds, UTC


S, I, F, B, T = PropType.STR, PropType.INT, PropType.FLOAT, PropType.BOOL, PropType.TS


@dataclass(frozen=True)
class NodeType:
    label: str
    properties: Mapping[str, PropType]
    doc: str = ""


@dataclass(frozen=True)
class RelType:
    type: str
    src: str
    dst: str
    properties: Mapping[str, PropType]
    keyed: bool = False  # True when several relationships may join the same pair
    links_users: bool = False  # True when the relationship ties accounts together
    doc: str = ""


# Scores written back by the GNN, kept on the User node.
SCORE_PROPERTIES: dict[str, PropType] = {
    "fraud_risk": F,
    "relational_risk": F,
    "own_risk": F,
    "model_version": S,
    "scored_at": T,
}

# Credit features (PRODUCT.md), kept on the User node and loaded from their own file.
CREDIT_PROPERTIES: dict[str, PropType] = {
    "credit_score": I,  # 350..950, Sesame-style
    "income": F,  # annual income, CNY
    "months_on_book": I,
    # One character per month, oldest first: '0' on time, '1'..'6' overdue by
    # 30-day buckets, '-' no bill that month. Length up to 36.
    "repayment_history": S,
    "overdue_count": I,
    "worst_dpd": I,  # worst days past due ever seen
    "utilisation": F,  # balance / limit over all lines, 0..1+
    "monthly_spend": F,  # CNY, average of last 6 months
    "monthly_txns": F,  # payments per month, average of last 6 months
    "merchant_categories": I,  # distinct merchant categories in last 6 months
    "active_days_30d": I,
    "other_products": I,  # ecosystem products held besides the credit lines
    "obligations": F,  # monthly debt service outside the ecosystem, CNY
}

# Written by the ring pass (graph/rings.py) on every User: its group, the group's kind
# and suspicion, and the user's ring exposure. The group's reasons and members are kept
# on its smallest member only (the one that names it), "" elsewhere.
RING_PROPERTIES: dict[str, PropType] = {
    "ring_id": S,  # "" when in no group
    "ring_kind": S,  # ring | community | ""
    "ring_size": I,
    "ring_suspicion": F,
    "ring_exposure": F,
    "ring_why": S,  # JSON list of strings
    "ring_members": S,  # JSON list of ids
}

USER_PROFILE: dict[str, PropType] = {
    "name": S,  # PII
    "city": S,
    "signup_ts": T,
    "lifecycle": S,  # new | active | dormant
    # Labels, where known: 1 fraud, 0 legitimate, absent unknown.
    "is_fraud": I,
    "fraud_kind": S,
    "fraud_ts": T,
}

NODE_TYPES: dict[str, NodeType] = {
    n.label: n
    for n in [
        NodeType(
            "User",
            {**USER_PROFILE, **CREDIT_PROPERTIES, **SCORE_PROPERTIES, **RING_PROPERTIES},
            "An account holder.",
        ),
        NodeType("Merchant", {"name": S, "category": S, "city": S}, "A payee."),
        NodeType("Device", {"kind": S, "os": S}, "A phone, tablet or computer."),
        NodeType(
            "Product",
            {"name": S, "kind": S},
            "An ecosystem product: bnpl, cash_loan, wealth, insurance.",
        ),
        NodeType("Phone", {}, "A phone number, as an identifier shared by accounts."),
        NodeType("IP", {}, "An IP address seen at login."),
        NodeType("BankCard", {}, "A bank card bound to accounts."),
    ]
}

REL_TYPES: dict[str, RelType] = {
    r.type: r
    for r in [
        RelType(
            "USES", "User", "Device",
            {"first_seen": T, "last_seen": T, "sessions": I},
            links_users=True,
        ),
        RelType(
            "PAID", "User", "Merchant",
            {
                "amount": F, "ts": T, "channel": S, "product": S,
                "location": S, "txn_type": S, "is_fraud": I,
            },
            keyed=True,
        ),
        RelType(
            "HOLDS", "User", "Product",
            {"limit": F, "balance": F, "status": S, "since": T, "temp_limit": F,
             "temp_until": T},
        ),
        RelType("REFERRED", "User", "User", {"ts": T}, links_users=True),
        RelType(
            "TRANSFERRED", "User", "User",
            {"amount": F, "ts": T, "channel": S},
            keyed=True, links_users=True,
        ),
        RelType("HAS_PHONE", "User", "Phone", {"since": T}, links_users=True),
        RelType("HAS_CARD", "User", "BankCard", {"since": T}, links_users=True),
        RelType("LOGGED_FROM", "User", "IP", {"last_seen": T}, links_users=True),
    ]
}

# Relationship types through a shared node (user -> item <- user) and directly
# between users (user - user).
SHARED_ITEM_RELS: tuple[str, ...] = tuple(
    t for t, r in REL_TYPES.items() if r.links_users and r.dst != "User"
)
USER_USER_RELS: tuple[str, ...] = tuple(
    t for t, r in REL_TYPES.items() if r.links_users and r.dst == "User"
)

MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class Node:
    label: str
    id: str
    properties: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Relationship:
    type: str
    src: str
    dst: str
    key: str = ""
    properties: dict[str, object] = field(default_factory=dict)


def node_type(label: str) -> NodeType:
    from graph.errors import UnknownTypeError

    try:
        return NODE_TYPES[label]
    except KeyError:
        raise UnknownTypeError(
            f"unknown node label {label!r}; expected one of {sorted(NODE_TYPES)}"
        ) from None


def rel_type(type_: str) -> RelType:
    from graph.errors import UnknownTypeError

    try:
        return REL_TYPES[type_]
    except KeyError:
        raise UnknownTypeError(
            f"unknown relationship type {type_!r}; expected one of {sorted(REL_TYPES)}"
        ) from None
