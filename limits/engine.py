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

from typing import Any

from limits import scorecard
from limits.decision import (
    ACTIONS,
    FAVOUR,
    PRIORITY,
    Assessment,
    Counterfactual,
    Decision,
    LineDecision,
    date_text,
    round_down,
)
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

# The decision types live in limits.decision; they are named here too for the callers
# that know the engine only.
__all__ = ["ACTIONS", "FAVOUR", "Assessment", "Counterfactual", "Decision", "LineDecision",
           "assess", "date_text", "decide", "line_ceiling", "round_down"]


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


def decide(p: Profile, policy: Policy) -> Decision:
    """The decision for one profile under one policy, as of ``p.now_ms``. It searches no
    counterfactuals: limits.counterfactuals.with_counterfactuals adds them."""
    check_profile(p)
    h = history_stats(p.repayment_history, policy.adjustment.overdue_lookback_months)
    a = assess(p, policy, h)
    lines = tuple(_decide_line(line, p, a, h, policy) for line in LINES)
    action = min((ld.action for ld in lines), key=PRIORITY.__getitem__)
    reasons: list[Reason] = []
    if a.frozen:
        reasons.append(Reason("FRAUD_HOLD", None, {
            "fraud_risk": p.fraud_risk, "threshold": policy.hard_stop.fraud_threshold,
            "refer_to": policy.hard_stop.refer_to}))
    elif a.stage == "high_risk":
        reasons.append(Reason("MONITORING"))
    if policy.macro_factor < 1.0:
        reasons.append(Reason("MACRO_TIGHTENING", None, {"factor": policy.macro_factor}))
    return Decision(
        user_id=p.user_id, action=action, lines=lines, reasons=tuple(reasons), assessment=a,
        refer=policy.hard_stop.refer_to if a.frozen else None, inputs=p,
        policy_version=policy.version, policy_hash=policy.content_hash,
        model_version=scorecard.MODEL_VERSION, decided_at_ms=p.now_ms,
    )


def _drivers(a: Assessment) -> dict[str, Any]:
    return {"band": a.band, "drivers": a.drivers}


class _Line:
    """What every path of one line's decision starts from."""

    __slots__ = ("name", "st", "current", "held", "ceiling", "ceiling_by", "share", "target")

    def __init__(self, line: str, p: Profile, a: Assessment, policy: Policy) -> None:
        self.name = line
        self.st = p.lines.get(line)
        self.current = self.st.limit if self.st is not None else None
        # What the line holds now, in whole units of the policy's rounding: a stored
        # limit off the grid is kept at the multiple below it.
        self.held = round_down(self.current or 0.0, policy.rounding)
        self.ceiling, self.ceiling_by = line_ceiling(line, a, p, policy)
        self.share = getattr(policy.split, a.base_stage).share(line)
        self.target = round_down(min(a.joint_target * self.share, self.ceiling),
                                 policy.rounding)


def _decide_line(
    line: str, p: Profile, a: Assessment, h: HistoryStats, policy: Policy
) -> LineDecision:
    ln = _Line(line, p, a, policy)
    if a.frozen:
        return _freeze(ln)
    reasons: list[Reason] = []
    if ln.st is None:
        action, new = _open_or_not(ln, p, a, h, policy, reasons)
    elif a.stage == "high_risk":
        action, new = _reduce_for_risk(ln, a, h, policy, reasons)
    else:
        action, new = _raise_or_keep(ln, ln.st, p, a, h, policy, reasons)
    temp, until = _temporary(line, ln.st, p, a, policy, action, new, ln.ceiling, reasons)
    return LineDecision(line, action, ln.current, new, ln.st.temp_limit if ln.st else 0.0,
                        temp, until, ln.ceiling, ln.target, tuple(reasons))


def _freeze(ln: _Line) -> LineDecision:
    """Fraud hard stop: nothing left on the line, nothing opened."""
    return LineDecision(ln.name, "freeze", ln.current, 0.0,
                        ln.st.temp_limit if ln.st else 0.0, 0.0, None, ln.ceiling,
                        ln.target, ())


def _open_or_not(ln: _Line, p: Profile, a: Assessment, h: HistoryStats, policy: Policy,
                 reasons: list[Reason]) -> tuple[str, float]:
    """A line not held: opened when its conditions hold, else left closed with why."""
    rules = policy.lines.rules(ln.name)
    blockers = _open_blockers(ln.name, p, a, h, policy, ln.target)
    new = round_down(min(ln.target, rules.open_max, ln.ceiling), policy.rounding)
    if not blockers and new >= rules.min_open:
        reasons.append(Reason("OPENED", ln.name, {"new": new}))
        return "open", new
    reasons.extend(blockers or [_not_enough(ln.name, a, rules.min_open, ln.target)])
    return "keep", 0.0


