"""What a limit decision is: the types the engine returns and its callers read.

A leaf module: the engine (limits.engine) builds these, the counterfactual search
(limits.counterfactuals) and the audit trail read them, and neither needs the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from limits.errors import AsOfError
from limits.features import Profile
from limits.policy import Policy
from limits.reasons import Reason

ACTIONS: tuple[str, ...] = ("open", "raise", "keep", "reduce", "freeze")
# Overall action: the most severe line action wins; a raise outranks an opening.
PRIORITY = {"freeze": 0, "reduce": 1, "raise": 2, "open": 3, "keep": 4}
# How good an action is for the user; counterfactuals look for a change in this.
FAVOUR = {"freeze": 0, "reduce": 1, "keep": 2, "open": 3, "raise": 3}


@dataclass(frozen=True)
class Assessment:
    pd: float
    points: float
    band: str
    drivers: tuple[str, ...]  # what put the band above low: default, fraud, relational, ring
    stage: str  # new | active | dormant | high_risk
    base_stage: str  # the stage without the high-risk override
    segment: str
    scored: bool
    frozen: bool
    overdue_now: int
    on_time_streak: int
    capacity: float
    joint_ceiling: float
    joint_ceiling_by: str
    joint_target: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class LineDecision:
    line: str
    action: str
    current_limit: float | None  # None when the line is not held
    new_limit: float
    current_temp_limit: float
    temp_limit: float
    temp_until_ms: int | None
    ceiling: float
    target: float
    reasons: tuple[Reason, ...]

    @property
    def effective_limit(self) -> float:
        return self.new_limit + self.temp_limit

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "reasons"}
        d["effective_limit"] = self.effective_limit
        d["reasons"] = [r.to_dict() for r in self.reasons]
        return d


@dataclass(frozen=True)
class Counterfactual:
    """A change that would make the decision better (or, for a raise or an opening,
    stop it): the lever, its value now and the value needed, the action it would lead
    to, and the line and limit that action would give."""

    lever: str
    current: Any
    needed: Any
    action: str  # the action the change would lead to
    en: str
    zh: str
    line: str | None = None  # the line whose limit the change moves
    limit: float | None = None  # that line's limit after the change

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Decision:
    user_id: str
    action: str
    lines: tuple[LineDecision, ...]
    reasons: tuple[Reason, ...]  # about the account as a whole
    assessment: Assessment
    refer: str | None  # who the user is referred to, when frozen
    inputs: Profile
    policy_version: str
    policy_hash: str
    model_version: str
    decided_at_ms: int
    counterfactuals: tuple[Counterfactual, ...] = field(default=())

    def line(self, name: str) -> LineDecision:
        for ld in self.lines:
            if ld.line == name:
                return ld
        raise KeyError(name)

    @property
    def all_reasons(self) -> list[Reason]:
        return [*self.reasons, *(r for ld in self.lines for r in ld.reasons)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "action": self.action,
            "lines": [ld.to_dict() for ld in self.lines],
            "reasons": [r.to_dict() for r in self.reasons],
            "counterfactuals": [c.to_dict() for c in self.counterfactuals],
            "assessment": self.assessment.to_dict(),
            "refer": self.refer,
            "inputs": self.inputs.to_dict(),
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "model_version": self.model_version,
            "decided_at_ms": self.decided_at_ms,
        }


def round_down(x: float, step: float) -> float:
    """``x`` rounded down to a multiple of ``step``; never above ``x``, never below 0."""
    if x <= 0:
        return 0.0
    r = math.floor(x / step) * step
    if r > x:
        r -= step
    return float(max(r, 0.0))


def date_text(ms: int, policy: Policy) -> str:
    tz = timezone(timedelta(hours=policy.utc_offset_hours))
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d")


def as_of_ms(text: str, policy: Policy) -> int:
    """The instant to decide as of: a day ``YYYY-MM-DD`` (its start in the policy's UTC
    offset, the offset seasons and reasons use), or an ISO date and time (with an
    offset, or in the policy's)."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AsOfError(f"as-of {text!r} is not a date: give YYYY-MM-DD (a day in the "
                        f"policy's UTC offset, {policy.utc_offset_hours:+g} h) or an ISO "
                        "date and time such as 2025-11-11T12:00+08:00") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone(timedelta(hours=policy.utc_offset_hours)))
    return int(at.timestamp() * 1000)
