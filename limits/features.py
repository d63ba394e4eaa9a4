"""What the engine decides from: a user's profile, and the features derived from it.

A ``Profile`` is a plain snapshot: credit features (graph.model.CREDIT_PROPERTIES),
lifecycle, GNN scores, ring membership and the current state of each credit line, all
at one instant ``now_ms`` (epoch milliseconds). The engine never reads anything else,
so the same profile under the same policy always gives the same decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from limits.errors import ProfileError

BNPL = "bnpl"
CASH_LOAN = "cash_loan"
LINES: tuple[str, ...] = (BNPL, CASH_LOAN)

DAY_MS = 86_400_000
MONTH_MS = 2_629_746_000  # an average Gregorian month

HISTORY_ON_TIME = "0"
HISTORY_NO_BILL = "-"
HISTORY_CHARS = frozenset("0123456-")


@dataclass(frozen=True)
class LineState:
    """One credit line the user holds (a HOLDS relationship)."""

    limit: float
    balance: float = 0.0
    status: str = "active"
    since_ms: int | None = None
    temp_limit: float = 0.0
    temp_until_ms: int | None = None
    # When the permanent limit was last raised (from the audit trail), else None.
    last_raise_ms: int | None = None


@dataclass(frozen=True)
class Profile:
    user_id: str
    now_ms: int
    lifecycle: str | None = None  # new | active | dormant, as stored
    credit_score: float | None = None
    income: float | None = None  # annual, CNY
    months_on_book: int = 0
    repayment_history: str = ""  # oldest first, see graph.model.CREDIT_PROPERTIES
    overdue_count: int = 0
    worst_dpd: int = 0
    utilisation: float = 0.0
    monthly_spend: float = 0.0
    monthly_txns: float = 0.0
    merchant_categories: int = 0
    active_days_30d: int = 0
    other_products: int = 0
    obligations: float = 0.0  # monthly debt service outside the ecosystem, CNY
    fraud_risk: float | None = None
    relational_risk: float | None = None
    own_risk: float | None = None
    score_model_version: str | None = None
    ring_id: str | None = None  # the group the last ring pass put the user in
    ring_size: int = 0
    ring_kind: str | None = None  # ring | community
    ring_suspicion: float = 0.0  # the group's
    # The relational input of the band (graph/rings.py, docs/limits.md): never lower
    # when a fraud link is added.
    ring_exposure: float = 0.0
    lines: Mapping[str, LineState] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies and is several times slower.
        d = {name: getattr(self, name) for name in _PROFILE_FIELDS}
        d["lines"] = {k: {f: getattr(v, f) for f in _LINE_FIELDS}
                      for k, v in sorted(self.lines.items())}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ProfileError(str(d.get("user_id", "?")), unknown[0], "not a profile field")
        args = dict(d)
        args["lines"] = {k: LineState(**v) for k, v in (d.get("lines") or {}).items()}
        return cls(**args)

    def with_changes(self, **changes: Any) -> Profile:
        return replace(self, **changes)


_PROFILE_FIELDS = tuple(f.name for f in fields(Profile))
_LINE_FIELDS = tuple(f.name for f in fields(LineState))

_NON_NEGATIVE = (
    "income", "months_on_book", "overdue_count", "worst_dpd", "utilisation",
    "monthly_spend", "monthly_txns", "merchant_categories", "active_days_30d",
    "other_products", "obligations", "ring_size",
)
_UNIT = ("fraud_risk", "relational_risk", "own_risk", "ring_suspicion", "ring_exposure")


def check_profile(p: Profile) -> None:
    """Raise ProfileError for a value the engine cannot reason about."""
    for name in _NON_NEGATIVE:
        v = getattr(p, name)
        if v is None:
            if name == "income":
                continue
            raise ProfileError(p.user_id, name, "is missing; give 0 when unknown")
        if not math.isfinite(v) or v < 0:
            raise ProfileError(p.user_id, name, f"must be a finite number >= 0, got {v!r}")
    for name in _UNIT:
        v = getattr(p, name)
        if v is not None and not (0.0 <= v <= 1.0):
            raise ProfileError(p.user_id, name, f"must be between 0 and 1 or absent, got {v!r}")
    if p.credit_score is not None and not math.isfinite(p.credit_score):
        raise ProfileError(p.user_id, "credit_score", "must be a finite number or absent")
    if not set(p.repayment_history) <= HISTORY_CHARS:
        bad = sorted(set(p.repayment_history) - HISTORY_CHARS)
        raise ProfileError(
            p.user_id, "repayment_history",
            f"has characters {bad}; use '0' on time, '1'..'6' overdue buckets, '-' no bill",
        )
    for line, st in p.lines.items():
        _check_line(p.user_id, line, st)


def _check_line(user_id: str, line: str, st: LineState) -> None:
    if line not in LINES:
        raise ProfileError(user_id, f"lines.{line}", f"unknown line; use one of {LINES}")
    for name in ("limit", "balance", "temp_limit"):
        v = getattr(st, name)
        if v is None or not math.isfinite(v) or v < 0:
            raise ProfileError(
                user_id, f"lines.{line}.{name}", f"must be a finite number >= 0, got {v!r}"
            )


@dataclass(frozen=True)
class HistoryStats:
    on_time_months: int  # months repaid on time, whole history
    on_time_streak: int  # on-time months since the last overdue month ('-' skipped)
    overdue_points_recent: int  # sum of overdue buckets over the last 12 months
    overdue_points_older: int  # sum of overdue buckets before that
    overdue_now: int  # worst bucket over the last ``lookback`` months, 0 if none


def history_stats(history: str, lookback: int = 1) -> HistoryStats:
    """Features of a repayment history string (oldest first)."""
    on_time = history.count(HISTORY_ON_TIME)
    streak = 0
    for ch in reversed(history):
        if ch == HISTORY_ON_TIME:
            streak += 1
        elif ch != HISTORY_NO_BILL:
            break
    n = len(history)
    recent = history[max(0, n - 12):]
    older = history[: max(0, n - 12)]
    tail = history[max(0, n - lookback):] if lookback > 0 else ""
    return HistoryStats(
        on_time_months=on_time,
        on_time_streak=streak,
        overdue_points_recent=_bucket_sum(recent),
        overdue_points_older=_bucket_sum(older),
        overdue_now=max((int(c) for c in tail if c not in "0-"), default=0),
    )


def _bucket_sum(s: str) -> int:
    return sum(int(c) for c in s if c not in "0-")