def _reduce_for_risk(ln: _Line, a: Assessment, h: HistoryStats, policy: Policy,
                     reasons: list[Reason]) -> tuple[str, float]:
    """High-risk stage: overdue now cuts the line, a high band brings it to target."""
    adj = policy.adjustment
    cur = ln.held
    to = ln.ceiling
    if h.overdue_now:
        to = min(to, cur * (1.0 - adj.overdue_reduction))
        reasons.append(Reason("OVERDUE_NOW", ln.name, {
            "bucket": h.overdue_now, "cut": adj.overdue_reduction,
            "window": adj.window_months}))
    if a.band == "high":
        to = min(to, ln.target)
    new = min(cur, round_down(to, policy.rounding))
    action = "reduce" if new < cur else "keep"
    if action == "keep":
        reasons.append(Reason("KEPT", ln.name, {"current": cur}))
    if a.band == "high":
        code = "HIGH_RISK" if action == "reduce" else "BAND_NO_RAISE"
        reasons.append(Reason(code, ln.name, {"target": ln.target, **_drivers(a)}))
    return action, new


def _raise_or_keep(ln: _Line, st: LineState, p: Profile, a: Assessment, h: HistoryStats,
                   policy: Policy, reasons: list[Reason]) -> tuple[str, float]:
    """A held line outside the high-risk stage: brought down to a cap that now binds,
    raised when every condition holds, else kept with every reason it was not raised."""
    adj = policy.adjustment
    cur = ln.held
    if cur > ln.ceiling:
        new = round_down(ln.ceiling, policy.rounding)
        reasons.append(Reason("CAP_APPLIED", ln.name, {"ceiling": new, "cap": ln.ceiling_by}))
        return "reduce", new
    blockers = _raise_blockers(ln.name, st, p, a, h, policy)
    room = _no_room(ln, a, policy)
    if not blockers:
        step = max(min(cur * adj.max_step_fraction, adj.max_step_amount), adj.min_step_amount)
        cand = round_down(min(ln.target, cur + step, ln.ceiling), policy.rounding)
        if cand >= cur + adj.min_step_amount:
            reasons.append(Reason("RAISED", ln.name, {
                "months": h.on_time_streak, "current": cur, "new": cand}))
            if cand < ln.target and cur + step < min(ln.target, ln.ceiling):
                reasons.append(Reason("STEP_LIMITED", ln.name, {
                    "step_fraction": adj.max_step_fraction,
                    "step_amount": adj.max_step_amount, "target": ln.target}))
            return "raise", cand
    reasons.append(Reason("KEPT", ln.name, {"current": cur}))
    reasons.extend(blockers)
    if room is None and not blockers:
        room = Reason("AT_TARGET", ln.name, {"target": ln.target})
    if room is not None:
        # Even with every other condition met there would be no room to raise.
        reasons.append(room)
    return "keep", cur


def _no_room(ln: _Line, a: Assessment, policy: Policy) -> Reason | None:
    """Why the line could not rise even with every behaviour condition met, or None when
    a raise of at least the minimum step would fit."""
    adj = policy.adjustment
    cur = ln.held
    if ln.target >= cur + adj.min_step_amount:
        return None
    rules = policy.lines.rules(ln.name)
    if cur + adj.min_step_amount > rules.max_limit:
        return Reason("AT_MAXIMUM", ln.name, {"max_limit": rules.max_limit})
    if a.capacity * ln.share <= cur + adj.min_step_amount:
        return Reason("NO_CAPACITY", ln.name, {"capacity": a.capacity})
    cap = a.joint_ceiling_by if ln.ceiling_by == "split" else ln.ceiling_by
    rule = next((c for c in policy.regulatory_caps if c.name == cap), None)
    if ln.ceiling < cur + adj.min_step_amount and rule is not None:
        by_income = rule.income_fraction is not None
        return Reason("CAP_BINDS", ln.name, {
            "ceiling": ln.ceiling, "cap": cap,
            "hint": "a higher verified income would raise it" if by_income
            else "no raise is possible above it",
            "hint_zh": "经核实的收入提高后可提额" if by_income else "无法超过该上限提额"})
    return Reason("AT_TARGET", ln.name, {"target": ln.target})


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
    # Cut back by the ceiling, still a whole multiple of the rounding.
    temp = round_down(min(temp, ceiling - new), policy.rounding)
    if temp <= 0 or until is None:
        return 0.0, None
    if season is not None:
        reasons.append(Reason("TEMP_RAISE", line, {
            "season": season.name, "season_zh": season.name_zh, "temp": temp,
            "until": date_text(until - 1, policy)}))
    return temp, until
