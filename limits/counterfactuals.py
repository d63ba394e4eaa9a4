"""Counterfactuals: for each thing a user (or the risk picture) could change, the smallest
change that changes the decision, found by re-running the engine.

Nothing here is a canned sentence: each lever is searched (a scan over whole months or
payments, a bisection over a score or an amount) and every answer is re-checked with
the engine before it is reported. For a decision that is already favourable (raise,
open) the search runs the other way and says what would stop it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from limits.features import HISTORY_ON_TIME, MONTH_MS, Profile

if TYPE_CHECKING:
    from limits.engine import Counterfactual, Decision
    from limits.policy import Policy

_OUTCOME = {
    "raise": ("a limit would be raised", "即可提额"),
    "open": ("a new line would open", "即可开通新额度"),
    "keep": ("limits would be kept, not cut", "额度将维持不变、不再下调"),
    "reduce": ("a limit would be reduced", "额度将被下调"),
    "freeze": ("the account would be frozen", "账户将被冻结"),
}
_MAX_MONTHS = 36
_BISECT_STEPS = 24


def find_counterfactuals(d: Decision, policy: Policy) -> list[Counterfactual]:
    from limits.engine import FAVOUR, decide

    base = d.inputs
    fav = FAVOUR[d.action]
    improving = fav < max(FAVOUR.values())

    def changed(p: Profile) -> str | None:
        act = decide(p, policy).action
        better = FAVOUR[act] > fav if improving else FAVOUR[act] < fav
        return act if better else None

    out: list[Counterfactual] = []
    levers = _improving_levers(base) if improving else _worsening_levers(base)
    for lever in levers:
        found = lever(base, changed)
        if found is not None:
            out.append(found)
    if improving and not out:
        # No one change is enough (say, a short on-time window and too little use):
        # search the smallest change of two things at once.
        found = _combined(base, changed)
        if found is not None:
            out.append(found)
    return out


def _steps(p: Profile) -> dict[str, list[tuple[Profile, str, str, Any]]]:
    """Per lever, its candidate changes in increasing size: (profile, en, zh, value)."""
    months = [(_months_passing(p, k), f"{k} more month{'s' if k > 1 else ''} of on-time "
               "repayment", f"再按时还款 {k} 个月", k) for k in range(1, _MAX_MONTHS + 1)]
    start = math.floor(p.monthly_txns) + 1
    txns = [(replace(p, monthly_txns=float(n)), f"using the credit line for {n} payments a "
             "month", f"每月使用额度支付 {n} 笔", n) for n in range(start, start + 30)]
    util = [(replace(p, utilisation=u), f"using {u:.0%} of the limit",
             f"额度使用率达到 {u:.0%}", u)
            for u in (round(0.05 * i, 2) for i in range(1, 21)) if u > p.utilisation]
    return {"on_time_months": months, "monthly_txns": txns, "utilisation": util}


def _combined(base: Profile, changed: Search) -> Counterfactual | None:
    steps = _steps(base)
    names = list(steps)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for _, en_a, zh_a, va in steps[a]:
                pa = next(x[0] for x in steps[a] if x[3] == va)
                for pb, en_b, zh_b, vb in _steps(pa)[b]:
                    act = changed(pb)
                    if act:
                        return _cf(f"{a}+{b}", None, {a: va, b: vb}, act,
                                   f"{en_a}, and {en_b}", f"{zh_a}，并且{zh_b}")
    return None


def _cf(lever: str, current: object, needed: object, action: str, en: str, zh: str
        ) -> Counterfactual:
    from limits.engine import Counterfactual

    oen, ozh = _OUTCOME[action]
    return Counterfactual(lever, current, needed, action, f"{en}: {oen}.", f"{zh}，{ozh}。")


Search = Callable[[Profile], "str | None"]
LeverFn = Callable[[Profile, Search], "Counterfactual | None"]


def _months_passing(p: Profile, k: int, ch: str = HISTORY_ON_TIME) -> Profile:
    hist = (p.repayment_history + ch * k)[-_MAX_MONTHS:]
    return replace(p, repayment_history=hist, months_on_book=p.months_on_book + k,
                   now_ms=p.now_ms + k * MONTH_MS)


def _on_time_months(p: Profile, changed: Search) -> Counterfactual | None:
    for k in range(1, _MAX_MONTHS + 1):
        act = changed(_months_passing(p, k))
        if act:
            unit_en = "month" if k == 1 else "months"
            return _cf("on_time_months", 0, k, act,
                       f"{k} more {unit_en} of on-time repayment",
                       f"再按时还款 {k} 个月")
    return None


def _monthly_txns(p: Profile, changed: Search) -> Counterfactual | None:
    start = math.floor(p.monthly_txns) + 1
    for n in range(start, start + 30):
        act = changed(replace(p, monthly_txns=float(n)))
        if act:
            return _cf("monthly_txns", p.monthly_txns, n, act,
                       f"using the credit line for {n} payments a month",
                       f"每月使用额度支付 {n} 笔")
    return None


def _utilisation(p: Profile, changed: Search) -> Counterfactual | None:
    steps = [round(0.05 * i, 2) for i in range(1, 21)]
    for u in (s for s in steps if s > p.utilisation):
        act = changed(replace(p, utilisation=u))
        if act:
            return _cf("utilisation", p.utilisation, u, act,
                       f"using {u:.0%} of the limit", f"额度使用率达到 {u:.0%}")
    return None


def _with(p: Profile, name: str, value: Any) -> Profile:
    changes: dict[str, Any] = {name: value}
    return replace(p, **changes)


def _bisect_down(p: Profile, name: str, changed: Search, digits: int) -> tuple[float, str] | None:
    """The largest value below the current one that changes the decision."""
    cur = getattr(p, name)
    if cur is None or cur <= 0:
        return None
    act = changed(_with(p, name, 0.0))
    if act is None:
        return None
    lo, hi = 0.0, float(cur)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if changed(_with(p, name, mid)):
            lo = mid
        else:
            hi = mid
    q = 10 ** digits
    val = math.floor(lo * q) / q
    act = changed(_with(p, name, val)) or changed(_with(p, name, lo))
    if act is None:
        return None
    return (val if changed(_with(p, name, val)) else lo), act


def _bisect_up(p: Profile, name: str, changed: Search, top: float, unit: float
               ) -> tuple[float, str] | None:
    """The smallest value above the current one (at most ``top``) that changes it."""
    cur = float(getattr(p, name) or 0.0)
    if cur >= top or changed(_with(p, name, top)) is None:
        return None
    lo, hi = cur, top
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if changed(_with(p, name, mid)):
            hi = mid
        else:
            lo = mid
    val = math.ceil(hi / unit) * unit
    act = changed(_with(p, name, val))
    if act is None:
        val = hi
        act = changed(_with(p, name, val))
    return (val, act) if act else None


def _relational(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_down(p, "relational_risk", changed, 2)
    if r is None:
        return None
    v, act = r
    return _cf("relational_risk", p.relational_risk, v, act,
               f"linked-account (relational) risk at or below {v:.2f}",
               f"关联账户风险降至 {v:.2f} 或以下")


def _fraud(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_down(p, "fraud_risk", changed, 2)
    if r is None:
        return None
    v, act = r
    return _cf("fraud_risk", p.fraud_risk, v, act,
               f"fraud risk at or below {v:.2f} after investigation",
               f"经调查后欺诈风险降至 {v:.2f} 或以下")


def _ring(p: Profile, changed: Search) -> Counterfactual | None:
    if not p.ring_size and not p.ring_exposure:
        return None
    act = changed(replace(p, ring_size=0, ring_id=None, ring_kind=None, ring_suspicion=0.0,
                          ring_exposure=0.0))
    if act is None:
        return None
    return _cf("ring", p.ring_id, None, act,
               f"no longer being linked to the group {p.ring_id}",
               f"不再与关联团伙 {p.ring_id} 存在关联")


def _income(p: Profile, changed: Search) -> Counterfactual | None:
    top = max(10.0 * (p.income or 0.0), 2_000_000.0)
    r = _bisect_up(p, "income", changed, top, 1000.0)
    if r is None:
        return None
    v, act = r
    return _cf("income", p.income, v, act,
               f"a verified annual income of {v:,.0f}", f"经核实的年收入达到 {v:,.0f}")


def _obligations(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_down(p, "obligations", changed, 0)
    if r is None:
        return None
    v, act = r
    return _cf("obligations", p.obligations, v, act,
               f"other monthly debt repayments at or below {v:,.0f}",
               f"其他每月还款额降至 {v:,.0f} 或以下")


def _credit_score(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_up(p, "credit_score", changed, 950.0, 1.0)
    if r is None:
        return None
    v, act = r
    return _cf("credit_score", p.credit_score, int(v), act,
               f"a credit score of {int(v)}", f"信用分达到 {int(v)}")


def _improving_levers(p: Profile) -> list[LeverFn]:
    return [_on_time_months, _monthly_txns, _utilisation, _relational, _fraud, _ring,
            _credit_score, _income, _obligations]


def _worse_relational(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_up(p, "relational_risk", changed, 1.0, 0.01)
    if r is None:
        return None
    v, act = r
    return _cf("relational_risk", p.relational_risk, v, act,
               f"linked-account (relational) risk reaching {v:.2f}",
               f"关联账户风险升至 {v:.2f}")


def _worse_fraud(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_up(p, "fraud_risk", changed, 1.0, 0.01)
    if r is None:
        return None
    v, act = r
    return _cf("fraud_risk", p.fraud_risk, v, act,
               f"fraud risk reaching {v:.2f}", f"欺诈风险升至 {v:.2f}")


def _overdue_month(p: Profile, changed: Search) -> Counterfactual | None:
    act = changed(_months_passing(p, 1, "1"))
    if act is None:
        return None
    return _cf("overdue", 0, 1, act, "one overdue repayment next month", "下月出现一次逾期")


def _worsening_levers(p: Profile) -> list[LeverFn]:
    return [_overdue_month, _worse_relational, _worse_fraud]
