"""The limit engine: a Profile and a Policy in, a Decision out. Pure: no store, no clock.

Order of a decision (docs/limits.md says the same in prose):

1. assess the user: PD from the scorecard, a risk band from PD, fraud, relational risk
   and ring membership, a lifecycle stage, a segment;
2. work out the ceilings no line may pass (regulatory caps, ability to pay, joint cap,
   the split of the joint cap by stage) and the target the risk supports;
3. per line, one path: freeze (fraud hard stop), reduce (overdue or high risk), raise
   (every raise condition met), open, or keep; a keep still obeys the ceilings;
4. temporary seasonal raises on top, within the same ceilings, each with its own end.

Every step only ever lowers a limit as risk rises, which is what the property tests in
tests/test_limits_invariants.py check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from limits import scorecard
from limits.features import (
    DAY_MS,
    LINES,
    HistoryStats,
    LineState,
    Profile,
    check_profile,
    history_stats,
)
from limits.policy import BANDS, Policy
from limits.reasons import BAND_ZH, Reason

ACTIONS: tuple[str, ...] = ("open", "raise", "keep", "reduce", "freeze")
# Overall action: the most severe line action wins; a raise outranks an opening.
_PRIORITY = {"freeze": 0, "reduce": 1, "raise": 2, "open": 3, "keep": 4}
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
    lever: str
    current: Any
    needed: Any
    action: str  # the action the change would lead to
    en: str
    zh: str

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


def _band_of(value: float | None, medium: float, high: float) -> int:
    if value is None:
        return 0
    return 2 if value >= high else 1 if value >= medium else 0


def assess(p: Profile, policy: Policy, h: HistoryStats | None = None) -> Assessment:
    risk = policy.risk
    if h is None:
        h = history_stats(p.repayment_history, policy.adjustment.overdue_lookback_months)
    sc = scorecard.score(p, h)
    pd = sc.pd
    levels = {
        "default": _band_of(pd, risk.pd.medium, risk.pd.high),
        "fraud": _band_of(p.fraud_risk, risk.fraud.medium, risk.fraud.high),
        "relational": _band_of(p.relational_risk, risk.relational.medium, risk.relational.high),
        # Monotone in fraud evidence: see graph/rings.py and docs/limits.md.
        "ring": _band_of(p.ring_exposure, risk.ring.medium, risk.ring.high),
    }
    level = max(levels.values())
    band = BANDS[level]
    drivers = tuple(k for k, v in levels.items() if v == level and level > 0)
    scored = p.fraud_risk is not None and p.relational_risk is not None
    frozen = p.fraud_risk is not None and p.fraud_risk >= policy.hard_stop.fraud_threshold

    lc = policy.lifecycle
    if p.lifecycle == "new" or p.months_on_book < lc.new_max_months_on_book:
        base_stage = "new"
    elif p.lifecycle == "dormant" or (
        p.active_days_30d <= lc.dormant_max_active_days_30d
        and p.monthly_txns <= lc.dormant_max_monthly_txns
    ):
        base_stage = "dormant"
    else:
        base_stage = "active"
    stage = "high_risk" if (band == "high" or h.overdue_now > 0) else base_stage

    seg = policy.segments
    income = p.income or 0.0
    if stage == "high_risk":
        segment = "high_risk"
    elif band == "medium" or pd >= seg.medium_risk_min_pd:
        segment = "medium_risk"
    elif income >= seg.high_value_min_income and pd <= seg.high_value_max_pd:
        segment = "high_value"
    else:
        segment = "standard"

    cap = policy.capacity
    capacity = max(0.0, income / 12.0 * cap.max_debt_service_ratio - p.obligations)
    capacity *= cap.repayment_months
    ceilings = [
        (policy.exposure.joint_cap * getattr(seg, segment).joint_cap_multiplier, "joint"),
        (capacity, "capacity"),
        *((c.value(p.income), c.name) for c in policy.regulatory_caps if c.scope == "joint"),
    ]
    joint_ceiling, joint_by = min(ceilings, key=lambda c: c[0])
    joint_target = (
        min(joint_ceiling, income * policy.exposure.income_multiple)
        * risk.pd_factor(pd)
        * risk.band_factor[band]  # type: ignore[index]
        * getattr(seg, segment).limit_factor
        * policy.macro_factor
    )
    return Assessment(
        pd=pd, points=sc.points, band=band, drivers=drivers, stage=stage,
        base_stage=base_stage, segment=segment, scored=scored, frozen=frozen,
        overdue_now=h.overdue_now, on_time_streak=h.on_time_streak, capacity=capacity,
        joint_ceiling=joint_ceiling, joint_ceiling_by=joint_by, joint_target=joint_target,
    )


def line_ceiling(line: str, a: Assessment, p: Profile, policy: Policy) -> tuple[float, str]:
    """The most the line may carry, permanent plus temporary, and what sets it."""
    share = getattr(policy.split, a.base_stage).share(line)
    cands = [(a.joint_ceiling * share, a.joint_ceiling_by if share >= 1 else "split"),
             (policy.lines.rules(line).max_limit, "line_max")]
    cands += [(c.value(p.income), c.name) for c in policy.regulatory_caps if c.scope == line]
    value, by = min(cands, key=lambda c: c[0])
    return max(0.0, value), by


def decide(p: Profile, policy: Policy, *, counterfactuals: bool = False) -> Decision:
    """The decision for one profile under one policy."""
    check_profile(p)
    h = history_stats(p.repayment_history, policy.adjustment.overdue_lookback_months)
    a = assess(p, policy, h)
    lines = tuple(_decide_line(line, p, a, h, policy) for line in LINES)
    action = min((ld.action for ld in lines), key=_PRIORITY.__getitem__)
    reasons: list[Reason] = []
    if a.frozen:
        reasons.append(Reason("FRAUD_HOLD", None, {
            "fraud_risk": p.fraud_risk, "threshold": policy.hard_stop.fraud_threshold,
            "refer_to": policy.hard_stop.refer_to}))
    elif a.stage == "high_risk":
        reasons.append(Reason("MONITORING"))
    if policy.macro_factor < 1.0:
        reasons.append(Reason("MACRO_TIGHTENING", None, {"factor": policy.macro_factor}))
    d = Decision(
        user_id=p.user_id, action=action, lines=lines, reasons=tuple(reasons), assessment=a,
        refer=policy.hard_stop.refer_to if a.frozen else None, inputs=p,
        policy_version=policy.version, policy_hash=policy.content_hash,
        model_version=scorecard.MODEL_VERSION, decided_at_ms=p.now_ms,
    )
    if counterfactuals:
        from limits.counterfactuals import find_counterfactuals

        d = Decision(**{**d.__dict__, "counterfactuals": tuple(find_counterfactuals(d, policy))})
    return d


def _drivers(a: Assessment) -> dict[str, Any]:
    return {"band": a.band, "drivers": a.drivers}


def _decide_line(
    line: str, p: Profile, a: Assessment, h: HistoryStats, policy: Policy
) -> LineDecision:
    st = p.lines.get(line)
    rules = policy.lines.rules(line)
    adj = policy.adjustment
    ceiling, ceiling_by = line_ceiling(line, a, p, policy)
    share = getattr(policy.split, a.base_stage).share(line)
    target = round_down(min(a.joint_target * share, ceiling), policy.rounding)
    reasons: list[Reason] = []
    current = st.limit if st is not None else None
    cur = current or 0.0

    if a.frozen:
        return LineDecision(line, "freeze", current, 0.0, st.temp_limit if st else 0.0, 0.0,
                            None, ceiling, target, ())

    if st is None:
        blockers = _open_blockers(line, p, a, h, policy, target)
        new = round_down(min(target, rules.open_max, ceiling), policy.rounding)
        if not blockers and new >= rules.min_open:
            action = "open"
            reasons.append(Reason("OPENED", line, {"new": new}))
        else:
            action, new = "keep", 0.0
            reasons.extend(blockers or [_not_enough(line, a, rules.min_open, target)])
    elif a.stage == "high_risk":
        to = ceiling
        if h.overdue_now:
            to = min(to, cur * (1.0 - adj.overdue_reduction))
            reasons.append(Reason("OVERDUE_NOW", line, {
                "bucket": h.overdue_now, "cut": adj.overdue_reduction,
                "window": adj.window_months}))
        if a.band == "high":
            to = min(to, target)
        new = min(cur, round_down(to, policy.rounding))
        action = "reduce" if new < cur else "keep"
        if action == "keep":
            reasons.append(Reason("KEPT", line, {"current": cur}))
        if a.band == "high":
            code = "HIGH_RISK" if action == "reduce" else "BAND_NO_RAISE"
            reasons.append(Reason(code, line, {"target": target, **_drivers(a)}))
    else:
        blockers = _raise_blockers(line, st, p, a, h, policy)
        new = cur if cur <= ceiling else round_down(ceiling, policy.rounding)
        action = "reduce" if new < cur else "keep"
        if not blockers and action == "keep":
            step = max(min(cur * adj.max_step_fraction, adj.max_step_amount), adj.min_step_amount)
            cand = round_down(min(target, cur + step, ceiling), policy.rounding)
            if cand >= cur + adj.min_step_amount:
                action, new = "raise", cand
                reasons.append(Reason("RAISED", line, {
                    "months": h.on_time_streak, "current": cur, "new": new}))
                if cand < target and cur + step < min(target, ceiling):
                    reasons.append(Reason("STEP_LIMITED", line, {
                        "step_fraction": adj.max_step_fraction,
                        "step_amount": adj.max_step_amount, "target": target}))
            elif a.capacity * share <= cur + adj.min_step_amount:
                blockers.append(Reason("NO_CAPACITY", line, {"capacity": a.capacity}))
            else:
                blockers.append(Reason("AT_TARGET", line, {"target": target}))
        if action == "reduce":
            reasons.append(Reason("CAP_APPLIED", line, {"ceiling": new, "cap": ceiling_by}))
        elif action == "keep":
            reasons.append(Reason("KEPT", line, {"current": cur}))
            reasons.extend(blockers)
            codes = {r.code for r in blockers}
            if target < cur + adj.min_step_amount and not codes & {"AT_TARGET", "NO_CAPACITY"}:
                # Even with every other condition met there would be no room to raise.
                if a.capacity * share <= cur + adj.min_step_amount:
                    reasons.append(Reason("NO_CAPACITY", line, {"capacity": a.capacity}))
                else:
                    reasons.append(Reason("AT_TARGET", line, {"target": target}))

    temp, until = _temporary(line, st, p, a, policy, action, new, ceiling, reasons)
    return LineDecision(line, action, current, new, st.temp_limit if st else 0.0, temp, until,
                        ceiling, target, tuple(reasons))


def _not_enough(line: str, a: Assessment, min_open: float, target: float) -> Reason:
    return Reason("NOT_ELIGIBLE_TO_OPEN", line, {
        "what": f"income and risk support {target:,.0f}, the line opens from {min_open:,.0f}",
        "what_zh": f"收入与风险水平支持的额度为 {target:,.0f}，开通起点为 {min_open:,.0f}",
    })


def _open_blockers(
    line: str, p: Profile, a: Assessment, h: HistoryStats, policy: Policy, target: float
) -> list[Reason]:
    rules = policy.lines.rules(line)
    out: list[Reason] = []
    share = getattr(policy.split, a.base_stage).share(line)
    if share <= 0 or (
        p.months_on_book < rules.open_min_months_on_book
        or h.on_time_streak < rules.open_min_on_time_months
    ):
        if a.base_stage == "new" or share <= 0:
            out.append(Reason("NEW_USER_BNPL_FIRST", line, {
                "months": rules.open_min_months_on_book,
                "on_time": rules.open_min_on_time_months}))
        else:
            out.append(Reason("NOT_ELIGIBLE_TO_OPEN", line, {
                "what": f"needs {rules.open_min_months_on_book} months on book and "
                        f"{rules.open_min_on_time_months} on-time months in a row",
                "what_zh": f"需要用满 {rules.open_min_months_on_book} 个月并连续按时还款 "
                           f"{rules.open_min_on_time_months} 个月"}))
    if policy.risk.require_scores and not a.scored:
        out.append(Reason("NOT_SCORED", line))
    if a.band not in rules.open_bands:
        out.append(Reason("NOT_ELIGIBLE_TO_OPEN", line, {
            "what": f"risk band {a.band}; it opens for bands {', '.join(rules.open_bands)}",
            "what_zh": f"风险等级为{BAND_ZH[a.band]}，仅对"
                       f"{'、'.join(BAND_ZH[b] for b in rules.open_bands)}风险等级开通"}))
    if a.stage == "dormant":
        out.append(Reason("DORMANT", line))
    if h.overdue_now:
        out.append(Reason("NOT_ELIGIBLE_TO_OPEN", line, {
            "what": "a repayment is overdue; repay it first",
            "what_zh": "存在逾期未还款项，请先还清"}))
    return out


def _raise_blockers(
    line: str, st: LineState, p: Profile, a: Assessment, h: HistoryStats, policy: Policy
) -> list[Reason]:
    adj = policy.adjustment
    out: list[Reason] = []
    if policy.risk.require_scores and not a.scored:
        out.append(Reason("NOT_SCORED", line))
    if a.band not in policy.risk.raise_bands:
        out.append(Reason("BAND_NO_RAISE", line, _drivers(a)))
    if a.stage == "dormant":
        out.append(Reason("DORMANT", line))
    if h.on_time_streak < adj.window_months:
        out.append(Reason("NEEDS_ON_TIME_WINDOW", line, {
            "window": adj.window_months, "months": h.on_time_streak,
            "missing": adj.window_months - h.on_time_streak}))
    usage = []
    if p.utilisation < adj.min_utilisation:
        usage.append(("utilisation", p.utilisation, adj.min_utilisation))
    if p.monthly_txns < adj.min_monthly_txns:
        usage.append(("txns", p.monthly_txns, adj.min_monthly_txns))
    if usage:
        out.append(Reason("LOW_USAGE", line, {"usage": tuple(usage)}))
    last = st.last_raise_ms
    if last is not None and p.now_ms - last < adj.cooldown_days * DAY_MS:
        out.append(Reason("COOLDOWN", line, {
            "last_raise": date_text(last, policy),
            "next_raise": date_text(last + adj.cooldown_days * DAY_MS, policy),
            "days": adj.cooldown_days}))
    return out


def _temporary(
    line: str,
    st: LineState | None,
    p: Profile,
    a: Assessment,
    policy: Policy,
    action: str,
    new: float,
    ceiling: float,
    reasons: list[Reason],
) -> tuple[float, int | None]:
    """The temporary raise on top of ``new``: a season's, or an unexpired earlier one."""
    had = st is not None and st.temp_limit > 0
    live = had and st is not None and st.temp_until_ms is not None and p.now_ms < st.temp_until_ms
    if had and not live and st is not None and st.temp_until_ms is not None:
        reasons.append(Reason("TEMP_EXPIRED", line, {"until": date_text(st.temp_until_ms, policy)}))
    if action in ("reduce", "freeze") or a.stage == "high_risk" or new <= 0:
        if live:
            reasons.append(Reason("TEMP_WITHDRAWN", line))
        return 0.0, None
    temp, until, season = 0.0, None, None
    if live and st is not None:
        temp, until = st.temp_limit, st.temp_until_ms
    eligible = a.band in policy.risk.raise_bands and (a.scored or not policy.risk.require_scores)
    if eligible and a.stage != "dormant":
        for s, _, end in policy.active_seasons(p.now_ms):
            if line not in s.lines:
                continue
            t = round_down(new * s.raise_fraction, policy.rounding)
            if t > temp:
                temp, until, season = t, end, s
    temp = min(temp, ceiling - new)
    if temp <= 0 or until is None:
        return 0.0, None
    if season is not None:
        reasons.append(Reason("TEMP_RAISE", line, {
            "season": season.name, "season_zh": season.name_zh, "temp": temp,
            "until": date_text(until - 1, policy)}))
    return temp, until
