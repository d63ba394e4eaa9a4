"""Counterfactuals: for each thing a user (or the risk picture) could change, the smallest
change that changes the decision, found by re-running the engine.

Nothing here is a canned sentence: each lever is searched (a scan over whole months or
payments, a bisection over a score or an amount) and every answer is re-checked with
the engine before it is reported, with the line it moves and the limit it would give.
For a decision that is already favourable (raise, open) the search runs the other way
and says what would stop it.

Every change is one the user could make: time only runs forward (more months of
on-time repayment, waiting for a cool-down to end), use of the line, a credit score or
a verified income only rises, other debts only fall. When no single change is enough,
a plan of several is built from the policy's own requirements and shrunk until no part
of it can be smaller. The linked-risk levers (fraud, relational risk, a ring) say what
an investigation would have to find; they are not the user's to change.

The engine never calls this module (``decide`` searches nothing); callers that want
counterfactuals ask for them with ``with_counterfactuals``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from limits.decision import FAVOUR, Counterfactual, Decision, LineDecision, date_text
from limits.engine import decide
from limits.features import DAY_MS, HISTORY_ON_TIME, MONTH_MS, Profile, history_stats
from limits.policy import Policy
from limits.reasons import LINE_NAMES

_MAX_MONTHS = 36
_MAX_TXNS = 30
_BISECT_STEPS = 24
# Levers a user can move; the others (fraud, relational risk, a ring) are findings of
# an investigation.
USER_LEVERS = frozenset({"on_time_months", "wait", "monthly_txns", "utilisation",
                         "credit_score", "income", "obligations"})
DATED_PARAMS = ("next_raise",)


def with_counterfactuals(d: Decision, policy: Policy) -> Decision:
    """``d`` with its counterfactuals searched."""
    return replace(d, counterfactuals=tuple(find_counterfactuals(d, policy)))


def decide_with_counterfactuals(p: Profile, policy: Policy, counterfactuals: bool = True
                                ) -> Decision:
    """``decide``, then the counterfactual search when ``counterfactuals``."""
    d = decide(p, policy)
    return with_counterfactuals(d, policy) if counterfactuals else d


def never_overdue(p: Profile) -> bool:
    """No overdue month in the history, no overdue episode, no day past due."""
    return (p.overdue_count == 0 and p.worst_dpd == 0
            and not any(c in "123456" for c in p.repayment_history))


_BETTER = {"keep": ("raise", "open"), "reduce": ("keep", "raise", "open")}


def is_explained(d: Decision) -> bool:
    """Whether a decision that keeps or lowers a line tells the user how it could get
    better: a counterfactual that improves it, or a reason dated with when it can."""
    wanted = _BETTER.get(d.action)
    if wanted is None:
        return True
    if any(c.action in wanted for c in d.counterfactuals):
        return True
    return any(k in r.params for r in d.all_reasons for k in DATED_PARAMS)


def find_counterfactuals(d: Decision, policy: Policy) -> list[Counterfactual]:
    base = d.inputs
    fav = FAVOUR[d.action]
    improving = fav < max(FAVOUR.values())

    def changed(p: Profile) -> Decision | None:
        again = decide(p, policy)
        f = FAVOUR[again.action]
        return again if (f > fav if improving else f < fav) else None

    if not improving:
        return [c for c in (lever(base, changed) for lever in _WORSENING) if c is not None]
    out = [c for c in (lever(base, changed, policy) for lever in _IMPROVING) if c is not None]
    if not any(c.lever in USER_LEVERS for c in out):
        # No one change the user can make is enough (say, a short on-time window and
        # too little use): a plan of several.
        plan = _plan(base, changed, policy)
        if plan is not None:
            out.insert(0, plan)
    return out


Search = Callable[[Profile], "Decision | None"]

_OUTCOME = {
    "raise": ("the {line} would rise to {limit:,.0f}", "{line_zh}可提升至 {limit:,.0f}"),
    "open": ("the {line} would open with {limit:,.0f}", "可开通{line_zh}，额度 {limit:,.0f}"),
    "keep": ("the {line} would be kept at {limit:,.0f}, not cut",
             "{line_zh}将维持 {limit:,.0f}、不再下调"),
    "reduce": ("the {line} would be reduced to {limit:,.0f}", "{line_zh}将下调至 {limit:,.0f}"),
    "freeze": ("the account would be frozen", "账户将被冻结"),
}


def _moved_line(d: Decision) -> LineDecision:
    """The line that carries the overall action of ``d`` (a held one first)."""
    found = [ld for ld in d.lines if ld.action == d.action]
    return next((ld for ld in found if ld.current_limit is not None), found[0])


def _cf(lever: str, current: object, needed: object, d: Decision, en: str, zh: str
        ) -> Counterfactual:
    ld = _moved_line(d)
    line_en, line_zh = LINE_NAMES[ld.line]
    oen, ozh = _OUTCOME[d.action]
    limit = ld.new_limit
    return Counterfactual(lever, current, needed, d.action,
                          f"{en}: {oen.format(line=line_en, limit=limit)}.",
                          f"{zh}，{ozh.format(line_zh=line_zh, limit=limit)}。",
                          ld.line, limit)


# -- changes to a profile ---------------------------------------------------------------
def _months_passing(p: Profile, k: int, ch: str = HISTORY_ON_TIME) -> Profile:
    if k <= 0:
        return p
    hist = (p.repayment_history + ch * k)[-_MAX_MONTHS:]
    return replace(p, repayment_history=hist, months_on_book=p.months_on_book + k,
                   now_ms=p.now_ms + k * MONTH_MS)


def _using(p: Profile, n: float) -> Profile:
    """``p`` paying ``n`` times a month with the line: an account stored as dormant is
    taken to be in use again (its stored stage follows its use)."""
    if n <= p.monthly_txns:
        return p
    return replace(p, monthly_txns=float(n), active_days_30d=max(p.active_days_30d, 1),
                   lifecycle="active" if p.lifecycle == "dormant" else p.lifecycle)


def _with(p: Profile, name: str, value: Any) -> Profile:
    changes: dict[str, Any] = {name: value}
    return replace(p, **changes)


def _txns_start(p: Profile) -> int:
    return math.floor(p.monthly_txns) + 1


def _util_steps(p: Profile) -> list[float]:
    return [u for u in (round(0.05 * i, 2) for i in range(1, 21)) if u > p.utilisation]


def _bisect_down(p: Profile, name: str, changed: Search, digits: int
                 ) -> tuple[float, Decision] | None:
    """The largest value below the current one that changes the decision."""
    cur = getattr(p, name)
    if cur is None or cur <= 0 or changed(_with(p, name, 0.0)) is None:
        return None
    lo, hi = 0.0, float(cur)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if changed(_with(p, name, mid)):
            lo = mid
        else:
            hi = mid
    q = 10 ** digits
    for val in (math.floor(lo * q) / q, lo):
        d = changed(_with(p, name, val))
        if d is not None:
            return val, d
    return None


def _bisect_up(p: Profile, name: str, changed: Search, top: float, unit: float
               ) -> tuple[float, Decision] | None:
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
    for val in (math.ceil(hi / unit) * unit, hi):
        d = changed(_with(p, name, val))
        if d is not None:
            return val, d
    return None


# -- levers that improve a decision ----------------------------------------------------
def _months_text(k: int) -> tuple[str, str]:
    return (f"{k} more month{'s' if k > 1 else ''} of on-time repayment",
            f"再按时还款 {k} 个月")


def _on_time_months(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    for k in range(1, _MAX_MONTHS + 1):
        d = changed(_months_passing(p, k))
        if d is not None:
            return _cf("on_time_months", 0, k, d, *_months_text(k))
    return None


def _cooldown_ends(p: Profile, policy: Policy) -> list[int]:
    days = policy.adjustment.cooldown_days * DAY_MS
    return sorted({st.last_raise_ms + days for st in p.lines.values()
                   if st.last_raise_ms is not None and st.last_raise_ms + days > p.now_ms})


def _wait_text(at: int, policy: Policy) -> tuple[str, str]:
    day = date_text(at, policy)
    return (f"from {day}, when the cool-down since the last raise ends",
            f"自 {day} 起（距上次提额的间隔期结束后）")


def _wait(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    """The same profile on the day a cool-down ends: the date a raise becomes possible."""
    for end in _cooldown_ends(p, policy):
        d = changed(replace(p, now_ms=end))
        if d is not None:
            return _cf("wait", date_text(p.now_ms, policy), date_text(end, policy), d,
                       *_wait_text(end, policy))
    return None


def _txns_text(n: int) -> tuple[str, str]:
    return (f"using the credit line for {n} payment{'s' if n != 1 else ''} a month",
            f"每月使用额度支付 {n} 笔")


def _monthly_txns(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    start = _txns_start(p)
    for n in range(start, start + _MAX_TXNS):
        d = changed(_using(p, n))
        if d is not None:
            return _cf("monthly_txns", p.monthly_txns, n, d, *_txns_text(n))
    return None


def _util_text(u: float) -> tuple[str, str]:
    return f"using {u:.0%} of the limit", f"额度使用率达到 {u:.0%}"


def _utilisation(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    for u in _util_steps(p):
        d = changed(replace(p, utilisation=u))
        if d is not None:
            return _cf("utilisation", p.utilisation, u, d, *_util_text(u))
    return None


def _relational(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    r = _bisect_down(p, "relational_risk", changed, 2)
    if r is None:
        return None
    v, d = r
    return _cf("relational_risk", p.relational_risk, v, d,
               f"linked-account (relational) risk at or below {v:.2f}",
               f"关联账户风险降至 {v:.2f} 或以下")


def _fraud(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    r = _bisect_down(p, "fraud_risk", changed, 2)
    if r is None:
        return None
    v, d = r
    return _cf("fraud_risk", p.fraud_risk, v, d,
               f"fraud risk at or below {v:.2f} after investigation",
               f"经调查后欺诈风险降至 {v:.2f} 或以下")


def _unlinked(p: Profile) -> Profile:
    """``p`` cleared of its group: in none, exposed to none."""
    return replace(p, ring_size=0, ring_id=None, ring_kind=None, ring_suspicion=0.0,
                   ring_exposure=0.0)


def _ring(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    if not p.ring_size and not p.ring_exposure:
        return None
    d = changed(_unlinked(p))
    if d is None:
        return None
    return _cf("ring", p.ring_id, None, d,
               f"no longer being linked to the group {p.ring_id}",
               f"不再与关联团伙 {p.ring_id} 存在关联")


def _income_top(p: Profile) -> float:
    return max(10.0 * (p.income or 0.0), 2_000_000.0)


def _income_text(v: float) -> tuple[str, str]:
    return f"a verified annual income of {v:,.0f}", f"经核实的年收入达到 {v:,.0f}"


def _income(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    r = _bisect_up(p, "income", changed, _income_top(p), 1000.0)
    if r is None:
        return None
    v, d = r
    return _cf("income", p.income, v, d, *_income_text(v))


def _obligations_text(v: float) -> tuple[str, str]:
    return (f"other monthly debt repayments at or below {v:,.0f}",
            f"其他每月还款额降至 {v:,.0f} 或以下")


def _obligations(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    r = _bisect_down(p, "obligations", changed, 0)
    if r is None:
        return None
    v, d = r
    return _cf("obligations", p.obligations, v, d, *_obligations_text(v))


def _credit_score(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    r = _bisect_up(p, "credit_score", changed, 950.0, 1.0)
    if r is None:
        return None
    v, d = r
    return _cf("credit_score", p.credit_score, int(v), d,
               f"a credit score of {int(v)}", f"信用分达到 {int(v)}")


_IMPROVING: tuple[Callable[[Profile, Search, Policy], Counterfactual | None], ...] = (
    _on_time_months, _wait, _monthly_txns, _utilisation, _relational, _fraud, _ring,
    _credit_score, _income, _obligations)


# -- a plan of several changes ---------------------------------------------------------
def _apply(p: Profile, plan: dict[str, Any]) -> Profile:
    """``p`` with every part of ``plan``: months first (they move the clock), then the
    wait for a cool-down, then use, then income."""
    q = _months_passing(p, plan.get("on_time_months", 0))
    if "wait" in plan:
        q = replace(q, now_ms=max(q.now_ms, plan["wait"]))
    if "monthly_txns" in plan:
        q = _using(q, plan["monthly_txns"])
    if "utilisation" in plan:
        q = replace(q, utilisation=max(q.utilisation, plan["utilisation"]))
    if "income" in plan:
        q = replace(q, income=plan["income"])
    if "credit_score" in plan:
        q = replace(q, credit_score=plan["credit_score"])
    for name in ("fraud_risk", "relational_risk"):
        if name in plan:
            q = _with(q, name, plan[name])
    if plan.get("ring"):
        q = _unlinked(q)
    return q


def _months_for_streak(p: Profile, streak: int) -> int:
    """On-time months from now until the streak is ``streak`` long. The history keeps
    the last 36 months, so old on-time months can fall out of it as new ones come in."""
    for k in range(_MAX_MONTHS + 1):
        if history_stats(_months_passing(p, k).repayment_history).on_time_streak >= streak:
            return k
    return _MAX_MONTHS


def _requirements(p: Profile, policy: Policy) -> dict[str, Any]:
    """Every behaviour the policy asks of a raise or an opening, as changes to ``p``."""
    adj = policy.adjustment
    months = _months_for_streak(p, adj.window_months)
    for line, rules in ((ln, policy.lines.rules(ln)) for ln in ("bnpl", "cash_loan")):
        if line not in p.lines:
            months = max(months, _months_for_streak(p, rules.open_min_on_time_months),
                         rules.open_min_months_on_book - p.months_on_book,
                         policy.lifecycle.new_max_months_on_book - p.months_on_book)
    plan: dict[str, Any] = {"on_time_months": months}
    ends = _cooldown_ends(p, policy)
    if ends and ends[-1] > p.now_ms + months * MONTH_MS:
        plan["wait"] = ends[-1]
    txns = max(_txns_start(p), math.ceil(adj.min_monthly_txns),
               math.floor(policy.lifecycle.dormant_max_monthly_txns) + 1)
    plan["monthly_txns"] = txns
    need = math.ceil(adj.min_utilisation * 20 - 1e-9) / 20
    if need > p.utilisation:
        plan["utilisation"] = need
    return plan


def _plan(p: Profile, changed: Search, policy: Policy) -> Counterfactual | None:
    plan = _requirements(p, policy)
    d = changed(_apply(p, plan))
    if d is None:
        # The behaviour is there and there is still no room: income, then a better
        # credit score too.
        d = _add_bisected(p, plan, "income", changed, _income_top(p), 1000.0)
    if d is None:
        plan["income"] = _income_top(p)
        d = _add_bisected(p, plan, "credit_score", changed, 950.0, 1.0)
        if d is not None:
            del plan["income"]
            d = _add_bisected(p, plan, "income", changed, _income_top(p), 1000.0) or d
            plan.setdefault("income", _income_top(p))
    if d is None:
        # Nothing the user does is enough while the linked risk stands: what an
        # investigation would also have to find, with the user's part.
        risk = _risk_parts(p, policy)
        if not risk:
            return None
        plan.update(risk, income=_income_top(p), credit_score=950.0)
        d = changed(_apply(p, plan))
    if d is None:
        return None
    plan, d = _shrink(p, plan, changed, policy, d)
    return _plan_cf(p, plan, d, policy)


def _risk_parts(p: Profile, policy: Policy) -> dict[str, Any]:
    """The linked-risk levers at their best: no fraud or relational risk, no ring."""
    parts: dict[str, Any] = {}
    for name in ("fraud_risk", "relational_risk"):
        if getattr(p, name):
            parts[name] = 0.0
    if p.ring_size or p.ring_exposure:
        parts["ring"] = True
    return parts


def _add_bisected(p: Profile, plan: dict[str, Any], part: str, changed: Search, top: float,
                  unit: float) -> Decision | None:
    """Add to ``plan`` the smallest value of ``part`` (a bisection up to ``top``) that
    makes it work, and return the decision; None (and ``plan`` unchanged) if none does."""
    def with_plan(q: Profile) -> Decision | None:
        return changed(_apply(replace(p, **{part: getattr(q, part)}), plan))

    r = _bisect_up(p, part, with_plan, top, unit)
    if r is None:
        return None
    plan[part] = r[0]
    return changed(_apply(p, plan))


_SHRINK_ORDER = ("ring", "fraud_risk", "relational_risk", "wait", "utilisation",
                 "monthly_txns", "on_time_months", "credit_score", "income")


def _shrink(p: Profile, plan: dict[str, Any], changed: Search, policy: Policy, d: Decision
            ) -> tuple[dict[str, Any], Decision]:
    """The plan with each part as small as it can be while the rest stays: a part that
    is not needed goes, the others come down to their smallest working value (scanned
    for whole steps, bisected for amounts and scores)."""
    for part in _SHRINK_ORDER:
        if part not in plan:
            continue
        others = {k: v for k, v in plan.items() if k != part}
        again = changed(_apply(p, others))
        if again is not None:
            plan, d = others, again
            continue

        def works(q: Profile, part: str = part, others: dict[str, Any] = others
                  ) -> Decision | None:
            return changed(_apply(p, {**others, part: getattr(q, part)}))

        found: tuple[Any, Decision] | None = None
        if part in ("income", "credit_score"):
            found = _bisect_up(p, part, works, float(plan[part]),
                               1000.0 if part == "income" else 1.0)
        elif part in ("fraud_risk", "relational_risk"):
            found = _bisect_down(_with(p, part, float(getattr(p, part) or 0.0)),
                                 part, works, 2)
        else:
            for value in _smaller(p, part, plan[part], policy):
                again = changed(_apply(p, {**others, part: value}))
                if again is not None:
                    found = value, again
                    break
        if found is not None and found[0] != plan[part]:
            plan, d = {**others, part: found[0]}, found[1]
    return plan, d


def _smaller(p: Profile, part: str, value: Any, policy: Policy) -> list[Any]:
    """Values of a scanned ``part`` below ``value``, smallest first."""
    if part == "on_time_months":
        return list(range(1, value))
    if part == "monthly_txns":
        return list(range(_txns_start(p), value))
    if part == "utilisation":
        return [u for u in _util_steps(p) if u < value]
    if part == "wait":
        return [e for e in _cooldown_ends(p, policy) if e < value]
    return []


_TEXT_ORDER = ("on_time_months", "wait", "monthly_txns", "utilisation", "income",
               "credit_score", "fraud_risk", "relational_risk", "ring")


def _plan_part(p: Profile, part: str, value: Any, policy: Policy
               ) -> tuple[tuple[str, str] | None, Any]:
    """The (English, Chinese) text of one part of a plan, and the value it needs."""
    text: tuple[str, str] | None = None
    if part == "on_time_months":
        text = _months_text(value)
    elif part == "wait":
        text = _wait_text(value, policy)
        value = date_text(value, policy)
    elif part == "monthly_txns":
        text = _txns_text(value)
    elif part == "utilisation":
        text = _util_text(value)
    elif part == "income":
        text = _income_text(value)
    elif part == "credit_score":
        value = int(value)
        text = (f"a credit score of {value}", f"信用分达到 {value}")
    elif part == "relational_risk":
        text = (f"linked-account (relational) risk at or below {value:.2f}",
                f"关联账户风险降至 {value:.2f} 或以下")
    elif part == "fraud_risk":
        text = (f"fraud risk at or below {value:.2f} after investigation",
                f"经调查后欺诈风险降至 {value:.2f} 或以下")
    elif part == "ring":
        value = p.ring_id
        text = (f"no longer being linked to the group {p.ring_id}",
                f"不再与关联团伙 {p.ring_id} 存在关联")
    return text, value


def _plan_cf(p: Profile, plan: dict[str, Any], d: Decision, policy: Policy
             ) -> Counterfactual | None:
    plan = {k: plan[k] for k in _TEXT_ORDER
             if k in plan and plan[k] is not None and plan[k] is not False
             and not (k == "on_time_months" and plan[k] == 0)}
    if not plan:
        return None
    texts: list[tuple[str, str]] = []
    needed: dict[str, Any] = {}
    for part, value in plan.items():
        text, needed[part] = _plan_part(p, part, value, policy)
        if text is not None:
            texts.append(text)
    if len(needed) == 1:
        (part, value), = needed.items()
        current = {"on_time_months": 0, "wait": date_text(p.now_ms, policy),
                   "monthly_txns": p.monthly_txns, "utilisation": p.utilisation,
                   "income": p.income, "credit_score": p.credit_score,
                   "fraud_risk": p.fraud_risk, "relational_risk": p.relational_risk,
                   "ring": p.ring_id}[part]
        return _cf(part, current, value, d, *texts[0])
    return _cf("+".join(needed), None, needed, d, ", and ".join(t[0] for t in texts),
               "，并且".join(t[1] for t in texts))


# -- levers that would stop a raise or an opening ---------------------------------------
def _worse_relational(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_up(p, "relational_risk", changed, 1.0, 0.01)
    if r is None:
        return None
    v, d = r
    return _cf("relational_risk", p.relational_risk, v, d,
               f"linked-account (relational) risk reaching {v:.2f}",
               f"关联账户风险升至 {v:.2f}")


def _worse_fraud(p: Profile, changed: Search) -> Counterfactual | None:
    r = _bisect_up(p, "fraud_risk", changed, 1.0, 0.01)
    if r is None:
        return None
    v, d = r
    return _cf("fraud_risk", p.fraud_risk, v, d,
               f"fraud risk reaching {v:.2f}", f"欺诈风险升至 {v:.2f}")


def _overdue_month(p: Profile, changed: Search) -> Counterfactual | None:
    d = changed(_months_passing(p, 1, "1"))
    if d is None:
        return None
    return _cf("overdue", 0, 1, d, "one overdue repayment next month", "下月出现一次逾期")


_WORSENING: tuple[Callable[[Profile, Search], Counterfactual | None], ...] = (
    _overdue_month, _worse_relational, _worse_fraud)
