"""Every "why no raise?" answered: on random profiles (hypothesis) a user who never missed
a payment and is kept without a raise gets a counterfactual that would raise the limit
(or a dated reason), each counterfactual is feasible, re-checked and minimal; and every
limit the engine sets is a multiple of the policy's rounding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from limits.counterfactuals import (
    USER_LEVERS,
    is_explained,
    never_overdue,
    with_counterfactuals,
)
from limits.decision import Counterfactual, Decision
from limits.engine import decide
from limits.features import DAY_MS, MONTH_MS, LineState, Profile
from limits.policy import load_policy, parse_policy, read_policy_text
from limits.reasons import TEMPLATES
from tests.test_limits_invariants import profiles

POLICY = load_policy()
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
AUTUMN = 1_757_000_000_000  # 2025-09-04, no season running
SINGLES_DAY = 1_762_790_400_000  # 2025-11-11 00:00 +08:00


def _on_time(p: Profile) -> Profile:
    """``p`` with no overdue history and both scores present."""
    return replace(p, repayment_history=p.repayment_history.translate(
        str.maketrans("123456", "000000")), overdue_count=0, worst_dpd=0,
        fraud_risk=p.fraud_risk if p.fraud_risk is not None else 0.05,
        relational_risk=p.relational_risk if p.relational_risk is not None else 0.05)


on_time_profiles = profiles().map(_on_time)


def _apply(p: Profile, lever: str, value: Any) -> Profile:
    """The change a counterfactual names, made the way the user would make it."""
    if lever == "on_time_months":
        return replace(p, repayment_history=(p.repayment_history + "0" * value)[-36:],
                       months_on_book=p.months_on_book + value,
                       now_ms=p.now_ms + value * MONTH_MS)
    if lever == "wait":
        return replace(p, now_ms=max(p.now_ms, _day_ms(value) + DAY_MS - 1))
    if lever == "monthly_txns":
        return replace(p, monthly_txns=float(value), active_days_30d=max(p.active_days_30d, 1),
                       lifecycle="active" if p.lifecycle == "dormant" else p.lifecycle)
    if lever == "overdue":  # what would stop a raise: one month overdue
        return replace(p, repayment_history=(p.repayment_history + "1")[-36:],
                       months_on_book=p.months_on_book + 1, now_ms=p.now_ms + MONTH_MS)
    if lever == "ring":
        return replace(p, ring_size=0, ring_id=None, ring_kind=None, ring_suspicion=0.0,
                       ring_exposure=0.0)
    return replace(p, **{lever: value})


def _day_ms(day: str) -> int:
    """Midnight of ``day`` in the policy's offset (the wait lever names the day a
    cool-down ends: by the end of that day it has ended)."""
    from datetime import datetime, timedelta, timezone

    tz = timezone(timedelta(hours=POLICY.utc_offset_hours))
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=tz).timestamp() * 1000)


_ORDER = ("on_time_months", "wait", "monthly_txns", "utilisation", "income", "credit_score",
          "fraud_risk", "relational_risk", "ring")


def _apply_cf(p: Profile, c: Counterfactual) -> Profile:
    if isinstance(c.needed, dict):
        for part in _ORDER:
            if part in c.needed:
                p = _apply(p, part, c.needed[part])
        return p
    return _apply(p, c.lever, c.needed)


def _feasible(p: Profile, lever: str, value: Any) -> None:
    """A user can only move forward: no lower score, no account aged backwards."""
    if lever == "on_time_months":
        assert isinstance(value, int) and value >= 1
    elif lever in ("credit_score", "income"):
        assert value > (getattr(p, lever) or 0.0)
    elif lever == "obligations":
        assert value < p.obligations
    elif lever in ("monthly_txns", "utilisation"):
        assert value > getattr(p, lever)


def _check_counterfactuals(d: Decision) -> None:
    p = d.inputs
    for c in d.counterfactuals:
        assert c.en and c.zh and c.line in ("bnpl", "cash_loan")
        parts = c.needed.items() if isinstance(c.needed, dict) else [(c.lever, c.needed)]
        for lever, value in parts:
            if lever in USER_LEVERS - {"wait"}:
                _feasible(p, lever, value)
        again = decide(_apply_cf(p, c), POLICY)
        assert again.action == c.action, (c, again.action)
        if c.lever != "wait":  # the wait lever names the day; the time of day may differ
            assert again.line(c.line).new_limit == c.limit
        assert f"{c.limit:,.0f}" in c.en and f"{c.limit:,.0f}" in c.zh


@SETTINGS
@given(on_time_profiles)
def test_no_on_time_user_kept_without_a_raise_is_left_unexplained(p: Profile) -> None:
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    assert never_overdue(p)
    if d.action == "keep":
        assert is_explained(d), [r.code for r in d.all_reasons]
    _check_counterfactuals(d)


def _smaller(p: Profile, lever: str, value: Any) -> list[tuple[str, Any]]:
    """One step less of a part of a counterfactual (nothing when it cannot be less)."""
    if lever == "on_time_months" and value > 1:
        return [(lever, value - 1)]
    if lever == "monthly_txns" and value - 1 > p.monthly_txns:
        return [(lever, value - 1)]
    if lever == "utilisation" and round(value - 0.05, 2) > p.utilisation:
        return [(lever, round(value - 0.05, 2))]
    if lever == "credit_score" and value - 1 > (p.credit_score or 350):
        return [(lever, value - 1)]
    if lever == "income" and value - 1000 > (p.income or 0.0):
        return [(lever, value - 1000)]
    return []


@SETTINGS
@given(on_time_profiles)
def test_counterfactuals_are_minimal(p: Profile) -> None:
    """No smaller change of a user lever (one step less of any part) gives the same
    action."""
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    for c in d.counterfactuals:
        if not (set(c.lever.split("+")) <= USER_LEVERS):
            continue
        parts = dict(c.needed) if isinstance(c.needed, dict) else {c.lever: c.needed}
        for lever, value in parts.items():
            for _, less in _smaller(p, lever, value):
                fewer = Counterfactual(c.lever, c.current,
                                       {**parts, lever: less} if len(parts) > 1 else less,
                                       c.action, "", "")
                again = decide(_apply_cf(p, fewer), POLICY)
                assert again.action != c.action, (c.lever, lever, value, less)


def _on_grid(x: float, step: float) -> bool:
    return abs(x / step - round(x / step)) < 1e-9


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles(), st.sampled_from([None, SINGLES_DAY, SINGLES_DAY + 5 * DAY_MS]))
def test_every_limit_and_temporary_limit_is_a_multiple_of_rounding(
        p: Profile, season: int | None) -> None:
    if season is not None:
        p = replace(p, now_ms=season)
    for ld in decide(p, POLICY).lines:
        assert _on_grid(ld.new_limit, POLICY.rounding), ld
        assert _on_grid(ld.temp_limit, POLICY.rounding), ld


def good(**over: Any) -> Profile:
    base: dict[str, Any] = dict(
        user_id="u1", now_ms=AUTUMN, lifecycle="active", credit_score=720, income=180_000,
        months_on_book=30, repayment_history="0" * 24, overdue_count=0, worst_dpd=0,
        utilisation=0.45, monthly_spend=3000, monthly_txns=12, merchant_categories=6,
        active_days_30d=20, other_products=1, obligations=1500, fraud_risk=0.05,
        relational_risk=0.05, lines={"bnpl": LineState(limit=6000, balance=2500)},
    )
    base.update(over)
    return Profile(**base)


def test_a_temporary_raise_cut_by_a_ceiling_is_rounded() -> None:
    # Singles Day gives 30 % on top; the online micro-loan cap (a third of income, BNPL
    # share 0.6) leaves 0.6 x 61,000 / 3 = 12,200.0000x: the cut is rounded down.
    d = decide(good(now_ms=SINGLES_DAY, income=61_000, obligations=0,
                    lines={"bnpl": LineState(limit=12_000, balance=2500)}), POLICY)
    bnpl = d.line("bnpl")
    assert bnpl.temp_limit > 0 and "TEMP_RAISE" in {r.code for r in bnpl.reasons}
    assert bnpl.temp_limit == 100.0
    assert bnpl.effective_limit <= bnpl.ceiling


def test_low_usage_and_no_capacity_get_a_plan_with_the_limit_it_gives() -> None:
    # Too little use and income that leaves no room: neither change alone raises it.
    p = good(monthly_txns=1, utilisation=0.05, income=60_000, obligations=2_040,
             lines={"bnpl": LineState(limit=3000, balance=100),
                    "cash_loan": LineState(limit=2000)})
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    codes = {r.code for r in d.line("bnpl").reasons}
    assert d.action == "keep" and "LOW_USAGE" in codes
    assert "NO_CAPACITY" in codes or "AT_TARGET" in codes
    user = [c for c in d.counterfactuals if set(c.lever.split("+")) <= USER_LEVERS]
    assert user and all(c.action == "raise" for c in user)
    _check_counterfactuals(d)
    plan = user[0]
    assert "+" in plan.lever and "income" in plan.needed and "monthly_txns" in plan.needed
    assert "would rise to" in plan.en and "可提升至" in plan.zh


def test_a_dormant_user_is_told_to_use_the_line_again() -> None:
    p = good(lifecycle="dormant", monthly_txns=0, active_days_30d=0, utilisation=0.0)
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    assert d.action == "keep" and "DORMANT" in {r.code for r in d.line("bnpl").reasons}
    assert is_explained(d)
    assert any("monthly_txns" in c.lever for c in d.counterfactuals)
    _check_counterfactuals(d)


def test_old_on_time_months_that_leave_the_history_are_not_counted() -> None:
    # The history keeps 36 months: three on-time months followed by 33 without a bill
    # fall out of it as new months come in, so the plan asks for the whole window.
    p = good(lifecycle="dormant", monthly_txns=0, active_days_30d=0, utilisation=0.07,
             months_on_book=39, repayment_history="000" + "-" * 33)
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    assert d.action == "keep" and is_explained(d)
    plan = next(c for c in d.counterfactuals if "+" in c.lever)
    assert plan.needed["on_time_months"] == 6
    assert "using the credit line for 1 payment a month" in plan.en
    _check_counterfactuals(d)


def test_a_cool_down_gives_the_date_of_the_next_raise() -> None:
    last = AUTUMN - 30 * DAY_MS
    p = good(lines={"bnpl": LineState(limit=6000, balance=2500, last_raise_ms=last),
                    "cash_loan": LineState(limit=4000, last_raise_ms=last)})
    d = with_counterfactuals(decide(p, POLICY), POLICY)
    assert d.action == "keep"
    wait = [c for c in d.counterfactuals if c.lever == "wait"]
    assert wait and wait[0].needed == "2025-11-03" and wait[0].action == "raise"
    assert "2025-11-03" in wait[0].en and "2025-11-03" in wait[0].zh
    cool = next(r for r in d.line("bnpl").reasons if r.code == "COOLDOWN")
    assert cool.params["next_raise"] == "2025-11-03"
    _check_counterfactuals(d)


def test_a_line_at_its_maximum_says_so() -> None:
    p = good(income=2_000_000, obligations=0, credit_score=900,
             lines={"bnpl": LineState(limit=50_000, balance=9000),
                    "cash_loan": LineState(limit=40_000)})
    d = decide(p, POLICY)
    assert "AT_MAXIMUM" in {r.code for r in d.line("bnpl").reasons}
    assert "50,000" in next(r.en for r in d.line("bnpl").reasons if r.code == "AT_MAXIMUM")


@pytest.mark.parametrize("code", sorted(TEMPLATES))
def test_every_reason_has_english_and_chinese(code: str) -> None:
    en, zh = TEMPLATES[code]
    assert en and zh and any("\u4e00" <= ch <= "\u9fff" for ch in zh)


def test_the_engine_does_not_search_counterfactuals() -> None:
    p = good(repayment_history="0" * 3)
    assert decide(p, POLICY).counterfactuals == ()
    assert with_counterfactuals(decide(p, POLICY), POLICY).counterfactuals


def test_the_same_decision_under_a_reparsed_policy() -> None:
    other = parse_policy(read_policy_text()[0])
    p = good(repayment_history="0" * 3)
    assert with_counterfactuals(decide(p, POLICY), POLICY).to_dict() == \
        with_counterfactuals(decide(p, other), other).to_dict()
